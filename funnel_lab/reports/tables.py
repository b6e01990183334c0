"""Report tables: small tidy summaries built from the CRM and the model's tidy tables.

These are conveniences for the notebooks (which only call the package): the moves between
stages, stale deals, salespeople pooled against raw, segments side by side, and the words of a
forecast summary. HTML built here escapes every name taken from the data.

Dependency rule: pandas, numpy and the standard library; takes finished tables and the CRM,
never fits or forecasts.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from funnel_lab.errors import ParameterError

__all__ = [
    "crm_overview",
    "flow_table",
    "forecast_summary",
    "forecast_tables",
    "html_table",
    "open_stage_rows",
    "owner_comparison",
    "segment_overview",
    "stale_deals",
]

log = logging.getLogger(__name__)


def crm_overview(crm: Any) -> str:
    """A few sentences about the data, as escaped HTML: deals, open deals, segments, repairs.

    Examples
    --------
    >>> crm_overview(crm)          # doctest: +SKIP
    '<p>3,239 deals as of 2026-11-29 ...'
    """
    open_ = crm.open_deals()
    segs = ", ".join(
        f"{html.escape(str(seg))} ({int((crm.deals['segment'] == seg).sum()):,} deals, "
        f"{len(crm.funnels[seg].stages)} open stages)" for seg in crm.segments)
    repaired = {k: v for k, v in crm.report.counts.items() if v}
    fixes = "; ".join(f"{html.escape(str(k)).replace('_', ' ')}: {v:,}"
                      for k, v in sorted(repaired.items()))
    source = html.escape(str(crm.source)) if crm.source else "in-memory tables"
    return (
        f"<p>{len(crm.deals):,} deals as of {html.escape(str(crm.as_of.date()))} (end of day), "
        f"{len(open_):,} of them open. Segments: {segs}. Data: <code>{source}</code>.</p>"
        + (f"<p>Reading the data repaired or left out: {fixes}.</p>" if fixes else
           "<p>Reading the data needed no repairs.</p>")
    )


def _kind(order_from: int, order_to: int, n_open: int) -> str:
    won, lost = n_open, n_open + 1
    if order_from == lost:
        return "re-engaged"
    if order_to == won:
        return "won"
    if order_to == lost:
        return "lost"
    if order_to == order_from + 1:
        return "forward"
    return "skip" if order_to > order_from else "backward"


def flow_table(crm: Any) -> pd.DataFrame:
    """Moves between stages seen in the event log, per segment, with their kind.

    Each pair of consecutive stage entries of a deal is one move. ``kind`` is ``forward`` (to
    the next stage), ``skip`` (further ahead), ``backward``, ``won``, ``lost`` or
    ``re-engaged`` (out of Lost). Entries the reader imputed (a first stage at creation, a
    gone-cold Lost) count as moves too; ``imputed`` says how many of them.

    Returns
    -------
    DataFrame
        ``segment, stage, to_stage, kind, deals, imputed, share, stage_order,
        to_stage_order`` where ``share`` is the share of all moves out of ``stage`` and the
        orders are positions in ``Funnel.states``.

    Examples
    --------
    >>> flows = flow_table(crm)                   # doctest: +SKIP
    >>> flows.loc[flows.kind == "re-engaged", "deals"].sum()   # doctest: +SKIP
    12
    """
    ev = crm.events.merge(crm.deals[["deal_id", "segment"]], on="deal_id", how="left")
    nxt = ev.groupby("deal_id", sort=False)["stage"].shift(-1)
    nxt_imputed = ev.groupby("deal_id", sort=False)["imputed"].shift(-1)
    moves = ev.assign(to_stage=nxt, imputed_move=nxt_imputed).dropna(subset=["to_stage"])
    moves = moves[moves["stage"] != moves["to_stage"]]
    columns = ["segment", "stage", "to_stage", "kind", "deals", "imputed", "share",
               "stage_order", "to_stage_order"]
    if moves.empty:
        return pd.DataFrame(columns=columns)
    counts = (moves.groupby(["segment", "stage", "to_stage"], sort=False)
              .agg(deals=("deal_id", "size"),
                   imputed=("imputed_move", lambda s: int(s.astype(bool).sum())))
              .reset_index())
    orders = []
    for row in counts.itertuples(index=False):
        funnel = crm.funnels[row.segment]
        i, j = funnel.order(row.stage), funnel.order(row.to_stage)
        orders.append((i, j, _kind(i, j, funnel.n_open)))
    counts[["stage_order", "to_stage_order", "kind"]] = pd.DataFrame(orders, index=counts.index)
    counts["share"] = counts["deals"] / counts.groupby(["segment", "stage"])["deals"].transform(
        "sum")
    counts = counts.sort_values(["segment", "stage_order", "to_stage_order"]).reset_index(
        drop=True)
    return counts[columns]


def open_stage_rows(table: pd.DataFrame, crm: Any) -> pd.DataFrame:
    """The rows of a per-stage table (``Forecast.weekly``, ``stage_summary``) for open stages.

    Lost holds every deal ever lost, which would flatten the open stages' scale in a chart.
    """
    is_open = [crm.funnels[seg].is_open(st) if seg in crm.funnels else False
               for seg, st in zip(table["segment"], table["stage"], strict=True)]
    return table.loc[is_open].reset_index(drop=True)


def forecast_tables(fc: Any, crm: Any, segment: str | None = None) -> dict[str, pd.DataFrame]:
    """The tables of a forecast for a report, for one segment or all of them.

    Returns
    -------
    dict of DataFrame
        ``weekly`` (open stages only), ``wins``, ``revenue``, ``monthly`` and ``deals`` of
        ``fc`` (:class:`funnel_lab.forecast.Forecast`), keeping the rows of ``segment`` when
        given.
    """
    if segment is not None and segment not in crm.funnels:
        raise ParameterError(f"segment {segment!r} is not in the CRM; segments: "
                             f"{sorted(crm.funnels)}")

    def pick(table: pd.DataFrame) -> pd.DataFrame:
        if segment is None:
            return table
        return table[table["segment"] == segment].reset_index(drop=True)

    return {"weekly": open_stage_rows(pick(fc.weekly), crm), "wins": pick(fc.wins),
            "revenue": pick(fc.revenue), "monthly": pick(fc.monthly), "deals": pick(fc.deals)}


def stale_deals(crm: Any, time_in_stage: pd.DataFrame, ratio: float = 2.0) -> pd.DataFrame:
    """Open deals with their days in stage against the typical (expected) visit.

    Parameters
    ----------
    crm : CRM
    time_in_stage : DataFrame
        ``segment, stage, mean_days`` (``summarize(posterior)["time_in_stage"]``,
        segment-level).
    ratio : float
        A deal is stale when ``age_days > ratio * typical_days``.

    Returns
    -------
    DataFrame
        One row per open deal: ``deal_id, segment, owner, team, stage, amount, age_days,
        typical_days, times_typical, stale``, the stalest first.
    """
    if not ratio > 0:
        raise ParameterError(f"stale_deals: ratio must be > 0, got {ratio!r}")
    if {"owner", "team", "group"} & set(time_in_stage.columns):
        raise ParameterError("stale_deals: pass the segment-level time_in_stage table")
    open_ = crm.open_deals()
    typical = time_in_stage[["segment", "stage", "mean_days"]].rename(
        columns={"mean_days": "typical_days"})
    out = open_.merge(typical, on=["segment", "stage"], how="left")
    missing = int(out["typical_days"].isna().sum())
    if missing:
        log.info("stale_deals: %s open deals have no typical time in stage", missing)
    out["times_typical"] = out["age_days"] / out["typical_days"]
    out["stale"] = (out["times_typical"] > ratio).fillna(False).astype(bool)
    keep = ["deal_id", "segment", "owner", "team", "stage", "amount", "age_days",
            "typical_days", "times_typical", "stale"]
    return out[keep].sort_values("times_typical", ascending=False,
                                 na_position="last").reset_index(drop=True)


def _first_stage_rows(table: pd.DataFrame, group: str, crm: Any | None) -> pd.DataFrame:
    if crm is not None:
        first = {seg: f.stages[0] for seg, f in crm.funnels.items()}
        return table[table["stage"] == table["segment"].map(first)]
    return table.groupby(["segment", group], sort=False).head(1)


def owner_comparison(raw: pd.DataFrame, pooled: pd.DataFrame | None = None,
                     crm: Any | None = None, group: str = "owner") -> pd.DataFrame:
    """Salespeople's win probability from the first stage: raw (unpooled) beside pooled.

    Parameters
    ----------
    raw : DataFrame
        ``segment, owner, stage, mean, lower, upper`` from a per-owner fit without pooling
        (``summarize(fit(crm, by="owner"))["win_probability"]``).
    pooled : DataFrame, optional
        The same from the pooled fit (``fit(crm, method="pooled", by="owner")``); without it
        the pooled columns are NaN.
    crm : CRM, optional
        Gives the first stage of each funnel and the number of deals per owner.
    group : str
        ``owner`` or ``team``.

    Returns
    -------
    DataFrame
        ``segment, owner, stage, deals, raw_mean, raw_lower, raw_upper, pooled_mean,
        pooled_lower, pooled_upper, shrinkage`` (pooled minus raw mean).
    """
    for name, table in (("raw", raw), ("pooled", pooled)):
        if table is not None and group not in table.columns:
            raise ParameterError(f"owner_comparison: the {name} table has no '{group}' column; "
                                 f"fit with by='{group}'")
    keys = ["segment", group, "stage"]
    out = _first_stage_rows(raw, group, crm)[[*keys, "mean", "lower", "upper"]].rename(
        columns={"mean": "raw_mean", "lower": "raw_lower", "upper": "raw_upper"})
    if pooled is not None:
        p = _first_stage_rows(pooled, group, crm)[[*keys, "mean", "lower", "upper"]].rename(
            columns={"mean": "pooled_mean", "lower": "pooled_lower", "upper": "pooled_upper"})
        out = out.merge(p, on=keys, how="outer")
    else:
        out = out.assign(pooled_mean=np.nan, pooled_lower=np.nan, pooled_upper=np.nan)
    if crm is not None:
        n = crm.deals.groupby(["segment", group]).size().rename("deals").reset_index()
        out = out.merge(n, on=["segment", group], how="left")
        out["deals"] = out["deals"].fillna(0).astype(int)
    else:
        out["deals"] = pd.NA
    out["shrinkage"] = out["pooled_mean"] - out["raw_mean"]
    cols = ["segment", group, "stage", "deals", "raw_mean", "raw_lower", "raw_upper",
            "pooled_mean", "pooled_lower", "pooled_upper", "shrinkage"]
    return out[cols].sort_values(["segment", group]).reset_index(drop=True)


def segment_overview(summary: Mapping[str, pd.DataFrame],
                     crm: Any | None = None) -> pd.DataFrame:
    """Headline measures per segment for a side-by-side chart.

    Win probability and days to close from the first open stage, and new deals per week, each
    with the posterior mean and interval of ``summary`` (from :func:`funnel_lab.model.summarize`).

    Returns
    -------
    DataFrame
        ``segment, measure, mean, lower, upper``.
    """
    cols = ["segment", "measure", "mean", "lower", "upper"]
    rows = []
    for key, measure, value in (("win_probability", "win probability from the first stage",
                                 "mean"),
                                ("days_to_close", "days to close from the first stage",
                                 "mean_days")):
        table = summary.get(key)
        if table is None or table.empty:
            continue
        first = _first_stage_rows(table.assign(_g="all"), "_g", crm)
        for r in first.itertuples(index=False):
            rows.append((r.segment, measure, getattr(r, value), r.lower, r.upper))
    arrivals = summary.get("arrivals")
    if arrivals is not None:
        for r in arrivals.itertuples(index=False):
            rows.append((r.segment, "new deals per week", r.per_week_mean, r.lower, r.upper))
    return pd.DataFrame(rows, columns=cols)


def html_table(table: pd.DataFrame, columns: Mapping[str, str] | Sequence[str] | None = None,
               formats: Mapping[str, str] | None = None, max_rows: int = 30) -> str:
    """An HTML table with every cell escaped (names from the data are shown as text).

    Parameters
    ----------
    table : DataFrame
    columns : mapping or sequence, optional
        Columns to show; a mapping renames them (old -> header).
    formats : mapping, optional
        Column -> format spec (``"{:.1%}"``), applied before escaping.
    max_rows : int
        Rows shown; the caption says how many were left out.

    Examples
    --------
    >>> html_table(pd.DataFrame({"owner": ["<b>Ann</b>"]}))  # doctest: +ELLIPSIS
    '<table class="funnel-lab-table">...&lt;b&gt;Ann&lt;/b&gt;...'
    """
    if columns is None:
        columns = {c: c for c in table.columns}
    elif not isinstance(columns, Mapping):
        columns = {c: c for c in columns}
    formats = dict(formats or {})
    shown = table.head(max_rows)
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in columns.values())
    body = []
    for _, row in shown.iterrows():
        cells = []
        for col in columns:
            value = row[col]
            if isinstance(value, float) and np.isnan(value):
                text = ""
            elif col in formats:
                text = formats[col].format(value)
            else:
                text = str(value)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = len(table) - len(shown)
    caption = f"<caption>{more} more rows not shown</caption>" if more > 0 else ""
    return (f'<table class="funnel-lab-table">{caption}<thead><tr>{head}</tr></thead><tbody>'
            + "".join(body) + "</tbody></table>")


def _fmt_range(mean: float, lo: float, hi: float, money: bool) -> str:
    f = (lambda v: f"{v:,.0f}") if money else (lambda v: f"{v:,.1f}")
    return f"{f(mean)} (80% interval {f(lo)} to {f(hi)})"


def forecast_summary(wins: pd.DataFrame, revenue: pd.DataFrame, horizon_weeks: int,
                     deals: pd.DataFrame | None = None) -> str:
    """A plain-language summary of a forecast, as escaped HTML paragraphs.

    Parameters
    ----------
    wins, revenue : DataFrame
        ``Forecast.wins`` and ``Forecast.revenue`` (cumulative, per segment and week).
    horizon_weeks : int
        The week summarised (the last week when larger than the forecast).
    deals : DataFrame, optional
        ``Forecast.deals``: adds how many open deals are more likely than not to be won
        within 4 weeks.

    Returns
    -------
    str
        HTML (``<p>`` per segment); every name from the data is escaped.
    """
    week = min(int(horizon_weeks), int(wins["week"].max()))
    w = wins[wins["week"] == week].set_index("segment")
    r = revenue[revenue["week"] == week].set_index("segment")
    end = pd.Timestamp(w["week_end"].iloc[0]).date() if len(w) else ""
    paras = [f"<p>Over the next {week} weeks (to {end}), by segment:</p><ul>"]
    for seg in w.index:
        share = (r.loc[seg, "from_pipeline_mean"] / r.loc[seg, "mean"]
                 if r.loc[seg, "mean"] > 0 else np.nan)
        share_text = "" if np.isnan(share) else (
            f"; {share:.0%} of the expected revenue comes from deals open today, the rest "
            "from deals not yet created")
        paras.append(
            f"<li><strong>{html.escape(str(seg))}</strong>: expected wins "
            f"{_fmt_range(w.loc[seg, 'mean'], w.loc[seg, 'p10'], w.loc[seg, 'p90'], False)}, "
            f"expected revenue "
            f"{_fmt_range(r.loc[seg, 'mean'], r.loc[seg, 'p10'], r.loc[seg, 'p90'], True)}"
            f"{share_text}.</li>")
    paras.append("</ul>")
    total = r["mean"].sum()
    paras.append(f"<p>Across segments the expected revenue is {total:,.0f}. The intervals are "
                 "the 10th to 90th percentiles of the simulated outcomes: in 8 futures out of "
                 "10 the outcome falls inside.</p>")
    if deals is not None and "p_win_4w" in deals.columns:
        likely = int((deals["p_win_4w"] > 0.5).sum())
        paras.append(f"<p>{likely} of {len(deals)} open deals are more likely than not to be "
                     "won within 4 weeks.</p>")
    return "".join(paras)
