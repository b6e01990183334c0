"""The compiled sampler of the counts engine: its binomial variates and large pipelines."""

from __future__ import annotations

import numpy as np
import pytest
from forecast_fixtures import toy_inputs, toy_segment_posterior
from scipy.stats import binom, chisquare, norm

from funnel_lab.errors import ParameterError
from funnel_lab.forecast._sampler import binomial_many
from funnel_lab.forecast.engine import run_engine
from funnel_lab.forecast.exact import exact_means

# (n, p) covering every branch of the sampler: p = 0 and 1, inversion (n p < 10), BTRD with
# |k - mode| <= 15 (product recursion) and beyond (squeeze and Stirling), p > 1/2 (mirrored)
CASES = [(0, 0.3), (7, 0.0), (7, 1.0), (1, 0.3), (9, 0.5), (19, 0.5), (20, 0.5), (60, 0.2),
         (400, 0.05), (1000, 0.3), (33_000, 0.97), (10**6, 0.4), (10**5, 2e-4), (50, 0.9)]
SAMPLES = 100_000
# Family-wise false-alarm rate of the goodness-of-fit tests, Bonferroni over the cases.
FAMILY_ALPHA = 1e-3
# A chi-square bin needs about this many expected counts for the test to hold.
MIN_EXPECTED = 20


def _pooled_bins(x: np.ndarray, n: int, p: float) -> tuple[np.ndarray, np.ndarray]:
    """Observed and expected counts over value bins pooled to >= MIN_EXPECTED each."""
    lo, hi = (int(v) for v in binom.ppf([1e-9, 1 - 1e-9], n, p))
    lo, hi = max(lo - 1, 0), min(hi + 1, n)
    values = np.arange(lo, hi + 1)
    expected = binom.pmf(values, n, p)
    expected[0] += binom.cdf(lo - 1, n, p)
    expected[-1] += binom.sf(hi, n, p)
    observed = np.bincount(np.clip(x, lo, hi) - lo, minlength=len(values))
    obs, exp, o_acc, e_acc = [], [], 0, 0.0
    for o, e in zip(observed, expected * len(x), strict=True):
        o_acc, e_acc = o_acc + o, e_acc + e
        if e_acc >= MIN_EXPECTED:
            obs.append(o_acc)
            exp.append(e_acc)
            o_acc, e_acc = 0, 0.0
    obs[-1] += o_acc
    exp[-1] += e_acc
    return np.array(obs), np.array(exp)


@pytest.mark.parametrize("n,p", CASES)
def test_binomial_variates_follow_the_binomial_distribution(n, p):
    rng = np.random.default_rng(n + int(p * 1000))
    x = binomial_many(rng, np.full(SAMPLES, n, dtype=np.int64), np.full(SAMPLES, p))
    assert x.min() >= 0 and x.max() <= n
    if p in (0.0, 1.0) or n == 0:
        np.testing.assert_array_equal(x, round(n * p))
        return
    obs, exp = _pooled_bins(x, n, p)
    assert len(obs) >= 2
    assert chisquare(obs, exp * obs.sum() / exp.sum()).pvalue > FAMILY_ALPHA / len(CASES)


def test_binomial_variates_continue_the_generators_stream():
    a, b = np.random.default_rng(4), np.random.default_rng(4)
    n, p = np.array([30, 5000, 3]), np.array([0.2, 0.6, 0.5])
    np.testing.assert_array_equal(binomial_many(a, n, p), binomial_many(b, n, p))
    assert a.random() == b.random()  # both generators advanced alike
    assert not np.array_equal(binomial_many(a, n, p), binomial_many(np.random.default_rng(5),
                                                                    n, p))


def test_large_pipeline_monte_carlo_means_agree_with_exact_means():
    # ~10^5 deals per cell: the splits run through the large-count binomial branch
    sp = toy_segment_posterior(n_draws=600, seed=7)
    init = np.zeros((1, 5, 1, 2), dtype=np.int64)
    init[0, :3, 0, 0] = (200_000, 120_000, 60_000)
    init[0, :3, 0, 1] = (90_000, 40_000, 15_000)
    init[0, 4, 0, 0] = 300_000
    inputs = toy_inputs(sp, init)
    sim = run_engine(inputs, 6, random_seed=8)
    ex = exact_means(inputs, 6)
    np.testing.assert_array_equal(sim.occupancy[:, :, 0].sum(axis=-1), init.sum())
    diffs = [sim.occupancy - ex.occupancy, sim.wins - ex.wins]
    flat = np.concatenate([d.reshape(d.shape[0], -1) for d in diffs], axis=1)
    sd = flat.std(axis=0, ddof=1)
    tested = sd > 0
    z = flat[:, tested].mean(axis=0) / (sd[tested] / np.sqrt(flat.shape[0]))
    assert np.abs(z).max() < norm.isf(FAMILY_ALPHA / 2 / tested.sum())


def test_non_finite_rates_are_refused_not_sampled():
    sp = toy_segment_posterior(n_draws=20, seed=3)
    sp.rates[7, 0, 0, 0, 1] = np.nan
    inputs = toy_inputs(sp, np.full((1, 5, 1, 1), 10, dtype=np.int64))
    with pytest.raises(ParameterError, match="draw 7"):
        run_engine(inputs, 3, random_seed=1)
