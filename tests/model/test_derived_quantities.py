"""Derived quantities: markov on every draw, the exact band reduction, the summary tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from funnel_lab import markov
from funnel_lab.crm.funnel import Funnel
from funnel_lab.errors import ParameterError
from funnel_lab.model import Posterior, SegmentPosterior, derived_draws, effective_rates, summarize
from funnel_lab.model.derived import interval

# Monte Carlo of N simulated deals: a probability has standard error <= 0.5 / sqrt(N) and a
# mean time its sample sd / sqrt(N); 4.5 standard errors never fail by chance in these few
# checks, and a wrong band reduction is off by far more (see the banded rates below).
N_PATHS = 200_000
Z = 4.5
# The reduction and the simulator's truth module compute the same formula in another order.
EXACT_RTOL = 1e-12

FUNNEL = Funnel("S", ("A", "B", "C"))  # states A, B, C, Won, Lost


def banded_rates() -> np.ndarray:
    """(band, S, S) with strongly age-dependent rates: fast early, slow and lossy later."""
    r = np.zeros((3, 5, 5))
    base = {(0, 1): 0.6, (0, 4): 0.2, (1, 2): 0.5, (1, 0): 0.1, (1, 4): 0.2, (2, 3): 0.4,
            (2, 1): 0.1, (2, 4): 0.2, (0, 2): 0.05, (4, 0): 0.05}
    for b, (prog, loss) in enumerate([(1.0, 1.0), (0.4, 1.5), (0.1, 2.0)]):
        for (i, j), q in base.items():
            r[b, i, j] = q * (loss if j == 4 else prog)
    return r


def simulate_paths(rates, edges, n, rng):
    """Deals entering A at age 0, moved until Won or Lost; every entry restarts at age 0."""
    lengths = np.append(np.diff(np.asarray(edges, float)), np.inf)
    state = np.zeros(n, dtype=int)
    clock = np.zeros(n)
    first_stay = np.full(n, np.nan)
    alive = np.ones(n, dtype=bool)
    for _ in range(200):
        idx = np.flatnonzero(alive)
        if idx.size == 0:
            break
        s = state[idx]
        spent = np.zeros(idx.size)
        dest = np.full(idx.size, -1)
        for b in range(len(edges)):
            todo = dest < 0
            lam = rates[b, s[todo]].sum(axis=1)
            wait = rng.exponential(1.0, todo.sum()) / np.where(lam > 0, lam, 1e-300)
            leave = wait < lengths[b]
            spent[todo] += np.where(leave, wait, lengths[b] if np.isfinite(lengths[b]) else 0)
            probs = rates[b, s[todo][leave]] / lam[leave][:, None]
            u = rng.random(leave.sum())[:, None]
            pick = (u > np.cumsum(probs, axis=1)).sum(axis=1)
            sub = np.flatnonzero(todo)[leave]
            dest[sub] = pick
        first = np.isnan(first_stay[idx]) & (s == 0)
        first_stay[idx[first]] = spent[first]
        clock[idx] += spent
        state[idx] = dest
        alive[idx] = (dest != 3) & (dest != 4)
    return state, clock, first_stay


def test_band_reduction_matches_monte_carlo():
    rates = banded_rates()
    edges = (0, 2, 6)
    eff = effective_rates(rates, edges)
    win = markov.win_probability(eff, 3)[0]
    days_a = markov.mean_days_in_stage(eff, 3)[0]
    close = markov.expected_days_to_close(eff, 3)[0]

    state, clock, first = simulate_paths(rates, edges, N_PATHS, np.random.default_rng(2))
    won = state == 3
    assert abs(won.mean() - win) < Z * 0.5 / np.sqrt(N_PATHS)
    assert abs(7 * first.mean() - days_a) < Z * 7 * first.std() / np.sqrt(N_PATHS)
    assert abs(7 * clock.mean() - close) < Z * 7 * clock.std() / np.sqrt(N_PATHS)
    # The band-0 rates alone would be far off: the check above has teeth.
    naive = markov.win_probability(rates[0], 3)[0]
    assert abs(naive - win) > 20 * 0.5 / np.sqrt(N_PATHS)


def test_band_reduction_agrees_with_simulator_truth():
    truth = pytest.importorskip("funnel_lab.simulate.truth")
    rates = banded_rates()
    np.testing.assert_allclose(effective_rates(rates, (0, 2, 6)),
                               truth.equivalent_rates(rates, (0, 2, 6)), rtol=EXACT_RTOL)


def test_one_band_is_the_rates_and_batches():
    rng = np.random.default_rng(0)
    r = rng.gamma(2.0, 0.1, size=(7, 2, 1, 5, 5))
    r[..., 3, :] = 0
    r[..., np.arange(5), np.arange(5)] = 0
    np.testing.assert_array_equal(effective_rates(r, (0,)), r[:, :, 0])
    banded = np.repeat(r, 3, axis=2)  # same rates in every band: the reduction is exact
    np.testing.assert_allclose(effective_rates(banded, (0, 1, 4)), r[:, :, 0], rtol=1e-12)
    with pytest.raises(ParameterError, match="bands"):
        effective_rates(r, (0, 4))


def make_posterior(draws=400, groups=("all",), edges=(0,), seed=1) -> Posterior:
    rng = np.random.default_rng(seed)
    base = banded_rates()[: len(edges)]
    rates = base[None, None] * rng.gamma(50.0, 1 / 50.0, size=(draws, len(groups), *base.shape))
    sp = SegmentPosterior(
        funnel=FUNNEL, rates=rates, arrivals=rng.gamma(100, 0.1, draws),
        entry_probs=rng.dirichlet([5, 1, 1], draws), amount_mu=rng.normal(8, 0.1, draws),
        amount_sigma=rng.gamma(100, 0.01, draws), groups=groups,
        group_by=None if groups == ("all",) else "owner", band_edges=edges,
        sources=("web",), source_arrivals=rng.gamma(50, 0.1, (draws, 1)),
    )
    return Posterior(as_of=pd.Timestamp("2025-01-01"), method="conjugate",
                     segments={"S": sp}, fingerprint="x")


def test_derived_draws_are_markov_on_each_draw():
    post = make_posterior(draws=20)
    sp = post.segments["S"]
    d = derived_draws(sp)
    for k in (0, 7, 19):
        r = sp.rates[k, 0, 0]
        np.testing.assert_allclose(d["conversion"][k, 0], markov.conversion(r, 3), rtol=1e-12)
        np.testing.assert_allclose(d["win_probability"][k, 0], markov.win_probability(r, 3),
                                   rtol=1e-12)
        np.testing.assert_allclose(d["time_in_stage_days"][k, 0],
                                   markov.mean_days_in_stage(r, 3), rtol=1e-12)
        np.testing.assert_allclose(d["days_to_close"][k, 0],
                                   markov.expected_days_to_close(r, 3), rtol=1e-12)


def test_interval_is_equal_tailed():
    x = np.random.default_rng(3).normal(size=(100_001,))
    m, lo, hi = interval(x, 0.8)
    assert (x < lo).mean() == pytest.approx(0.1, abs=1e-4)
    assert (x > hi).mean() == pytest.approx(0.1, abs=1e-4)
    for bad in (0, 1, 1.5, "x"):
        with pytest.raises(ParameterError, match="ci_prob"):
            interval(x, bad)


def test_summary_tables_columns_and_invariants():
    tables = summarize(make_posterior(), ci_prob=0.9)
    assert list(tables["conversion"].columns) == ["segment", "stage", "mean", "lower", "upper"]
    assert list(tables["transitions"].columns) == ["segment", "stage", "to_stage",
                                                   "rate_per_week_mean", "lower", "upper"]
    assert list(tables["time_in_stage"].columns) == ["segment", "stage", "mean_days", "lower",
                                                     "upper"]
    assert list(tables["arrivals"].columns) == ["segment", "per_week_mean", "lower", "upper"]
    assert list(tables["reengagement"].columns) == ["segment", "to_stage", "rate_per_week",
                                                    "lower", "upper"]
    assert list(tables["one_week_matrix"].columns) == ["segment", "stage", "to_stage", "mean",
                                                       "lower", "upper"]
    for key in ("conversion", "win_probability", "one_week_matrix"):
        t = tables[key]
        assert ((t["lower"] <= t["mean"]) & (t["mean"] <= t["upper"])).all()
        assert ((t["lower"] >= 0) & (t["upper"] <= 1)).all()
    rows = tables["one_week_matrix"].groupby("stage")["mean"].sum()
    np.testing.assert_allclose(rows.to_numpy(), 1.0, rtol=1e-9)
    assert len(tables["transitions"]) == 10  # the possible moves, Lost -> A included
    assert tables["reengagement"]["to_stage"].tolist() == ["A"]
    win = tables["win_probability"].set_index("stage")["mean"]
    conv = tables["conversion"].set_index("stage")["mean"]
    assert win["C"] == pytest.approx(conv["C"], rel=1e-12)  # last stage: conversion = win


def test_summary_with_groups_and_bands():
    tables = summarize(make_posterior(groups=("ann", "bob"), edges=(0, 2, 6)), ci_prob=0.5)
    assert list(tables["conversion"].columns[:3]) == ["segment", "owner", "stage"]
    assert "band" in tables["transitions"].columns and "band" in tables["one_week_matrix"]
    assert set(tables["transitions"]["band"]) == {0, 2, 6}
    assert set(tables["conversion"]["owner"]) == {"ann", "bob"}
    # Stale deals: the banded win probability is below that of the band-0 rates.
    flat = summarize(make_posterior(groups=("ann", "bob")))
    assert (tables["win_probability"]["mean"].to_numpy()
            < flat["win_probability"]["mean"].to_numpy()).all()
