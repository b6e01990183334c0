"""The counts engine against an independent per-deal simulation in continuous time.

The reference below shares no code with the engine: every deal (today's, and each new deal
arriving at a uniformly random moment of a Poisson process) runs its own competing
exponential clocks, one per possible move, with no matrix exponential and no weeks. With the
rates fixed (every posterior draw equal), the engine's distribution of wins must match.
"""

from __future__ import annotations

import numpy as np
from forecast_fixtures import BASE_MOVES, DEMO, LEAD, LOST, PROPOSAL, WON, toy_inputs
from scipy.stats import chi2_contingency

from funnel_lab.crm.funnel import Funnel
from funnel_lab.forecast.engine import (
    amount_class_edges,
    count_cells,
    lognormal_bin_variances,
    run_engine,
)
from funnel_lab.forecast.exact import win_within
from funnel_lab.model.posterior import SegmentPosterior

REPS = 3000
ARRIVALS_PER_WEEK = 3.0
ENTRY = np.array([0.7, 0.2, 0.1])
TODAY = {LEAD: 12, DEMO: 8, PROPOSAL: 5, LOST: 30}
# Each distribution comparison is a chi-square test of homogeneity; four of them at a
# family-wise false-alarm rate of 1e-3 (Bonferroni). A wrong week boundary, arrival timing or
# re-engagement rule shifts these distributions by far more than this tolerates.
ALPHA_EACH = 1e-3 / 4
# Revenue: the engine values wins by amount class (5 quantile bins, gamma sums inside a class)
# instead of each deal's own amount. Its variance at week 13 is within this relative distance
# of the per-deal variance: the sampling error of a variance ratio from 3,000 replicates each
# is about 5%, the binning error about 2%; dropping the within-class spread (about -30% here)
# or using one class (+50%) fails it.
REVENUE_VARIANCE_RTOL = 0.2


def _rate_matrix() -> np.ndarray:
    r = np.zeros((5, 5))
    for (i, j), v in BASE_MOVES.items():
        r[i, j] = v
    return r


def reference_win_times(rates: np.ndarray, horizon: float, reps: int,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Win time (weeks, inf if not won by ``horizon``) of every deal: (today, new) arrays."""
    starts = np.concatenate([np.full(n, s) for s, n in TODAY.items()])
    today_state = np.tile(starts, (reps, 1))
    today_time = np.zeros_like(today_state, dtype=float)

    n_new = rng.poisson(ARRIVALS_PER_WEEK * horizon, reps)
    width = max(int(n_new.max()), 1)
    new_state = rng.choice(3, size=(reps, width), p=ENTRY)
    new_time = rng.uniform(0.0, horizon, size=(reps, width))
    exists = np.arange(width)[None, :] < n_new[:, None]
    new_time[~exists] = np.inf  # padding: never starts

    return (_run_clocks(rates, today_state, today_time, horizon, rng),
            _run_clocks(rates, new_state, new_time, horizon, rng))


def _run_clocks(rates, state, time, horizon, rng):
    shape = state.shape
    state = state.ravel().copy()
    time = time.ravel().copy()
    won_at = np.full(state.shape, np.inf)
    active = np.isfinite(time) & (time <= horizon)
    while active.any():
        s = state[active]
        r = rates[s]  # (n, 5): one clock per possible move
        with np.errstate(divide="ignore"):
            clocks = np.where(r > 0, rng.exponential(1.0, r.shape) / r, np.inf)
        nxt = clocks.argmin(axis=1)
        t = time[active] + clocks.min(axis=1)
        moved = np.isfinite(t) & (t <= horizon)
        idx = np.flatnonzero(active)
        time[idx] = t
        state[idx[moved]] = nxt[moved]
        won = moved & (nxt == WON)
        won_at[idx[won]] = t[won]
        active[idx[~moved | won]] = False
    return won_at.reshape(shape)


def _segment(rates):
    return SegmentPosterior(
        funnel=Funnel("SMB", ("Lead", "Demo", "Proposal")),
        rates=np.broadcast_to(rates, (REPS, 1, 1, 5, 5)).copy(),
        arrivals=np.full(REPS, ARRIVALS_PER_WEEK), entry_probs=np.tile(ENTRY, (REPS, 1)),
        amount_mu=np.zeros(REPS), amount_sigma=np.full(REPS, 0.8),
    )


def _homogeneity_p(a: np.ndarray, b: np.ndarray) -> float:
    """Chi-square test that two samples of counts come from one distribution (bins with
    fewer than 10 observations in total are pooled with their neighbours)."""
    values = np.arange(max(a.max(), b.max()) + 1)
    table = np.array([[np.sum(a == v) for v in values], [np.sum(b == v) for v in values]])
    merged, acc = [], np.zeros(2, dtype=int)
    for col in table.T:
        acc = acc + col
        if acc.sum() >= 10:
            merged.append(acc)
            acc = np.zeros(2, dtype=int)
    if acc.sum():
        merged[-1] = merged[-1] + acc
    return float(chi2_contingency(np.array(merged).T)[1])


def test_engine_matches_per_deal_reference_in_distribution():
    rates = _rate_matrix()
    rng = np.random.default_rng(2024)
    ref_today, ref_new = reference_win_times(rates, 13.0, REPS, rng)

    sp = _segment(rates)
    init = np.zeros((1, 5, 1, 1), dtype=np.int64)
    for s, n in TODAY.items():
        init[0, s, 0, 0] = n
    res = run_engine(toy_inputs(sp, init), 13, random_seed=7)
    cum = np.cumsum(res.wins, axis=1)

    for week in (4, 13):
        eng_today, eng_new = cum[:, week - 1, 0], cum[:, week - 1, 1]
        ref_t = (ref_today <= week).sum(axis=1)
        ref_n = (ref_new <= week).sum(axis=1)
        p_today = _homogeneity_p(eng_today, ref_t)
        p_new = _homogeneity_p(eng_new, ref_n)
        assert p_today > ALPHA_EACH, (week, "today", p_today, eng_today.mean(), ref_t.mean())
        assert p_new > ALPHA_EACH, (week, "new", p_new, eng_new.mean(), ref_n.mean())


def test_reference_detects_a_half_week_shift_of_arrivals():
    """The comparison has power: adding new deals at the start of their week (instead of at
    a uniformly random moment) is caught at week 4."""
    rates = _rate_matrix()
    rng = np.random.default_rng(99)
    _, ref_new = reference_win_times(rates, 13.0, REPS, rng)
    # the wrong model: arrivals of week k all start at the beginning of week k
    n = rng.poisson(ARRIVALS_PER_WEEK, (REPS, 4))
    starts = np.concatenate([np.repeat(np.arange(4.0), n[r]) for r in range(REPS)])
    owner = np.concatenate([np.full(n[r].sum(), r) for r in range(REPS)])
    state = rng.choice(3, size=len(starts), p=ENTRY)
    won_at = _run_clocks(rates, state[:, None], starts[:, None], 13.0, rng)[:, 0]
    wrong = np.bincount(owner[won_at <= 4.0], minlength=REPS)
    assert _homogeneity_p(wrong, (ref_new <= 4.0).sum(axis=1)) < ALPHA_EACH


def test_revenue_matches_per_deal_amounts_in_mean_and_variance():
    rates = _rate_matrix()
    rng = np.random.default_rng(31)
    state = np.concatenate([np.full(n, s) for s, n in TODAY.items()])
    amount = rng.lognormal(np.log(1000.0), 0.9, len(state))
    amount[state == PROPOSAL] *= 3.0  # big deals sit in late stages
    ref_today, ref_new = reference_win_times(rates, 13.0, REPS, rng)
    new_amount = rng.lognormal(0.0, 0.8, ref_new.shape)
    ref = ((ref_today <= 13) * amount).sum(axis=1) + ((ref_new <= 13) * new_amount).sum(axis=1)

    sp = _segment(rates)
    weight = win_within(sp.rates[:1], (0,), WON, (13,))[0, 0]  # (G, S, A)
    edges = amount_class_edges(amount[state != LOST], 5)
    init, means, variances = count_cells((1, 5, 1), np.zeros(len(state), dtype=np.int64),
                                         state, np.zeros(len(state), dtype=np.int64), amount,
                                         edges, cell_weight=weight)
    inputs = toy_inputs(sp, init, class_amounts=means)
    inputs.class_variances = variances
    inputs.new_variances = lognormal_bin_variances(sp.amount_mu, sp.amount_sigma, 10)
    eng = run_engine(inputs, 13, random_seed=8).revenue.sum(axis=(1, 2))

    se = np.sqrt(eng.var() / REPS + ref.var() / REPS)
    assert abs(eng.mean() - ref.mean()) < 4 * se, (eng.mean(), ref.mean(), se)
    assert abs(eng.var() / ref.var() - 1) < REVENUE_VARIANCE_RTOL, eng.var() / ref.var()
