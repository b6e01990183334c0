"""The public names of funnel_lab.forecast, and its dependency rule."""

from __future__ import annotations

import subprocess
import sys

import funnel_lab.forecast as fc


def test_all_names_exist_once():
    assert len(fc.__all__) == len(set(fc.__all__))
    assert [n for n in fc.__all__ if not hasattr(fc, n)] == []
    assert {"forecast", "Forecast", "run_forecast_command", "exact_means"} <= set(fc.__all__)


def test_importing_the_forecast_pulls_in_no_charts_reports_or_pymc():
    code = ("import sys, funnel_lab.forecast; "
            "print(sorted(m for m in ('altair', 'pymc', 'funnel_lab.charts', "
            "'funnel_lab.reports') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
