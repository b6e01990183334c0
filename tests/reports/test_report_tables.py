"""Report tables from a small hand-made CRM whose moves are known one by one."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from funnel_lab.crm.funnel import Funnel
from funnel_lab.crm.read import crm_from_frames
from funnel_lab.errors import DataWarning, ParameterError
from funnel_lab.reports import (
    crm_overview,
    flow_table,
    forecast_summary,
    html_table,
    open_stage_rows,
    owner_comparison,
    segment_overview,
    stale_deals,
)

EVIL = "<script>document.body.dataset.pwned=1</script>"


@pytest.fixture(scope="module")
def crm():
    day = pd.Timestamp("2026-01-01")
    deals = pd.DataFrame({
        "deal_id": ["d1", "d2", "d3", "d4"],
        "segment": ["A", "A", "A", EVIL],
        "owner": ["<b>Ann</b>", "Bo", "Bo", "Cy"],
        "team": "T",
        "amount": [100.0, 200.0, 300.0, 400.0],
        "created_at": [day] * 4,
    })
    ev = [
        ("d1", "Lead", 0), ("d1", "Demo", 2), ("d1", "Lead", 4), ("d1", "Demo", 6),
        ("d1", "Won", 8),                                     # forward, backward, forward, won
        ("d2", "Lead", 0), ("d2", "Lost", 3), ("d2", "Demo", 9),  # lost, re-engaged (to Demo)
        ("d3", "Lead", 1), ("d3", "Won", 5),                       # skip straight to Won
        ("d4", "Lead", 0),                                         # open in the other segment
    ]
    events = pd.DataFrame([(d, s, day + pd.Timedelta(days=k)) for d, s, k in ev],
                          columns=["deal_id", "stage", "entered_at"])
    funnels = {"A": Funnel("A", ("Lead", "Demo")), EVIL: Funnel(EVIL, ("Lead", "Demo"))}
    with warnings.catch_warnings():  # the second segment records no Lost: a caveat, expected
        warnings.simplefilter("ignore", DataWarning)
        return crm_from_frames(deals, events, funnels, as_of="2026-01-30")


def test_flow_table_counts_every_move_with_its_kind(crm):
    flows = flow_table(crm).set_index(["segment", "stage", "to_stage"]).sort_index()
    assert flows.loc[("A", "Lead", "Demo"), "deals"] == 2
    assert flows.loc[("A", "Lead", "Demo"), "kind"] == "forward"
    assert flows.loc[("A", "Demo", "Lead"), "kind"] == "backward"
    assert flows.loc[("A", "Lost", "Demo"), "kind"] == "re-engaged"
    assert flows.loc[("A", "Lead", "Lost"), "kind"] == "lost"
    assert flows.loc[("A", "Demo", "Won"), "kind"] == "won"
    assert flows.loc[("A", "Lead", "Won"), "kind"] == "won"
    # Nothing dropped: 4 + 2 + 1 moves of segment A.
    assert flows.loc["A", "deals"].sum() == 7
    shares = flows.loc["A"].groupby(level="stage")["share"].sum()
    assert np.allclose(shares, 1.0)
    lead = flows.loc[("A", "Lead", "Demo")]
    assert (lead["stage_order"], lead["to_stage_order"]) == (0, 1)


def test_stale_deals_compares_days_in_stage_with_the_typical_visit(crm):
    tis = pd.DataFrame({"segment": ["A", "A", EVIL, EVIL], "stage": ["Lead", "Demo"] * 2,
                        "mean_days": [5.0, 30.0, 40.0, 5.0], "lower": 0.0, "upper": 1.0})
    stale = stale_deals(crm, tis, ratio=2.0).set_index("deal_id")
    # d2 sits in Demo since day 9 (as_of is the end of day 29: 21 days; typical 30).
    assert stale.loc["d2", "age_days"] == pytest.approx(21.0, abs=1.0)
    assert not stale.loc["d2", "stale"]
    # d4 sits in Lead since day 0: 30 days against a typical 40.
    assert not stale.loc["d4", "stale"]
    stale_tight = stale_deals(crm, tis, ratio=0.5).set_index("deal_id")
    assert stale_tight["stale"].all()
    assert set(stale.index) == {"d2", "d4"}  # open deals only
    with pytest.raises(ParameterError):
        stale_deals(crm, tis, ratio=0)


def test_owner_comparison_puts_raw_beside_pooled(crm):
    raw = pd.DataFrame({"segment": "A", "owner": ["<b>Ann</b>", "<b>Ann</b>", "Bo", "Bo"],
                        "stage": ["Lead", "Demo"] * 2, "mean": [0.9, 0.95, 0.2, 0.3],
                        "lower": 0.0, "upper": 1.0})
    pooled = raw.assign(mean=[0.6, 0.7, 0.4, 0.5])
    out = owner_comparison(raw, pooled, crm).set_index("owner")
    assert list(out["stage"]) == ["Lead", "Lead"]  # first stage of the funnel
    assert out.loc["<b>Ann</b>", "raw_mean"] == 0.9
    assert out.loc["<b>Ann</b>", "shrinkage"] == pytest.approx(-0.3)
    assert out.loc["Bo", "deals"] == 2
    alone = owner_comparison(raw, None, crm)
    assert alone["pooled_mean"].isna().all()
    with pytest.raises(ParameterError, match="by='owner'"):
        owner_comparison(raw.drop(columns="owner"), None, crm)


def test_segment_overview_and_open_stage_rows(crm):
    summary = {
        "win_probability": pd.DataFrame({"segment": ["A", "A"], "stage": ["Lead", "Demo"],
                                         "mean": [0.3, 0.6], "lower": 0.2, "upper": 0.7}),
        "arrivals": pd.DataFrame({"segment": ["A"], "per_week_mean": [5.0], "lower": [4.0],
                                  "upper": [6.0]}),
    }
    ov = segment_overview(summary, crm)
    assert set(ov["measure"]) == {"win probability from the first stage", "new deals per week"}
    assert ov.loc[ov.measure.str.startswith("win"), "mean"].item() == 0.3
    table = pd.DataFrame({"segment": "A", "stage": ["Lead", "Demo", "Won", "Lost"]})
    assert list(open_stage_rows(table, crm)["stage"]) == ["Lead", "Demo"]


def test_html_from_data_is_escaped(crm):
    page = html_table(pd.DataFrame({"owner": ["<b>Ann</b>", EVIL], "p": [0.5, np.nan]}),
                      formats={"p": "{:.0%}"})
    assert "<b>Ann" not in page and "<script>" not in page
    assert "&lt;b&gt;Ann&lt;/b&gt;" in page and "50%" in page
    overview = crm_overview(crm)
    assert "<script>" not in overview and "&lt;script&gt;" in overview
    weeks = pd.DataFrame({"week": [1], "week_end": [pd.Timestamp("2026-02-06")],
                          "segment": [EVIL], "mean": [2.0], "p10": [1.0], "p50": [2.0],
                          "p90": [3.0], "from_pipeline_mean": [1.5], "from_new_mean": [0.5]})
    text = forecast_summary(weeks, weeks.assign(mean=100.0, p10=50.0, p90=150.0,
                                                from_pipeline_mean=75.0), 13)
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "75% of the expected revenue comes from deals open today" in text
    assert "expected wins 2.0 (80% interval 1.0 to 3.0)" in text
