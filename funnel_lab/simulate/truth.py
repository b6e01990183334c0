"""The true quantities of a simulated CRM (truth.json), by linear algebra.

Definitions are those of CONTRACTS.md; every quantity is *at as_of* (drift multiplier 1) and
for the typical salesperson (effect 1), then again per owner with the owner's effect.

Without age bands the rates go straight into :mod:`funnel_lab.markov`.

With age bands (stale deals) a stay in a state starts at age 0, and in band ``b`` (ages
``[e_b, e_(b+1))``, length ``L_b``, the last band unbounded) the deal leaves with the
exponential race of the band's rates ``r_b[i, j]``, total ``lam_b``. Per band:

* reach band ``b``: ``S_0 = 1``, ``S_(b+1) = S_b * exp(-lam_b * L_b)``;
* leave during band ``b`` to ``j``: ``S_b * (1 - exp(-lam_b * L_b)) * r_b[i, j] / lam_b``;
* expected time spent in band ``b``: ``S_b * (1 - exp(-lam_b * L_b)) / lam_b``
  (``S_b * L_b`` when ``lam_b = 0``).

Summed over bands these give the exit distribution of one stay, ``P[i, j]``, and its mean
length ``tau_i``. Every entry into a state starts at age 0, so the sequence of states visited
is a Markov chain with transition matrix ``P`` (the embedded jump chain). Conversion and win
probability are absorption probabilities of that chain (they depend on ``P`` only); mean days
in stage is ``7 * tau_i``; expected days to close is the sum over stages of expected visits
times ``tau``. All of these are computed with :mod:`funnel_lab.markov` on the *equivalent
rates* ``r*_ij = P[i, j] / tau_i``: a Markov chain with these rates has the same jump chain
and the same mean stays, so the four quantities are exact. (The time in a stage is not
exponential with bands, so ``r*`` must not be used for time-dependent quantities such as
``expm(Q t)``; the forecast works on (stage, band) cells with the band rates instead.)

Dependency rule: numpy, pandas and funnel_lab.markov only (plus the settings).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from funnel_lab import markov
from funnel_lab.crm.funnel import Funnel
from funnel_lab.errors import ParameterError
from funnel_lab.simulate.settings import SimulationSettings

__all__ = [
    "build_truth",
    "equivalent_rates",
    "stage_quantities",
    "stay_distribution",
    "truth_table",
]

DAYS_PER_WEEK = 7.0


def stay_distribution(band_rates: np.ndarray, band_edges: Any) -> tuple[np.ndarray, np.ndarray]:
    """Exit probabilities and mean length (weeks) of one stay in each state.

    Parameters
    ----------
    band_rates : array (B, S, S)
        Rates per week by age band.
    band_edges : sequence of B numbers
        Lower band edges in weeks, starting at 0.

    Returns
    -------
    exit_prob : array (S, S)
        ``exit_prob[i, j]``: probability that a stay in ``i`` ends by a move to ``j`` (rows
        of states with no way out are zero).
    mean_weeks : array (S,)
        Expected length of a stay (``inf`` when a deal can stay for ever).

    Examples
    --------
    Rate 1 in the first week, then 0.5: P(leave in week 1) = 1 - exp(-1).

    >>> r = np.zeros((2, 2, 2)); r[0, 0, 1], r[1, 0, 1] = 1.0, 0.5
    >>> p, tau = stay_distribution(r, [0, 1])
    >>> float(p[0, 1]), round(float(tau[0]), 6)  # tau = 1 - e^-1 + e^-1 * 2
    (1.0, 1.367879)
    """
    r = np.array(band_rates, dtype=float, copy=True)
    n_band, n_state, _ = r.shape
    idx = np.arange(n_state)
    r[:, idx, idx] = 0.0
    edges = np.asarray(band_edges, dtype=float)
    lengths = np.append(np.diff(edges), np.inf)

    exit_prob = np.zeros((n_state, n_state))
    mean = np.zeros(n_state)
    reach = np.ones(n_state)
    for b in range(n_band):
        lam = r[b].sum(axis=1)
        length = lengths[b]
        with np.errstate(invalid="ignore", over="ignore"):
            stay_through = np.exp(-lam * length) if np.isfinite(length) else (lam == 0) * 1.0
        leave = 1.0 - stay_through
        safe = np.where(lam > 0, lam, 1.0)
        exit_prob += (reach * leave / safe)[:, None] * r[b]
        in_band = np.where(lam > 0, leave / safe, length)
        with np.errstate(invalid="ignore"):
            mean += np.where(reach > 0, reach * in_band, 0.0)
        reach = reach * stay_through
    return exit_prob, mean


def equivalent_rates(band_rates: np.ndarray, band_edges: Any) -> np.ndarray:
    """Rates ``r*_ij = P[i, j] / tau_i`` with the same jump chain and mean stays (S, S).

    Without bands (B = 1) these are the rates themselves.

    >>> r = np.zeros((1, 2, 2)); r[0, 0, 1] = 0.4
    >>> float(equivalent_rates(r, [0])[0, 1])
    0.4
    """
    exit_prob, mean = stay_distribution(band_rates, band_edges)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(np.isfinite(mean)[:, None] & (mean > 0)[:, None],
                       exit_prob / mean[:, None], 0.0)
    return out


def stage_quantities(band_rates: np.ndarray, band_edges: Any, funnel: Funnel
                     ) -> dict[str, dict[str, float]]:
    """Per open stage: conversion, win_probability, mean_days_in_stage, expected_days_to_close.

    >>> f = Funnel("S", ("Lead",))
    >>> r = np.zeros((1, 3, 3)); r[0, 0, 1], r[0, 0, 2] = 1.0, 3.0
    >>> stage_quantities(r, [0], f)["Lead"]["win_probability"]
    0.25
    """
    _, mean = stay_distribution(band_rates, band_edges)
    stuck = [s for s, m in zip(funnel.stages, mean[: funnel.n_open], strict=True)
             if not np.isfinite(m)]
    if stuck:
        raise ParameterError(f"segment '{funnel.segment}': deals can stay in {stuck} for ever "
                             "(every rate of the last age band is 0)")
    rates = equivalent_rates(band_rates, band_edges)
    n = funnel.n_open
    conv = markov.conversion(rates, n)
    win = markov.win_probability(rates, n)
    days = markov.mean_days_in_stage(rates, n)
    close = markov.expected_days_to_close(rates, n)
    return {stage: {"conversion": float(conv[k]), "win_probability": float(win[k]),
                    "mean_days_in_stage": float(days[k]),
                    "expected_days_to_close": float(close[k])}
            for k, stage in enumerate(funnel.stages)}


def owner_band_rates(settings: SimulationSettings, segment: str, effect: float) -> np.ndarray:
    """(B, S, S) band rates of an owner: progress moves multiplied by ``effect``."""
    rates = settings.band_rates(segment)
    return np.where(settings.progress_mask(segment)[None], rates * effect, rates)


def _rate_dict(rates: np.ndarray, funnel: Funnel, moves: np.ndarray) -> dict[str, float]:
    states = funnel.states
    return {f"{states[i]}->{states[j]}": float(rates[i, j])
            for i, j in zip(*np.nonzero(moves), strict=True)}


def build_truth(settings: SimulationSettings, seed: int | None,
                owner_effects: dict[str, float], extra: dict[str, Any] | None = None
                ) -> dict[str, Any]:
    """The truth.json document (layout in :mod:`funnel_lab.simulate`)."""
    edges = settings.band_edges()
    owners = settings.owners()
    doc: dict[str, Any] = {"as_of": settings.as_of, "seed": seed}
    doc.update(extra or {})
    doc["settings"] = settings.to_dict()
    doc["record_lost"] = settings.record_lost
    doc["owner_sd"] = settings.owner_sd
    if settings.stale:
        doc["band_edges_weeks"] = list(edges)
        doc["stale"] = {"progress": list(settings.stale_progress),
                        "setback": list(settings.stale_setback),
                        "reengage": list(settings.stale_reengage)}
    if settings.drift:
        doc["drift"] = {"shape": settings.drift_shape,
                        "arrivals_start": settings.drift_arrivals_start,
                        "progress_start": settings.drift_progress_start,
                        "step_fraction": settings.drift_step_fraction,
                        "multiplier_at_as_of": 1.0,
                        "applies_to": "arrivals; forward, skip and won rates"}
    doc["teams"] = {name: {"owners": list(t.owners),
                           "segments": list(t.segments) or list(settings.segments)}
                    for name, t in settings.teams.items()}
    doc["owners"] = {o: {"team": owners[o], "effect": owner_effects[o],
                         "log_effect": float(np.log(owner_effects[o]))} for o in owners}
    doc["segments"] = {name: _segment_truth(settings, name, owner_effects)
                       for name in settings.segments}
    return doc


def _segment_truth(settings: SimulationSettings, name: str,
                   owner_effects: dict[str, float]) -> dict[str, Any]:
    spec = settings.segments[name]
    funnel = spec.funnel(name)
    edges = settings.band_edges()
    rates = settings.band_rates(name)
    kinds = settings.kind_matrix(name)
    out: dict[str, Any] = {
        "stages": list(funnel.stages), "won": funnel.won, "lost": funnel.lost,
        "arrivals_per_week": float(spec.arrivals_per_week),
    }
    if spec.sources:
        total = sum(spec.sources.values())
        out["arrivals_per_week_by_source"] = {
            src: float(spec.arrivals_per_week * share / total)
            for src, share in spec.sources.items()}
    out["entry_probabilities"] = spec.entry_probabilities()
    out["amount_lognormal"] = {"mu": float(np.log(spec.amount_median)),
                               "sigma": float(spec.amount_sigma),
                               "median": float(spec.amount_median)}
    out["transition_kinds"] = {f"{funnel.states[i]}->{funnel.states[j]}": str(kinds[i, j])
                               for i, j in zip(*np.nonzero(rates.sum(axis=0)), strict=True)}
    out.update(_rates_and_stages(rates, edges, funnel, settings.stale))
    out["owners"] = {}
    for owner in settings.owners_of(name):
        effect = owner_effects[owner]
        entry = {"team": settings.owners()[owner], "effect": effect}
        entry.update(_rates_and_stages(owner_band_rates(settings, name, effect), edges, funnel,
                                       settings.stale))
        out["owners"][owner] = entry
    return out


def _rates_and_stages(rates: np.ndarray, edges: tuple[int, ...], funnel: Funnel,
                      stale: bool) -> dict[str, Any]:
    moves = rates.sum(axis=0) > 0  # every move possible in some band, zeros included
    out: dict[str, Any] = {"rates_per_week": _rate_dict(rates[0], funnel, moves)}
    if stale:
        out["rates_per_week_by_band"] = [_rate_dict(r, funnel, moves) for r in rates]
    out["by_stage"] = stage_quantities(rates, edges, funnel)
    return out


def truth_table(truth: dict[str, Any] | str | Path) -> pd.DataFrame:
    """The per-stage truth as a tidy table, for the typical owner and per owner.

    Columns: ``segment``, ``owner`` (NaN for the typical salesperson), ``team``, ``effect``,
    ``stage``, ``conversion``, ``win_probability``, ``mean_days_in_stage``,
    ``expected_days_to_close``. ``truth`` is the document or a path to truth.json (or to the
    folder holding it).

    >>> from funnel_lab.simulate import simulate_crm, small_settings
    >>> t = truth_table(simulate_crm(small_settings(weeks=4), random_seed=0).truth)
    >>> t.loc[t["owner"].isna(), ["segment", "stage"]].head(2).values.tolist()
    [['SMB', 'Lead'], ['SMB', 'Qualified']]
    """
    if not isinstance(truth, dict):
        path = Path(truth)
        path = path / "truth.json" if path.is_dir() else path
        truth = json.loads(path.read_text(encoding="utf-8"))
    rows = []
    for seg, st in truth["segments"].items():
        groups = [(None, None, 1.0, st["by_stage"])]
        groups += [(o, v["team"], v["effect"], v["by_stage"]) for o, v in st["owners"].items()]
        for owner, team, effect, by_stage in groups:
            for stage, q in by_stage.items():
                rows.append({"segment": seg, "owner": owner, "team": team, "effect": effect,
                             "stage": stage, **q})
    return pd.DataFrame(rows)
