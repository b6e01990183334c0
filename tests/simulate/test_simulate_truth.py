"""The truth computed twice: closed forms by linear algebra against long per-deal simulations."""

import numpy as np
import pytest

from funnel_lab import markov
from funnel_lab.crm.funnel import Funnel
from funnel_lab.simulate import demo_settings, simulate_crm, small_settings
from funnel_lab.simulate.engine import simulate_paths
from funnel_lab.simulate.truth import (
    equivalent_rates,
    owner_band_rates,
    stage_quantities,
    stay_distribution,
)

# Exact arithmetic on tiny matrices: only floating-point round-off separates the answers.
EXACT = 1e-12
# Deals simulated from each open stage for the Monte Carlo side of the truth check.
N_DEALS = 20_000
# Each check compares a Monte Carlo mean with its exact value in units of its standard error
# (binomial sqrt(p(1-p)/n) for probabilities, sample sd/sqrt(n) for days). About 50 checks
# run here; with 4 standard errors the chance that any one fails by chance is under 0.5%, and
# at n = 20,000 the bound is still tight: about 0.014 for a probability near 0.5 and 2-3% of
# the mean for days in stage, far smaller than any error of a band or a rate.
Z_TOL = 4.0


def test_stay_distribution_two_bands_by_hand():
    # Band [0, 1) week: rates 1 (to 1) and 1 (to 2); band [1, inf): rate 0.5 to 1 only.
    r = np.zeros((2, 3, 3))
    r[0, 0, 1], r[0, 0, 2] = 1.0, 1.0
    r[1, 0, 1] = 0.5
    p, tau = stay_distribution(r, [0, 1])
    leave_first = 1 - np.exp(-2.0)
    assert p[0, 2] == pytest.approx(leave_first / 2, abs=EXACT)
    assert p[0, 1] == pytest.approx(leave_first / 2 + np.exp(-2.0), abs=EXACT)
    assert tau[0] == pytest.approx(leave_first / 2 + np.exp(-2.0) / 0.5, abs=EXACT)
    # States with no way out have no exits and stay for ever.
    assert p[1].sum() == 0 and np.isinf(tau[1])


def test_without_bands_truth_is_plain_markov():
    rates = demo_settings().segments["Enterprise"].rate_matrix("Enterprise")
    f = demo_settings().segments["Enterprise"].funnel("Enterprise")
    q = stage_quantities(rates[None], [0], f)
    np.testing.assert_allclose(equivalent_rates(rates[None], [0]), rates, atol=EXACT)
    np.testing.assert_allclose([q[s]["conversion"] for s in f.stages],
                               markov.conversion(rates, f.n_open), atol=EXACT)
    np.testing.assert_allclose([q[s]["win_probability"] for s in f.stages],
                               markov.win_probability(rates, f.n_open), atol=EXACT)


def test_equal_bands_change_nothing():
    # Splitting the ages into bands with the same rates must give the unbanded truth.
    rates = demo_settings().segments["SMB"].rate_matrix("SMB")
    f = Funnel("SMB", ("Lead", "Qualified", "Proposal"))
    plain = stage_quantities(rates[None], [0], f)
    banded = stage_quantities(np.stack([rates] * 3), [0, 4, 13], f)
    for stage in f.stages:
        for key, value in plain[stage].items():
            assert banded[stage][key] == pytest.approx(value, abs=1e-10)


def _first_passage(settings, segment, effect, rng):
    """Per open stage: n deals entering it at as_of, their first outcome and first stay."""
    funnel = settings.segments[segment].funnel(segment)
    rates = settings.band_rates(segment)[None]
    prog = settings.progress_mask(segment)[None]
    n_open = funnel.n_open
    out = {}
    for k, stage in enumerate(funnel.stages):
        t0 = float(settings.weeks)  # at as_of: the drift multiplier is 1 from here on
        paths = simulate_paths(
            rates, prog, np.asarray(settings.band_edges(), float), np.zeros(N_DEALS, int),
            np.full(N_DEALS, k), np.full(N_DEALS, t0), np.full(N_DEALS, effect),
            t0 + 520.0, rng, progress_drift=lambda t: settings.drift_multiplier(t, "progress"),
            drift_max=max(settings.drift_start("progress"), 1.0))
        deal, state, time = paths.deal, paths.state, paths.time
        first = np.r_[True, deal[1:] != deal[:-1]]
        assert first.sum() == N_DEALS  # every deal left its first stage within ten years
        stay_days = (time[first] - t0) * 7.0
        lost = n_open + 1

        def first_hit(success, deal=deal, state=state, lost=lost):
            hit = np.isin(state, success) | (state == lost)
            # first row of each deal among the rows that hit success or Lost
            idx = np.flatnonzero(hit)
            d = deal[idx]
            head = idx[np.r_[True, d[1:] != d[:-1]]]
            assert head.size == N_DEALS
            return np.isin(state[head], success)

        out[stage] = {"conversion": first_hit(np.arange(k + 1, n_open + 1)),
                      "win_probability": first_hit(np.array([n_open])),
                      "mean_days_in_stage": stay_days}
    return out


def _check_against_truth(by_stage, mc):
    for stage, q in by_stage.items():
        for key in ("conversion", "win_probability"):
            p_hat = mc[stage][key].mean()
            p = q[key]
            se = np.sqrt(p * (1 - p) / N_DEALS)
            assert abs(p_hat - p) < Z_TOL * se, (stage, key, p_hat, p)
        days = mc[stage]["mean_days_in_stage"]
        se = days.std(ddof=1) / np.sqrt(days.size)
        assert abs(days.mean() - q["mean_days_in_stage"]) < Z_TOL * se, (stage, days.mean(), q)


@pytest.mark.parametrize("segment", ["SMB", "Enterprise"])
def test_truth_json_matches_long_simulation_with_stale_deals(segment):
    """truth.json of the demo (stale deals, drift) against 20,000 deals per stage."""
    settings = demo_settings()
    truth = simulate_crm(settings.replace(weeks=8), random_seed=1).truth
    by_stage = truth["segments"][segment]["by_stage"]
    rng = np.random.default_rng(11)
    _check_against_truth(by_stage, _first_passage(settings.replace(weeks=8), segment, 1.0, rng))


def test_owner_truth_matches_long_simulation():
    settings = demo_settings().replace(weeks=8, owner_sd=0.6)
    truth = simulate_crm(settings, random_seed=5).truth
    # The owner whose effect is furthest from 1, so the owner truth differs from the typical.
    owner, info = max(truth["segments"]["SMB"]["owners"].items(),
                      key=lambda kv: abs(np.log(kv[1]["effect"])))
    assert abs(np.log(info["effect"])) > 0.2
    typical = truth["segments"]["SMB"]["by_stage"]["Lead"]["win_probability"]
    assert info["by_stage"]["Lead"]["win_probability"] != pytest.approx(typical, abs=0.02)
    rng = np.random.default_rng(12)
    _check_against_truth(info["by_stage"], _first_passage(settings, "SMB", info["effect"], rng))


def test_owner_rates_scale_progress_moves_only():
    s = small_settings()
    r = owner_band_rates(s, "SMB", 2.0)[0]
    base = s.band_rates("SMB")[0]
    prog = s.progress_mask("SMB")
    np.testing.assert_allclose(r[prog], 2.0 * base[prog])
    np.testing.assert_allclose(r[~prog], base[~prog])


def test_truth_layout_and_invariants():
    truth = simulate_crm(demo_settings().replace(weeks=8), random_seed=2).truth
    assert truth["as_of"] == "2026-11-29" and truth["seed"] == 2
    assert truth["band_edges_weeks"] == [0, 4, 13] and truth["drift"]["shape"] == "linear"
    for seg, st in truth["segments"].items():
        assert len(st["rates_per_week_by_band"]) == 3
        assert st["rates_per_week"] == st["rates_per_week_by_band"][0]
        assert set(st["by_stage"]) == set(st["stages"])
        last = st["by_stage"][st["stages"][-1]]
        assert last["conversion"] == pytest.approx(last["win_probability"], abs=EXACT)
        for q in st["by_stage"].values():
            assert 0 < q["win_probability"] < q["conversion"] + EXACT <= 1 + EXACT
            assert q["mean_days_in_stage"] > 0
        assert set(st["owners"]) == set(demo_settings().owners_of(seg))


def test_truth_table_reads_the_folder(tmp_path):
    from funnel_lab.simulate import truth_table

    sim = simulate_crm(small_settings(weeks=8, owner_sd=0.4), random_seed=3)
    sim.write(tmp_path)
    table = truth_table(tmp_path)
    typical = table.loc[table["owner"].isna()]
    assert len(typical) == 3 + 5  # one row per open stage of SMB and Enterprise
    per_owner = table.dropna(subset=["owner"])
    assert set(per_owner["owner"]) == set(sim.settings.owners())
    row = per_owner.iloc[0]
    expected = sim.truth["segments"][row["segment"]]["owners"][row["owner"]]["by_stage"]
    assert row["win_probability"] == expected[row["stage"]]["win_probability"]
    assert ((table["win_probability"] > 0) & (table["win_probability"] < 1)).all()
