"""The pooled PyMC model: shapes, possible moves, shrinkage, diagnostics and the warning.

PyMC time is kept small: one pooled fit per module (a module-scoped fixture, 200 tuning
steps and 200 draws on 2 chains, on a small simulated CRM), plus one deliberately bad and
tiny run (20 draws) that is repeated once to check the seed.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from funnel_lab.errors import ParameterError, SamplingWarning
from funnel_lab.model import fit, summarize
from funnel_lab.model.conjugate import possible_moves, rate_posterior, resolve_prior
from funnel_lab.model.pooled import (
    RHAT_OK,
    fit_pooled,
    fit_pooled_draws,
    fit_pooled_segment,
    pooled_prior,
    sampling_problems,
)
from funnel_lab.model.stats import sufficient_statistics

pytestmark = pytest.mark.slow

DRAWS, TUNE, CHAINS = 200, 200, 2
#: Cells with >= 30 events have a posterior sd of <= 1/sqrt(30) = 18% of the rate; 25% leaves
#: room for that noise and the prior's small pull (half an event).
RATIO_TOLERANCE = 0.25


@pytest.fixture(scope="module")
def owner_crm():
    from funnel_lab.simulate import simulate_crm, small_settings

    return simulate_crm(small_settings(owner_sd=0.5), random_seed=11).crm


@pytest.fixture(scope="module")
def owner_stats(owner_crm):
    return sufficient_statistics(owner_crm, by="owner")


@pytest.fixture(scope="module")
def pooled_post(owner_crm):
    """The one real pooled fit of the module, through ``fit`` as users call it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post = fit(owner_crm, method="pooled", by="owner", draws=DRAWS, tune=TUNE,
                   chains=CHAINS, cores=2, random_seed=5)
    return post, caught


@pytest.fixture(scope="module")
def pooled_fit(pooled_post):
    post, caught = pooled_post
    return {seg: sp.rates for seg, sp in post.segments.items()}, post.diagnostics, caught


def test_rates_have_the_posterior_shape_and_zero_where_impossible(owner_stats, pooled_fit):
    rates, _, _ = pooled_fit
    assert set(rates) == set(owner_stats)
    for seg, st in owner_stats.items():
        r = rates[seg]
        n_state = len(st.funnel.states)
        assert r.shape == (CHAINS * DRAWS, len(st.groups), len(st.band_edges), n_state, n_state)
        possible = possible_moves(st, resolve_prior(None))
        assert np.all(r[..., ~possible] == 0.0)
        assert np.all(r[..., possible] > 0.0)
        assert np.all(np.isfinite(r))
        assert np.all(r[..., st.funnel.n_open, :] == 0.0)  # Won is absorbing


def test_diagnostics_are_reported(pooled_fit):
    _, diag, caught = pooled_fit
    for key in ("rhat_max", "ess_bulk_min", "divergences", "seconds", "n_parameters"):
        assert key in diag
    assert diag["rhat_max"] >= 1.0 - 1e-9
    assert diag["ess_bulk_min"] > 0
    assert isinstance(diag["divergences"], int) and diag["divergences"] >= 0
    # The warning is issued exactly when the diagnostics are bad.
    warned = any(issubclass(w.category, SamplingWarning) for w in caught)
    assert warned == (not diag["ok"]) == bool(sampling_problems(diag))


def test_summary_tables_have_an_owner_column(owner_crm, pooled_post):
    post, _ = pooled_post
    assert post.method == "pooled" and post.settings["group_by"] == "owner"
    tables = summarize(post, ci_prob=0.9)
    win = tables["win_probability"]
    assert "owner" in win.columns
    for seg in post.segments:
        owners = set(owner_crm.deals.loc[owner_crm.deals["segment"] == seg, "owner"])
        assert set(win.loc[win["segment"] == seg, "owner"]) == owners
    assert ((win["lower"] <= win["mean"]) & (win["mean"] <= win["upper"])).all()
    assert ((win["lower"] >= 0) & (win["upper"] <= 1)).all()


def test_owners_are_shrunk_towards_their_segment(owner_stats, pooled_fit):
    """Partial pooling: owner rates spread less around the segment than separate fits do."""
    rates, _, _ = pooled_fit
    rng = np.random.default_rng(3)
    narrower = 0
    total = 0
    for seg, st in owner_stats.items():
        conj = rate_posterior(st).draw(CHAINS * DRAWS, rng)
        possible = possible_moves(st, resolve_prior(None))
        for i, j in zip(*np.nonzero(possible), strict=True):
            pooled_means = np.log(rates[seg][:, :, 0, i, j].mean(axis=0))
            conj_means = np.log(conj[:, :, 0, i, j].mean(axis=0))
            total += 1
            narrower += pooled_means.std() < conj_means.std()
    # Shrinkage holds move by move up to Monte Carlo noise; demand it for most moves.
    assert narrower >= 0.8 * total, (narrower, total)


def test_one_group_segment_stats_work_without_pooling_to_do(owner_stats):
    """fit_pooled_segment on arrays: one owner's data; rates near the conjugate means."""
    st = next(iter(owner_stats.values()))
    counts = st.counts.sum(axis=0, keepdims=True)
    exposure = st.exposure_seconds.sum(axis=0, keepdims=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        rates, diag = fit_pooled_segment(counts, exposure, st.funnel, draws=150, tune=150,
                                         chains=2, random_seed=2)
    assert rates.shape[:2] == (300, 1)
    possible = possible_moves(st, resolve_prior(None))
    # Many deals: the posterior mean is the crude rate n / T to within a few per cent.
    ok = possible & (counts[0, 0] >= 30)
    with np.errstate(divide="ignore", invalid="ignore"):  # Won has no time at risk
        crude = counts[0, 0] / (exposure[0, 0][:, None] / (7 * 24 * 3600))
    ratio = rates[:, 0, 0].mean(axis=0)[ok] / crude[ok]
    assert np.all(np.abs(ratio - 1) < RATIO_TOLERANCE), ratio


def test_bad_sampling_warns_in_plain_words_and_the_seed_repeats(owner_stats):
    kwargs = dict(draws=20, tune=5, chains=2, cores=1, random_seed=7)
    with pytest.warns(SamplingWarning, match="tune") as record:
        rates_a, diag = fit_pooled(owner_stats, **kwargs)
    message = str(record[0].message)
    assert "target_accept" in message and "conjugate" in message
    assert not diag["ok"]
    # The same seed gives the same draws; fit_pooled_draws keeps 39 of the 2 x 20, evenly.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        kwargs.pop("draws")
        rates_b, diag_b = fit_pooled_draws(owner_stats, total_draws=39, min_draws_per_chain=20,
                                           **kwargs)
    keep = np.round(np.linspace(0, 39, 39)).astype(int)
    assert diag_b["draws"] == 20 and diag_b["total_draws"] == 39
    for seg in rates_a:
        assert rates_b[seg].shape[0] == 39
        np.testing.assert_array_equal(rates_a[seg][keep], rates_b[seg])


def test_sampling_problems_names_each_problem():
    good = {"rhat_max": 1.001, "ess_bulk_min": 900.0, "divergences": 0, "chains": 4}
    assert sampling_problems(good) == []
    bad = {"rhat_max": RHAT_OK + 0.05, "ess_bulk_min": 50.0, "divergences": 3, "chains": 4}
    problems = sampling_problems(bad)
    assert len(problems) == 3
    assert "R-hat" in problems[0] and "ESS" in problems[1] and "divergent" in problems[2]


def test_prior_and_argument_errors(owner_stats):
    with pytest.raises(ParameterError, match="sigma_scale"):
        pooled_prior({"sigma_scale": -1})
    with pytest.raises(ParameterError, match="unknown prior"):
        pooled_prior({"sigma_scal": 0.3})
    pooled, conj = pooled_prior({"sigma_scale": 0.3, "rate_shape": 2.0})
    assert pooled["sigma_scale"] == 0.3 and conj.rate_shape == 2.0
    with pytest.raises(ParameterError, match="draws"):
        fit_pooled(owner_stats, draws=0)
    with pytest.raises(ParameterError, match="target_accept"):
        fit_pooled(owner_stats, target_accept=1.5)
