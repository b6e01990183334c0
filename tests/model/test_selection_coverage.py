"""Stale deals, drift and unrecorded Lost: intervals cover the truth with the matching
feature (age bands, a recency half-life, the gone-cold rule) and do not without it.

Conjugate fits only (fast). "Cover at the binomial-band rate": with ``n`` true values and
nominal 90% intervals, the number covered must lie in the central 99% of Binomial(n, 0.9)
(intervals of one fit are not independent, so the band is a loose check, not a test of size);
without the feature it must fall below that band.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import binom

from funnel_lab import markov
from funnel_lab.errors import DataWarning, SparseDataWarning
from funnel_lab.model.fitting import fit

pytestmark = pytest.mark.slow

CI_PROB = 0.9
#: Two-sided probability outside the binomial band (central 99%).
BAND_ALPHA = 0.01
DRAWS = 1000
SEEDS = (1, 2, 3)


def binomial_band(n: int) -> tuple[int, int]:
    lo = int(binom.ppf(BAND_ALPHA / 2, n, CI_PROB))
    hi = int(binom.isf(BAND_ALPHA / 2, n, CI_PROB))
    return lo, hi


def covered(draws: np.ndarray, truth: np.ndarray) -> np.ndarray:
    lo, hi = np.quantile(draws, [(1 - CI_PROB) / 2, (1 + CI_PROB) / 2], axis=0)
    return (lo <= truth) & (truth <= hi)


def simulate(**overrides):
    from funnel_lab.simulate import simulate_crm, small_settings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return [simulate_crm(small_settings(**overrides), random_seed=s) for s in SEEDS]


def conj_fit(crm, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparseDataWarning)
        return fit(crm, draws=DRAWS, random_seed=0, **kwargs)


def band_rate_coverage(sims, band_edges) -> tuple[int, int]:
    """Covered / total over every (seed, segment, true band, move with a true rate)."""
    hits = total = 0
    for sim in sims:
        post = conj_fit(sim.crm, band_edges=band_edges)
        for seg, sp in post.segments.items():
            states = sp.funnel.states
            by_band = sim.truth["segments"][seg]["rates_per_week_by_band"]
            true_edges = sim.truth["band_edges_weeks"]
            for edge, rates in zip(true_edges, by_band, strict=True):
                # The fitted band containing the true band's lower edge (same edges here,
                # one band without the feature).
                fb = int(np.searchsorted(np.asarray(sp.band_edges), edge, side="right") - 1)
                for move, rate in rates.items():
                    a, b = move.split("->")
                    i, j = states.index(a), states.index(b)
                    if rate <= 0:
                        continue
                    hits += bool(covered(sp.rates[:, 0, fb, i, j], rate))
                    total += 1
    return hits, total


def test_age_bands_cover_stale_rates_and_one_band_does_not():
    sims = simulate(stale=True)
    edges = tuple(sims[0].truth["band_edges_weeks"])
    hits, total = band_rate_coverage(sims, edges)
    lo, hi = binomial_band(total)
    assert lo <= hits <= hi, (hits, total, lo, hi)
    hits0, total0 = band_rate_coverage(sims, (0,))
    assert total0 == total
    assert hits0 < binomial_band(total0)[0], (hits0, total0)


def progress_coverage(sims, half_life) -> tuple[int, int]:
    """Covered / total over the drifting (progress) moves' rates at as_of."""
    hits = total = 0
    for sim in sims:
        post = conj_fit(sim.crm, half_life_weeks=half_life)
        for seg, sp in post.segments.items():
            states = sp.funnel.states
            seg_truth = sim.truth["segments"][seg]
            for move, rate in seg_truth["rates_per_week"].items():
                if seg_truth["transition_kinds"].get(move) not in ("forward", "skip", "won"):
                    continue
                a, b = move.split("->")
                hits += bool(covered(sp.rates[:, 0, 0, states.index(a), states.index(b)],
                                     rate))
                total += 1
    return hits, total


#: A drift strong enough that a year of unweighted history is visibly off (x1.6 a year ago,
#: x1.3 on average), and a half-life short enough (4 weeks) that the weighted average of the
#: multiplier is within 1 + 0.6 * 5.8 / 52 = 1.07 of the truth, well inside the intervals.
DRIFT = dict(drift=True, drift_progress_start=1.6)
HALF_LIFE_WEEKS = 4.0


def test_recency_covers_drifting_rates_and_equal_weights_do_not():
    sims = simulate(**DRIFT)
    hits, total = progress_coverage(sims, HALF_LIFE_WEEKS)
    lo, hi = binomial_band(total)
    assert lo <= hits <= hi, (hits, total, lo, hi)
    hits0, total0 = progress_coverage(sims, None)
    assert hits0 < binomial_band(total0)[0], (hits0, total0)


#: "Without the rule": a gone-cold threshold longer than the whole history never fires.
NEVER_COLD_DAYS = 10_000.0


def win_coverage(sims, cold_after_days) -> tuple[int, int]:
    from funnel_lab.crm.read import crm_from_frames

    hits = total = 0
    for sim in sims:
        events = sim.crm.events
        events = events.loc[~events["imputed"].astype(bool), ["deal_id", "stage", "entered_at"]]
        funnels = {s: f.__class__(f.segment, f.stages, f.won, f.lost)
                   for s, f in sim.crm.funnels.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            crm = crm_from_frames(sim.crm.deals, events, funnels, as_of=sim.crm.as_of,
                                  cold_after_days=cold_after_days)
        post = conj_fit(crm)
        for seg, sp in post.segments.items():
            n_open = sp.funnel.n_open
            win = markov.win_probability(sp.rates[:, 0, 0], n_open)
            by_stage = sim.truth["segments"][seg]["by_stage"]
            truth = np.array([by_stage[s]["win_probability"] for s in sp.funnel.stages])
            hits += int(covered(win, truth).sum())
            total += n_open
    return hits, total


def test_gone_cold_rule_covers_win_probability_and_no_rule_does_not():
    sims = simulate(record_lost=False)
    assert all(not (s.crm.events["stage"] == "Lost").any() or s.crm.events.loc[
        s.crm.events["stage"] == "Lost", "imputed"].all() for s in sims)
    hits, total = win_coverage(sims, None)  # the reader's default rule for CRMs without Lost
    lo, hi = binomial_band(total)
    assert lo <= hits <= hi, (hits, total, lo, hi)
    hits0, total0 = win_coverage(sims, NEVER_COLD_DAYS)
    assert hits0 < binomial_band(total0)[0], (hits0, total0)
