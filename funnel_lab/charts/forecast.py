"""Charts of a pipeline forecast: fan charts, monthly wins and revenue, the split, top deals.

Every function takes a tidy table of :class:`funnel_lab.forecast.Forecast` (``.weekly``,
``.wins``, ``.revenue``, ``.monthly``, ``.deals``) or a scenario grid
(:func:`funnel_lab.reports.scenario_grid`) and returns an altair chart. Bands are the forecast's
p10-p90 (an 80% interval); lines are p50 unless said otherwise.

Dependency rule: altair and pandas only; never imports the model or the forecast.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from funnel_lab.charts._common import PANEL_WIDTH, require_columns, stage_order
from funnel_lab.errors import ParameterError

__all__ = [
    "fan_chart",
    "monthly_chart",
    "scenario_explorer",
    "split_chart",
    "top_deals_chart",
]

_BAND = ["mean", "p10", "p50", "p90"]


def fan_chart(weekly: pd.DataFrame,
              title: str = "Open deals in each stage, week by week (p10-p90 band, p50 line)",
              columns: int = 3) -> alt.FacetChart:
    """Fan chart of each stage's occupancy: the p10-p90 band and the p50 line per segment.

    Parameters
    ----------
    weekly : DataFrame
        ``week, week_end, segment, stage, mean, p10, p50, p90`` (``Forecast.weekly``).
    columns : int
        Panels per row (one panel per stage).

    Examples
    --------
    >>> w = pd.DataFrame({"week": [1, 2], "week_end": pd.to_datetime(["2025-01-07", "2025-01-14"]),
    ...                   "segment": "SMB", "stage": "Lead", "mean": [5.0, 6.0], "p10": [3, 4],
    ...                   "p50": [5, 6], "p90": [7, 8]})
    >>> spec = fan_chart(w).to_dict()
    >>> spec["spec"]["layer"][0]["encoding"]["y"]["field"], spec["facet"]["field"]
    ('p10', 'stage')
    """
    require_columns(weekly, ["week", "week_end", "segment", "stage", *_BAND], "fan_chart")
    x = alt.X("week_end:T", title="week ending")
    color = alt.Color("segment:N", title="segment")
    tooltip = ["segment:N", "stage:N", "week:Q", alt.Tooltip("week_end:T"),
               alt.Tooltip("p10:Q", format=".1f"), alt.Tooltip("p50:Q", format=".1f"),
               alt.Tooltip("p90:Q", format=".1f"), alt.Tooltip("mean:Q", format=".1f")]
    band = alt.Chart().mark_area(opacity=0.25).encode(
        x=x, y=alt.Y("p10:Q", title="open deals"), y2="p90:Q", color=color)
    line = alt.Chart().mark_line(point=alt.OverlayMarkDef(size=15)).encode(
        x=x, y="p50:Q", color=color, tooltip=tooltip)
    layer = alt.layer(band, line, data=weekly).properties(width=PANEL_WIDTH, height=150)
    return (
        layer.facet(facet=alt.Facet("stage:N", sort=stage_order(weekly), title=None),
                    columns=columns)
        .resolve_scale(y="independent").properties(title=title)
    )


def monthly_chart(monthly: pd.DataFrame,
                  title: str = "Wins and revenue by month (mean, p10-p90)") -> alt.VConcatChart:
    """Bars of expected wins and revenue per calendar month with their p10-p90 intervals.

    Parameters
    ----------
    monthly : DataFrame
        ``month, segment, wins_mean, wins_p10, wins_p90, revenue_mean, revenue_p10,
        revenue_p90`` (``Forecast.monthly``). A month holds the weeks whose ``week_end`` falls
        in it.

    Examples
    --------
    >>> m = pd.DataFrame({"month": ["2025-01"], "segment": "SMB", "wins_mean": [3.0],
    ...                   "wins_p10": [1], "wins_p90": [5], "revenue_mean": [3e4],
    ...                   "revenue_p10": [1e4], "revenue_p90": [5e4]})
    >>> [c["layer"][0]["encoding"]["y"]["field"] for c in monthly_chart(m).to_dict()["vconcat"]]
    ['wins_mean', 'revenue_mean']
    """
    cols = [f"{m}_{s}" for m in ("wins", "revenue") for s in ("mean", "p10", "p90")]
    require_columns(monthly, ["month", "segment", *cols], "monthly_chart")
    data = monthly.assign(month=monthly["month"].astype(str))
    panels = []
    for measure, fmt in (("wins", ".1f"), ("revenue", ",.0f")):
        x = alt.X("month:O", title="month")
        tooltip = ["month:O", "segment:N"] + [
            alt.Tooltip(f"{measure}_{s}:Q", format=fmt) for s in ("mean", "p10", "p90")]
        bars = alt.Chart().mark_bar(opacity=0.8).encode(
            x=x, xOffset="segment:N", color=alt.Color("segment:N"),
            y=alt.Y(f"{measure}_mean:Q", title=f"{measure} (mean)"), tooltip=tooltip)
        rules = alt.Chart().mark_rule(color="black").encode(
            x=x, xOffset="segment:N", y=f"{measure}_p10:Q", y2=f"{measure}_p90:Q")
        panels.append(alt.layer(bars, rules, data=data).properties(width=PANEL_WIDTH * 2,
                                                                  height=170))
    return alt.vconcat(*panels).properties(title=title)


def split_chart(table: pd.DataFrame, measure: str = "revenue",
                title: str | None = None) -> alt.FacetChart:
    """Cumulative expected wins or revenue, stacked: from today's pipeline and from new deals.

    Parameters
    ----------
    table : DataFrame
        ``week, week_end, segment, from_pipeline_mean, from_new_mean`` (``Forecast.wins`` or
        ``Forecast.revenue``).
    measure : str
        "wins" or "revenue": used in the titles.

    Examples
    --------
    >>> r = pd.DataFrame({"week": [1], "week_end": pd.to_datetime(["2025-01-07"]),
    ...                   "segment": "SMB", "from_pipeline_mean": [9.0], "from_new_mean": [1.0]})
    >>> split_chart(r).to_dict()["spec"]["encoding"]["color"]["field"]
    'source'
    """
    if measure not in ("wins", "revenue"):
        raise ParameterError(f"split_chart: measure must be 'wins' or 'revenue', got {measure!r}")
    require_columns(table, ["week", "week_end", "segment", "from_pipeline_mean",
                            "from_new_mean"], "split_chart")
    long = table.melt(id_vars=["week", "week_end", "segment"],
                      value_vars=["from_pipeline_mean", "from_new_mean"],
                      var_name="source", value_name="expected")
    long["source"] = long["source"].map({"from_pipeline_mean": "today's pipeline",
                                         "from_new_mean": "new deals"})
    fmt = ",.0f" if measure == "revenue" else ".1f"
    chart = alt.Chart(long).mark_area(opacity=0.8).encode(
        x=alt.X("week_end:T", title="week ending"),
        y=alt.Y("expected:Q", stack="zero", title=f"cumulative {measure} (mean)"),
        color=alt.Color("source:N", scale=alt.Scale(domain=["today's pipeline", "new deals"],
                                                    range=["#4c78a8", "#f58518"])),
        order=alt.Order("source:N", sort="descending"),
        tooltip=["segment:N", "week:Q", "source:N", alt.Tooltip("expected:Q", format=fmt)],
    ).properties(width=PANEL_WIDTH, height=180)
    return chart.facet(column=alt.Column("segment:N", title=None)).resolve_scale(
        y="independent").properties(
        title=title or f"Cumulative {measure}: from today's pipeline and from new deals")


def top_deals_chart(deals: pd.DataFrame, n: int = 15, by: str = "p_win_4w",
                    title: str | None = None) -> alt.HConcatChart:
    """A table-like chart of the ``n`` open deals most likely to be won, with a bar of P(win).

    Parameters
    ----------
    deals : DataFrame
        ``deal_id, segment, owner, stage, amount, age_days`` and ``by``
        (``Forecast.deals``; ``expected_value`` is shown when present).
    n : int
        Number of deals shown.
    by : str
        The probability column to rank by (``p_win_4w`` or ``p_win_13w``).

    Examples
    --------
    >>> d = pd.DataFrame({"deal_id": ["d1", "d2"], "segment": "SMB", "owner": ["Ann", "Bo"],
    ...                   "stage": "Demo", "amount": [1e3, 2e3], "age_days": [3.0, 9.0],
    ...                   "p_win_4w": [0.2, 0.6]})
    >>> spec = top_deals_chart(d, n=1).to_dict()
    >>> spec["datasets"][spec["data"]["name"]][0]["deal_id"]
    'd2'
    """
    require_columns(deals, ["deal_id", "segment", "owner", "stage", "amount", "age_days", by],
                    "top_deals_chart")
    if n < 1:
        raise ParameterError(f"top_deals_chart: n must be >= 1, got {n}")
    top = deals.sort_values([by, "deal_id"], ascending=[False, True]).head(n).copy()
    top["rank"] = np.arange(1, len(top) + 1)
    top["amount_text"] = top["amount"].map(lambda v: "-" if pd.isna(v) else f"{v:,.0f}")
    top["age_text"] = top["age_days"].map(lambda v: f"{v:.0f} d")
    text_cols = [("deal_id", "deal"), ("owner", "owner"), ("segment", "segment"),
                 ("stage", "stage"), ("amount_text", "amount"), ("age_text", "in stage")]
    if "expected_value" in top.columns:
        top["value_text"] = top["expected_value"].map(
            lambda v: "-" if pd.isna(v) else f"{v:,.0f}")
        text_cols.append(("value_text", "expected value"))
    y = alt.Y("rank:O", axis=None)
    base = alt.Chart(top).encode(y=y)
    columns = [
        base.mark_text(align="left", limit=150).encode(
            x=alt.value(0), text=f"{col}:N", tooltip=["deal_id:N"])
        .properties(title=alt.TitleParams(label, anchor="start", fontSize=11), width=105)
        for col, label in text_cols
    ]
    label = "P(win within 4 weeks)" if by == "p_win_4w" else f"{by}"
    bar = base.mark_bar(color="#54a24b").encode(
        x=alt.X(f"{by}:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"),
                title=None),
        tooltip=["deal_id:N", "owner:N", alt.Tooltip(f"{by}:Q", format=".1%")],
    ).properties(title=alt.TitleParams(label, anchor="start", fontSize=11), width=160)
    pct = base.mark_text(align="left", dx=3).encode(
        x=alt.X(f"{by}:Q"), text=alt.Text(f"{by}:Q", format=".0%"))
    if title is None:
        title = (f"The {len(top)} open deals most likely to be won within 4 weeks"
                 if by == "p_win_4w" else f"The {len(top)} open deals with the highest {by}")
    return alt.hconcat(*columns, bar + pct, spacing=4).properties(title=title).configure_view(
        strokeWidth=0)


def scenario_explorer(grid: pd.DataFrame, segment: str | None = None,
                      title: str = "What if lead inflow changes? (move the sliders)",
                      ) -> alt.HConcatChart:
    """A kernel-free explorer of precomputed scenarios: sliders for lead inflow and horizon.

    The chart carries every scenario; the sliders (Vega parameters) filter what is drawn, so it
    works in a static HTML page with no kernel.

    Parameters
    ----------
    grid : DataFrame
        ``lead_inflow, week, week_end, segment, measure ("wins" or "revenue"), mean, p10,
        p90`` of cumulative values (``funnel_lab.reports.scenario_grid``).
    segment : str, optional
        Draw one segment only; by default every segment, coloured.

    Examples
    --------
    >>> g = pd.DataFrame({"lead_inflow": [0.5, 1.0], "week": 1,
    ...                   "week_end": pd.to_datetime(["2025-01-07"] * 2), "segment": "SMB",
    ...                   "measure": "wins", "mean": [2.0, 3.0], "p10": [1, 2], "p90": [3, 4]})
    >>> spec = scenario_explorer(g).to_dict()
    >>> sorted(p["name"] for p in spec["params"])
    ['horizon_weeks', 'lead_inflow']
    """
    require_columns(grid, ["lead_inflow", "week", "week_end", "segment", "measure", "mean",
                           "p10", "p90"], "scenario_explorer")
    data = grid if segment is None else grid[grid["segment"] == segment]
    if data.empty:
        raise ParameterError(
            f"scenario_explorer: no rows for segment {segment!r}; segments: "
            f"{sorted(grid['segment'].astype(str).unique())}")
    inflows = np.sort(data["lead_inflow"].unique())
    steps = np.diff(inflows)
    step = float(steps.min()) if len(steps) else 1.0
    default = float(inflows[np.argmin(np.abs(inflows - 1.0))])
    max_week = int(data["week"].max())
    lead = alt.param(name="lead_inflow", value=default, bind=alt.binding_range(
        min=float(inflows[0]), max=float(inflows[-1]), step=step, name="lead inflow x "))
    horizon = alt.param(name="horizon_weeks", value=max_week, bind=alt.binding_range(
        min=1, max=max_week, step=1, name="horizon (weeks) "))
    # A tolerance of half a step, because slider values are floats computed in JavaScript.
    keep = (f"abs(datum.lead_inflow - lead_inflow) < {step / 2!r} "
            "&& datum.week <= horizon_weeks")
    panels = []
    for measure, fmt in (("wins", ".1f"), ("revenue", ",.0f")):
        part = data[data["measure"] == measure]
        if part.empty:
            continue
        x = alt.X("week_end:T", title="week ending")
        color = alt.Color("segment:N")
        tooltip = ["segment:N", "lead_inflow:Q", "week:Q"] + [
            alt.Tooltip(f"{s}:Q", format=fmt) for s in ("mean", "p10", "p90")]
        band = alt.Chart().mark_area(opacity=0.25).encode(
            x=x, y=alt.Y("p10:Q", title=f"cumulative {measure}"), y2="p90:Q", color=color)
        line = alt.Chart().mark_line(point=True).encode(x=x, y="mean:Q", color=color,
                                                        tooltip=tooltip)
        last = alt.Chart().mark_text(align="left", dx=5, fontWeight="bold").encode(
            x=x, y="mean:Q", color=color, text=alt.Text("mean:Q", format=fmt),
        ).transform_filter("datum.week == min(horizon_weeks, " + str(max_week) + ")")
        panels.append(
            alt.layer(band, line, last, data=part).transform_filter(keep)
            .properties(width=PANEL_WIDTH + 40, height=220, title=f"cumulative {measure}")
        )
    if not panels:
        raise ParameterError("scenario_explorer: the grid has no 'wins' or 'revenue' rows")
    return alt.hconcat(*panels).add_params(lead, horizon).properties(title=title)
