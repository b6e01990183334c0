"""``forecast``: tidy tables, weeks and months, deal scores, arguments and errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from forecast_fixtures import LOST, toy_crm, toy_posterior, toy_segment_posterior

from funnel_lab.errors import DataWarning, ParameterError, PosteriorMismatchError
from funnel_lab.forecast import Forecast, forecast


@pytest.fixture(scope="module")
def crm():
    return toy_crm()


@pytest.fixture(scope="module")
def fc(crm) -> Forecast:
    sp = toy_segment_posterior(n_draws=600, n_groups=2, band_edges=(0, 3))
    return forecast(toy_posterior(sp, crm.as_of), crm, horizon_weeks=9, random_seed=4)


def test_tables_have_the_agreed_columns(fc):
    q = ["mean", "p10", "p50", "p90"]
    assert list(fc.weekly.columns[:8]) == ["week", "week_end", "segment", "stage", *q]
    for table in (fc.wins, fc.revenue):
        assert list(table.columns) == ["week", "week_end", "segment", *q,
                                       "from_pipeline_mean", "from_new_mean"]
    for col in ("month", "segment", "wins_mean", "wins_p10", "wins_p50", "wins_p90",
                "revenue_mean", "revenue_p10", "revenue_p50", "revenue_p90",
                "from_pipeline_mean", "from_new_mean"):
        assert col in fc.monthly.columns
    assert "week_end" in fc.monthly.attrs["note"]
    assert list(fc.deals.columns) == ["deal_id", "segment", "owner", "team", "stage", "amount",
                                      "age_days", "p_win_4w", "p_win_13w", "expected_value"]
    assert set(fc.draws.dims) == {"segment", "draw", "week", "origin", "stage"}
    assert fc.draws.sizes["draw"] == 600 and fc.draws.sizes["week"] == 9


def test_week_ends_follow_the_contract(fc, crm):
    # week k covers (as_of + 7(k-1) days, as_of + 7k days]; week_end is that last day's date
    expected = [(crm.as_of + pd.Timedelta(days=7 * k)).normalize() for k in range(1, 10)]
    assert list(fc.wins["week_end"]) == expected
    assert str(fc.wins["week_end"].iloc[0].date()) == "2026-04-07"


def test_quantiles_are_ordered_and_cumulative_wins_never_fall(fc):
    for table in (fc.weekly, fc.wins, fc.revenue):
        assert (table["p10"] <= table["p50"]).all() and (table["p50"] <= table["p90"]).all()
    for table in (fc.wins, fc.revenue):
        for col in ("mean", "p10", "p50", "p90", "from_pipeline_mean", "from_new_mean"):
            assert (np.diff(table[col]) >= 0).all(), col
        np.testing.assert_allclose(table["mean"], table["from_pipeline_mean"]
                                   + table["from_new_mean"])
    per_draw = fc.draws["wins"].sum("origin").cumsum("week")
    assert (per_draw.diff("week") >= 0).all()
    for m in fc.monthly.itertuples():
        assert m.wins_p10 <= m.wins_p50 <= m.wins_p90
        assert m.revenue_p10 <= m.revenue_p50 <= m.revenue_p90


def test_monthly_adds_the_weeks_ending_in_the_month(fc):
    weekly_new = fc.draws["wins"].sum("origin").mean("draw").sel(segment="SMB").to_numpy()
    months = pd.DatetimeIndex(fc.draws["week_end"].to_numpy()).strftime("%Y-%m")
    for row in fc.monthly.itertuples():
        sel = months == row.month
        assert row.n_weeks == sel.sum()
        assert row.wins_mean == pytest.approx(weekly_new[sel].sum())
    assert fc.monthly["n_weeks"].sum() == 9
    assert fc.monthly["wins_mean"].sum() == pytest.approx(fc.wins["mean"].iloc[-1])


def test_weekly_occupancy_conserves_todays_deals(fc, crm):
    cur = crm.current_stage()
    tracked = int((cur["stage"] != "Won").sum())
    pipeline = fc.draws["occupancy"].sel(origin="pipeline", segment="SMB").sum("stage")
    assert (pipeline == tracked).all()


def test_deal_scores_are_probabilities_that_grow_with_the_window(fc, crm):
    d = fc.deals
    assert len(d) == len(crm.open_deals())
    assert d["p_win_4w"].between(0, 1).all() and d["p_win_13w"].between(0, 1).all()
    assert (d["p_win_13w"] >= d["p_win_4w"] - 1e-12).all()
    assert (np.diff(d["p_win_4w"]) <= 0).all()  # sorted, highest first
    # later stages are closer to Won
    by_stage = d.groupby("stage")["p_win_4w"].mean()
    assert by_stage["Proposal"] > by_stage["Demo"] > by_stage["Lead"]
    with_amount = d["amount"].notna()
    np.testing.assert_allclose(d.loc[with_amount, "expected_value"],
                               d.loc[with_amount, "amount"] * d.loc[with_amount, "p_win_13w"])
    assert d.loc[~with_amount, "expected_value"].notna().all()


def test_monte_carlo_means_sit_near_the_exact_means(fc):
    # a smoke check of the packaging (the engine tests do the strict per-cell comparison):
    # 600 draws put the Monte Carlo mean of cumulative wins within a few standard errors
    sim = fc.draws["wins"].sum("origin").cumsum("week").sel(segment="SMB")
    ex = fc.expected["wins"].sum("origin").cumsum("week").sel(segment="SMB")
    diff = (sim - ex).to_numpy()
    z = diff.mean(axis=0) / (diff.std(axis=0, ddof=1) / np.sqrt(diff.shape[0]))
    assert np.abs(z).max() < 4.5


def test_same_seed_same_numbers(crm):
    sp = toy_segment_posterior(n_draws=300)
    post = toy_posterior(sp, crm.as_of)
    a = forecast(post, crm, horizon_weeks=5, random_seed=8)
    b = forecast(post, crm, horizon_weeks=5, random_seed=8)
    c = forecast(post, crm, horizon_weeks=5, random_seed=9)
    pd.testing.assert_frame_equal(a.weekly, b.weekly)
    pd.testing.assert_frame_equal(a.revenue, b.revenue)
    assert not a.revenue.equals(c.revenue)


def test_scenarios_move_the_new_lead_share(crm):
    sp = toy_segment_posterior(n_draws=400)
    post = toy_posterior(sp, crm.as_of)
    none = forecast(post, crm, horizon_weeks=6, lead_inflow=0.0, random_seed=1)
    assert (none.wins["from_new_mean"] == 0).all()
    base = forecast(post, crm, horizon_weeks=6, random_seed=1)
    more = forecast(post, crm, horizon_weeks=6, lead_inflow=2.0, random_seed=1)
    assert more.wins["from_new_mean"].iloc[-1] > 1.5 * base.wins["from_new_mean"].iloc[-1]
    fixed = forecast(post, crm, horizon_weeks=6, leads_per_week=10, random_seed=1)
    new_deals = fixed.draws["occupancy"].sel(origin="new").sum("stage")
    assert (new_deals.isel(week=-1) == 60).all()


def test_draws_subset_or_resample(crm):
    sp = toy_segment_posterior(n_draws=100)
    post = toy_posterior(sp, crm.as_of)
    assert forecast(post, crm, horizon_weeks=2, draws=40, random_seed=1).draws.sizes["draw"] == 40
    assert forecast(post, crm, horizon_weeks=2, draws=250, random_seed=1).draws.sizes[
        "draw"] == 250


def test_bad_arguments_and_mismatches_are_named(crm):
    sp = toy_segment_posterior(n_draws=50)
    post = toy_posterior(sp, crm.as_of)
    with pytest.raises(ParameterError, match="horizon_weeks"):
        forecast(post, crm, horizon_weeks=0)
    with pytest.raises(ParameterError, match="lead_inflow"):
        forecast(post, crm, lead_inflow=-1.0)
    with pytest.raises(ParameterError, match="unknown segment"):
        forecast(post, crm, leads_per_week={"Enterprise": 3})
    with pytest.raises(PosteriorMismatchError, match="as_of"):
        forecast(toy_posterior(sp, "2026-01-01"), crm)


def test_unknown_owner_is_counted_and_warned(crm):
    sp = toy_segment_posterior(n_draws=50, n_groups=2)
    sp.groups = ("owner0", "someone_else")
    with pytest.warns(DataWarning, match="owner1"):
        fc = forecast(toy_posterior(sp, crm.as_of), crm, horizon_weeks=2, random_seed=1)
    assert any("not in the posterior" in n for n in fc.notes)


def test_missing_amounts_are_counted(fc, crm):
    n_missing = int(crm.current_stage().query("stage != 'Won'")["amount"].isna().sum())
    assert n_missing > 0
    assert any(f"{n_missing} deal(s) without an amount" in n for n in fc.notes)


def test_expected_revenue_is_each_deals_amount_times_its_win_probability(crm):
    # amount classes are valued with win-probability weights, so at the horizon the exact
    # mean revenue from today's deals is the deal-level sum, even though big deals sit in
    # particular stages; with no re-engagement today's lost deals add nothing
    sp = toy_segment_posterior(n_draws=400)
    sp.rates[..., LOST, :] = 0.0
    fc = forecast(toy_posterior(sp, crm.as_of), crm, horizon_weeks=13, random_seed=2)
    pipeline = fc.expected["revenue"].sel(origin="pipeline", segment="SMB").sum("week")
    assert float(pipeline.mean("draw")) == pytest.approx(fc.deals["expected_value"].sum(),
                                                         rel=1e-9)
    simulated = fc.draws["revenue"].sel(origin="pipeline", segment="SMB").sum("week")
    se = float(simulated.std("draw")) / np.sqrt(simulated.sizes["draw"])
    assert abs(float(simulated.mean("draw")) - float(pipeline.mean("draw"))) < 4.5 * se
