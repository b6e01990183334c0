"""The exact path simulator: every deal's moves in continuous time, vectorised across deals.

A deal in state ``i`` at time ``t`` (weeks since the start of the history), which entered
``i`` at time ``e``, leaves to ``j`` with hazard

    h_ij(t) = r[band(t - e), i, j] * (effect * m(t)  if i -> j is a progress move  else 1)

where ``r`` are the age-band rates of its segment, ``effect`` is its owner's multiplier and
``m`` the conversion drift. The hazard is piecewise constant in age and (for a linear drift)
continuous in time, so paths are drawn exactly by *thinning*: candidate times come from a
Poisson process with a rate ``lam`` that bounds the total hazard over the whole stay
(largest band rate of each move, times the largest drift multiplier), and a candidate at time
``t`` is a move to ``j`` with probability ``h_ij(t) / lam`` (else nothing happens). This is
exact for any bounded hazard, bands included: no time grid.

Randomness is laid out per deal: at its ``c``-th candidate every deal uses row ``deal`` of the
``c``-th block of uniforms drawn for all deals. A deal's path therefore does not depend on
how long the other deals live, nor on where the simulation stops (``t_end``): cutting the same
deals at a later time only extends their paths.

Dependency rule: numpy only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Paths", "simulate_paths"]


@dataclass(frozen=True)
class Paths:
    """Moves of simulated deals, sorted by deal then time.

    ``deal`` indexes the input arrays; ``state`` is the state entered (in its segment's
    ``Funnel.states`` order); ``time`` is in weeks since the start of the history.
    """

    deal: np.ndarray
    state: np.ndarray
    time: np.ndarray
    candidates: int


def simulate_paths(
    band_rates: np.ndarray,
    progress: np.ndarray,
    band_edges: np.ndarray,
    segment: np.ndarray,
    state: np.ndarray,
    t_start: np.ndarray,
    effect: np.ndarray,
    t_end: float,
    rng: np.random.Generator,
    progress_drift: Callable[[np.ndarray], np.ndarray] | None = None,
    drift_max: float = 1.0,
) -> Paths:
    """Simulate every deal's moves from ``t_start`` until ``t_end`` (exclusive).

    Parameters
    ----------
    band_rates : array (G, B, S, S)
        Rates per week by segment and age band, padded to the largest segment (zeros).
    progress : bool array (G, S, S)
        Moves multiplied by the owner effect and by ``progress_drift``.
    band_edges : array (B,)
        Lower edges of the age bands in weeks, starting at 0.
    segment, state : int arrays (N,)
        Each deal's segment index and its state at ``t_start``, entered at ``t_start``.
    t_start : float array (N,)
    effect : float array (N,)
        The owner's multiplier of progress moves.
    t_end : float
        Moves at or after ``t_end`` are not simulated.
    rng : numpy.random.Generator
    progress_drift : callable, optional
        ``m(t)`` for an array of times; None means 1.
    drift_max : float
        An upper bound of ``m(t)`` over the simulated times.

    Returns
    -------
    Paths

    Examples
    --------
    >>> r = np.zeros((1, 1, 3, 3)); r[0, 0, 0, 1] = 1.0; r[0, 0, 0, 2] = 1.0
    >>> p = simulate_paths(r, r > 0, np.array([0.0]), np.zeros(4, int), np.zeros(4, int),
    ...                    np.zeros(4), np.ones(4), 100.0, np.random.default_rng(1))
    >>> p.deal.tolist(), sorted(set(p.state.tolist())) <= [1, 2]
    ([0, 1, 2, 3], True)
    """
    n_seg, n_band, n_state, _ = band_rates.shape
    rates = np.asarray(band_rates, dtype=float)
    prog = np.asarray(progress, dtype=bool)
    rates_flat = rates.reshape(n_seg * n_band * n_state, n_state)
    prog_flat = prog.reshape(n_seg * n_state, n_state)
    # Bounds of the total hazard per (segment, state): the largest band rate of each move.
    top = rates.max(axis=1)
    bound_prog = np.where(prog, top, 0.0).sum(axis=-1).reshape(-1)
    bound_other = np.where(prog, 0.0, top).sum(axis=-1).reshape(-1)
    edges = np.asarray(band_edges, dtype=float)

    n = len(segment)
    idx = np.arange(n)
    g = np.asarray(segment, dtype=np.int64)
    s = np.asarray(state, dtype=np.int64).copy()
    t = np.asarray(t_start, dtype=float).copy()
    entered = t.copy()
    eff = np.asarray(effect, dtype=float)

    out_deal, out_state, out_time = [], [], []
    candidates = 0
    while idx.size:
        block = rng.random((n, 2))
        k = g * n_state + s
        lam = bound_prog[k] * eff * drift_max + bound_other[k]
        u = block[idx]
        with np.errstate(divide="ignore", invalid="ignore"):
            t_cand = t - np.log1p(-u[:, 0]) / lam
        keep = (lam > 0) & (t_cand < t_end)
        idx, g, s, entered, eff = idx[keep], g[keep], s[keep], entered[keep], eff[keep]
        t_cand, lam, k, u = t_cand[keep], lam[keep], k[keep], u[keep]
        candidates += idx.size
        if not idx.size:
            break

        band = np.searchsorted(edges, t_cand - entered, side="right") - 1
        h = rates_flat[(g * n_band + band) * n_state + s]
        mult = eff if progress_drift is None else eff * progress_drift(t_cand)
        h = np.where(prog_flat[k], h * mult[:, None], h)
        cum = np.cumsum(h, axis=1)
        v = u[:, 1] * lam
        move = v < cum[:, -1]
        dest = (cum <= v[:, None]).sum(axis=1)

        out_deal.append(idx[move])
        out_state.append(dest[move])
        out_time.append(t_cand[move])
        s = np.where(move, dest, s)
        entered = np.where(move, t_cand, entered)
        t = t_cand

    if out_deal:
        deal = np.concatenate(out_deal)
        order = np.argsort(deal, kind="stable")  # moves of one deal are already in time order
        return Paths(deal[order], np.concatenate(out_state)[order],
                     np.concatenate(out_time)[order], candidates)
    return Paths(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), candidates)
