"""Continuous-time Markov chain arithmetic of a funnel (numpy and scipy only).

Shared by the simulator (truth), the model (derived quantities per posterior draw) and the
forecast (exact means), so that all three use the same definitions (CONTRACTS.md):

* a rate matrix ``R[..., i, j]`` holds rates per week from state ``i`` to ``j`` (zero diagonal);
  states are ``Funnel.states``: open stages in order, then Won, then Lost;
* the generator is ``Q = R - diag(R.sum(-1))``; the one-week matrix is ``expm(Q)``;
* conversion, win probability and time to close treat Lost as absorbing (re-engagement is
  not part of them); win-within-h-weeks uses every transition, Lost -> open included.

Every function broadcasts over leading axes (posterior draws, groups).

Dependency rule: imports numpy and scipy only; never pandas, PyMC or altair.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import expm

__all__ = [
    "absorption_probability",
    "conversion",
    "expected_days_to_close",
    "generator",
    "mean_days_in_stage",
    "step_matrix",
    "win_probability",
]

DAYS_PER_WEEK = 7.0


def generator(rates: np.ndarray) -> np.ndarray:
    """Generator ``Q`` from a rate matrix (diagonal of ``rates`` is ignored).

    >>> generator(np.array([[0.0, 2.0], [0.0, 0.0]]))
    array([[-2.,  2.],
           [ 0.,  0.]])
    """
    r = np.array(rates, dtype=float, copy=True)
    n = r.shape[-1]
    idx = np.arange(n)
    r[..., idx, idx] = 0.0
    r[..., idx, idx] = -r.sum(axis=-1)
    return r


def step_matrix(rates: np.ndarray, weeks: float = 1.0) -> np.ndarray:
    """Transition probabilities over ``weeks``: ``expm(Q * weeks)``, batched over leading axes."""
    return expm(generator(rates) * weeks)


def absorption_probability(
    rates: np.ndarray, transient: np.ndarray, success: np.ndarray
) -> np.ndarray:
    """P(reach a ``success`` state before any other non-transient state), per transient start.

    Parameters
    ----------
    rates : array (..., S, S)
        Rates per week.
    transient : int array (T,)
        States the chain moves among; every other state stops it.
    success : int array
        The stopping states that count as success.

    Returns
    -------
    array (..., T)
        One probability per transient starting state. A transient state with no way out
        gets probability 0.
    """
    transient = np.asarray(transient)
    q = generator(rates)
    q_tt = q[..., transient[:, None], transient[None, :]]
    b = q[..., transient[:, None], np.asarray(success)[None, :]].sum(axis=-1)
    return _solve(-q_tt, b)


def _solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve ``a x = b`` batched; singular systems (no exit) fall back to least squares."""
    try:
        return np.linalg.solve(a, b[..., None])[..., 0]
    except np.linalg.LinAlgError:
        flat_a = a.reshape(-1, *a.shape[-2:])
        flat_b = b.reshape(-1, b.shape[-1])
        out = np.array([np.linalg.lstsq(ai, bi, rcond=None)[0] for ai, bi in zip(flat_a, flat_b,
                                                                                strict=True)])
        return out.reshape(b.shape)


def win_probability(rates: np.ndarray, n_open: int) -> np.ndarray:
    """Win probability from each open stage (Lost absorbing), shape (..., n_open).

    State ``n_open`` is Won and ``n_open + 1`` is Lost.
    """
    return absorption_probability(rates, np.arange(n_open), np.array([n_open]))


def conversion(rates: np.ndarray, n_open: int) -> np.ndarray:
    """Conversion of each open stage k: P(reach a later stage or Won before Lost), (..., n_open).

    Back-moves on the way are allowed; for the last open stage it equals the win probability.
    """
    rates = np.asarray(rates, dtype=float)
    out = np.empty((*rates.shape[:-2], n_open))
    for k in range(n_open):
        transient = np.arange(k + 1)
        success = np.arange(k + 1, n_open + 1)  # later open stages and Won
        out[..., k] = absorption_probability(rates, transient, success)[..., k]
    return out


def mean_days_in_stage(rates: np.ndarray, n_open: int) -> np.ndarray:
    """Expected days of one visit to each open stage: 7 / total exit rate, (..., n_open)."""
    r = np.asarray(rates, dtype=float)
    idx = np.arange(r.shape[-1])
    exit_rate = r.sum(axis=-1) - r[..., idx, idx]
    with np.errstate(divide="ignore"):
        return DAYS_PER_WEEK / exit_rate[..., :n_open]


def expected_days_to_close(rates: np.ndarray, n_open: int) -> np.ndarray:
    """Expected days from entering each open stage until Won or Lost, (..., n_open)."""
    q = generator(rates)
    t = np.arange(n_open)
    q_tt = q[..., t[:, None], t[None, :]]
    ones = np.ones((*q.shape[:-2], n_open))
    return DAYS_PER_WEEK * _solve(-q_tt, ones)
