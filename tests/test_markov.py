"""Closed-form checks of the funnel's Markov arithmetic (funnel_lab.markov)."""

import numpy as np
import pytest

from funnel_lab import markov

# Exact linear algebra on tiny matrices: only floating-point round-off separates the answers.
EXACT = 1e-12


@pytest.fixture
def rates():
    """Three open stages, a back-move from the middle one and re-engagement from Lost.

    States: 0 Lead, 1 Demo, 2 Proposal, 3 Won, 4 Lost. Hand-derived answers in the tests.
    """
    r = np.zeros((5, 5))
    r[0, 1], r[0, 4] = 1.0, 1.0
    r[1, 2], r[1, 0], r[1, 4] = 1.0, 0.5, 0.5
    r[2, 3], r[2, 4] = 1.0, 1.0
    r[4, 0] = 0.1
    return r


def test_generator_rows_sum_to_zero(rates):
    q = markov.generator(rates)
    assert np.allclose(q.sum(axis=1), 0.0, atol=EXACT)
    assert q[0, 0] == -2.0


def test_win_probability_by_hand(rates):
    # p2 = 1/2; p1 = (p2 + 0.5 p0) / 2 and p0 = p1 / 2  =>  p1 = 2/7, p0 = 1/7.
    np.testing.assert_allclose(markov.win_probability(rates, 3), [1 / 7, 2 / 7, 1 / 2],
                               atol=EXACT)


def test_conversion_allows_back_moves(rates):
    # c1 = (1 + 0.5 c0) / 2 with c0 = c1 / 2  =>  c1 = 4/7; c0 = P(0 -> 1 first) = 1/2;
    # the last open stage converts exactly when it wins.
    conv = markov.conversion(rates, 3)
    np.testing.assert_allclose(conv, [1 / 2, 4 / 7, 1 / 2], atol=EXACT)
    assert conv[-1] == pytest.approx(markov.win_probability(rates, 3)[-1], abs=EXACT)


def test_days_in_stage_and_to_close(rates):
    np.testing.assert_allclose(markov.mean_days_in_stage(rates, 3), [3.5, 3.5, 3.5], atol=EXACT)
    # t2 = 1/2 week; t1 = 3/4 + t0/4; t0 = 1/2 + t1/2  =>  t0 = 1 week, t1 = 1 week.
    np.testing.assert_allclose(markov.expected_days_to_close(rates, 3), [7.0, 7.0, 3.5],
                               atol=1e-9)


def test_step_matrix_is_stochastic_and_batched(rates):
    batch = np.stack([rates, 2 * rates, 0.5 * rates])
    p = markov.step_matrix(batch, weeks=1.0)
    assert p.shape == (3, 5, 5)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, atol=1e-12)
    assert (p >= -1e-15).all()
    # Won is absorbing; Chapman-Kolmogorov: two half-weeks make one week.
    np.testing.assert_allclose(p[:, 3, 3], 1.0)
    half = markov.step_matrix(batch, weeks=0.5)
    np.testing.assert_allclose(half @ half, p, atol=1e-12)


def test_batched_derived_quantities_match_one_by_one(rates):
    batch = np.stack([rates, 3 * rates])
    wp = markov.win_probability(batch, 3)
    assert wp.shape == (2, 3)
    # Scaling every rate by a constant changes speed, not where deals end up.
    np.testing.assert_allclose(wp[0], wp[1], atol=EXACT)
    np.testing.assert_allclose(markov.mean_days_in_stage(batch, 3)[1], [3.5 / 3] * 3,
                               atol=EXACT)
