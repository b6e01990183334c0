"""One-week transition matrices of a funnel, batched over draws, groups and age bands.

For a rate matrix ``R`` (rates per week, states of :attr:`Funnel.states`) and its generator
``Q`` (:func:`funnel_lab.markov.generator`):

* ``move = expm(Q)``: where a deal is one week after a given moment;
* ``average = integral_0^1 expm(Q u) du``: where a deal is at the end of the week when it
  entered the funnel at a uniformly random moment of that week (Poisson arrivals);
* ``stay = exp(-q_i)``: the probability of not leaving state ``i`` at all during the week.

Both matrices are computed by uniformization (``expm(Q t) = sum_n Pois(n; L t) B^n`` with
``B = I + Q / L``) after scaling and squaring, which is exact up to a truncation below 1e-13
and far faster than a batch of general-purpose matrix exponentials for the small, stochastic
matrices of a funnel (tested against :func:`scipy.linalg.expm`).

Dependency rule: numpy only (and :mod:`funnel_lab.markov` for the generator).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from funnel_lab.markov import generator

__all__ = ["OneWeek", "one_week"]

# Uniformization is run on a time step short enough that L * h <= _MAX_STEP_RATE; the
# Poisson(_MAX_STEP_RATE) tail beyond _N_TERMS terms is below 1e-15.
_MAX_STEP_RATE = 4.0
_N_TERMS = 30


@dataclass(frozen=True)
class OneWeek:
    """One-week matrices for rates of shape ``(..., S, S)``.

    Attributes
    ----------
    move : array (..., S, S)
        ``expm(Q)``.
    average : array (..., S, S)
        ``integral_0^1 expm(Q u) du`` (rows sum to one).
    stay : array (..., S)
        ``exp(-total exit rate)``: no move at all during the week.
    """

    move: np.ndarray
    average: np.ndarray
    stay: np.ndarray


def one_week(rates: np.ndarray) -> OneWeek:
    """One-week transition, averaged-arrival and no-move probabilities.

    Parameters
    ----------
    rates : array (..., S, S)
        Rates per week (diagonal ignored), batched over any leading axes.

    Returns
    -------
    OneWeek

    Examples
    --------
    >>> w = one_week(np.array([[0.0, 1.0], [0.0, 0.0]]))
    >>> round(float(w.move[0, 0]), 6), round(float(w.average[0, 0]), 6)
    (0.367879, 0.632121)
    """
    q = generator(np.asarray(rates, dtype=float))
    s = q.shape[-1]
    exit_rate = -np.diagonal(q, axis1=-2, axis2=-1)
    lam_max = float(exit_rate.max(initial=0.0))
    n_halvings = max(0, int(np.ceil(np.log2(lam_max / _MAX_STEP_RATE)))) if lam_max > 0 else 0
    h = 2.0 ** -n_halvings

    # uniformization rate per matrix; a matrix without exits gets any positive rate
    lam = np.maximum(exit_rate.max(axis=-1), 1e-12)[..., None, None]
    eye = np.broadcast_to(np.eye(s), q.shape)
    b = eye + q / lam
    lt = lam * h
    weight = np.exp(-lt)  # Pois(0; L h)
    cum = weight.copy()
    power = np.array(eye)
    move = weight * power
    # integral_0^h Pois(n; L u) du = P(Pois(L h) > n) / L
    integral = (1.0 - cum) / lam * power
    for n in range(1, _N_TERMS + 1):
        power = power @ b
        weight = weight * lt / n
        cum = cum + weight
        move = move + weight * power
        integral = integral + np.clip(1.0 - cum, 0.0, None) / lam * power

    for _ in range(n_halvings):
        # integral over [0, 2t] = integral over [0, t] + P(t) @ integral over [0, t]
        integral = integral + move @ integral
        move = move @ move

    return OneWeek(move=move, average=integral, stay=np.exp(-exit_rate))
