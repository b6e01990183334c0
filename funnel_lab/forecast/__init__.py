"""Forecasts: posterior + today's deals -> Monte Carlo weeks of stages, wins and revenue.

Layers: :mod:`~funnel_lab.forecast.transition` (one-week matrices) ->
:mod:`~funnel_lab.forecast.engine` (counts engine, numpy and a numba-compiled loop) and
:mod:`~funnel_lab.forecast.exact` (exact means) -> :mod:`~funnel_lab.forecast.api` (tidy
tables) -> :mod:`~funnel_lab.forecast.command` (the ``funnel-lab forecast`` command).

Dependency rule: imports funnel_lab.crm, funnel_lab.model (the posterior), funnel_lab.markov
and funnel_lab.errors; never charts or reports.
"""

from funnel_lab.forecast.api import Forecast, forecast
from funnel_lab.forecast.command import format_forecast, run_forecast_command
from funnel_lab.forecast.engine import EngineInputs, EngineResult, run_engine
from funnel_lab.forecast.exact import exact_means, win_within

__all__ = [
    "EngineInputs",
    "EngineResult",
    "Forecast",
    "exact_means",
    "forecast",
    "format_forecast",
    "run_engine",
    "run_forecast_command",
    "win_within",
]
