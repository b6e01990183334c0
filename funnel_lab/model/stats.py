"""Sufficient statistics of the funnel: transition counts and time at risk, one DuckDB query.

The event log is turned into *stays*: each event of a deal starts a stay in its stage, which
ends at the deal's next event (a transition ``from -> to``) or, for the last event, at
``as_of`` (censored: the deal is still there). Won is absorbing, so stays in Won are not
counted. Stays in Lost are: their time at risk is what re-engagement rates (Lost -> open
stage) are measured against.

Per segment, group (``"all"``, or each owner or team) and **age band** we keep

* ``counts[g, b, i, j]``: moves from state ``i`` to ``j`` that happened when the deal had
  spent between ``band_edges[b]`` and ``band_edges[b + 1]`` weeks in ``i``;
* ``exposure_seconds[g, b, i]``: the time deals spent in ``i`` while their age in ``i`` was in
  band ``b`` (a stay's time is split across the bands it crosses), in integer seconds.

With ``half_life_weeks`` every count is weighted by ``2 ** (-(as_of - t) / half_life)`` at its
event time ``t`` and every exposure by the integral of that weight over the piece of the stay
(a closed form); the Poisson likelihood raised to these weights is a *tempered* likelihood that
stays conjugate with Gamma priors, and counts and exposure become floats.

Times are whole seconds since the epoch (``floor``), so that the DuckDB query and the pandas
cross-check in the tests agree exactly. The aggregation is one SQL statement (``LEAD()`` over
the events sorted by deal and time, then one ``GROUP BY`` of the stays by group, from-state,
to-state and the age band in which the stay ended, summing their number and length), so its
cost grows with the number of events only here. The split of each stay's time across the
bands it crossed follows exactly from those sums (see ``_package``); everything after the
query works on small arrays.

Dependency rule: numpy, pandas and duckdb; imports funnel_lab.crm and funnel_lab.errors only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from funnel_lab.crm.eventlog import CRM
from funnel_lab.crm.funnel import Funnel
from funnel_lab.errors import DataError, ParameterError

__all__ = [
    "SECONDS_PER_WEEK",
    "SegmentStats",
    "check_band_edges",
    "sufficient_statistics",
]

log = logging.getLogger(__name__)

SECONDS_PER_WEEK = 7 * 24 * 3600
GROUP_BY_CHOICES = (None, "owner", "team")
UNKNOWN_GROUP = "(unknown)"


@dataclass
class SegmentStats:
    """Sufficient statistics of one segment (see the module docstring).

    Attributes
    ----------
    funnel : Funnel
        The segment's funnel; ``S = funnel.states`` orders every state axis.
    groups : tuple of str
        ``("all",)`` or the owners/teams of the segment, sorted.
    group_by : {None, "owner", "team"}
    band_edges : tuple of int
        Lower edges of the age bands in whole weeks, starting at 0.
    as_of : pandas.Timestamp
    half_life_weeks : float or None
        Recency half-life; None means unweighted.
    counts : array (group, band, S, S)
        Transition counts (int64; float64 when weighted).
    exposure_seconds : array (group, band, S)
        Time at risk in seconds (int64; float64 when weighted). Zero for Won.
    n_transitions : array (group, band, S, S) int64
        Unweighted transition counts (equal to ``counts`` without recency weights).
    entries : array (group, S)
        Number of deals whose first event is each state (weighted at the event time when
        ``half_life_weeks`` is set). New deals enter at ``entries[:, :n_open]``.
    history_weeks : float
        Length of the observed history (from the first deal created in the CRM to ``as_of``).
    arrival_weeks : array (n_weeks,) int64
        New deals of the segment per week, oldest first; the last week ends at ``as_of``.
    arrival_count, arrival_exposure_weeks : float
        Deals created and weeks of history, both weighted when ``half_life_weeks`` is set:
        the Gamma-Poisson sufficient statistics of the weekly arrival rate.
    group_arrivals : array (group,)
        Deals created per group (weighted like ``arrival_count``).
    source_arrivals : dict
        ``{source: count}`` (weighted) when the deals have a ``source`` column, else empty.
    log_amounts, amount_weights : array (n,)
        Logs of the positive amounts of the segment's deals and their recency weights (ones
        without recency).
    skipped : dict
        What was left out and why, with counts (``"amount_missing_or_not_positive"``, ...).
    possible : bool array (S, S) or None
        Moves that get a rate, set by :func:`funnel_lab.model.fit` from the prior (read by the
        pooled model); None until then.
    """

    funnel: Funnel
    groups: tuple[str, ...]
    group_by: str | None
    band_edges: tuple[int, ...]
    as_of: pd.Timestamp
    half_life_weeks: float | None
    counts: np.ndarray
    exposure_seconds: np.ndarray
    n_transitions: np.ndarray
    entries: np.ndarray
    history_weeks: float
    arrival_weeks: np.ndarray
    arrival_count: float
    arrival_exposure_weeks: float
    group_arrivals: np.ndarray
    source_arrivals: dict[str, float] = field(default_factory=dict)
    log_amounts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    amount_weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    skipped: dict[str, int] = field(default_factory=dict)
    possible: np.ndarray | None = None

    @property
    def segment(self) -> str:
        return self.funnel.segment

    @property
    def exposure_weeks(self) -> np.ndarray:
        """Time at risk in weeks, (group, band, S) float."""
        return np.asarray(self.exposure_seconds, dtype=float) / SECONDS_PER_WEEK

    @property
    def n_bands(self) -> int:
        return len(self.band_edges)


def check_band_edges(band_edges: Sequence[int] | None) -> tuple[int, ...]:
    """Validate age-band edges: whole weeks, starting at 0, strictly increasing.

    >>> check_band_edges([0, 4, 13])
    (0, 4, 13)
    """
    if band_edges is None:
        return (0,)
    edges = tuple(band_edges)
    if not edges or any(not float(e).is_integer() for e in edges):
        raise ParameterError(f"band_edges must be whole weeks starting at 0, got {edges!r}")
    edges = tuple(int(e) for e in edges)
    if edges[0] != 0 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise ParameterError(
            f"band_edges must start at 0 and increase strictly, e.g. (0, 4, 13); got {edges!r}"
        )
    return edges


def _check_half_life(half_life_weeks: float | None) -> float | None:
    if half_life_weeks is None:
        return None
    try:
        h = float(half_life_weeks)
    except (TypeError, ValueError):
        raise ParameterError(
            f"half_life_weeks must be a positive number of weeks or None, got {half_life_weeks!r}"
        ) from None
    if not (h > 0 and math.isfinite(h)):
        raise ParameterError(f"half_life_weeks must be > 0 and finite, got {half_life_weeks!r}")
    return h


def _as_of_seconds(as_of: pd.Timestamp) -> int:
    # Floor to whole seconds, like epoch_us(t) // 1000000 for the event times.
    return int((pd.Timestamp(as_of) - pd.Timestamp(0)) // pd.Timedelta(seconds=1))


def _group_labels(deals: pd.DataFrame, by: str | None) -> pd.Series:
    if by is None:
        return pd.Series("all", index=deals.index, dtype=str)
    return deals[by].fillna(UNKNOWN_GROUP).astype(str)


def _lookup_tables(
    crm: CRM, by: str | None
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, tuple[str, ...]]]:
    """The tables the query joins: state indices per segment, and per deal an integer key,
    its segment index and its group index (sorting and joining on integers is cheaper than
    on text)."""
    segments = crm.segments
    states = pd.DataFrame(
        [(k, st, i) for k, seg in enumerate(segments) for i, st in
         enumerate(crm.funnels[seg].states)],
        columns=["seg_idx", "stage", "state_idx"],
    )
    deals = crm.deals
    labels = _group_labels(deals, by)
    seg_idx = pd.Categorical(deals["segment"], categories=segments).codes.astype(np.int64)
    group_idx = np.zeros(len(deals), dtype=np.int64)
    groups: dict[str, tuple[str, ...]] = {}
    for s, seg in enumerate(segments):
        mask = seg_idx == s
        names = tuple(sorted(labels[mask].unique())) or ("all",)
        groups[seg] = names
        group_idx[mask] = pd.Categorical(labels[mask], categories=names).codes
    keys = pd.DataFrame({"deal_id": deals["deal_id"], "k": np.arange(len(deals), dtype=np.int64),
                         "seg": seg_idx, "g": group_idx})
    return states, keys, groups


_QUERY = """
WITH ev AS (
    SELECT dl.k, dl.seg, dl.g, s.state_idx AS i, e.entered_at
    FROM fl_events e
    JOIN fl_deals dl ON e.deal_id = dl.deal_id
    JOIN fl_states s ON s.seg_idx = dl.seg AND s.stage = e.stage
),
stays AS (
    -- One sort of all events by deal, time and funnel order; LEAD() gives the next event
    -- of the same deal (a single window without PARTITION BY sorts faster than one with).
    SELECT seg, g, i,
           CASE WHEN LEAD(k) OVER w = k THEN LEAD(i) OVER w ELSE -1 END AS j,
           epoch_us(entered_at) // 1000000 AS t0,
           CASE WHEN LEAD(k) OVER w = k THEN epoch_us(LEAD(entered_at) OVER w) // 1000000
                ELSE {as_of} END AS t1,
           (LAG(k) OVER w IS DISTINCT FROM k)::INTEGER AS first
    FROM ev
    WINDOW w AS (ORDER BY k, entered_at, i)
)
SELECT seg, g, i, j, {band_expr} AS b,
       COUNT(*) AS n,
       SUM(t1 - t0)::BIGINT AS d_sum,
       SUM(first) AS entries
       {weighted}
FROM stays
GROUP BY ALL
"""

# Weighted sums, w(t) = exp(-k (as_of - t)) with k = ln 2 / half-life in seconds: at the start
# (w0) and end (w1) of each stay. The integral of w over a piece [t0 + lo, t0 + hi] of a stay is
# w0 (exp(k hi) - exp(k lo)) / k, so these two sums per band give every weighted exposure.
_WEIGHTED = """,
       SUM(exp(-{k} * ({as_of} - t0))) AS w0,
       SUM(exp(-{k} * ({as_of} - t1))) AS w1,
       SUM(first * exp(-{k} * ({as_of} - t0))) AS wentries
"""


def _band_expr(band_edges: tuple[int, ...]) -> str:
    """SQL for the band in which a stay of length ``t1 - t0`` seconds ends."""
    if len(band_edges) == 1:
        return "0"
    return " + ".join(f"(t1 - t0 >= {e * SECONDS_PER_WEEK})::INTEGER" for e in band_edges[1:])


def _run_query(
    crm: CRM,
    by: str | None,
    band_edges: tuple[int, ...],
    half_life_weeks: float | None,
) -> tuple[pd.DataFrame, dict[str, tuple[str, ...]]]:
    states, deals, groups = _lookup_tables(crm, by)
    as_of_s = _as_of_seconds(crm.as_of)
    weighted = ""
    if half_life_weeks is not None:
        k = math.log(2.0) / (half_life_weeks * SECONDS_PER_WEEK)
        weighted = _WEIGHTED.format(k=repr(k), as_of=as_of_s)
    sql = _QUERY.format(as_of=as_of_s, weighted=weighted, band_expr=_band_expr(band_edges))

    con = duckdb.connect()
    try:
        con.register("fl_events", crm.events[["deal_id", "stage", "entered_at"]])
        con.register("fl_deals", deals)
        con.register("fl_states", states)
        out = con.execute(sql).df()
    finally:
        con.close()
    return out, groups


def sufficient_statistics(
    crm: CRM,
    by: str | None = None,
    band_edges: Sequence[int] = (0,),
    half_life_weeks: float | None = None,
) -> dict[str, SegmentStats]:
    """Transition counts, time at risk, arrivals, entry stages and amounts per segment.

    Parameters
    ----------
    crm : CRM
        A validated CRM (see :mod:`funnel_lab.crm.eventlog`).
    by : {None, "owner", "team"}
        Group the statistics by salesperson or department; None gives one group ``"all"``.
    band_edges : sequence of int
        Age-band lower edges in whole weeks of time already spent in the state, from 0.
    half_life_weeks : float, optional
        Weight counts and exposure by ``2 ** (-(as_of - t) / half_life_weeks)``.

    Returns
    -------
    dict
        ``{segment: SegmentStats}`` in sorted segment order.

    Examples
    --------
    >>> from funnel_lab.simulate import simulate_crm, small_settings
    >>> crm = simulate_crm(small_settings(), 1).crm
    >>> stats = sufficient_statistics(crm, band_edges=(0, 4))
    >>> stats["SMB"].counts.shape, stats["SMB"].exposure_seconds.dtype
    ((1, 2, 5, 5), dtype('int64'))
    """
    if by not in GROUP_BY_CHOICES:
        raise ParameterError(f"by must be one of None, 'owner', 'team'; got {by!r}")
    edges = check_band_edges(band_edges)
    half_life = _check_half_life(half_life_weeks)

    rows, groups = _run_query(crm, by, edges, half_life)
    seen = int(rows["n"].sum())
    if seen != len(crm.events):
        # The joins are inner joins: an event of an unknown deal or stage would vanish.
        raise DataError(
            f"{len(crm.events) - seen} of {len(crm.events)} events do not match a deal of the "
            "deals table or a stage of their segment's funnel; read the CRM with "
            "funnel_lab.crm.read so that it is validated", column="deal_id")
    extras = _deal_statistics(crm, by, groups, half_life)

    out: dict[str, SegmentStats] = {}
    for s, seg in enumerate(crm.segments):
        funnel = crm.funnels[seg]
        out[seg] = _package(funnel, groups[seg], by, edges, crm.as_of, half_life,
                            rows[rows["seg"] == s], extras[seg])
    log.info(
        "sufficient statistics of %s segments (by=%s, band_edges=%s, half_life_weeks=%s)",
        len(out), by, edges, half_life,
    )
    return out


def _package(
    funnel: Funnel,
    groups: tuple[str, ...],
    by: str | None,
    edges: tuple[int, ...],
    as_of: pd.Timestamp,
    half_life: float | None,
    rows: pd.DataFrame,
    extra: dict,
) -> SegmentStats:
    """Scatter the query's rows into (group, band, S, S) arrays.

    Each row sums the stays of one (group, from, to, band where the stay ended): ``n`` stays,
    ``d_sum`` seconds. A stay ending in band ``b`` spent ``d - lo_b`` there and the whole
    width of every earlier band, so exposure per band follows from these sums exactly.
    """
    n_s, n_g, n_b = len(funnel.states), len(groups), len(edges)
    won = funnel.n_open
    lo = np.array(edges, dtype=np.int64) * SECONDS_PER_WEEK
    width = np.diff(lo)  # of every band but the last
    g = rows["g"].to_numpy(dtype=np.int64)
    b = rows["b"].to_numpy(dtype=np.int64)
    i = rows["i"].to_numpy(dtype=np.int64)
    j = rows["j"].to_numpy(dtype=np.int64)
    n = rows["n"].to_numpy(dtype=np.int64)
    moved = j >= 0

    n_transitions = np.zeros((n_g, n_b, n_s, n_s), dtype=np.int64)
    np.add.at(n_transitions, (g[moved], b[moved], i[moved], j[moved]), n[moved])
    exposure = np.zeros((n_g, n_b, n_s), dtype=np.int64)
    np.add.at(exposure, (g, b, i), rows["d_sum"].to_numpy(dtype=np.int64) - n * lo[b])
    for band in range(n_b - 1):
        past = b > band
        np.add.at(exposure[:, band], (g[past], i[past]), n[past] * width[band])
    entries = np.zeros((n_g, n_s), dtype=np.int64)
    np.add.at(entries, (g, i), rows["entries"].to_numpy(dtype=np.int64))
    counts: np.ndarray = n_transitions
    if half_life is not None:
        k = math.log(2.0) / (half_life * SECONDS_PER_WEEK)
        w0 = rows["w0"].to_numpy(dtype=float)
        w1 = rows["w1"].to_numpy(dtype=float)
        grow = np.exp(k * lo.astype(float))  # exp(k lo_b)
        counts = np.zeros((n_g, n_b, n_s, n_s))
        np.add.at(counts, (g[moved], b[moved], i[moved], j[moved]), w1[moved])
        exposure = np.zeros((n_g, n_b, n_s))
        np.add.at(exposure, (g, b, i), (w1 - grow[b] * w0) / k)
        for band in range(n_b - 1):
            past = b > band
            np.add.at(exposure[:, band], (g[past], i[past]),
                      w0[past] * (grow[band + 1] - grow[band]) / k)
        entries = np.zeros((n_g, n_s))
        np.add.at(entries, (g, i), rows["wentries"].to_numpy(dtype=float))
    # Won is absorbing: time spent there is not at risk of anything.
    exposure[:, :, won] = 0
    skipped = dict(extra.pop("skipped"))
    closed_first = int(rows.loc[rows["i"] >= won, "entries"].sum())
    skipped["deals_entering_won_or_lost"] = closed_first
    if closed_first:
        log.info("segment %s: %s deals whose first event is %s or %s are left out of the "
                 "entry-stage model", funnel.segment, closed_first, funnel.won, funnel.lost)

    return SegmentStats(
        funnel=funnel, groups=groups, group_by=by, band_edges=edges, as_of=as_of,
        half_life_weeks=half_life, counts=counts, exposure_seconds=exposure,
        n_transitions=n_transitions, entries=entries, skipped=skipped, **extra,
    )


def _recency_weights(times: pd.Series, as_of: pd.Timestamp, half_life: float | None) -> np.ndarray:
    if half_life is None:
        return np.ones(len(times))
    age_weeks = (as_of - times) / pd.Timedelta(weeks=1)
    return np.exp2(-age_weeks.to_numpy(dtype=float) / half_life)


def _deal_statistics(
    crm: CRM,
    by: str | None,
    groups: dict[str, tuple[str, ...]],
    half_life: float | None,
) -> dict[str, dict]:
    """Arrivals, group shares and amounts: per-deal quantities (one row per deal, small)."""
    deals = crm.deals
    as_of = crm.as_of
    start = deals["created_at"].min() if len(deals) else as_of
    history_weeks = max((as_of - start) / pd.Timedelta(weeks=1), 0.0)
    n_weeks = max(int(math.ceil(history_weeks)), 1)
    if half_life is None:
        exposure_weeks = history_weeks
    else:
        # Integral of 2^(-u / h) over the history u in [0, history_weeks].
        exposure_weeks = half_life / math.log(2.0) * (1.0 - 2.0 ** (-history_weeks / half_life))

    labels = _group_labels(deals, by)
    has_source = "source" in deals.columns
    out: dict[str, dict] = {}
    for seg in crm.segments:
        mask = (deals["segment"] == seg).to_numpy()
        seg_deals = deals.loc[mask]
        w = _recency_weights(seg_deals["created_at"], as_of, half_life)

        # Week k (0 = the last) covers (as_of - 7(k+1) days, as_of - 7k days].
        age = ((as_of - seg_deals["created_at"]) / pd.Timedelta(weeks=1)).to_numpy(dtype=float)
        k = np.clip(np.ceil(age).astype(np.int64) - 1, 0, n_weeks - 1)
        per_week = np.bincount(n_weeks - 1 - k, minlength=n_weeks).astype(np.int64)

        gidx = pd.Categorical(labels[mask], categories=groups[seg]).codes
        group_arrivals = np.bincount(gidx, weights=w, minlength=len(groups[seg]))

        source_arrivals: dict[str, float] = {}
        if has_source:
            src = pd.Categorical(seg_deals["source"].fillna(UNKNOWN_GROUP).astype(str))
            sums = np.bincount(src.codes, weights=w, minlength=len(src.categories))
            for name, total in sorted(zip(src.categories, sums, strict=True)):
                source_arrivals[str(name)] = float(total)

        amount = seg_deals["amount"].to_numpy(dtype=float)
        ok = np.isfinite(amount) & (amount > 0)
        out[seg] = {
            "history_weeks": float(history_weeks),
            "arrival_weeks": per_week,
            "arrival_count": float(w.sum()),
            "arrival_exposure_weeks": float(exposure_weeks),
            "group_arrivals": group_arrivals,
            "source_arrivals": source_arrivals,
            "log_amounts": np.log(amount[ok]),
            "amount_weights": w[ok],
            "skipped": {"amount_missing_or_not_positive": int((~ok).sum())},
        }
        if (~ok).any():
            log.info("segment %s: %s deals without a positive amount are left out of the "
                     "amount model", seg, int((~ok).sum()))
    return out
