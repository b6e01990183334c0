"""Model comparison on the CRM itself: are age bands and recency worth it?

A held-out check. The CRM is cut ``holdout_weeks`` before its ``as_of``; every candidate
setting (age-band edges, recency half-life) is fitted on the data up to the cut with the
conjugate model, and scored on what happened after it: the moves deals made in the held-out
weeks and the time they spent at risk, per age band. The score is the log posterior
predictive density of the held-out moves, as a point process: with piecewise-constant rates
the log density of the observed move times and kinds is ``sum n[b, i, j] log q[b, i, j] -
q[b, i, j] T[b, i]`` (the Poisson likelihood without its ``log n!`` and ``n log T`` terms,
which depend on how time is cut into bands: without them, settings with different bands
score the *same* data and are comparable). It is averaged over posterior draws
(``logsumexp`` minus ``log(draws)``). The conjugate posterior factorises over cells (band,
move), so the predictive of every cell is averaged separately and the logs are added: exact,
and far less noisy than averaging whole-CRM likelihoods.

The held-out statistics are the statistics at ``as_of`` minus those at the cut (counts and
time at risk add up over time; a deal's age in its stage does not depend on when we look).
A few cells can come out negative when a deal treated as gone cold at the cut moved again
later; they are set to zero and counted (``clipped`` in the table, logged).

Candidates (:func:`candidate_settings`): age bands none, ``(0, 4, 13)`` and edges from the
data (the median and the 90th percentile of observed stays, in whole weeks); half-lives none, 13, 26
and 52 weeks. :func:`choose_settings` keeps the *simplest* candidate whose score is within
``MIN_GAIN_NATS`` of the best one (fewer bands first, then no recency, then the longest
half-life), so a CRM that gives no evidence for bands or recency gets neither; the table is
logged at INFO.

Dependency rule: numpy, scipy, pandas; funnel_lab.crm, funnel_lab.errors and the rest of
funnel_lab.model. Never the forecast, charts or reports.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from funnel_lab.crm.eventlog import CRM
from funnel_lab.errors import FunnelLabError, ParameterError
from funnel_lab.model.stats import SECONDS_PER_WEEK, check_band_edges, sufficient_statistics

__all__ = [
    "DEFAULT_HALF_LIVES",
    "DEFAULT_HOLDOUT_WEEKS",
    "FIXED_BAND_EDGES",
    "MIN_GAIN_NATS",
    "candidate_settings",
    "choose_settings",
    "compare_models",
    "data_band_edges",
    "heldout_statistics",
    "model_comparison",
    "report_comparison",
    "score_heldout",
    "split_crm",
]

log = logging.getLogger(__name__)

#: Weeks held out at the end of the history: a quarter, the horizon forecasts care about.
DEFAULT_HOLDOUT_WEEKS = 13
#: Candidate recency half-lives in weeks (None: every week of history weighs the same).
DEFAULT_HALF_LIVES: tuple[float | None, ...] = (None, 13.0, 26.0, 52.0)
#: A fixed set of age bands: the first month, the rest of the quarter, older.
FIXED_BAND_EDGES = (0, 4, 13)
#: Quantiles of observed stays that give the data-driven band edges: the median stay and the
#: 90th percentile split deals into fresh, typical and stale (on the demo CRM and simulated
#: stale CRMs these score better than terciles, which cut too early).
BAND_QUANTILES = (0.5, 0.9)
#: A richer setting must beat the simplest one within this many nats of held-out log
#: likelihood (2 nats: a likelihood ratio of e^2 = 7.4, "positive" evidence on Kass and
#: Raftery's scale), else the simpler one is kept.
MIN_GAIN_NATS = 2.0
#: Posterior draws used to score each candidate.
SCORE_DRAWS = 1000


# ---------------------------------------------------------------- candidates


def data_band_edges(crm: CRM, quantiles: Sequence[float] = BAND_QUANTILES) -> tuple[int, ...]:
    """Age-band edges from the data: quantiles of observed stays in open stages, whole weeks.

    Stays that ended with a move (not the censored ones) are pooled over stages and
    segments; each quantile is rounded to the nearest whole week; edges below one week or
    repeated are dropped, so the result may be just ``(0,)``.

    Examples
    --------
    >>> data_band_edges(crm)  # doctest: +SKIP
    (0, 1, 4)
    """
    ev = crm.events
    seg_of = ev["deal_id"].map(crm.deals.set_index("deal_id")["segment"])
    is_open = np.array([crm.funnels[s].is_open(st) for s, st in zip(seg_of, ev["stage"],
                                                                    strict=True)], dtype=bool)
    same_deal = (ev["deal_id"].shift(-1) == ev["deal_id"]).to_numpy()
    gaps = (ev["entered_at"].shift(-1) - ev["entered_at"]) / pd.Timedelta(weeks=1)
    weeks = gaps.to_numpy(dtype=float)[same_deal & is_open]
    if weeks.size == 0:
        return (0,)
    edges = sorted({int(round(float(q))) for q in np.quantile(weeks, list(quantiles))})
    return (0, *[e for e in edges if e >= 1])


def candidate_settings(
    crm: CRM,
    band_edges: Iterable[Sequence[int] | None] | None = None,
    half_lives: Iterable[float | None] | None = None,
) -> list[dict[str, Any]]:
    """The grid of settings to compare: every band setting with every half-life.

    Parameters
    ----------
    crm : CRM
    band_edges : iterable of edge tuples, optional
        Default: ``(0,)``, :data:`FIXED_BAND_EDGES` and :func:`data_band_edges` (duplicates
        dropped).
    half_lives : iterable of float or None, optional
        Default: :data:`DEFAULT_HALF_LIVES`.

    Returns
    -------
    list of dict
        ``{"candidate", "band_edges", "half_life_weeks"}``, the simplest first.

    Examples
    --------
    >>> [c["candidate"] for c in candidate_settings(crm, [(0,)], [None, 26])]  # doctest: +SKIP
    ['bands=0 half_life=none', 'bands=0 half_life=26']
    """
    if band_edges is None:
        band_edges = [(0,), FIXED_BAND_EDGES, data_band_edges(crm)]
    if half_lives is None:
        half_lives = DEFAULT_HALF_LIVES
    edge_list: list[tuple[int, ...]] = []
    for edges in band_edges:
        e = check_band_edges(edges)
        if e not in edge_list:
            edge_list.append(e)
    life_list: list[float | None] = []
    for h in half_lives:
        if h is not None and not (isinstance(h, int | float) and math.isfinite(h) and h > 0):
            raise ParameterError(f"half-lives must be None or a number of weeks > 0, got {h!r}")
        h = None if h is None else float(h)
        if h not in life_list:
            life_list.append(h)
    out = [
        {"candidate": _name(e, h), "band_edges": e, "half_life_weeks": h}
        for e in edge_list for h in life_list
    ]
    out.sort(key=_complexity)
    return out


def _name(edges: tuple[int, ...], half_life: float | None) -> str:
    life = "none" if half_life is None else f"{half_life:g}"
    return f"bands={','.join(str(e) for e in edges)} half_life={life}"


def _complexity(c: dict[str, Any]) -> tuple[int, int, float]:
    """Fewer bands first, then no recency, then the longest half-life (the mildest)."""
    h = c["half_life_weeks"]
    return (len(c["band_edges"]), 0 if h is None else 1, 0.0 if h is None else -h)


# ---------------------------------------------------------------- held-out data


def split_crm(crm: CRM, holdout_weeks: float = DEFAULT_HOLDOUT_WEEKS) -> CRM:
    """The CRM as it was ``holdout_weeks`` before ``crm.as_of`` (same validation rules).

    Rows the reader added (first stages, gone-cold Lost) are dropped and derived again at
    the earlier ``as_of``; the funnels (with their ``cold_after_days``) are kept.

    Examples
    --------
    >>> train = split_crm(crm, 13)  # doctest: +SKIP
    >>> (crm.as_of - train.as_of).days  # doctest: +SKIP
    91
    """
    from funnel_lab.crm.read import crm_from_frames

    if not (isinstance(holdout_weeks, int | float) and holdout_weeks > 0):
        raise ParameterError(f"holdout_weeks must be a number of weeks > 0, got "
                             f"{holdout_weeks!r}")
    cut = crm.as_of - pd.Timedelta(weeks=holdout_weeks)
    first = crm.deals["created_at"].min()
    if not cut > first:
        raise ParameterError(
            f"holdout_weeks = {holdout_weeks} leaves no history to fit: the first deal was "
            f"created at {first}, the cut would be {cut}; hold out fewer weeks"
        )
    events = crm.events
    if "imputed" in events.columns:
        events = events.loc[~events["imputed"].astype(bool)]
    return crm_from_frames(crm.deals, events[["deal_id", "stage", "entered_at"]],
                           crm.funnels, as_of=cut, source=crm.source)


def heldout_statistics(
    crm: CRM, train: CRM, band_edges: Sequence[int] = (0,)
) -> dict[str, dict[str, Any]]:
    """Moves and time at risk between ``train.as_of`` and ``crm.as_of``, per segment and band.

    Returns
    -------
    dict
        ``{segment: {"counts": (band, S, S) float, "exposure_weeks": (band, S) float,
        "clipped": int}}``; ``clipped`` counts cells that came out negative (set to zero).

    Examples
    --------
    >>> held = heldout_statistics(crm, split_crm(crm, 13), (0, 4))  # doctest: +SKIP
    >>> held["SMB"]["counts"].shape  # doctest: +SKIP
    (2, 5, 5)
    """
    full = sufficient_statistics(crm, band_edges=band_edges)
    early = sufficient_statistics(train, band_edges=band_edges)
    out = {}
    for seg, st in full.items():
        counts = np.asarray(st.n_transitions, dtype=float)[0]
        expo = np.asarray(st.exposure_seconds, dtype=float)[0]
        if seg in early:
            counts = counts - np.asarray(early[seg].n_transitions, dtype=float)[0]
            expo = expo - np.asarray(early[seg].exposure_seconds, dtype=float)[0]
        clipped = int((counts < 0).sum() + (expo < 0).sum())
        if clipped:
            log.info("segment %s: %s held-out cells came out negative (deals treated as gone "
                     "cold at the cut moved later) and are set to zero", seg, clipped)
        out[seg] = {"counts": np.clip(counts, 0, None),
                    "exposure_weeks": np.clip(expo, 0, None) / SECONDS_PER_WEEK,
                    "clipped": clipped}
    return out


# ---------------------------------------------------------------- scoring


def score_heldout(rates: np.ndarray, counts: np.ndarray, exposure_weeks: np.ndarray
                  ) -> dict[str, float]:
    """Log posterior predictive density of held-out moves, cell by cell (module docstring).

    Parameters
    ----------
    rates : array (draw, band, S, S)
        Posterior draws of rates per week.
    counts : array (band, S, S)
        Held-out moves.
    exposure_weeks : array (band, S)
        Held-out time at risk.

    Returns
    -------
    dict
        ``loglik`` (sum over scored cells of the log of the mean over draws of
        ``exp(n log q - q T)``),
        ``events`` (held-out moves scored) and ``unscored_events`` (moves the fit gives rate
        zero, which no candidate can score; reported, left out of ``loglik``).

    Examples
    --------
    >>> r = np.full((2, 1, 2, 2), 0.5); r[:, :, 1, :] = 0; r[:, :, 0, 0] = 0
    >>> n = np.array([[[0, 2], [0, 0]]]); t = np.array([[4.0, 0.0]])
    >>> round(score_heldout(r, n, t)["loglik"], 4)  # 2 log(0.5) - 0.5 * 4
    -3.3863
    """
    rates = np.asarray(rates, dtype=float)
    counts = np.asarray(counts, dtype=float)
    mu = rates * np.asarray(exposure_weeks, dtype=float)[None, :, :, None]
    has_rate = (rates > 0).any(axis=0)
    scored = has_rate & ((counts > 0) | (mu > 0).any(axis=0))
    unscored = float(counts[~has_rate].sum())

    n = counts[scored]
    m = mu[:, scored]
    r = np.broadcast_to(rates, mu.shape)[:, scored]
    with np.errstate(divide="ignore"):
        ll = n * np.log(r) - m
    ll = np.where(n == 0, -m, ll)
    per_cell = logsumexp(ll, axis=0) - math.log(rates.shape[0])
    return {"loglik": float(per_cell.sum()), "events": float(n.sum()),
            "unscored_events": unscored}


def compare_models(
    crm: CRM,
    candidates: Sequence[dict[str, Any]] | None = None,
    holdout_weeks: float = DEFAULT_HOLDOUT_WEEKS,
    draws: int = SCORE_DRAWS,
    random_seed: int | np.random.Generator | None = None,
    prior: Any = None,
) -> pd.DataFrame:
    """Held-out log likelihood of each candidate setting (see the module docstring).

    Parameters
    ----------
    crm : CRM
    candidates : list of dict, optional
        ``{"band_edges", "half_life_weeks"}`` (and optionally ``"candidate"``, a name);
        default :func:`candidate_settings`.
    holdout_weeks : float
        Weeks held out at the end of the history.
    draws : int
        Posterior draws per candidate.
    random_seed : int or numpy Generator, optional
    prior : optional
        The conjugate model's prior (as in :func:`funnel_lab.model.fit`).

    Returns
    -------
    DataFrame
        One row per candidate, the simplest first: ``candidate``, ``band_edges``,
        ``half_life_weeks``, ``heldout_loglik``, ``events``, ``per_event``
        (``heldout_loglik / events``), ``delta`` (minus the first, simplest candidate: the
        baseline), ``unscored_events``, ``clipped``.

    Examples
    --------
    >>> table = compare_models(crm, random_seed=1)  # doctest: +SKIP
    >>> table.columns[:4].tolist()  # doctest: +SKIP
    ['candidate', 'band_edges', 'half_life_weeks', 'heldout_loglik']
    """
    from funnel_lab.model.fitting import fit

    rng = np.random.default_rng(random_seed)
    if candidates is None:
        candidates = candidate_settings(crm)
    if not candidates:
        raise ParameterError("candidates is empty: nothing to compare")
    train = split_crm(crm, holdout_weeks)
    log.info("model comparison: fitting on data up to %s, scoring %s weeks up to %s",
             train.as_of, holdout_weeks, crm.as_of)

    held_cache: dict[tuple[int, ...], dict[str, dict[str, Any]]] = {}
    rows = []
    for cand in candidates:
        edges = check_band_edges(cand["band_edges"])
        half_life = cand.get("half_life_weeks")
        if edges not in held_cache:
            held_cache[edges] = heldout_statistics(crm, train, edges)
        held = held_cache[edges]
        post = fit(train, method="conjugate", draws=draws, random_seed=rng, band_edges=edges,
                   half_life_weeks=half_life, prior=prior)
        total = {"loglik": 0.0, "events": 0.0, "unscored_events": 0.0}
        for seg, sp in post.segments.items():
            if seg not in held:
                continue
            s = score_heldout(sp.rates[:, 0], held[seg]["counts"],
                              held[seg]["exposure_weeks"])
            for k in total:
                total[k] += s[k]
        rows.append({
            "candidate": cand.get("candidate", _name(edges, half_life)),
            "band_edges": ",".join(str(e) for e in edges),
            "half_life_weeks": half_life,
            "heldout_loglik": total["loglik"],
            "events": int(round(total["events"])),
            "unscored_events": int(round(total["unscored_events"])),
            "clipped": int(sum(h["clipped"] for h in held.values())),
        })
    table = pd.DataFrame(rows)
    table["per_event"] = table["heldout_loglik"] / table["events"].where(table["events"] > 0)
    table["delta"] = table["heldout_loglik"] - table["heldout_loglik"].iloc[0]
    cols = ["candidate", "band_edges", "half_life_weeks", "heldout_loglik", "events",
            "per_event", "delta", "unscored_events", "clipped"]
    return table[cols]


def choose_settings(
    crm: CRM,
    candidates: Sequence[dict[str, Any]] | None = None,
    holdout_weeks: float = DEFAULT_HOLDOUT_WEEKS,
    draws: int = SCORE_DRAWS,
    random_seed: int | np.random.Generator | None = None,
    prior: Any = None,
    min_gain: float = MIN_GAIN_NATS,
) -> dict[str, Any]:
    """Pick age bands and a half-life by the held-out check (the rule in the module docstring).

    Returns
    -------
    dict
        ``band_edges`` (tuple), ``half_life_weeks`` (float or None), ``candidate`` (its name),
        ``holdout_weeks`` and ``table`` (:func:`compare_models`, with a ``chosen`` column).

    Examples
    --------
    >>> choice = choose_settings(crm, random_seed=1)  # doctest: +SKIP
    >>> post = fit(crm, band_edges=choice["band_edges"],
    ...            half_life_weeks=choice["half_life_weeks"])  # doctest: +SKIP
    """
    if candidates is None:
        candidates = candidate_settings(crm)
    candidates = sorted(candidates, key=lambda c: _complexity(
        {"band_edges": check_band_edges(c["band_edges"]),
         "half_life_weeks": c.get("half_life_weeks")}))
    table = compare_models(crm, candidates, holdout_weeks, draws, random_seed, prior)
    best = table["heldout_loglik"].max()
    # Rows are ordered simplest first: the first one close enough to the best wins.
    pick = int(np.flatnonzero(table["heldout_loglik"].to_numpy() >= best - min_gain)[0])
    table["chosen"] = np.arange(len(table)) == pick
    chosen = candidates[pick]
    edges = check_band_edges(chosen["band_edges"])
    half_life = chosen.get("half_life_weeks")
    log.info("held-out check over the last %s weeks chose %s (held-out log likelihood %.1f, "
             "best %.1f, rule: simplest within %s nats of the best):\n%s", holdout_weeks,
             table.loc[pick, "candidate"], table.loc[pick, "heldout_loglik"], best, min_gain,
             table.to_string(index=False))
    return {"band_edges": edges, "half_life_weeks": half_life,
            "candidate": table.loc[pick, "candidate"], "holdout_weeks": holdout_weeks,
            "table": table}


def model_comparison(
    crm: CRM,
    band_edges: Sequence[int] = (0,),
    half_life_weeks: float | None = None,
    holdout_weeks: float = DEFAULT_HOLDOUT_WEEKS,
    draws: int = SCORE_DRAWS,
    random_seed: int | np.random.Generator | None = None,
    prior: Any = None,
    table: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """The model comparison a fit reports: the default grid plus the setting actually used.

    Parameters
    ----------
    crm : CRM
    band_edges, half_life_weeks
        The setting the fit used (marked ``used`` in the table).
    table : DataFrame, optional
        A table already computed by :func:`choose_settings` (``auto`` settings): reused.

    Returns
    -------
    dict
        ``holdout_weeks``, ``fitted_until`` (the cut), ``used`` and ``best`` (candidate
        names), ``worth_it`` (True when the used setting beats the baseline by more than
        :data:`MIN_GAIN_NATS`) and ``table`` (:func:`compare_models` with a ``used`` column).

    Examples
    --------
    >>> doc = model_comparison(crm, (0, 4, 13), None, random_seed=1)  # doctest: +SKIP
    >>> doc["used"]  # doctest: +SKIP
    'bands=0,4,13 half_life=none'
    """
    edges = check_band_edges(band_edges)
    half_life = None if half_life_weeks is None else float(half_life_weeks)
    used = _name(edges, half_life)
    if table is None or used not in set(table["candidate"]):
        candidates = candidate_settings(crm)
        if used not in {c["candidate"] for c in candidates}:
            candidates.append({"candidate": used, "band_edges": edges,
                               "half_life_weeks": half_life})
            candidates.sort(key=_complexity)
        table = compare_models(crm, candidates, holdout_weeks, draws, random_seed, prior)
    table = table.drop(columns=[c for c in ("chosen", "used") if c in table.columns])
    table["used"] = table["candidate"] == used
    best = str(table.loc[table["heldout_loglik"].idxmax(), "candidate"])
    gain = float(table.loc[table["used"], "delta"].iloc[0])
    return {
        "holdout_weeks": holdout_weeks,
        "fitted_until": crm.as_of - pd.Timedelta(weeks=holdout_weeks),
        "used": used,
        "best": best,
        "worth_it": gain > MIN_GAIN_NATS,
        "table": table,
    }


def report_comparison(
    crm: CRM,
    band_edges: Sequence[int] = (0,),
    half_life_weeks: float | None = None,
    random_seed: int | np.random.Generator | None = None,
    holdout_weeks: float = DEFAULT_HOLDOUT_WEEKS,
    table: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """:func:`model_comparison` for ``fit --json`` (``table``: scores already computed by the
    ``auto`` choice, reused); a CRM too short to hold weeks out (or whose
    early part cannot be fitted) gives ``{"skipped": reason}`` instead of an error: the fit
    itself is still fine.

    Examples
    --------
    >>> report_comparison(crm, (0, 4, 13), None, random_seed=0)["used"]  # doctest: +SKIP
    'bands=0,4,13 half_life=none'
    """
    try:
        return model_comparison(crm, band_edges, half_life_weeks, holdout_weeks=holdout_weeks,
                                random_seed=random_seed, table=table)
    except FunnelLabError as exc:
        log.info("model comparison skipped: %s", exc)
        return {"skipped": str(exc)}
