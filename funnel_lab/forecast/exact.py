"""Exact means of the forecast, from powers of the one-week matrix of the cells.

The engine's week (see :mod:`funnel_lab.forecast.engine`) is a linear map on expected counts.
Written as a matrix ``T`` over the age-expanded states ``(state, age)`` (index
``state * A + age``) of one draw and group::

    T[(i, a), (j, 0)]                  = move_b(a)[i, j]                  for every j
    T[(i, a), (i, 0)]                 -= stay_b(a)[i]                     when A > 1
    T[(i, a), (i, min(a + 1, A - 1))] += stay_b(a)[i]                     when A > 1

the expected counts after ``t`` weeks are ``x_0 T^t`` plus, for new deals, the sum of the
expected arrivals of each week ``m * landing`` carried forward by the later weeks. A deal's
probability of being won within ``h`` weeks is the Won mass of row ``(i, a)`` of ``T^h``
("win within h weeks" of CONTRACTS.md: every transition counts, Lost -> open included).

This module builds ``T`` on its own (it shares no code with the engine's sampler besides the
one-week matrices of :mod:`funnel_lab.forecast.transition`), so that the tests can hold the
Monte Carlo means against it.

Dependency rule: numpy only.
"""

from __future__ import annotations

import numpy as np

from funnel_lab.forecast.engine import EngineInputs, EngineResult, ages_of
from funnel_lab.forecast.transition import OneWeek, one_week

__all__ = ["exact_means", "expanded_matrix", "win_within"]


def expanded_matrix(move: np.ndarray, stay: np.ndarray,
                    band_edges: tuple[int, ...]) -> np.ndarray:
    """The one-week matrix over age-expanded states, shape (D, G, S*A, S*A).

    Parameters
    ----------
    move : array (D, G, B, S, S)
    stay : array (D, G, B, S)
    band_edges : tuple of int

    Examples
    --------
    >>> move = np.array([[0.5, 0.5], [0.0, 1.0]])[None, None, None].repeat(2, axis=2)
    >>> stay = np.array([0.4, 1.0])[None, None, None].repeat(2, axis=2)
    >>> t = expanded_matrix(move, stay, (0, 1))
    >>> t[0, 0].round(2)
    array([[0.1, 0.4, 0.5, 0. ],
           [0.1, 0.4, 0.5, 0. ],
           [0. , 0. , 0. , 1. ],
           [0. , 0. , 0. , 1. ]])
    """
    n_ages, band = ages_of(band_edges)
    d, g, _, s, _ = move.shape
    t6 = np.zeros((d, g, s, n_ages, s, n_ages))
    idx = np.arange(s)
    for a in range(n_ages):
        b = band[a]
        t6[:, :, :, a, :, 0] = move[:, :, b]
        if n_ages > 1:
            t6[:, :, idx, a, idx, 0] -= stay[:, :, b]
            t6[:, :, idx, a, idx, min(a + 1, n_ages - 1)] += stay[:, :, b]
    return t6.reshape(d, g, s * n_ages, s * n_ages)


def exact_means(inputs: EngineInputs, weeks: int,
                week_matrices: OneWeek | None = None) -> EngineResult:
    """Expected occupancy, wins and revenue per draw and week (float arrays).

    The same layout as :class:`EngineResult`: ``occupancy`` (D, H, 2, S), ``wins`` and
    ``revenue`` (D, H, 2), origin 0 = today's deals, 1 = deals created during the forecast.

    Examples
    --------
    >>> rates = np.zeros((1, 1, 1, 3, 3)); rates[..., 0, 1] = 1.0
    >>> init = np.zeros((1, 3, 1, 1), dtype=np.int64); init[0, 0] = 10
    >>> inputs = EngineInputs(rates, (0,), 1, init, np.array([5.0]),
    ...                       np.array([[[1.0, 0, 0]]]), None, 0.0, np.ones((1, 2)))
    >>> float(exact_means(inputs, 1).wins[0, 0, 0].round(4))
    6.3212
    """
    w = one_week(inputs.rates) if week_matrices is None else week_matrices
    t = expanded_matrix(w.move, w.stay, inputs.band_edges)
    d, g = t.shape[:2]
    n_ages, _ = ages_of(inputs.band_edges)
    s = inputs.init.shape[1]
    k = inputs.init.shape[-1]
    won = inputs.won
    won_cols = np.arange(won * n_ages, (won + 1) * n_ages)

    init = np.array(inputs.init, dtype=float)
    init[:, won] = 0.0
    # pipeline: (D, G, K, S*A); new deals: (D, G, S*A)
    x = np.broadcast_to(np.moveaxis(init, -1, 1).reshape(g, k, s * n_ages), (d, g, k,
                                                                            s * n_ages))
    y = np.zeros((d, g, s * n_ages))
    if inputs.leads_per_week is None:
        per_week = np.asarray(inputs.arrival_rate, dtype=float)
    else:
        per_week = np.full(d, float(inputs.leads_per_week))
    arrive = np.zeros((d, g, s, n_ages))
    arrive[..., 0] = per_week[:, None, None] * inputs.landing
    arrive = arrive.reshape(d, g, s * n_ages)
    new_amount = inputs.new_amounts.mean(axis=-1)

    occupancy = np.zeros((d, weeks, 2, s))
    wins = np.zeros((d, weeks, 2))
    revenue = np.zeros((d, weeks, 2))
    won_x = np.zeros((d, k))
    won_y = np.zeros(d)
    for week in range(weeks):
        x = np.einsum("dgkm,dgmn->dgkn", x, t)
        y = np.einsum("dgm,dgmn->dgn", y, t) + arrive
        occupancy[:, week, 0] = x.reshape(d, g, k, s, n_ages).sum(axis=(1, 2, 4))
        occupancy[:, week, 1] = y.reshape(d, g, s, n_ages).sum(axis=(1, 3))
        now_x = x[..., won_cols].sum(axis=(1, 3))  # (D, K)
        now_y = y[..., won_cols].sum(axis=(1, 2))
        wins[:, week, 0] = (now_x - won_x).sum(axis=-1)
        wins[:, week, 1] = now_y - won_y
        revenue[:, week, 0] = (now_x - won_x) @ np.asarray(inputs.class_amounts, dtype=float)
        revenue[:, week, 1] = (now_y - won_y) * new_amount
        won_x, won_y = now_x, now_y
    return EngineResult(occupancy=occupancy, wins=wins, revenue=revenue)


def win_within(rates: np.ndarray, band_edges: tuple[int, ...], won: int,
               horizons: tuple[int, ...], week_matrices: OneWeek | None = None) -> np.ndarray:
    """P(in Won after h weeks) from every cell, per draw: array (len(h), D, G, S, A).

    Row sums of the Won columns of ``T^h``, computed as ``T^h 1_won`` one week at a time.

    Parameters
    ----------
    rates : array (D, G, B, S, S)
    band_edges : tuple of int
    won : int
        Index of Won among the states.
    horizons : tuple of int
        Weeks.
    week_matrices : OneWeek, optional
        Precomputed :func:`~funnel_lab.forecast.transition.one_week` of ``rates``.

    Examples
    --------
    >>> rates = np.zeros((1, 1, 1, 3, 3)); rates[..., 0, 1] = 1.0
    >>> win_within(rates, (0,), 1, (1, 2))[:, 0, 0, 0, 0].round(4)
    array([0.6321, 0.8647])
    """
    w = one_week(rates) if week_matrices is None else week_matrices
    t = expanded_matrix(w.move, w.stay, band_edges)
    d, g = t.shape[:2]
    n_ages, _ = ages_of(band_edges)
    s = t.shape[-1] // n_ages
    v = np.zeros((d, g, s * n_ages))
    v[..., won * n_ages:(won + 1) * n_ages] = 1.0
    out = np.zeros((len(horizons), d, g, s, n_ages))
    for step in range(1, max(horizons) + 1):
        v = np.einsum("dgmn,dgn->dgm", t, v)
        for i, h in enumerate(horizons):
            if h == step:
                out[i] = v.reshape(d, g, s, n_ages)
    return out
