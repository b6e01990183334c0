"""The conjugate posterior: exact closed forms, priors, draws, seeds."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from funnel_lab.crm.funnel import Funnel
from funnel_lab.errors import ParameterError, SparseDataWarning
from funnel_lab.model import Prior, SegmentStats, fit, sufficient_statistics
from funnel_lab.model.conjugate import conjugate_segment, possible_moves, rate_posterior
from funnel_lab.model.stats import SECONDS_PER_WEEK

# Quantiles of N Monte Carlo draws: the CDF at an empirical p-quantile has standard deviation
# sqrt(p (1 - p) / N) <= 0.5 / sqrt(N); 5 of them (N = 400,000: 0.004) never fail by chance
# across the handful of checks below, and would catch any wrong shape or rate.
N_DRAWS = 400_000
CDF_TOL = 5 * 0.5 / np.sqrt(N_DRAWS)
PROBS = (0.05, 0.25, 0.5, 0.75, 0.95)


def hand_stats(half_life: float | None = None) -> SegmentStats:
    """Statistics typed in by hand: 2 groups, 2 bands, states (A, B, Won, Lost)."""
    f = Funnel("S", ("A", "B"))
    counts = np.zeros((2, 2, 4, 4), dtype=np.int64)
    counts[0, 0, 0, 1] = 12  # A -> B
    counts[0, 1, 0, 3] = 5  # A -> Lost
    counts[1, 0, 1, 2] = 3  # B -> Won
    counts[1, 0, 1, 0] = 1  # B -> A (back)
    counts[0, 0, 3, 0] = 2  # Lost -> A (re-engaged)
    exposure = np.zeros((2, 2, 4), dtype=np.int64)
    exposure[0, 0] = np.array([30, 10, 0, 50]) * SECONDS_PER_WEEK
    exposure[0, 1] = np.array([8, 0, 0, 40]) * SECONDS_PER_WEEK
    exposure[1, 0] = np.array([5, 20, 0, 0]) * SECONDS_PER_WEEK
    return SegmentStats(
        funnel=f, groups=("g1", "g2"), group_by="owner", band_edges=(0, 4),
        as_of=pd.Timestamp("2025-01-01"), half_life_weeks=half_life, counts=counts,
        exposure_seconds=exposure, n_transitions=counts.copy(),
        entries=np.array([[30, 2, 0, 1], [4, 0, 0, 0]]), history_weeks=52.0,
        arrival_weeks=np.full(52, 0), arrival_count=37.0, arrival_exposure_weeks=52.0,
        group_arrivals=np.array([33.0, 4.0]),
        log_amounts=np.log([100.0, 250.0, 80.0, 400.0, 1000.0]),
        amount_weights=np.ones(5),
    )


def test_gamma_posterior_parameters_exactly():
    st = hand_stats()
    post = rate_posterior(st, Prior())
    a = 0.5
    # Segment totals: A -> B: 12 over T_A = 30 + 8 + 5 = 43 weeks; b = a T / (n + a).
    b_ab = a * 43 / (12 + a)
    assert post.prior_rate[0, 1] == pytest.approx(b_ab, rel=1e-15)
    assert post.shape[0, 0, 0, 1] == a + 12
    assert post.rate[0, 0, 0, 1] == pytest.approx(b_ab + 30, rel=1e-15)
    assert post.rate[0, 1, 0, 1] == pytest.approx(b_ab + 8, rel=1e-15)
    assert post.shape[1, 1, 0, 1] == a  # a group with no data in a band: the prior
    assert post.rate[1, 1, 0, 1] == pytest.approx(b_ab, rel=1e-15)
    # Possible: observed moves only; never out of Won, never self-moves.
    expected = np.zeros((4, 4), dtype=bool)
    expected[0, 1] = expected[0, 3] = expected[1, 2] = expected[1, 0] = expected[3, 0] = True
    np.testing.assert_array_equal(post.possible, expected)
    assert (post.shape[..., ~expected] == 0).all()


def test_given_prior_weeks_and_all_moves():
    st = hand_stats()
    post = rate_posterior(st, {"rate_shape": 1.0, "rate_weeks": 2.0, "possible": "all"})
    assert post.possible.sum() == 4 * 3 - 3  # 12 off-diagonal moves minus 3 out of Won
    assert not post.possible[2].any()
    assert post.shape[0, 0, 0, 2] == 1.0 and post.rate[0, 0, 0, 2] == 32.0


@pytest.fixture(scope="module")
def rate_draws():
    post = rate_posterior(hand_stats())
    return post, post.draw(N_DRAWS, np.random.default_rng(5))


@pytest.mark.parametrize("g, b, i, j", [(0, 0, 0, 1), (0, 1, 0, 3), (1, 0, 1, 2), (0, 0, 3, 0)])
def test_draws_follow_the_gamma_posterior(rate_draws, g, b, i, j):
    post, all_draws = rate_draws
    draws = all_draws[:, g, b, i, j]
    dist = sps.gamma(post.shape[g, b, i, j], scale=1.0 / post.rate[g, b, i, j])
    q = np.quantile(draws, PROBS)
    np.testing.assert_allclose(dist.cdf(q), PROBS, atol=CDF_TOL)
    assert draws.mean() == pytest.approx(dist.mean(), rel=6 * dist.std() / dist.mean()
                                         / np.sqrt(N_DRAWS))
    assert (all_draws[:, :, :, ~post.possible] == 0).all()


def test_arrivals_entry_and_amounts_closed_forms():
    st = hand_stats()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparseDataWarning)
        sp = conjugate_segment(st, N_DRAWS, np.random.default_rng(11))
    arr = sps.gamma(0.5 + 37.0, scale=1 / 52.0)
    np.testing.assert_allclose(arr.cdf(np.quantile(sp.arrivals, PROBS)), PROBS, atol=CDF_TOL)
    # Entry: Dirichlet(0.5 + [34, 2]) over the open stages; Beta marginal of the first.
    beta = sps.beta(0.5 + 34, 0.5 + 2)
    np.testing.assert_allclose(beta.cdf(np.quantile(sp.entry_probs[:, 0], PROBS)), PROBS,
                               atol=CDF_TOL)
    # Reference prior on log amounts: mu ~ t(n - 1, mean, s / sqrt(n)),
    # sigma^2 ~ InvGamma((n - 1) / 2, SS / 2).
    x = st.log_amounts
    n, m, ss = len(x), x.mean(), ((x - x.mean()) ** 2).sum()
    t = sps.t(n - 1, loc=m, scale=np.sqrt(ss / (n - 1) / n))
    np.testing.assert_allclose(t.cdf(np.quantile(sp.amount_mu, PROBS)), PROBS, atol=CDF_TOL)
    ig = sps.invgamma((n - 1) / 2, scale=ss / 2)
    np.testing.assert_allclose(ig.cdf(np.quantile(sp.amount_sigma**2, PROBS)), PROBS,
                               atol=CDF_TOL)
    np.testing.assert_allclose(sp.group_share.mean(axis=0), [33.5 / 38, 4.5 / 38], atol=0.002)


def test_possible_moves_mapping_and_errors():
    st = hand_stats()
    mask = possible_moves(st, Prior(possible={"S": [("A", "Won"), ("Lost", "B")]}))
    assert mask.sum() == 2 and mask[0, 2] and mask[3, 1]
    with pytest.raises(ParameterError, match="unknown stage"):
        possible_moves(st, Prior(possible={"S": [("A", "Nope")]}))
    with pytest.raises(ParameterError, match="not allowed"):
        possible_moves(st, Prior(possible={"S": [("Won", "A")]}))
    with pytest.raises(ParameterError, match="possible must be"):
        possible_moves(st, Prior(possible="some"))
    with pytest.raises(ParameterError, match="unknown prior setting"):
        rate_posterior(st, {"shape": 1.0})


def _tiny_crm():
    from funnel_lab.crm.read import crm_from_frames

    t0 = pd.Timestamp("2025-01-01")
    day = pd.Timedelta(days=1)
    ids = [f"d{k}" for k in range(6)]
    deals = pd.DataFrame({"deal_id": ids, "segment": "S", "owner": "o", "team": "t",
                          "amount": 100.0, "created_at": [t0 + k * day for k in range(6)]})
    stages = ["A", "B", "Won"]
    events = pd.DataFrame([
        {"deal_id": d, "stage": stages[m], "entered_at": t0 + (k + 3 * m) * day}
        for k, d in enumerate(ids) for m in range(1 + k % 3)
    ] + [{"deal_id": "d0", "stage": "Lost", "entered_at": t0 + 20 * day}])
    return crm_from_frames(deals, events, {"S": Funnel("S", ("A", "B"))},
                           as_of=t0 + 30 * day)


def test_fit_same_seed_same_numbers_and_logs_prior(caplog):
    crm = _tiny_crm()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparseDataWarning)
        with caplog.at_level(logging.INFO, logger="funnel_lab.model"):
            a = fit(crm, draws=50, random_seed=3)
        b = fit(crm, draws=50, random_seed=3)
        c = fit(crm, draws=50, random_seed=4)
    sa, sb, sc = a.segments["S"], b.segments["S"], c.segments["S"]
    np.testing.assert_array_equal(sa.rates, sb.rates)
    np.testing.assert_array_equal(sa.amount_mu, sb.amount_mu)
    assert not np.array_equal(sa.rates, sc.rates)
    assert "prior" in caplog.text and "possible moves" in caplog.text
    assert a.settings["possible"]["S"] == ["A->B", "A->Lost", "B->Won"]


def test_sparse_stage_warns():
    with pytest.warns(SparseDataWarning, match="only"):
        fit(_tiny_crm(), draws=10, random_seed=1)


def test_fit_argument_errors():
    crm = _tiny_crm()
    with pytest.raises(ParameterError, match="method must be one of"):
        fit(crm, method="mcmc")
    with pytest.raises(ParameterError, match="draws must be"):
        fit(crm, draws=0)
    with pytest.raises(ParameterError, match="unknown argument"):
        fit(crm, chains=4)


def test_recency_is_a_tempered_likelihood():
    """With a half-life the posterior is Gamma(a + weighted n, b + weighted T)."""
    crm = _tiny_crm()
    st = sufficient_statistics(crm, half_life_weeks=2.0)["S"]
    post = rate_posterior(st)
    np.testing.assert_allclose(post.shape[0, 0, 0, 1], 0.5 + st.counts[0, 0, 0, 1])
    np.testing.assert_allclose(post.rate[0, 0, 0, 1],
                               post.prior_rate[0, 1] + st.exposure_weeks[0, 0, 0])
    assert st.counts[0, 0, 0, 1] < st.n_transitions[0, 0, 0, 1]


def test_pooled_method_calls_fit_pooled_with_the_statistics(monkeypatch):
    """fit(method="pooled") hands the statistics (with the possible-move mask) to
    funnel_lab.model.pooled.fit_pooled and keeps its rates; other parts stay conjugate."""
    import funnel_lab.model.pooled as pooled

    seen = {}

    def fake_fit_pooled(stats, draws, random_seed, prior, **kwargs):
        seen.update(stats=stats, draws=draws, prior=prior, kwargs=kwargs,
                    rng=isinstance(random_seed, np.random.Generator))
        rates = {seg: np.full((2 * draws, len(st.groups), len(st.band_edges),
                               len(st.funnel.states), len(st.funnel.states)), 0.25)
                 for seg, st in stats.items()}
        return rates, {"ok": True, "rhat_max": 1.0}

    monkeypatch.setattr(pooled, "fit_pooled", fake_fit_pooled)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparseDataWarning)
        post = fit(_tiny_crm(), method="pooled", by="owner", draws=30, random_seed=1,
                   prior={"sigma_scale": 0.3, "rate_shape": 1.0}, chains=2)
    assert seen["draws"] == 30 and seen["rng"] and seen["kwargs"] == {"chains": 2}
    assert seen["prior"] == {"sigma_scale": 0.3, "rate_shape": 1.0}
    assert seen["stats"]["S"].possible.sum() == 3
    assert post.method == "pooled" and post.diagnostics == {"ok": True, "rhat_max": 1.0}
    assert (post.segments["S"].rates == 0.25).all()
    assert post.n_draws == 60 and post.segments["S"].arrivals.shape == (60,)  # 2 chains
    assert post.settings["prior"]["rate_shape"] == 1.0

    monkeypatch.setattr(pooled, "fit_pooled",
                        lambda stats, **kw: ({s: np.zeros((1, 1, 1, 1, 1)) for s in stats}, {}))
    from funnel_lab.errors import ModelError

    with warnings.catch_warnings(), pytest.raises(ModelError, match="returned rates of shape"):
        warnings.simplefilter("ignore", SparseDataWarning)
        fit(_tiny_crm(), method="pooled", draws=5, random_seed=1)
