"""Charts of the funnel's state and flows: stages, conversion, flows, time in stage, owners.

Every function takes a tidy table (from :func:`funnel_lab.model.summarize`,
:func:`funnel_lab.crm.read.stage_summary` or :mod:`funnel_lab.reports.tables`) and returns an
altair chart. Intervals are drawn as rules from ``lower`` to ``upper``.

Dependency rule: altair and pandas only; never imports the model or the forecast.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from funnel_lab.charts._common import (
    PANEL_WIDTH,
    require_columns,
    stage_sort,
    with_stage_rank,
)
from funnel_lab.errors import ParameterError

__all__ = [
    "flows_chart",
    "funnel_chart",
    "owners_chart",
    "segments_chart",
    "stage_counts_chart",
    "stale_deals_chart",
    "time_in_stage_chart",
]

_INTERVAL = ["mean", "lower", "upper"]


def _segment_facet(layer: alt.LayerChart, title: str) -> alt.FacetChart:
    """Segments side by side, each with its own stage axis (segments may have other stages)."""
    return (
        layer.facet(column=alt.Column("segment:N", title=None))
        .resolve_scale(y="independent").properties(title=title)
    )


def stage_counts_chart(table: pd.DataFrame, value: str | None = None,
                       title: str = "Open deals in each stage") -> alt.FacetChart:
    """Bars of open deals per stage, segments side by side.

    Parameters
    ----------
    table : DataFrame
        ``segment``, ``stage`` and a count column (``stage_summary(crm)``).
    value : str, optional
        The count column; by default the first of ``open_deals``, ``deals``, ``count``.

    Examples
    --------
    >>> t = pd.DataFrame({"segment": ["SMB"] * 2, "stage": ["Lead", "Demo"], "open_deals": [9, 4]})
    >>> stage_counts_chart(t).to_dict()["facet"]["column"]["field"]
    'segment'
    """
    if value is None:
        value = next((c for c in ("open_deals", "deals", "count") if c in table.columns), None)
        if value is None:
            raise ParameterError(
                "stage_counts_chart: no count column (open_deals, deals or count) in "
                f"{sorted(map(str, table.columns))}"
            )
    require_columns(table, ["segment", "stage", value], "stage_counts_chart")
    table = with_stage_rank(table)
    base = alt.Chart().encode(
        y=alt.Y("stage:N", sort=stage_sort(), title="stage"),
        x=alt.X(f"{value}:Q", title="open deals"),
        tooltip=["segment:N", "stage:N", alt.Tooltip(f"{value}:Q", title="open deals")],
    )
    bars = base.mark_bar(color="#4c78a8")
    labels = base.mark_text(align="left", dx=3).encode(text=f"{value}:Q")
    return _segment_facet(alt.layer(bars, labels, data=table).properties(width=PANEL_WIDTH),
                          title)


def funnel_chart(conversion: pd.DataFrame, win_probability: pd.DataFrame | None = None,
                 title: str = "Conversion and win probability per stage") -> alt.FacetChart:
    """The funnel with uncertainty: per stage, a bar at the posterior mean and its interval.

    Parameters
    ----------
    conversion : DataFrame
        ``segment, stage, mean, lower, upper`` (``summarize(posterior)["conversion"]``).
    win_probability : DataFrame, optional
        Same columns; drawn beside conversion, in another colour.

    Examples
    --------
    >>> t = pd.DataFrame({"segment": "SMB", "stage": ["Lead", "Demo"], "mean": [0.4, 0.6],
    ...                   "lower": [0.3, 0.5], "upper": [0.5, 0.7]})
    >>> spec = funnel_chart(t, t).to_dict()
    >>> spec["spec"]["layer"][0]["encoding"]["x"]["field"]
    'mean'
    """
    parts = [("conversion", conversion)]
    if win_probability is not None:
        parts.append(("win probability", win_probability))
    frames = []
    for measure, table in parts:
        require_columns(table, ["segment", "stage", *_INTERVAL], f"funnel_chart ({measure})")
        if {"owner", "team", "group"} & set(table.columns):
            raise ParameterError(
                f"funnel_chart ({measure}): the table is per owner/team; draw it with "
                "owners_chart, or pass the segment-level summary"
            )
        frames.append(table[["segment", "stage", *_INTERVAL]].assign(measure=measure))
    data = with_stage_rank(pd.concat(frames, ignore_index=True))
    y = alt.Y("stage:N", sort=stage_sort(), title="stage")
    color = alt.Color("measure:N", title=None, legend=alt.Legend(orient="bottom"))
    tooltip = ["segment:N", "stage:N", "measure:N", alt.Tooltip("mean:Q", format=".1%"),
               alt.Tooltip("lower:Q", format=".1%"), alt.Tooltip("upper:Q", format=".1%")]
    bars = alt.Chart().mark_bar(opacity=0.75).encode(
        x=alt.X("mean:Q", title="probability (posterior mean, interval)",
                axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
        y=y, yOffset="measure:N", color=color, tooltip=tooltip,
    )
    rules = alt.Chart().mark_rule(color="black").encode(
        x="lower:Q", x2="upper:Q", y=y, yOffset="measure:N", tooltip=tooltip,
    )
    layer = alt.layer(bars, rules, data=data).properties(width=PANEL_WIDTH)
    return _segment_facet(layer, title)


#: Number colours in the flows heatmap: backward moves and re-engagement stand out.
_KIND_COLOURS = {"forward": "black", "skip": "#333333", "won": "#1b7a1b", "lost": "#a51c1c",
                 "backward": "#d45f00", "re-engaged": "#8a2be2"}


def _flow_orders(flows: pd.DataFrame) -> pd.DataFrame:
    """Funnel positions from the order of appearance, with "Won" and "Lost" last.

    :func:`funnel_lab.reports.flow_table` gives the true funnel order; this is the fallback.
    """
    parts = []
    for _, part in flows.groupby("segment", sort=False):
        seen = list(dict.fromkeys([*part["stage"], *part["to_stage"]]))
        states = [s for s in seen if s not in ("Won", "Lost")] + [
            s for s in ("Won", "Lost") if s in seen]
        rank = {s: i for i, s in enumerate(states)}
        parts.append(part.assign(stage_order=part["stage"].map(rank),
                                 to_stage_order=part["to_stage"].map(rank)))
    return pd.concat(parts, ignore_index=True)


def flows_chart(flows: pd.DataFrame, value: str = "deals",
                title: str = "Moves between stages (rows: from, columns: to)") -> alt.FacetChart:
    """Heatmap of moves between stages, backward moves and re-engagement from Lost included.

    Parameters
    ----------
    flows : DataFrame
        ``segment, stage, to_stage, kind`` and ``value`` (``funnel_lab.reports.flow_table``);
        ``kind`` is one of forward, skip, backward, won, lost, re-engaged.
    value : str
        The column coloured and written in each cell: ``deals`` (moves counted) or
        ``share`` (moves as a share of all moves out of the row's stage).

    Examples
    --------
    >>> f = pd.DataFrame({"segment": "SMB", "stage": ["Lead", "Lost"], "to_stage": ["Won", "Lead"],
    ...                   "kind": ["won", "re-engaged"], "deals": [5, 2], "share": [1.0, 1.0]})
    >>> flows_chart(f).to_dict()["spec"]["layer"][0]["encoding"]["color"]["field"]
    'deals'
    """
    require_columns(flows, ["segment", "stage", "to_stage", "kind", value], "flows_chart")
    if "stage_order" not in flows.columns or "to_stage_order" not in flows.columns:
        flows = _flow_orders(flows)
    fmt = ".0%" if value == "share" else "d"
    tooltip = ["segment:N", alt.Tooltip("stage:N", title="from"), alt.Tooltip("to_stage:N",
               title="to"), "kind:N", alt.Tooltip(f"{value}:Q", format=fmt)]
    if value != "deals" and "deals" in flows.columns:
        tooltip.append("deals:Q")
    base = alt.Chart().encode(
        x=alt.X("to_stage:N", sort=stage_sort("to_stage_order"), title="to stage"),
        y=alt.Y("stage:N", sort=stage_sort("stage_order"), title="from stage"),
    )
    cells = base.mark_rect().encode(
        color=alt.Color(f"{value}:Q", title=value, scale=alt.Scale(scheme="blues")),
        tooltip=tooltip,
    )
    labels = base.mark_text(fontSize=10).encode(
        text=alt.Text(f"{value}:Q", format=fmt),
        color=alt.Color("kind:N", legend=alt.Legend(title="move (number colour)"),
                        scale=alt.Scale(domain=list(_KIND_COLOURS),
                                        range=list(_KIND_COLOURS.values()))),
    )
    # Cells are coloured by a number and labels by the kind of move: two colour scales.
    layer = alt.layer(cells, labels, data=flows).resolve_scale(color="independent").properties(
        width=PANEL_WIDTH, height=PANEL_WIDTH)
    return (
        layer.facet(column=alt.Column("segment:N", title=None))
        .resolve_scale(x="independent", y="independent", color="independent")
        .properties(title=alt.TitleParams(
            title, subtitle="numbers coloured by the kind of move: orange backward, purple "
            "re-engaged from Lost"))
    )


def time_in_stage_chart(table: pd.DataFrame,
                        title: str = "Expected days of one visit to each stage") -> alt.FacetChart:
    """Posterior mean days in each stage with its interval, segments side by side.

    Parameters
    ----------
    table : DataFrame
        ``segment, stage, mean_days, lower, upper`` (``summarize(...)["time_in_stage"]``).

    Examples
    --------
    >>> t = pd.DataFrame({"segment": "SMB", "stage": ["Lead"], "mean_days": [12.0],
    ...                   "lower": [10.0], "upper": [14.0]})
    >>> time_in_stage_chart(t).to_dict()["spec"]["layer"][1]["encoding"]["x2"]["field"]
    'upper'
    """
    require_columns(table, ["segment", "stage", "mean_days", "lower", "upper"],
                    "time_in_stage_chart")
    table = with_stage_rank(table)
    y = alt.Y("stage:N", sort=stage_sort(), title="stage")
    tooltip = ["segment:N", "stage:N", alt.Tooltip("mean_days:Q", format=".1f"),
               alt.Tooltip("lower:Q", format=".1f"), alt.Tooltip("upper:Q", format=".1f")]
    points = alt.Chart().mark_point(filled=True, size=60, color="#4c78a8").encode(
        x=alt.X("mean_days:Q", title="days (posterior mean, interval)"), y=y, tooltip=tooltip)
    rules = alt.Chart().mark_rule(color="#4c78a8").encode(x="lower:Q", x2="upper:Q", y=y)
    layer = alt.layer(points, rules, data=table).properties(width=PANEL_WIDTH)
    return _segment_facet(layer, title)


def stale_deals_chart(stale: pd.DataFrame,
                      title: str = "Open deals: days in their stage against the typical visit",
                      ) -> alt.FacetChart:
    """Each open deal's days in its stage (points) and the typical days of a visit (ticks).

    Parameters
    ----------
    stale : DataFrame
        ``segment, stage, deal_id, owner, age_days, typical_days, stale``
        (``funnel_lab.reports.stale_deals``).

    Examples
    --------
    >>> t = pd.DataFrame({"segment": "SMB", "stage": ["Lead"], "deal_id": ["d1"], "owner": ["Ann"],
    ...                   "age_days": [40.0], "typical_days": [12.0], "stale": [True]})
    >>> stale_deals_chart(t).to_dict()["spec"]["layer"][0]["encoding"]["x"]["field"]
    'age_days'
    """
    require_columns(stale, ["segment", "stage", "deal_id", "owner", "age_days", "typical_days",
                            "stale"], "stale_deals_chart")
    data = with_stage_rank(stale.assign(stale=stale["stale"].map({True: "stale",
                                                                  False: "on time"})))
    y = alt.Y("stage:N", sort=stage_sort(), title="stage")
    points = alt.Chart().mark_circle(size=35, opacity=0.6).encode(
        x=alt.X("age_days:Q", title="days in stage at as_of", scale=alt.Scale(type="symlog")),
        y=y, yOffset=alt.YOffset("jitter:Q", scale=alt.Scale(domain=[-1, 1])),
        color=alt.Color("stale:N", scale=alt.Scale(domain=["on time", "stale"],
                                                   range=["#4c78a8", "#e45756"]), title=None),
        tooltip=["deal_id:N", "owner:N", "segment:N", "stage:N",
                 alt.Tooltip("age_days:Q", format=".0f"),
                 alt.Tooltip("typical_days:Q", format=".0f")],
    ).transform_calculate(jitter="random() * 1.6 - 0.8")
    ticks = alt.Chart().mark_tick(color="black", thickness=2, size=18).encode(
        x="typical_days:Q", y=y, tooltip=[alt.Tooltip("typical_days:Q", format=".0f")])
    layer = alt.layer(points, ticks, data=data).properties(width=PANEL_WIDTH)
    return _segment_facet(layer, title)


def segments_chart(overview: pd.DataFrame,
                   title: str = "Segments side by side") -> alt.FacetChart:
    """A few headline measures per segment, with intervals, one panel per measure.

    Parameters
    ----------
    overview : DataFrame
        ``segment, measure, mean, lower, upper`` (``funnel_lab.reports.segment_overview``).

    Examples
    --------
    >>> t = pd.DataFrame({"segment": ["A", "B"], "measure": "new deals per week",
    ...                   "mean": [5.0, 7.0], "lower": [4.0, 6.0], "upper": [6.0, 8.0]})
    >>> segments_chart(t).to_dict()["facet"]["column"]["field"]
    'measure'
    """
    require_columns(overview, ["segment", "measure", *_INTERVAL], "segments_chart")
    x = alt.X("segment:N", title=None)
    tooltip = ["segment:N", "measure:N", alt.Tooltip("mean:Q", format=".3~g"),
               alt.Tooltip("lower:Q", format=".3~g"), alt.Tooltip("upper:Q", format=".3~g")]
    bars = alt.Chart().mark_bar(opacity=0.8).encode(
        x=x, y=alt.Y("mean:Q", title=None), color=alt.Color("segment:N", legend=None),
        tooltip=tooltip)
    rules = alt.Chart().mark_rule(color="black").encode(x=x, y="lower:Q", y2="upper:Q")
    layer = alt.layer(bars, rules, data=overview).properties(width=160, height=200)
    return (
        layer.facet(column=alt.Column("measure:N", title=None))
        .resolve_scale(y="independent").properties(title=title)
    )


def owners_chart(comparison: pd.DataFrame,
                 title: str = "Salespeople: pooled estimates beside raw ones") -> alt.FacetChart:
    """Per owner: the raw (unpooled) estimate and the pooled one with its interval.

    Parameters
    ----------
    comparison : DataFrame
        ``segment, owner, deals, raw_mean, pooled_mean, pooled_lower, pooled_upper``
        (``funnel_lab.reports.owner_comparison``); pooled columns may be NaN (no pooled fit).

    Examples
    --------
    >>> t = pd.DataFrame({"segment": "SMB", "owner": ["Ann"], "deals": [5], "raw_mean": [0.9],
    ...                   "pooled_mean": [0.5], "pooled_lower": [0.3], "pooled_upper": [0.7]})
    >>> owners_chart(t).to_dict()["facet"]["row"]["field"]
    'segment'
    """
    require_columns(comparison, ["segment", "owner", "deals", "raw_mean", "pooled_mean",
                                 "pooled_lower", "pooled_upper"], "owners_chart")
    key = "pooled_mean" if comparison["pooled_mean"].notna().any() else "raw_mean"
    order = comparison.sort_values(key, ascending=False)["owner"].astype(str).tolist()
    long = comparison.melt(
        id_vars=["segment", "owner", "deals", "pooled_lower", "pooled_upper"],
        value_vars=["raw_mean", "pooled_mean"], var_name="estimate", value_name="value",
    ).dropna(subset=["value"])
    long["estimate"] = long["estimate"].map({"raw_mean": "raw", "pooled_mean": "pooled"})
    y = alt.Y("owner:N", sort=list(dict.fromkeys(order)), title=None)
    tooltip = ["owner:N", "segment:N", "deals:Q", "estimate:N",
               alt.Tooltip("value:Q", format=".1%")]
    rules = alt.Chart().mark_rule(color="#4c78a8", opacity=0.6).encode(
        x="pooled_lower:Q", x2="pooled_upper:Q", y=y,
    ).transform_filter(alt.datum.estimate == "pooled")
    links = alt.Chart().mark_line(color="grey", strokeDash=[2, 2]).encode(
        x="value:Q", y=y, detail="owner:N")
    points = alt.Chart().mark_point(size=60, filled=True).encode(
        x=alt.X("value:Q", title="win probability from the first stage",
                axis=alt.Axis(format="%")),
        y=y,
        color=alt.Color("estimate:N", scale=alt.Scale(domain=["raw", "pooled"],
                                                      range=["#f58518", "#4c78a8"])),
        shape=alt.Shape("estimate:N", scale=alt.Scale(domain=["raw", "pooled"],
                                                      range=["triangle", "circle"])),
        tooltip=tooltip,
    )
    layer = alt.layer(rules, links, points, data=long).properties(width=PANEL_WIDTH * 2)
    return (
        layer.facet(row=alt.Row("segment:N", title=None))
        .resolve_scale(y="independent").properties(title=title)
    )
