"""``forecast``: posterior + today's deals -> Monte Carlo forecast as tidy tables.

Steps: check the arguments -> per segment, count today's deals into cells and prepare the
engine's inputs (:mod:`funnel_lab.forecast.engine`) -> run the engine and the exact means
(:mod:`funnel_lab.forecast.exact`) -> package tidy tables and the raw draws (xarray).

Weeks follow CONTRACTS.md: week ``k`` covers ``(as_of + 7(k-1) days, as_of + 7k days]`` and
its ``week_end`` is the date of ``as_of + 7k days``; a monthly summary adds the weeks whose
``week_end`` falls in the calendar month.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from funnel_lab.crm.eventlog import CRM
from funnel_lab.errors import DataWarning, ParameterError, PosteriorMismatchError
from funnel_lab.forecast.engine import (
    NEW,
    PIPELINE,
    EngineInputs,
    EngineResult,
    age_index,
    ages_of,
    amount_class_edges,
    count_cells,
    lognormal_bin_means,
    lognormal_bin_variances,
    run_engine,
)
from funnel_lab.forecast.exact import exact_means, win_within
from funnel_lab.forecast.transition import OneWeek, one_week
from funnel_lab.model.posterior import Posterior, SegmentPosterior

__all__ = ["Forecast", "forecast"]

log = logging.getLogger(__name__)

QUANTILES = {"p10": 0.1, "p50": 0.5, "p90": 0.9}
ORIGINS = ("pipeline", "new")
SCORE_WEEKS = (4, 13)
NEW_AMOUNT_BINS = 10
MONTHLY_NOTE = ("each month adds the forecast weeks whose week_end falls in that calendar "
                "month (n_weeks says how many); the first and last months may be partial")


@dataclass
class Forecast:
    """A pipeline forecast: tidy tables, raw draws and the exact means.

    Attributes
    ----------
    as_of : pandas.Timestamp
    horizon_weeks : int
    weekly : DataFrame
        ``week, week_end, segment, stage, mean, p10, p50, p90, from_pipeline_mean,
        from_new_mean``: deals in each state at the end of the week. ``Won`` counts deals won
        during the forecast; ``Lost`` counts today's lost deals plus those lost since.
    wins, revenue : DataFrame
        ``week, week_end, segment, mean, p10, p50, p90`` of the cumulative value since
        ``as_of``, plus ``from_pipeline_mean`` and ``from_new_mean``.
    monthly : DataFrame
        ``month, segment, n_weeks, first_week_end, last_week_end, wins_mean, wins_p10,
        wins_p50, wins_p90, revenue_mean, revenue_p10, revenue_p50, revenue_p90,
        from_pipeline_mean, from_new_mean`` (the revenue split) and ``wins_from_pipeline_mean,
        wins_from_new_mean``; ``monthly.attrs["note"]`` says how weeks are assigned to months.
    deals : DataFrame
        One row per open deal: ``deal_id, segment, owner, team, stage, amount, age_days,
        p_win_4w, p_win_13w, expected_value`` (amount times ``p_win_13w``; a missing amount
        is replaced by the amount model's mean), sorted by ``p_win_4w``, highest first.
    draws : xarray.Dataset
        ``occupancy`` (segment, draw, week, origin, stage), ``wins`` and ``revenue``
        (segment, draw, week, origin) *during* each week; NaN for stages a segment lacks.
    expected : xarray.Dataset
        The exact means per posterior draw, same layout as ``draws``.
    notes : list of str
        What was assumed or repaired, with counts.
    """

    as_of: pd.Timestamp
    horizon_weeks: int
    weekly: pd.DataFrame
    wins: pd.DataFrame
    revenue: pd.DataFrame
    monthly: pd.DataFrame
    deals: pd.DataFrame
    draws: xr.Dataset
    expected: xr.Dataset
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self, top_deals: int = 20) -> dict[str, Any]:
        """A JSON-ready summary (tables as lists of records, dates as ISO strings)."""
        def dated(df: pd.DataFrame) -> pd.DataFrame:
            out = df.copy()
            for col in ("week_end", "first_week_end", "last_week_end"):
                if col in out:
                    out[col] = out[col].dt.strftime("%Y-%m-%d")
            return out

        return {
            "as_of": self.as_of,
            "horizon_weeks": self.horizon_weeks,
            "settings": self.settings,
            "notes": self.notes + [f"monthly: {MONTHLY_NOTE}"],
            "weekly": dated(self.weekly),
            "wins": dated(self.wins),
            "revenue": dated(self.revenue),
            "monthly": dated(self.monthly),
            "deals": self.deals.head(top_deals),
        }


def forecast(
    posterior: Posterior,
    crm: CRM,
    horizon_weeks: int = 13,
    draws: int | None = None,
    lead_inflow: float = 1.0,
    leads_per_week: float | Mapping[str, float] | None = None,
    random_seed: int | np.random.Generator | None = None,
    amount_classes: int = 5,
    threads: int = 2,
) -> Forecast:
    """Forecast stage occupancy, wins and revenue week by week from ``crm.as_of``.

    Parameters
    ----------
    posterior : Posterior
        Fitted at ``crm.as_of`` on the same segments and funnels.
    crm : CRM
        Today's deals: open deals, and lost deals (which may come back).
    horizon_weeks : int
        Number of weeks to forecast.
    draws : int, optional
        Monte Carlo draws, one posterior draw each (default: all posterior draws; more than
        the posterior has are resampled with replacement, fewer are a random subset).
    lead_inflow : float
        Multiplier of the fitted arrival rate of new deals (1 = as fitted).
    leads_per_week : float or mapping, optional
        A fixed number of new deals per week instead of the fitted Poisson inflow: a number
        (the total, split between segments in proportion to their fitted mean arrivals) or
        ``{segment: number}``.
    random_seed : int or numpy.random.Generator, optional
        Same seed, same numbers.
    amount_classes : int
        Quantile bins of today's open deals' amounts (per segment) used as cells.
    threads : int
        Threads running blocks of draws (the numbers do not depend on it).

    Returns
    -------
    Forecast

    Examples
    --------
    >>> fc = forecast(post, crm, horizon_weeks=13, draws=1000, random_seed=1)  # doctest: +SKIP
    >>> fc.wins.tail(1)[["week_end", "mean", "p10", "p90"]]                     # doctest: +SKIP
    """
    horizon_weeks = _positive_int("horizon_weeks", horizon_weeks)
    amount_classes = _positive_int("amount_classes", amount_classes)
    if not np.isfinite(lead_inflow) or lead_inflow < 0:
        raise ParameterError(f"lead_inflow must be a number >= 0, got {lead_inflow!r}")
    _check_match(posterior, crm)
    per_segment_leads = _split_leads(leads_per_week, posterior, crm.segments)
    rng = np.random.default_rng(random_seed)
    n_draws = posterior.n_draws if draws is None else _positive_int("draws", draws)

    current = crm.current_stage()
    notes: list[str] = []
    results: dict[str, tuple[EngineResult, EngineResult]] = {}
    deal_tables = []
    for seg in crm.segments:
        sp = posterior.segments[seg]
        idx = _draw_index(sp.n_draws, n_draws, rng, seg)
        tracked = current[(current["segment"] == seg) & (current["stage"] != sp.funnel.won)]
        inputs, cells, weeks_m = _segment_inputs(sp, tracked, idx, lead_inflow,
                                                 per_segment_leads.get(seg), amount_classes,
                                                 horizon_weeks, notes)
        sim = run_engine(inputs, horizon_weeks, rng, threads=threads, week_matrices=weeks_m)
        exact = exact_means(inputs, horizon_weeks, week_matrices=weeks_m)
        results[seg] = (sim, exact)
        deal_tables.append(_score_deals(cells))
        log.info("segment %s: %d draws, %d weeks, %d tracked deals", seg, n_draws,
                 horizon_weeks, len(tracked))

    week_end = _week_ends(crm.as_of, horizon_weeks)
    sim_ds = _dataset(posterior, crm.segments, {s: r[0] for s, r in results.items()}, week_end)
    exact_ds = _dataset(posterior, crm.segments, {s: r[1] for s, r in results.items()},
                        week_end)
    deals = pd.concat(deal_tables, ignore_index=True) if deal_tables else pd.DataFrame()
    if len(deals):
        # a stable descending order by one float column: argsort and take, several times
        # faster than sort_values on a million deals with text columns
        order = np.argsort(-deals["p_win_4w"].to_numpy(), kind="stable")
        deals = deals.take(order).reset_index(drop=True)
    monthly = _monthly(sim_ds, crm.segments)
    monthly.attrs["note"] = MONTHLY_NOTE
    settings = {"horizon_weeks": horizon_weeks, "draws": n_draws, "lead_inflow": lead_inflow,
                "leads_per_week": per_segment_leads or None, "amount_classes": amount_classes,
                "band_edges": {s: list(posterior.segments[s].band_edges) for s in crm.segments},
                "method": posterior.method}
    return Forecast(
        as_of=crm.as_of, horizon_weeks=horizon_weeks,
        weekly=_weekly(sim_ds, posterior, crm.segments),
        wins=_cumulative(sim_ds, "wins", crm.segments),
        revenue=_cumulative(sim_ds, "revenue", crm.segments),
        monthly=monthly, deals=deals, draws=sim_ds, expected=exact_ds, settings=settings,
        notes=notes,
    )


# ---------------------------------------------------------------- checks


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ParameterError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_match(posterior: Posterior, crm: CRM) -> None:
    if pd.Timestamp(posterior.as_of) != pd.Timestamp(crm.as_of):
        raise PosteriorMismatchError(
            f"as_of mismatch: the posterior was fitted at {posterior.as_of}, the CRM is at "
            f"{crm.as_of}; fit again at the forecast's as_of")
    missing = sorted(set(crm.segments) - set(posterior.segments))
    if missing:
        raise PosteriorMismatchError(
            f"the posterior has no segment {missing}; it has {sorted(posterior.segments)}")
    for seg in crm.segments:
        if posterior.segments[seg].funnel.states != crm.funnels[seg].states:
            raise PosteriorMismatchError(
                f"funnel mismatch in segment '{seg}': posterior stages "
                f"{list(posterior.segments[seg].funnel.states)}, CRM stages "
                f"{list(crm.funnels[seg].states)}")


def _split_leads(leads: Any, posterior: Posterior, segments: list[str]) -> dict[str, float]:
    if leads is None:
        return {}
    if isinstance(leads, Mapping):
        unknown = sorted(set(leads) - set(segments))
        if unknown:
            raise ParameterError(f"leads_per_week names unknown segment(s) {unknown}; "
                                 f"segments are {segments}")
        out = {s: float(leads.get(s, 0.0)) for s in segments}
    else:
        mean = np.array([posterior.segments[s].arrivals.mean() for s in segments])
        share = mean / mean.sum() if mean.sum() > 0 else np.full(len(segments), 1 / len(segments))
        out = {s: float(leads) * float(w) for s, w in zip(segments, share, strict=True)}
    bad = {s: v for s, v in out.items() if not np.isfinite(v) or v < 0}
    if bad:
        raise ParameterError(f"leads_per_week must be numbers >= 0, got {bad}")
    return out


def _draw_index(available: int, wanted: int, rng: np.random.Generator, seg: str) -> np.ndarray:
    if wanted == available:
        return np.arange(available)
    if wanted < available:
        return np.sort(rng.choice(available, wanted, replace=False))
    log.info("segment %s: %d forecast draws from %d posterior draws (with replacement)", seg,
             wanted, available)
    return rng.choice(available, wanted, replace=True)


# ---------------------------------------------------------------- inputs


@dataclass
class _Cells:
    """Where each of today's open deals sits (for scoring)."""

    deals: pd.DataFrame
    group: np.ndarray
    state: np.ndarray
    age: np.ndarray
    amount: np.ndarray
    p_win: np.ndarray  # (len(SCORE_WEEKS), G, S, A), averaged over draws


def _segment_inputs(sp: SegmentPosterior, tracked: pd.DataFrame, idx: np.ndarray,
                    lead_inflow: float, leads: float | None, amount_classes: int,
                    horizon_weeks: int, notes: list[str]) -> tuple[EngineInputs, _Cells, OneWeek]:
    funnel = sp.funnel
    seg = funnel.segment
    state = _codes(tracked["stage"], funnel.states)
    if (state < 0).any():
        raise PosteriorMismatchError(
            f"segment '{seg}': stage(s) {sorted(set(tracked['stage'][state < 0]))} not in the "
            f"posterior's funnel {list(funnel.states)}")
    n_ages, _ = ages_of(sp.band_edges)
    age = age_index(tracked["age_days"].to_numpy(dtype=float), n_ages)
    group = _groups_of(sp, tracked, notes)

    mean_amount = float(np.mean(np.exp(sp.amount_mu + 0.5 * sp.amount_sigma**2)))
    amount = tracked["amount"].to_numpy(dtype=float)
    missing = ~np.isfinite(amount)
    if missing.any():
        notes.append(f"segment {seg}: {int(missing.sum())} deal(s) without an amount valued at "
                     f"the amount model's mean {mean_amount:.2f}")
        amount = np.where(missing, mean_amount, amount)
    is_open = state < funnel.n_open

    rates = sp.rates[idx]
    weeks_m = one_week(rates)
    band_edges = tuple(int(e) for e in sp.band_edges)
    horizons = (*SCORE_WEEKS, horizon_weeks)
    p_win = win_within(rates, band_edges, funnel.n_open, horizons, weeks_m).mean(axis=1)

    # classes are valued by amounts weighted with each deal's chance of being won within the
    # horizon: the expected revenue is then exact at the horizon (see count_cells)
    edges = amount_class_edges(amount[is_open], amount_classes)
    init, class_amounts, class_variances = count_cells(
        (len(sp.groups), len(funnel.states), n_ages), group, state, age, amount, edges,
        cell_weight=p_win[-1])
    avg = weeks_m.average[:, :, 0]  # (D, G, S, S): arrivals start in band 0
    entry = np.asarray(sp.entry_probs)[idx]
    share = np.asarray(sp.group_share)[idx]
    landing = share[:, :, None] * np.einsum("de,dges->dgs", entry, avg[:, :, :funnel.n_open])
    mu, sigma = np.asarray(sp.amount_mu)[idx], np.asarray(sp.amount_sigma)[idx]
    inputs = EngineInputs(
        rates=rates, band_edges=band_edges, won=funnel.n_open,
        init=init, class_amounts=class_amounts, landing=landing,
        arrival_rate=None if leads is not None else np.asarray(sp.arrivals)[idx] * lead_inflow,
        leads_per_week=leads,
        new_amounts=lognormal_bin_means(mu, sigma, NEW_AMOUNT_BINS),
        class_variances=class_variances,
        new_variances=lognormal_bin_variances(mu, sigma, NEW_AMOUNT_BINS),
    )
    cells = _Cells(deals=tracked.loc[is_open].reset_index(drop=True), group=group[is_open],
                   state=state[is_open], age=age[is_open], amount=amount[is_open],
                   p_win=p_win[:len(SCORE_WEEKS)])
    return inputs, cells, weeks_m


def _codes(values: pd.Series, labels: tuple[str, ...]) -> np.ndarray:
    """Position of each value among ``labels`` (-1 if absent), int64.

    Each distinct value is looked up once: ``Series.map`` with a dict or a Python loop takes
    about half a second per million deals.

    >>> _codes(pd.Series(["b", "a", "c", "b"]), ("a", "b"))
    array([ 1,  0, -1,  1])
    """
    lookup = {label: i for i, label in enumerate(labels)}
    codes, distinct = pd.factorize(values, use_na_sentinel=False)
    return np.array([lookup.get(v, -1) for v in distinct], dtype=np.int64)[codes]


def _groups_of(sp: SegmentPosterior, tracked: pd.DataFrame, notes: list[str]) -> np.ndarray:
    if sp.group_by is None or len(sp.groups) == 1:
        return np.zeros(len(tracked), dtype=np.int64)
    names = tracked[sp.group_by].astype(str)
    group = _codes(names, sp.groups)
    names = names.to_numpy()
    unknown = group < 0
    if unknown.any():
        fallback = int(np.argmax(np.asarray(sp.group_share).mean(axis=0)))
        msg = (f"segment {sp.segment}: {int(unknown.sum())} deal(s) of {sp.group_by}(s) "
               f"{sorted(set(names[unknown]))} not in the posterior, forecast with "
               f"{sp.group_by} '{sp.groups[fallback]}' (the largest)")
        warnings.warn(msg, DataWarning, stacklevel=4)
        notes.append(msg)
        group[unknown] = fallback
    return group


# ---------------------------------------------------------------- scoring


def _score_deals(cells: _Cells) -> pd.DataFrame:
    p = cells.p_win
    d = cells.deals
    # the text columns keep their dtypes: rebuilding them from numpy object arrays re-infers
    # the string dtype, over a second per million deals
    out = d[["deal_id", "segment", "owner", "team", "stage"]].reset_index(drop=True)
    out["amount"] = d["amount"].to_numpy(dtype=float)
    out["age_days"] = d["age_days"].to_numpy(dtype=float)
    out["p_win_4w"] = p[0][cells.group, cells.state, cells.age]
    out["p_win_13w"] = p[1][cells.group, cells.state, cells.age]
    out["expected_value"] = cells.amount * out["p_win_13w"].to_numpy()
    return out


# ---------------------------------------------------------------- tables


def _week_ends(as_of: pd.Timestamp, weeks: int) -> pd.DatetimeIndex:
    ends = [(pd.Timestamp(as_of) + pd.Timedelta(days=7 * k)).normalize()
            for k in range(1, weeks + 1)]
    return pd.DatetimeIndex(ends)


def _stage_union(posterior: Posterior, segments: list[str]) -> list[str]:
    stages: list[str] = []
    for seg in segments:
        for s in posterior.segments[seg].funnel.states:
            if s not in stages:
                stages.append(s)
    return stages


def _dataset(posterior: Posterior, segments: list[str], res: dict[str, EngineResult],
             week_end: pd.DatetimeIndex) -> xr.Dataset:
    stages = _stage_union(posterior, segments)
    n_draws = next(iter(res.values())).wins.shape[0] if res else 0
    weeks = len(week_end)
    occ = np.full((len(segments), n_draws, weeks, 2, len(stages)), np.nan)
    wins = np.zeros((len(segments), n_draws, weeks, 2))
    rev = np.zeros((len(segments), n_draws, weeks, 2))
    for i, seg in enumerate(segments):
        cols = [stages.index(s) for s in posterior.segments[seg].funnel.states]
        occ[i][..., cols] = res[seg].occupancy
        wins[i] = res[seg].wins
        rev[i] = res[seg].revenue
    coords = {"segment": segments, "draw": np.arange(n_draws), "week": np.arange(1, weeks + 1),
              "origin": list(ORIGINS), "stage": stages, "week_end": ("week", week_end)}
    return xr.Dataset(
        {"occupancy": (("segment", "draw", "week", "origin", "stage"), occ),
         "wins": (("segment", "draw", "week", "origin"), wins),
         "revenue": (("segment", "draw", "week", "origin"), rev)},
        coords=coords,
    )


def _quantile_columns(values: np.ndarray, axis: int = 0) -> dict[str, np.ndarray]:
    out = {"mean": values.mean(axis=axis)}
    for name, q in QUANTILES.items():
        out[name] = np.quantile(values, q, axis=axis)
    return out


def _weekly(ds: xr.Dataset, posterior: Posterior, segments: list[str]) -> pd.DataFrame:
    rows = []
    week_end = ds["week_end"].to_numpy()
    for seg in segments:
        occ = ds["occupancy"].sel(segment=seg)
        for stage in posterior.segments[seg].funnel.states:
            v = occ.sel(stage=stage).to_numpy()  # (draw, week, origin)
            cols = _quantile_columns(v.sum(axis=-1))
            rows.append(pd.DataFrame({
                "week": ds["week"].to_numpy(), "week_end": week_end, "segment": seg,
                "stage": stage, **cols,
                "from_pipeline_mean": v[..., PIPELINE].mean(axis=0),
                "from_new_mean": v[..., NEW].mean(axis=0),
            }))
    return pd.concat(rows, ignore_index=True)


def _cumulative(ds: xr.Dataset, var: str, segments: list[str]) -> pd.DataFrame:
    rows = []
    for seg in segments:
        v = np.cumsum(ds[var].sel(segment=seg).to_numpy(), axis=1)  # (draw, week, origin)
        rows.append(pd.DataFrame({
            "week": ds["week"].to_numpy(), "week_end": ds["week_end"].to_numpy(),
            "segment": seg, **_quantile_columns(v.sum(axis=-1)),
            "from_pipeline_mean": v[..., PIPELINE].mean(axis=0),
            "from_new_mean": v[..., NEW].mean(axis=0),
        }))
    return pd.concat(rows, ignore_index=True)


def _monthly(ds: xr.Dataset, segments: list[str]) -> pd.DataFrame:
    week_end = pd.DatetimeIndex(ds["week_end"].to_numpy())
    month = week_end.to_period("M")
    rows = []
    for seg in segments:
        wins = ds["wins"].sel(segment=seg).to_numpy()
        rev = ds["revenue"].sel(segment=seg).to_numpy()
        for m in month.unique():
            sel = np.asarray(month == m)
            w = wins[:, sel].sum(axis=1)  # (draw, origin)
            r = rev[:, sel].sum(axis=1)
            row = {"month": str(m), "segment": seg, "n_weeks": int(sel.sum()),
                   "first_week_end": week_end[sel].min(), "last_week_end": week_end[sel].max()}
            row.update({f"wins_{k}": v for k, v in _quantile_columns(w.sum(axis=-1)).items()})
            row.update({f"revenue_{k}": v for k, v in _quantile_columns(r.sum(axis=-1)).items()})
            row.update({"from_pipeline_mean": r[:, PIPELINE].mean(),
                        "from_new_mean": r[:, NEW].mean(),
                        "wins_from_pipeline_mean": w[:, PIPELINE].mean(),
                        "wins_from_new_mean": w[:, NEW].mean()})
            rows.append(row)
    return pd.DataFrame(rows)
