"""Compiled inner loop of the counts engine: the weekly multinomial split of every cell.

:func:`simulate_counts` runs the weeks of a block of draws for the engine of
:mod:`funnel_lab.forecast.engine` (see its docstring for the cells and the week). Each cell's
split is a chain of conditional binomials over its categories in decreasing probability (the
same as ``Generator.multinomial``), drawn with the samplers of :func:`binomial`:

* ``n * p < 10`` (``p <= 1/2`` by symmetry): inversion, which walks the probabilities from 0
  (about ``n p + 1`` steps);
* otherwise BTRD, the transformed rejection with decomposition of Hörmann (1993, "The
  generation of binomial random variates", J. Stat. Comput. Simul. 46): exact, and its set-up
  is a square root and a few divisions, while numpy's BTPE recomputes a much larger set-up
  whenever ``n`` or ``p`` change (every call here) and costs several times more.

The last few deals of a cell draw their categories one uniform each (cheaper than the
remaining binomials). The classes of a cell share its probabilities, so the chain runs
category by category across the classes and the binomials' set-up (a square root and two
divisions, which dominate BTRD's accepted-at-once path) runs for all classes in one
vectorised loop. The split is exact: the same distribution as ``Generator.multinomial``, not
the same numbers.

Every uniform comes from the numpy ``Generator`` passed in (numba reads its bit generator, so
the stream continues the Generator's own), hence the same generator state gives the same
numbers. The functions are compiled on first use (cached on disk) and release the GIL, so
blocks of draws run in threads.

Dependency rule: numpy and numba only.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["binomial", "binomial_many", "simulate_counts"]

# Below this mean count inversion is cheaper than BTRD (and BTRD needs n p >= 10).
_INVERSION_MAX_MEAN = 10.0
# log(k!) - Stirling's approximation, for k = 0 .. 9; above, the series of _stirling_tail.
_STIRLING_TAIL = np.array([
    0.0810614667953272, 0.0413406959554092, 0.0276779256849983, 0.0207906721037650,
    0.0166446911898211, 0.0138761288230707, 0.0118967099458917, 0.0104112652619720,
    0.00925546218271273, 0.00833056343336287])

# With at most this many deals left per category still to split, each deal draws its category
# from one uniform (a few ns) instead of the remaining binomials (tens of ns each); measured.
_PER_DEAL_PER_CATEGORY = 4

# 1 / x for the inversion's steps (a multiplication instead of a division)
_N_RECIPROCALS = 64
_RECIPROCALS = 1.0 / np.maximum(np.arange(_N_RECIPROCALS), 1)

# error_model "numpy": IEEE arithmetic instead of a check before every division (no divisor
# here can be zero; log(0) = -inf for a uniform of exactly 0 is the right limit: accept)
_JIT = {"nogil": True, "cache": True, "fastmath": False, "error_model": "numpy"}


@numba.njit(**_JIT)
def _stirling_tail(k: float) -> float:
    if k <= 9.0:
        return _STIRLING_TAIL[int(k)]
    rk = 1.0 / (k + 1.0)
    rk2 = rk * rk
    return (1.0 / 12.0 - (1.0 / 360.0 - rk2 / 1260.0) * rk2) * rk


@numba.njit(inline="always", **_JIT)
def _binomial_inversion(rng, n: int, p: float) -> int:
    q = 1.0 - p
    r = p / q
    qn = math.exp(n * math.log1p(-p))
    # a run that walks past this many steps (floating-point underflow of the tail) restarts
    bound = min(float(n), n * p + 10.0 * math.sqrt(n * p * q + 1.0))
    while True:
        u = rng.random()
        px = qn
        x = 0
        while u > px:
            u -= px
            x += 1
            if x > bound:
                x = -1
                break
            px *= r * (n - x + 1) * (_RECIPROCALS[x] if x < _N_RECIPROCALS else 1.0 / x)
        if x >= 0:
            return x


@numba.njit(inline="always", **_JIT)
def _binomial_btrd(rng, n: int, p: float) -> int:
    # Hörmann (1993), algorithm BTRD, for n p >= 10 and p <= 1/2
    b = 1.15 + 2.53 * math.sqrt(float(n) * p * (1.0 - p))
    return _btrd_sample(rng, n, p, b, 0.92 - 4.2 / b, b / (0.92 * b - 4.2))


@numba.njit(inline="always", **_JIT)
def _btrd_sample(rng, n: int, p: float, b: float, v_r: float, inv_vr: float) -> int:
    # BTRD after the set-up that depends on n p q only (``b = 1.15 + 2.53 sqrt(n p q)``,
    # ``v_r = 0.92 - 4.2 / b`` and ``1 / v_r``), which the engine computes for several n at
    # once; divisions are kept out of the loops (they dominate the cost)
    q = 1.0 - p
    nf = float(n)
    npq = nf * p * q
    a = -0.0873 + 0.0248 * b + 0.01 * p
    c = nf * p + 0.5
    two_a = 2.0 * a
    # the rest of the set-up only serves the steps after 1 (1 - 0.86 v_r of the calls: from
    # about half when n p q is near 10 to 1 in 5 for large n p q)
    alpha = 0.0
    m = r = nr = 0.0
    h = math.nan  # log f(m) terms of step 3.3
    while True:
        # 1: inside the box of the hat the transformed variate is accepted outright
        v = rng.random()
        w = v * inv_vr
        if w <= 0.86:
            u = w - 0.43
            return int(math.floor((two_a / (0.5 - abs(u)) + b) * u + c))
        # 2
        if w >= 1.0:
            u = rng.random() - 0.5
        else:
            u = w - 0.93
            u = math.copysign(0.5, u) - u
            v = v_r * rng.random()
        # 3.0
        us = 0.5 - abs(u)
        if us <= 0.0:  # the hat's edge (a uniform of exactly 0): reject
            continue
        k = math.floor((two_a / us + b) * u + c)
        if k < 0.0 or k > nf:
            continue
        if alpha == 0.0:
            alpha = (2.83 + 5.1 / b) * math.sqrt(npq)
            m = math.floor((nf + 1.0) * p)
            r = p / q
            nr = (nf + 1.0) * r
        us2 = us * us
        v = v * alpha * us2 / (a + b * us2)
        km = abs(k - m)
        if km <= 15.0:
            # 3.1: f(k) / f(m) by the recursion f(i) / f(i - 1) = (nr - r i) / i
            num = 1.0
            den = 1.0
            if m < k:
                i = m + 1.0
                while i <= k:
                    num *= nr - r * i
                    den *= i
                    i += 1.0
                if v * den <= num:
                    return int(k)
            else:
                i = k + 1.0
                while i <= m:
                    num *= nr - r * i
                    den *= i
                    i += 1.0
                if v * num <= den:
                    return int(k)
            continue
        # 3.2: squeeze on log f(k) / f(m)
        v = math.log(v)
        inv_npq = 1.0 / npq
        rho = km * inv_npq * (((km / 3.0 + 0.625) * km + 1.0 / 6.0) * inv_npq + 0.5)
        t = -0.5 * km * km * inv_npq
        if v < t - rho:
            return int(k)
        if v > t + rho:
            continue
        # 3.3 - 3.4: log f(k) / f(m) with Stirling's formula and its tail
        nm = nf - m + 1.0
        if math.isnan(h):
            h = (m + 0.5) * math.log((m + 1.0) / (r * nm)) + _stirling_tail(m) + _stirling_tail(
                nf - m)
        nk = nf - k + 1.0
        bound = (h + (nf + 1.0) * math.log(nm / nk) + (k + 0.5) * math.log(nk * r / (k + 1.0))
                 - _stirling_tail(k) - _stirling_tail(nf - k))
        if v <= bound:
            return int(k)


@numba.njit(inline="always", **_JIT)
def binomial(rng, n: int, p: float) -> int:
    """One Binomial(n, p) variate (exact); ``p`` outside [0, 1] is clipped, NaN counts as 0."""
    if n <= 0 or not p > 0.0:
        return 0
    if p >= 1.0:
        return n
    flip = p > 0.5
    if flip:
        p = 1.0 - p
    if n * p < _INVERSION_MAX_MEAN:
        x = _binomial_inversion(rng, n, p)
    else:
        x = _binomial_btrd(rng, n, p)
    # a guard only: both samplers return 0 <= x <= n, and the engine must not create deals
    x = min(max(x, 0), n)
    return n - x if flip else x


@numba.njit(**_JIT)
def binomial_many(rng, n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Binomial variates for paired 1-d arrays ``n`` (int64) and ``p`` (float64)."""
    out = np.empty(n.shape[0], dtype=np.int64)
    for i in range(n.shape[0]):
        out[i] = binomial(rng, n[i], p[i])
    return out


@numba.njit(**_JIT)
def simulate_counts(rng, init, src, dest, probs, tail, cond, wins_at, won_cells, state_of,
                    n_ages, arrivals, occupancy, class_wins):
    """Move the deals of one block of draws through the weeks (outputs filled in place).

    Cells are flattened: ``cell = (group * S + state) * A + age``.

    Parameters
    ----------
    rng : numpy.random.Generator
    init : int64 array (N, K + 1)
        Deals per cell and class at the start (class ``K``: deals created during the
        forecast). Won cells must be empty.
    src : int64 array (L,)
        The cells whose deals move (every cell not in Won).
    dest : int64 array (d, L, C)
        Per draw and moving cell, the cell each category leads to, categories in decreasing
        probability.
    probs, tail, cond : float arrays (d, L, C)
        The categories' probabilities, the mass of categories ``c..`` and ``probs / tail``.
    wins_at : int64 array (d, L)
        The category that leads to Won, or -1 when none does.
    won_cells : int64 array
        The cells of Won (their deals stay put).
    state_of : int64 array (N,)
        The state of each cell.
    n_ages : int
    arrivals : int64 array (d, H, G * S)
        New deals at the end of each week per group and state (age 0, class ``K``).
    occupancy : int64 array (d, H, 2, S), output
        Deals per state at the end of each week, origin 0 = classes ``< K``, 1 = class ``K``.
    class_wins : int64 array (d, H, K + 1), output
        Deals won during each week per class.
    """
    n_draws, n_weeks = arrivals.shape[0], arrivals.shape[1]
    n_cells, n_cls = init.shape
    n_live, n_cat = probs.shape[1], probs.shape[2]
    new_cls = n_cls - 1
    cur = np.empty_like(init)
    nxt = np.empty_like(init)
    lefts = np.empty(n_cls, dtype=np.int64)
    set_b = np.empty(n_cls)
    set_vr = np.empty(n_cls)
    set_inv = np.empty(n_cls)
    for d in range(n_draws):
        cur[:] = init
        for t in range(n_weeks):
            nxt[:] = 0
            for w in won_cells:
                for k in range(n_cls):
                    nxt[w, k] = cur[w, k]
            for ci in range(n_live):
                cell = src[ci]
                p_c = probs[d, ci]
                tail_c = tail[d, ci]
                cond_c = cond[d, ci]
                dest_c = dest[d, ci]
                win_c = wins_at[d, ci]
                for k in range(n_cls):
                    lefts[k] = cur[cell, k]
                # category by category across the classes (they share the probabilities):
                # the binomials' set-up, a square root and divisions, runs for all classes in
                # one loop the compiler vectorises
                for c in range(n_cat):
                    remaining = 0
                    for k in range(n_cls):
                        remaining += lefts[k]
                    if remaining == 0:
                        break
                    flip = cond_c[c] > 0.5
                    ps = 1.0 - cond_c[c] if flip else cond_c[c]  # <= 1/2
                    for k in range(n_cls):
                        bk = 1.15 + 2.53 * math.sqrt(lefts[k] * ps * (1.0 - ps))
                        set_b[k] = bk
                        set_vr[k] = 0.92 - 4.2 / bk
                        set_inv[k] = bk / (0.92 * bk - 4.2)
                    for k in range(n_cls):
                        left = lefts[k]
                        if left <= 0:
                            continue
                        if c == n_cat - 1:
                            x = left
                        elif left <= _PER_DEAL_PER_CATEGORY * (n_cat - 1 - c):
                            # a few deals: one categorical draw each is cheaper than the
                            # remaining binomials
                            for _ in range(left):
                                u = rng.random() * tail_c[c]
                                j = c
                                while j < n_cat - 1 and u >= p_c[j]:
                                    u -= p_c[j]
                                    j += 1
                                nxt[dest_c[j], k] += 1
                                if j == win_c:
                                    class_wins[d, t, k] += 1
                            lefts[k] = 0
                            continue
                        else:
                            if not ps > 0.0:
                                x = 0
                            elif left * ps < _INVERSION_MAX_MEAN:
                                x = _binomial_inversion(rng, left, ps)
                            else:
                                x = _btrd_sample(rng, left, ps, set_b[k], set_vr[k],
                                                 set_inv[k])
                            # a guard only: the samplers return 0 <= x <= left
                            x = min(max(x, 0), left)
                            if flip:
                                x = left - x
                        if x > 0:
                            nxt[dest_c[c], k] += x
                            if c == win_c:
                                class_wins[d, t, k] += x
                            lefts[k] = left - x
            for gs in range(arrivals.shape[2]):
                nxt[gs * n_ages, new_cls] += arrivals[d, t, gs]
            for cell in range(n_cells):
                s = state_of[cell]
                for k in range(new_cls):
                    occupancy[d, t, 0, s] += nxt[cell, k]
                occupancy[d, t, 1, s] += nxt[cell, new_cls]
            cur, nxt = nxt, cur
