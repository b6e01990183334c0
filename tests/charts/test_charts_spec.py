"""Charts are checked through their Vega-Lite specs: fields, encodings, titles, data, params."""

from __future__ import annotations

import altair as alt
import pandas as pd
import pytest

import funnel_lab.charts as charts
from funnel_lab.charts.examples import example_tables
from funnel_lab.errors import ParameterError


@pytest.fixture(scope="module")
def t() -> dict[str, pd.DataFrame]:
    return example_tables()


def _data(spec: dict) -> list[dict]:
    """The rows a (possibly faceted or concatenated) spec draws."""
    return spec["datasets"][spec["data"]["name"]] if "data" in spec else next(
        iter(spec["datasets"].values()))


def _title(spec: dict) -> str:
    title = spec["title"]
    return title["text"] if isinstance(title, dict) else title


def test_public_names_are_exported():
    assert sorted(charts.__all__) == sorted(n for n in charts.__all__ if hasattr(charts, n))
    assert "scenario_explorer" in charts.__all__ and "enable_renderer" in charts.__all__


def test_funnel_chart_draws_means_and_intervals_per_segment(t):
    spec = charts.funnel_chart(t["conversion"], t["win_probability"]).to_dict()
    bars, rules = spec["spec"]["layer"]
    assert spec["facet"]["column"]["field"] == "segment"
    assert bars["mark"]["type"] == "bar" and bars["encoding"]["x"]["field"] == "mean"
    assert (rules["encoding"]["x"]["field"], rules["encoding"]["x2"]["field"]) == ("lower",
                                                                                    "upper")
    assert bars["encoding"]["color"]["field"] == "measure"
    assert bars["encoding"]["x"]["scale"]["domain"] == [0, 1]
    rows = _data(spec)
    assert {r["measure"] for r in rows} == {"conversion", "win probability"}
    assert len(rows) == len(t["conversion"]) + len(t["win_probability"])
    assert "Conversion" in _title(spec)


def test_funnel_chart_sorts_each_segment_by_its_own_funnel_order(t):
    spec = charts.funnel_chart(t["conversion"]).to_dict()
    y = spec["spec"]["layer"][0]["encoding"]["y"]
    assert y["sort"]["field"] == "stage_rank"
    rows = [r for r in _data(spec) if r["segment"] == "Enterprise"]
    by_rank = [r["stage"] for r in sorted(rows, key=lambda r: r["stage_rank"])]
    assert by_rank == ["Lead", "Qualify", "Demo", "Proposal", "Legal"]
    assert spec["resolve"]["scale"]["y"] == "independent"


def test_funnel_chart_rejects_per_owner_tables_and_missing_columns(t):
    with pytest.raises(ParameterError, match="owners_chart"):
        charts.funnel_chart(t["conversion"].assign(owner="Ann"))
    with pytest.raises(ParameterError, match=r"lacks columns \['upper'\]"):
        charts.funnel_chart(t["conversion"].drop(columns="upper"))


def test_flows_chart_shows_backward_and_reengaged_moves(t):
    spec = charts.flows_chart(t["flows"]).to_dict()
    cells, labels = spec["spec"]["layer"]
    assert cells["mark"]["type"] == "rect"
    assert cells["encoding"]["x"]["field"] == "to_stage"
    assert cells["encoding"]["y"]["field"] == "stage"
    assert cells["encoding"]["color"]["field"] == "deals"
    assert labels["encoding"]["text"]["field"] == "deals"
    assert labels["encoding"]["color"]["field"] == "kind"
    kinds = {r["kind"] for r in _data(spec)}
    assert {"backward", "re-engaged", "won", "lost", "forward"} <= kinds
    # Lost sorts after the open stages (the fallback order puts Won and Lost last).
    rows = [r for r in _data(spec) if r["segment"] == "SMB"]
    lost = next(r["stage_order"] for r in rows if r["stage"] == "Lost")
    assert lost == max(r["stage_order"] for r in rows)
    share = charts.flows_chart(t["flows"], value="share").to_dict()
    assert share["spec"]["layer"][0]["encoding"]["color"]["field"] == "share"


def test_time_in_stage_and_stale_charts(t):
    spec = charts.time_in_stage_chart(t["time_in_stage"]).to_dict()
    points, rules = spec["spec"]["layer"]
    assert points["encoding"]["x"]["field"] == "mean_days"
    assert rules["encoding"]["x2"]["field"] == "upper"
    spec = charts.stale_deals_chart(t["stale"]).to_dict()
    points, ticks = spec["spec"]["layer"]
    assert points["encoding"]["x"]["field"] == "age_days"
    assert ticks["encoding"]["x"]["field"] == "typical_days"
    assert {r["stale"] for r in _data(spec)} == {"stale", "on time"}
    tooltips = {tt["field"] for tt in points["encoding"]["tooltip"]}
    assert {"deal_id", "owner"} <= tooltips


def test_segments_and_stage_counts_put_segments_side_by_side(t):
    spec = charts.segments_chart(t["overview"]).to_dict()
    assert spec["facet"]["column"]["field"] == "measure"
    assert spec["spec"]["layer"][0]["encoding"]["x"]["field"] == "segment"
    assert spec["resolve"]["scale"]["y"] == "independent"
    spec = charts.stage_counts_chart(t["stage_counts"]).to_dict()
    assert spec["spec"]["layer"][0]["encoding"]["x"]["field"] == "open_deals"
    with pytest.raises(ParameterError, match="no count column"):
        charts.stage_counts_chart(t["stage_counts"].drop(columns="open_deals"))


def test_owners_chart_shows_raw_and_pooled_points_and_pooled_interval(t):
    spec = charts.owners_chart(t["owners"]).to_dict()
    rules, links, points = spec["spec"]["layer"]
    assert (rules["encoding"]["x"]["field"], rules["encoding"]["x2"]["field"]) == (
        "pooled_lower", "pooled_upper")
    assert points["encoding"]["shape"]["field"] == "estimate"
    rows = _data(spec)
    assert {r["estimate"] for r in rows} == {"raw", "pooled"}
    assert len(rows) == 2 * len(t["owners"])
    # Without a pooled fit only raw points are drawn.
    raw_only = t["owners"].assign(pooled_mean=float("nan"), pooled_lower=float("nan"),
                                  pooled_upper=float("nan"))
    rows = _data(charts.owners_chart(raw_only).to_dict())
    assert {r["estimate"] for r in rows} == {"raw"}


def test_fan_chart_band_is_p10_to_p90_and_line_is_p50(t):
    spec = charts.fan_chart(t["weekly"]).to_dict()
    band, line = spec["spec"]["layer"]
    assert band["mark"]["type"] == "area"
    assert (band["encoding"]["y"]["field"], band["encoding"]["y2"]["field"]) == ("p10", "p90")
    assert line["encoding"]["y"]["field"] == "p50"
    assert band["encoding"]["x"]["field"] == "week_end"
    assert spec["facet"]["field"] == "stage"
    assert "p10-p90" in _title(spec)


def test_monthly_split_and_top_deals_charts(t):
    spec = charts.monthly_chart(t["monthly"]).to_dict()
    wins, revenue = spec["vconcat"]
    assert wins["layer"][1]["encoding"]["y"]["field"] == "wins_p10"
    assert revenue["layer"][1]["encoding"]["y2"]["field"] == "revenue_p90"
    spec = charts.split_chart(t["revenue"]).to_dict()
    assert spec["spec"]["encoding"]["y"]["stack"] == "zero"
    assert {r["source"] for r in _data(spec)} == {"today's pipeline", "new deals"}
    with pytest.raises(ParameterError, match="measure"):
        charts.split_chart(t["revenue"], measure="deals")

    spec = charts.top_deals_chart(t["deals"], n=5).to_dict()
    rows = _data(spec)
    assert len(rows) == 5
    probs = [r["p_win_4w"] for r in rows]
    assert probs == sorted(probs, reverse=True)
    assert probs[0] == pytest.approx(t["deals"]["p_win_4w"].max())
    assert "within 4 weeks" in _title(spec)


def test_scenario_explorer_has_two_sliders_that_filter_the_data(t):
    chart = charts.scenario_explorer(t["grid"])
    spec = chart.to_dict()
    params = {p["name"]: p for p in spec["params"]}
    assert set(params) == {"lead_inflow", "horizon_weeks"}
    assert params["lead_inflow"]["bind"]["input"] == "range"
    assert (params["lead_inflow"]["bind"]["min"], params["lead_inflow"]["bind"]["max"]) == (
        0.5, 1.5)
    assert params["lead_inflow"]["bind"]["step"] == pytest.approx(0.5)
    assert params["lead_inflow"]["value"] == 1.0
    assert params["horizon_weeks"]["bind"]["max"] == t["grid"]["week"].max()
    for panel in spec["hconcat"]:
        filters = [tr["filter"] for tr in panel.get("transform", []) if "filter" in tr]
        assert any("lead_inflow" in f and "horizon_weeks" in f for f in filters)
    # Every scenario travels with the chart (the page has no kernel to compute more).
    n_rows = sum(len(v) for v in spec["datasets"].values())
    assert n_rows == len(t["grid"])
    with pytest.raises(ParameterError, match="segments"):
        charts.scenario_explorer(t["grid"], segment="Nope")


def test_html_in_names_stays_data_not_markup():
    bad = "<script>alert(1)</script>"
    t = example_tables(segment_names=(bad, "<b>B</b>"), owner_names=("<b>Ann</b>", "Bo"))
    spec = charts.owners_chart(t["owners"]).to_dict()
    owners = {r["owner"] for r in _data(spec)}
    assert "<b>Ann</b>" in owners  # the raw text: Vega draws it as text (checked in a browser)
    segs = {r["segment"] for r in _data(charts.funnel_chart(t["conversion"]).to_dict())}
    assert bad in segs


def test_renderer_writes_a_vegalite_mime_bundle_that_nbformat_accepts(t):
    import nbformat

    old = alt.renderers.active
    try:
        charts.enable_renderer()
        bundle, _ = charts.fan_chart(t["weekly"])._repr_mimebundle_()
    finally:
        alt.renderers.enable(old)
    assert set(bundle) == {"application/vnd.vegalite.v5+json", "text/plain"}
    assert isinstance(bundle["application/vnd.vegalite.v5+json"], dict)
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs.append(nbformat.v4.new_output("display_data", data=bundle))
    nb.cells.append(cell)
    nbformat.validate(nb)  # altair's own mimetype renderer fails exactly here
