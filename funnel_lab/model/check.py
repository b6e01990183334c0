"""Checking a posterior against known truth (a simulated CRM's ``truth.json``).

:func:`truth_coverage` gives, per segment, stage, quantity and interval probability, whether
the equal-tailed interval contains the true value, and the interval width: the raw material
of calibration tests and of ``benchmarks/calibration.py``. :func:`binomial_band` is the range
of coverage counts expected by chance.

Dependency rule: numpy, pandas, scipy; funnel_lab.model only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from funnel_lab.model.derived import derived_draws, interval
from funnel_lab.model.posterior import Posterior

__all__ = ["QUANTITIES", "binomial_band", "truth_coverage"]

#: Derived quantity of :func:`derived_draws` -> key in ``truth.json``'s ``by_stage``.
QUANTITIES = {
    "conversion": "conversion",
    "win_probability": "win_probability",
    "time_in_stage_days": "mean_days_in_stage",
}


def truth_coverage(
    posterior: Posterior,
    truth: Mapping[str, Any],
    ci_probs: Sequence[float] = (0.5, 0.9),
    group: int = 0,
) -> pd.DataFrame:
    """Does each interval contain the truth? One row per segment, stage, quantity, ci_prob.

    Parameters
    ----------
    posterior : Posterior
    truth : mapping
        ``truth.json`` of the simulated CRM (segment-level ``by_stage`` values).
    ci_probs : sequence of float
        Interval probabilities to check.
    group : int
        Which group of the posterior to compare (0: the segment-level fit's ``"all"``).

    Returns
    -------
    DataFrame
        ``segment, stage, quantity, ci_prob, truth, mean, lower, upper, covered, width``.

    Examples
    --------
    >>> sim = simulate_crm(small_settings(), 1)                        # doctest: +SKIP
    >>> truth_coverage(fit(sim.crm, random_seed=1), sim.truth)         # doctest: +SKIP
    """
    rows = []
    for seg in sorted(posterior.segments):
        sp = posterior.segments[seg]
        by_stage = truth["segments"][seg]["by_stage"]
        draws = derived_draws(sp)
        for quantity, key in QUANTITIES.items():
            values = draws[quantity][:, group]
            for p in ci_probs:
                mean, lo, hi = interval(values, p)
                for k, stage in enumerate(sp.funnel.stages):
                    true = float(by_stage[stage][key])
                    rows.append({
                        "segment": seg, "stage": stage, "quantity": quantity, "ci_prob": p,
                        "truth": true, "mean": mean[k], "lower": lo[k], "upper": hi[k],
                        "covered": bool(lo[k] <= true <= hi[k]), "width": hi[k] - lo[k],
                    })
    return pd.DataFrame(rows)


def binomial_band(n: int, p: float, level: float = 0.99) -> tuple[int, int]:
    """Central ``level`` range of Binomial(n, p) counts (inclusive).

    >>> binomial_band(400, 0.9)
    (344, 375)
    """
    dist = sps.binom(n, p)
    lo = int(dist.ppf((1 - level) / 2))
    hi = int(dist.isf((1 - level) / 2))
    return lo, int(np.clip(hi, lo, n))
