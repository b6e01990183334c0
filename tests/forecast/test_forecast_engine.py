"""The counts engine against exact means, invariants and the one-week matrices."""

from __future__ import annotations

import numpy as np
import pytest
from forecast_fixtures import LOST, WON, toy_init, toy_inputs, toy_segment_posterior
from scipy.linalg import expm
from scipy.stats import norm

from funnel_lab.forecast.engine import cell_probabilities, lognormal_bin_means, run_engine
from funnel_lab.forecast.exact import exact_means, expanded_matrix, win_within
from funnel_lab.forecast.transition import one_week
from funnel_lab.markov import generator

# Uniformization truncates the Poisson series below 1e-15 per term; rounding over ~30 matrix
# products of 5x5 stochastic matrices stays far below this.
MATRIX_TOL = 1e-11
# Family-wise false-alarm rate of the Monte Carlo versus exact-mean comparison; the per-cell
# threshold is Bonferroni-corrected for the number of cells tested.
FAMILY_ALPHA = 1e-3


def test_one_week_matches_scipy_expm_including_fast_and_slow_rates():
    rng = np.random.default_rng(3)
    for scale in (1e-4, 0.3, 5.0):  # 5.0 per week forces scaling and squaring
        rates = rng.gamma(2.0, scale, size=(50, 5, 5))
        rates[:, WON] = 0.0
        w = one_week(rates)
        q = generator(rates)
        np.testing.assert_allclose(w.move, expm(q), atol=MATRIX_TOL)
        # integral_0^1 expm(Q u) du is the top-right block of expm([[Q, I], [0, 0]])
        aug = np.zeros((50, 10, 10))
        aug[:, :5, :5] = q
        aug[:, :5, 5:] = np.eye(5)
        np.testing.assert_allclose(w.average, expm(aug)[:, :5, 5:], atol=MATRIX_TOL)
        np.testing.assert_allclose(w.stay, np.exp(np.diagonal(q, axis1=1, axis2=2)))


def test_cell_probabilities_split_staying_into_never_left_and_returned():
    sp = toy_segment_posterior(n_draws=5, band_edges=(0, 2))
    w = one_week(sp.rates)
    p = cell_probabilities(w.move, w.stay, sp.band_edges)  # (D, G, S, A, S + 1)
    assert p.shape == (5, 1, 5, 3, 6)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, atol=1e-12)
    for i in range(5):
        for a, b in enumerate((0, 0, 1)):
            np.testing.assert_allclose(p[:, 0, i, a, i] + p[:, 0, i, a, 5],
                                       w.move[:, 0, b, i, i], atol=1e-12)
            np.testing.assert_allclose(p[:, 0, i, a, 5], w.stay[:, 0, b, i], atol=1e-12)


def test_lognormal_bin_means_average_to_the_lognormal_mean():
    m = lognormal_bin_means(np.array([0.0, 7.0]), np.array([0.5, 1.2]), 10)
    np.testing.assert_allclose(m.mean(axis=-1), np.exp([0.125, 7.72]), rtol=1e-10)
    assert np.all(np.diff(m, axis=-1) > 0)


@pytest.mark.parametrize("band_edges,n_groups", [((0,), 1), ((0, 2, 4), 2)])
def test_monte_carlo_means_agree_with_exact_means_in_every_cell(band_edges, n_groups):
    sp = toy_segment_posterior(n_draws=3000, n_groups=n_groups, band_edges=band_edges)
    n_ages = band_edges[-1] + 1
    inputs = toy_inputs(sp, toy_init(n_groups, n_ages, 3))
    weeks = 10
    sim = run_engine(inputs, weeks, random_seed=5)
    ex = exact_means(inputs, weeks)

    # per draw the simulated value minus its exact mean has mean zero: a z-score per cell
    diffs = [sim.occupancy - ex.occupancy, sim.wins - ex.wins, sim.revenue - ex.revenue]
    flat = np.concatenate([d.reshape(d.shape[0], -1) for d in diffs], axis=1)
    sd = flat.std(axis=0, ddof=1)
    tested = sd > 0
    # a cell with no spread must be exact (e.g. today's deals in Won at week 1 are 0)
    np.testing.assert_allclose(flat[:, ~tested].mean(axis=0), 0.0, atol=1e-9)
    z = flat[:, tested].mean(axis=0) / (sd[tested] / np.sqrt(flat.shape[0]))
    z_crit = norm.isf(FAMILY_ALPHA / 2 / tested.sum())
    assert tested.sum() >= 0.9 * flat.shape[1]  # nearly every cell is random
    assert np.abs(z).max() < z_crit, (np.abs(z).max(), z_crit)


def test_no_draw_creates_or_loses_a_deal():
    sp = toy_segment_posterior(n_draws=300, n_groups=2, band_edges=(0, 3))
    init = toy_init(2, 4, 4)
    leads = 7
    res = run_engine(toy_inputs(sp, init, leads_per_week=leads), 12, random_seed=2)
    total_today = init.sum()
    np.testing.assert_array_equal(res.occupancy[:, :, 0].sum(axis=-1), total_today)
    weeks = np.arange(1, 13)
    np.testing.assert_array_equal(res.occupancy[:, :, 1].sum(axis=-1),
                                  np.broadcast_to(leads * weeks, (300, 12)))
    # Won holds exactly the deals won so far: cumulative wins never fall
    np.testing.assert_array_equal(res.occupancy[..., WON], np.cumsum(res.wins, axis=1))
    assert (res.wins >= 0).all() and (np.diff(np.cumsum(res.wins, axis=1), axis=1) >= 0).all()
    assert (res.revenue >= 0).all()
    assert (res.revenue[res.wins == 0] == 0).all()


def test_fractional_leads_per_week_have_the_exact_mean():
    sp = toy_segment_posterior(n_draws=4000)
    res = run_engine(toy_inputs(sp, toy_init(), leads_per_week=2.25), 4, random_seed=9)
    new_total = res.occupancy[:, -1, 1].sum(axis=-1)
    assert set(np.unique(new_total)) <= set(range(8, 13))
    # 4 weeks of 2 + Bernoulli(0.25): mean 9, sd sqrt(4 * 0.1875) / sqrt(4000) ~ 0.014
    assert abs(new_total.mean() - 9.0) < 5 * np.sqrt(4 * 0.1875 / 4000)


def test_same_seed_same_numbers_whatever_the_threads():
    sp = toy_segment_posterior(n_draws=1200, band_edges=(0, 2))
    inputs = toy_inputs(sp, toy_init(1, 3, 3))
    a = run_engine(inputs, 6, random_seed=11, threads=1)
    b = run_engine(inputs, 6, random_seed=11, threads=2)
    c = run_engine(inputs, 6, random_seed=12, threads=2)
    for x, y in ((a.occupancy, b.occupancy), (a.wins, b.wins), (a.revenue, b.revenue)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.occupancy, c.occupancy)


def test_lost_deals_come_back_and_without_reengagement_they_do_not():
    sp = toy_segment_posterior(n_draws=200)
    init = np.zeros((1, 5, 1, 1), dtype=np.int64)
    init[0, LOST] = 1000
    res = run_engine(toy_inputs(sp, init, leads_per_week=0), 13, random_seed=3)
    assert res.wins[:, :, 0].sum() > 0
    sp.rates[..., LOST, :] = 0.0
    res = run_engine(toy_inputs(sp, init, leads_per_week=0), 13, random_seed=3)
    assert res.wins.sum() == 0
    np.testing.assert_array_equal(res.occupancy[:, :, 0, LOST], 1000)


def test_expanded_matrix_rows_are_stochastic_and_ages_advance():
    sp = toy_segment_posterior(n_draws=4, band_edges=(0, 2, 5))
    w = one_week(sp.rates)
    t = expanded_matrix(w.move, w.stay, sp.band_edges)
    assert t.shape == (4, 1, 30, 30)
    np.testing.assert_allclose(t.sum(axis=-1), 1.0, atol=1e-12)
    assert (t > -1e-15).all()
    # a Lead deal of age 1 that never moves is of age 2 a week later; the last age stays put
    np.testing.assert_allclose(t[:, 0, 1, 2], w.stay[:, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(t[:, 0, 5, 5], w.stay[:, 0, 2, 0], atol=1e-12)
    # ... and one that left and came back during the week is of age 0 again
    np.testing.assert_allclose(t[:, 0, 5, 0], w.move[:, 0, 2, 0, 0] - w.stay[:, 0, 2, 0],
                               atol=1e-12)


def test_win_within_is_the_won_mass_of_matrix_powers():
    sp = toy_segment_posterior(n_draws=3)
    p = win_within(sp.rates, sp.band_edges, WON, (1, 4, 13))
    move = one_week(sp.rates).move[:, 0, 0]
    for i, h in enumerate((1, 4, 13)):
        np.testing.assert_allclose(p[i, :, 0, :, 0], np.linalg.matrix_power(move, h)[..., WON],
                                   atol=1e-12)
    assert (np.diff(p, axis=0) >= -1e-12).all()  # Won is absorbing
    # without bands, P(win within 13 weeks) equals expm(13 Q) from the rates directly
    np.testing.assert_allclose(p[2, :, 0, :, 0], expm(13 * generator(sp.rates[:, 0, 0]))[..., WON],
                               atol=1e-10)
