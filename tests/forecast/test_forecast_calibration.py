"""Calibration on known truth: realised wins of the next 13 weeks against the 80% interval.

A fixed set of 40 small simulated CRMs (two segments each: 80 checks) is cut at ``as_of``,
fitted (conjugate) and forecast; the simulator's future CRM gives the deals actually won in
the following 13 weeks. The share of checks with ``p10 <= realised <= p90`` must lie in the
99% binomial band around 80%. Wins are whole numbers, so the inclusive interval covers a
little more than 80% by construction; the band is wide enough for that.

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
HALF_LIFE_WEEKS = 13.0


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
            post = fit(sim.crm, draws=DRAWS, random_seed=seed,
                       band_edges=settings.band_edges(),
                       half_life_weeks=HALF_LIFE_WEEKS if stale_and_drift else None)
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
def test_calibration_with_stale_deals_and_drift_using_bands_and_recency():
    """Passes on these 40 CRMs (77.5% measured). Caveat: the bigger run of
    benchmarks/forecast_calibration.py (150 CRMs, 500 draws; Dec 2026) measured 87.0%, just
    above that run's 99% band [74.0%, 85.7%]: 11% of realised counts fall below p10 and only
    2% above p90, i.e. the forecast runs about two wins high (a 13-week recency half-life
    still averages in part of the drifted, faster past) with intervals a little wide."""
    hits, checks, _ = _coverage(stale_and_drift=True)
    lo, hi = _band(checks)
    assert lo <= hits <= hi, (hits / checks, lo / checks, hi / checks)
