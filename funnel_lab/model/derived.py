"""Derived quantities of a posterior, per draw, and :func:`summarize` into tidy tables.

Definitions are those of CONTRACTS.md (conversion, win probability, time in stage, days to
close, the one-week matrix ``expm(Q)``), computed with :mod:`funnel_lab.markov` on every
posterior draw at once (batched over draws and groups); intervals are equal-tailed.

Age bands
---------
With several age bands the rates of a stage depend on the time already spent in it, so the
funnel is semi-Markov, not Markov. Every entry into a stage (a back-move and a re-entry too)
starts at age 0, so the quantities above are still exact, for a deal **entering the stage at
age 0**, through the embedded jump chain:

* with band ``b`` lasting ``L_b`` weeks (the last one forever) and total exit rate
  ``lambda_b``, a deal survives band ``b`` with ``s_b = exp(-lambda_b L_b)``, leaves during
  it with ``S_b (1 - s_b)`` (``S_b`` = the product of the earlier ``s``), and then goes to
  ``j`` with ``r_bj / lambda_b``: ``P_ij = sum_b S_b (1 - s_b) r_bij / lambda_b``;
* the expected stay is ``tau_i = sum_b S_b (1 - s_b) / lambda_b``.

Absorption probabilities depend only on ``P`` and mean absorption times only on ``P`` and
``tau``, so the Markov chain with *effective rates* ``P_ij / tau_i``
(:func:`effective_rates`) gives exactly the conversion, win probability, time in stage and
days to close of the banded model. No Erlang approximation is involved. (If a stage had no
exit in its last band, ``tau`` would be infinite: that only happens when no move out of it is
possible at all, and then the time in stage is infinite in every band model.)

The one-week matrix is not a function of the stage alone when rates change with age; for
banded posteriors ``one_week_matrix`` is given per band (a ``band`` column), as the one-week
matrix of a deal whose age band does not change during the week. The forecast moves deals
up the bands itself.

Dependency rule: numpy, pandas, funnel_lab.markov; never PyMC, the forecast or charts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from funnel_lab import markov
from funnel_lab.errors import ParameterError
from funnel_lab.model.posterior import Posterior, SegmentPosterior

__all__ = [
    "derived_draws",
    "effective_rates",
    "interval",
    "summarize",
]

DAYS_PER_WEEK = markov.DAYS_PER_WEEK


def _check_ci_prob(ci_prob: float) -> float:
    try:
        p = float(ci_prob)
    except (TypeError, ValueError):
        raise ParameterError(f"ci_prob must be a number in (0, 1), got {ci_prob!r}") from None
    if not 0 < p < 1:
        raise ParameterError(f"ci_prob must be in (0, 1), got {ci_prob!r}")
    return p


def interval(draws: np.ndarray, ci_prob: float = 0.9, axis: int = 0) -> tuple[np.ndarray, ...]:
    """Mean and equal-tailed interval of ``draws`` along ``axis``.

    >>> m, lo, hi = interval(np.arange(101.0), 0.9)
    >>> float(m), round(float(lo), 9), round(float(hi), 9)
    (50.0, 5.0, 95.0)
    """
    p = _check_ci_prob(ci_prob)
    x = np.asarray(draws, dtype=float)
    with np.errstate(invalid="ignore"):
        mean = x.mean(axis=axis)
        lo, hi = np.quantile(x, [(1 - p) / 2, (1 + p) / 2], axis=axis)
    return mean, lo, hi


def effective_rates(rates: np.ndarray, band_edges: tuple[int, ...]) -> np.ndarray:
    """Rates of the Markov chain with the banded model's jump chain and mean stays.

    Parameters
    ----------
    rates : array (..., band, S, S)
        Rates per week by age band (zero diagonal).
    band_edges : tuple of int
        Band lower edges in weeks.

    Returns
    -------
    array (..., S, S)
        ``P_ij / tau_i`` (see the module docstring); equal to ``rates[..., 0, :, :]`` with one
        band. A state that can never be left gets a zero row.

    Examples
    --------
    >>> r = np.zeros((2, 2, 2)); r[0, 0, 1] = 1.0; r[1, 0, 1] = 0.5
    >>> float(effective_rates(r, (0, 1))[0, 1])  # mean stay 1 + e^-1 (2 - 1) weeks
    0.7310585786300049
    """
    rates = np.asarray(rates, dtype=float)
    n_b = rates.shape[-3]
    if n_b != len(band_edges):
        raise ParameterError(f"rates have {n_b} bands but band_edges are {band_edges!r}")
    if n_b == 1:
        return rates[..., 0, :, :]
    lengths = np.append(np.diff(np.asarray(band_edges, dtype=float)), np.inf)
    lam = rates.sum(axis=-1)  # (..., band, S)
    length = lengths.reshape((n_b, 1))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        survive = np.exp(-lam * length)
        survive = np.where(np.isinf(length) & (lam == 0), 1.0, survive)
        start = np.concatenate(
            [np.ones_like(survive[..., :1, :]), np.cumprod(survive[..., :-1, :], axis=-2)],
            axis=-2,
        )
        leave = start * (1.0 - survive)
        safe_lam = np.where(lam > 0, lam, 1.0)
        jump = (leave / safe_lam)[..., None] * rates  # (..., band, S, S)
        stay = np.where(lam > 0, leave / safe_lam, np.where(start > 0, start * length, 0.0))
        p = jump.sum(axis=-3)
        tau = stay.sum(axis=-2)  # (..., S)
        out = np.where(np.isfinite(tau) & (tau > 0), 1.0 / np.where(tau > 0, tau, 1.0), 0.0)
    return p * out[..., None]


def derived_draws(sp: SegmentPosterior) -> dict[str, np.ndarray]:
    """Per-draw derived quantities of one segment, each (draw, group, n_open).

    Keys: ``conversion``, ``win_probability``, ``time_in_stage_days``, ``days_to_close``.

    Examples
    --------
    >>> from funnel_lab.model import fit
    >>> from funnel_lab.simulate import simulate_crm, small_settings
    >>> post = fit(simulate_crm(small_settings(), 1).crm, draws=100, random_seed=1)
    >>> derived_draws(post.segments["SMB"])["conversion"].shape
    (100, 1, 3)
    """
    n_open = sp.funnel.n_open
    eff = effective_rates(sp.rates, sp.band_edges)  # (draw, group, S, S)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "conversion": markov.conversion(eff, n_open),
            "win_probability": markov.win_probability(eff, n_open),
            "time_in_stage_days": markov.mean_days_in_stage(eff, n_open),
            "days_to_close": markov.expected_days_to_close(eff, n_open),
        }


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


def _stage_rows(sp: SegmentPosterior, values: np.ndarray, ci_prob: float, gcol: str | None,
                names: tuple[str, str, str]) -> list[dict[str, Any]]:
    mean, lo, hi = interval(values, ci_prob)
    rows = []
    for g, group in enumerate(sp.groups):
        for k, stage in enumerate(sp.funnel.stages):
            row: dict[str, Any] = {"segment": sp.segment}
            if gcol:
                row[gcol] = group
            row.update({"stage": stage, names[0]: mean[g, k], names[1]: lo[g, k],
                        names[2]: hi[g, k]})
            rows.append(row)
    return rows


def _move_rows(sp: SegmentPosterior, ci_prob: float, gcol: str | None, banded: bool,
               from_states: list[int], names: tuple[str, str, str],
               include_from: bool = True) -> list[dict[str, Any]]:
    mean, lo, hi = interval(sp.rates, ci_prob)  # (group, band, S, S)
    possible = (sp.rates > 0).any(axis=0)
    states = sp.funnel.states
    rows = []
    for g, group in enumerate(sp.groups):
        for b, edge in enumerate(sp.band_edges):
            for i in from_states:
                for j in range(len(states)):
                    if not possible[g, b, i, j]:
                        continue
                    row: dict[str, Any] = {"segment": sp.segment}
                    if gcol:
                        row[gcol] = group
                    if banded:
                        row["band"] = edge
                    if include_from:
                        row["stage"] = states[i]
                    row.update({"to_stage": states[j], names[0]: mean[g, b, i, j],
                                names[1]: lo[g, b, i, j], names[2]: hi[g, b, i, j]})
                    rows.append(row)
    return rows


def _one_week_rows(sp: SegmentPosterior, ci_prob: float, gcol: str | None,
                   banded: bool) -> list[dict[str, Any]]:
    step = markov.step_matrix(sp.rates)  # (draw, group, band, S, S)
    mean, lo, hi = interval(step, ci_prob)
    states = sp.funnel.states
    rows = []
    for g, group in enumerate(sp.groups):
        for b, edge in enumerate(sp.band_edges):
            for i, src in enumerate(states):
                for j, dst in enumerate(states):
                    row: dict[str, Any] = {"segment": sp.segment}
                    if gcol:
                        row[gcol] = group
                    if banded:
                        row["band"] = edge
                    row.update({"stage": src, "to_stage": dst, "mean": mean[g, b, i, j],
                                "lower": lo[g, b, i, j], "upper": hi[g, b, i, j]})
                    rows.append(row)
    return rows


def summarize(posterior: Posterior, ci_prob: float = 0.9) -> dict[str, pd.DataFrame]:
    """Tidy tables of the derived quantities, with posterior means and equal-tailed intervals.

    Parameters
    ----------
    posterior : Posterior
    ci_prob : float
        Probability of the intervals (``lower``/``upper``).

    Returns
    -------
    dict of DataFrame
        ``conversion``, ``win_probability`` (segment, [owner|team,] stage, mean, lower, upper);
        ``transitions`` (segment, [group,] [band,] stage, to_stage, rate_per_week_mean, lower,
        upper); ``time_in_stage`` and ``days_to_close`` (segment, [group,] stage, mean_days,
        lower, upper); ``arrivals`` (segment, per_week_mean, lower, upper);
        ``arrivals_by_source`` (segment, source, per_week_mean, lower, upper);
        ``reengagement`` (segment, [group,] [band,] to_stage, rate_per_week, lower, upper);
        ``one_week_matrix`` (segment, [group,] [band,] stage, to_stage, mean, lower, upper);
        ``entry_stage`` (segment, stage, mean, lower, upper); ``amounts`` (segment, quantity,
        mean, lower, upper). The group column is named after ``group_by`` and present only
        for grouped fits; the ``band`` column (lower edge in weeks) only with several bands.

    Examples
    --------
    >>> from funnel_lab.model import fit
    >>> from funnel_lab.simulate import simulate_crm, small_settings
    >>> tables = summarize(fit(simulate_crm(small_settings(), 1).crm, random_seed=1))
    >>> tables["conversion"].columns.tolist()
    ['segment', 'stage', 'mean', 'lower', 'upper']
    """
    ci_prob = _check_ci_prob(ci_prob)
    gcol = next((sp.group_by for sp in posterior.segments.values() if sp.group_by), None)
    banded = any(len(sp.band_edges) > 1 for sp in posterior.segments.values())
    g_cols = [gcol] if gcol else []
    b_cols = ["band"] if banded else []
    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in (
        "conversion", "win_probability", "transitions", "time_in_stage", "days_to_close",
        "arrivals", "arrivals_by_source", "reengagement", "one_week_matrix", "entry_stage",
        "amounts")}

    for seg in sorted(posterior.segments):
        sp = posterior.segments[seg]
        d = derived_draws(sp)
        prob = ("mean", "lower", "upper")
        days = ("mean_days", "lower", "upper")
        rows["conversion"] += _stage_rows(sp, d["conversion"], ci_prob, gcol, prob)
        rows["win_probability"] += _stage_rows(sp, d["win_probability"], ci_prob, gcol, prob)
        rows["time_in_stage"] += _stage_rows(sp, d["time_in_stage_days"], ci_prob, gcol, days)
        rows["days_to_close"] += _stage_rows(sp, d["days_to_close"], ci_prob, gcol, days)

        n_states = len(sp.funnel.states)
        won = sp.funnel.n_open
        rows["transitions"] += _move_rows(
            sp, ci_prob, gcol, banded, [i for i in range(n_states) if i != won],
            ("rate_per_week_mean", "lower", "upper"))
        rows["reengagement"] += _move_rows(sp, ci_prob, gcol, banded, [won + 1],
                                           ("rate_per_week", "lower", "upper"),
                                           include_from=False)
        rows["one_week_matrix"] += _one_week_rows(sp, ci_prob, gcol, banded)

        m, lo, hi = interval(sp.arrivals, ci_prob)
        rows["arrivals"].append({"segment": seg, "per_week_mean": m, "lower": lo, "upper": hi})
        if sp.sources:
            m, lo, hi = interval(sp.source_arrivals, ci_prob)
            for s, source in enumerate(sp.sources):
                rows["arrivals_by_source"].append({"segment": seg, "source": source,
                                                   "per_week_mean": m[s], "lower": lo[s],
                                                   "upper": hi[s]})
        m, lo, hi = interval(sp.entry_probs, ci_prob)
        for k, stage in enumerate(sp.funnel.stages):
            rows["entry_stage"].append({"segment": seg, "stage": stage, "mean": m[k],
                                        "lower": lo[k], "upper": hi[k]})
        amount = {
            "median_amount": np.exp(sp.amount_mu),
            "mean_amount": np.exp(sp.amount_mu + sp.amount_sigma**2 / 2),
            "log_sigma": sp.amount_sigma,
        }
        for name, values in amount.items():
            m, lo, hi = interval(values, ci_prob)
            rows["amounts"].append({"segment": seg, "quantity": name, "mean": m, "lower": lo,
                                    "upper": hi})

    base = ["segment", *g_cols]
    columns = {
        "conversion": [*base, "stage", "mean", "lower", "upper"],
        "win_probability": [*base, "stage", "mean", "lower", "upper"],
        "time_in_stage": [*base, "stage", "mean_days", "lower", "upper"],
        "days_to_close": [*base, "stage", "mean_days", "lower", "upper"],
        "transitions": [*base, *b_cols, "stage", "to_stage", "rate_per_week_mean", "lower",
                        "upper"],
        "reengagement": [*base, *b_cols, "to_stage", "rate_per_week", "lower", "upper"],
        "one_week_matrix": [*base, *b_cols, "stage", "to_stage", "mean", "lower", "upper"],
        "arrivals": ["segment", "per_week_mean", "lower", "upper"],
        "arrivals_by_source": ["segment", "source", "per_week_mean", "lower", "upper"],
        "entry_stage": ["segment", "stage", "mean", "lower", "upper"],
        "amounts": ["segment", "quantity", "mean", "lower", "upper"],
    }
    return {key: _frame(rows[key], columns[key]) for key in columns}
