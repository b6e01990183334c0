"""Calibration on known truth: realised wins of the next 13 weeks against the 80% interval.

A fixed set of 40 small simulated CRMs (two segments each: 80 checks) is cut at ``as_of``,
fitted (conjugate) and forecast; the simulator's future CRM gives the deals actually won in
the following 13 weeks. Without stale deals and drift the fit is plain; with them it uses
the automatic age bands and recency (as the command line does). The share of checks with
``p10 <= realised <= p90`` must lie in the 99% binomial band around 80%. Wins are whole
numbers, so the inclusive interval covers a little more than 80% by construction; the band is
wide enough for that.

The bigger version, with more CRMs and draws: ``benchmarks/forecast_calibration.py``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import binom

from funnel_lab.forecast import forecast
from funnel_lab.model import fit
from funnel_lab.simulate import simulate_crm, small_settings

SEEDS = range(100, 140)
HORIZON = 13
# Few draws keep this test fast; 200 draws put the p10/p90 of a count of ~20-120 wins within
# about one win of their limit, small against the Poisson-sized spread being checked.
DRAWS = 200
TARGET = 0.8
BAND_LEVEL = 0.99


def _realised_wins(sim) -> dict[str, int]:
    fut = sim.future
    ev = fut.events.merge(fut.deals[["deal_id", "segment"]], on="deal_id")
    return {seg: int(((ev["segment"] == seg) & (ev["stage"] == f.won)
                      & (ev["entered_at"] > sim.crm.as_of)).sum())
            for seg, f in fut.funnels.items()}


def _coverage(stale_and_drift: bool) -> tuple[int, int, list[tuple[int, float, float]]]:
    hits, checks, rows = 0, 0, []
    for seed in SEEDS:
        settings = small_settings(future_weeks=HORIZON, owner_sd=0.0, stale=stale_and_drift,
                                  drift=stale_and_drift)
        sim = simulate_crm(settings, random_seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # with stale deals and drift: what `funnel-lab fit` / `forecast` do by default
            fit_kwargs = ({"band_edges": "auto", "half_life_weeks": "auto"} if stale_and_drift
                          else {})
            post = fit(sim.crm, draws=DRAWS, random_seed=seed, **fit_kwargs)
            fc = forecast(post, sim.crm, horizon_weeks=HORIZON, random_seed=seed,
                          amount_classes=1)
        last = fc.wins[fc.wins["week"] == HORIZON].set_index("segment")
        for seg, n in _realised_wins(sim).items():
            lo, hi = last.loc[seg, "p10"], last.loc[seg, "p90"]
            hits += int(lo <= n <= hi)
            checks += 1
            rows.append((n, lo, hi))
    return hits, checks, rows


def _band(n: int) -> tuple[int, int]:
    tail = (1 - BAND_LEVEL) / 2
    return int(binom.ppf(tail, n, TARGET)), int(binom.isf(tail, n, TARGET))


@pytest.mark.slow
def test_realised_wins_fall_in_the_80_percent_interval_at_the_right_rate():
    hits, checks, rows = _coverage(stale_and_drift=False)
    lo, hi = _band(checks)
    assert checks == 2 * len(SEEDS)
    assert lo <= hits <= hi, (hits / checks, lo / checks, hi / checks)
    # the intervals are not vacuous: they exclude most of the counts seen elsewhere
    widths = np.array([h - lo_ for _, lo_, h in rows])
    realised = np.array([n for n, _, _ in rows])
    assert np.median(widths) < 0.5 * np.median(realised)


@pytest.mark.slow
def test_calibration_with_stale_deals_and_drift_using_auto_settings():
    """Stale deals and drift on, fitted as users get it: band_edges and half_life_weeks "auto"
    (the held-out choice of funnel_lab.model.selection, the default of `funnel-lab fit` and
    `funnel-lab forecast`).

    Measured on these 40 CRMs: 70.0% (56 of 80; band 54-73), 21 below p10, 3 above p90.
    benchmarks/forecast_calibration.py (150 CRMs, 500 draws, Dec 2026): 80.7% of 300 checks,
    inside the 99% band [74.0%, 85.7%], but lopsided: 17% below p10, 2% above p90, the mean
    about 2.6 wins above the realised count. The forecast engine is not the cause (with the
    simulator's true rates the same CRMs give 84.0%, bias -0.06 wins); the fitted rates are
    too fast: the progress drift (1.35 -> 1 over the history) is averaged in (the auto choice
    takes no recency on most of these CRMs), and the prior pulls the sparse oldest age band
    towards the stage's all-band rate. The selection of the auto settings makes this test
    about 5x slower than with fixed settings (about 1.2 s per CRM in the model's statistics).
    """
    hits, checks, _ = _coverage(stale_and_drift=True)
    lo, hi = _band(checks)
    assert checks == 2 * len(SEEDS)
    assert lo <= hits <= hi, (hits / checks, lo / checks, hi / checks)
