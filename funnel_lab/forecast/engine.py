"""The counts engine: Monte Carlo of a segment's deals, week by week, per posterior draw.

Cost does not depend on the number of deals: deals in the same *cell* are exchangeable, so the
engine moves counts between cells with one multinomial split per cell, week and draw,
vectorised over draws and cells.

Cells
-----
A cell is ``(group, state, age, class)``:

* ``group``: the posterior's groups (``("all",)``, or owners or teams);
* ``state``: :attr:`Funnel.states` (open stages, Won, Lost). Won is absorbing; Lost is an
  ordinary state with its own age, so re-engagement can fade with time since lost;
* ``age``: whole weeks already spent in the state, ``0 .. A-1`` with ``A = band_edges[-1] + 1``;
  the last age collects every deal at least ``band_edges[-1]`` weeks in the state. A deal of
  age ``a`` uses the rates of the band ``b(a)`` (the last edge ``<= a``) for the whole week.
  Without age bands (``band_edges == (0,)``) ``A = 1``;
* ``class``: ``0 .. K-1`` are amount classes of today's deals (quantile bins of today's open
  deals' amounts; each class is valued by the mean and variance of its deals' amounts, see
  :func:`count_cells`); class ``K`` holds the deals created during the forecast, whose
  amounts are drawn when they are won.

One week, for a deal in cell ``(g, i, a, k)`` under draw ``d`` (``P = expm(Q_{d,g,b(a)})``):

* it is in state ``j != i`` at the end of the week with probability ``P[i, j]`` and then has
  age 0 (it entered ``j`` during the week);
* it never left ``i`` with probability ``exp(-q_i)`` and then has age ``min(a + 1, A - 1)``;
* it left ``i`` and came back with probability ``P[i, i] - exp(-q_i)``: age 0.

With ``A == 1`` the last two are one outcome (``P[i, i]``). Deals keep their group and class.
This is exact without age bands; with bands, a deal that moves during a week uses its old
band's rates until the end of that week (an error of at most one week in band timing).

Arrivals: new deals of the week form a Poisson process (mean ``arrivals * lead_inflow`` per
week), or a fixed number per week (``leads_per_week``; a fractional part is a Bernoulli draw
so the mean is exact). A new deal goes to group ``g`` with ``group_share`` and enters open
stage ``e`` with ``entry_probs``, at a uniformly random moment of the week; where it is at
the end of the week is row ``e`` of ``integral_0^1 expm(Q u) du`` (band 0 rates), at age 0.
By Poisson thinning the week's arrivals per end cell are independent Poisson counts.

Sampling: each cell's split is a multinomial drawn as a chain of conditional binomials over
its categories in decreasing probability, which stops once the cell's deals are all placed;
the last few deals of a cell draw their categories one uniform each. The loop over draws,
weeks and cells is compiled (:mod:`funnel_lab.forecast._sampler`, numba; its exact binomial
sampler is several times faster than numpy's for parameters that change at every call).
Arrivals (they do not depend on the counts) and amounts are drawn with numpy before and after
it. Blocks of :data:`DRAW_BLOCK` draws each get their own child generator and run in threads,
so the numbers depend on the seed only, not on the number of threads.

Amounts: ``n`` wins from amount class ``k`` bring the sum of ``n`` amounts drawn from the
class, approximated by a gamma variable with the class's mean and within-class variance
(``Gamma(n m^2 / v, v / m)``: exactly the sum of ``n`` gamma amounts with mean ``m`` and
variance ``v``), so revenue keeps both the class means and the spread inside each class.
Wins from new deals are first split among ``K_new`` equal-probability bins of the draw's
log-normal amount model (a multinomial), then valued the same way with each bin's
conditional mean and variance. The mean revenue is exact either way.

Dependency rule: numpy, scipy and numba (through :mod:`funnel_lab.forecast._sampler`, imported
on first use); nothing here knows pandas or the CRM.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from funnel_lab.errors import ParameterError
from funnel_lab.forecast.transition import one_week

__all__ = [
    "EngineInputs",
    "EngineResult",
    "age_index",
    "ages_of",
    "amount_class_edges",
    "cell_probabilities",
    "count_cells",
    "lognormal_bin_means",
    "lognormal_bin_variances",
    "run_engine",
    "sum_of_amounts",
]

log = logging.getLogger(__name__)

PIPELINE, NEW = 0, 1
# Draws are simulated in fixed blocks, each with its own child generator, so the numbers do
# not depend on how many threads run the blocks.
DRAW_BLOCK = 500
# Deals are counted into cells in chunks, so memory does not grow with the number of deals;
# amount-class edges come from at most this many open deals (an evenly strided subsample).
COUNT_CHUNK = 65_536
QUANTILE_SAMPLE = 100_000


def ages_of(band_edges: tuple[int, ...]) -> tuple[int, np.ndarray]:
    """Number of ages ``A`` and the band of each age (see the module docstring).

    >>> ages_of((0, 2, 4))
    (5, array([0, 0, 1, 1, 2]))
    """
    edges = np.asarray(band_edges, dtype=int)
    n_ages = int(edges[-1]) + 1
    band = np.searchsorted(edges, np.arange(n_ages), side="right") - 1
    return n_ages, band


def age_index(age_days: np.ndarray, n_ages: int) -> np.ndarray:
    """Whole weeks already spent in the state, capped at the last age ``n_ages - 1``.

    >>> age_index(np.array([0.5, 6.9, 7.0, 100.0]), 3)
    array([0, 0, 1, 2])
    """
    weeks = np.floor(np.maximum(np.asarray(age_days, dtype=float), 0.0) / 7.0)
    return np.minimum(weeks, n_ages - 1).astype(np.int64)


def amount_class_edges(open_amounts: np.ndarray, n_classes: int) -> np.ndarray:
    """Inner edges of ``n_classes`` quantile bins of today's open deals' amounts.

    Ties can merge bins (fewer edges). Above :data:`QUANTILE_SAMPLE` deals the quantiles are
    those of an evenly strided subsample.

    >>> amount_class_edges(np.arange(1.0, 101.0), 4)
    array([25.75, 50.5 , 75.25])
    """
    a = np.asarray(open_amounts, dtype=float)
    if len(a) > QUANTILE_SAMPLE:
        a = a[:: int(np.ceil(len(a) / QUANTILE_SAMPLE))]
    if len(a) == 0 or n_classes <= 1:
        return np.zeros(0)
    return np.unique(np.quantile(a, np.linspace(0.0, 1.0, n_classes + 1)[1:-1]))


def count_cells(shape: tuple[int, int, int], group: np.ndarray, state: np.ndarray,
                age: np.ndarray, amount: np.ndarray, edges: np.ndarray,
                cell_weight: np.ndarray | None = None,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count deals into cells ``(group, state, age, amount class)``, chunk by chunk.

    A class's amount is the mean of its deals' amounts weighted by ``cell_weight`` of each
    deal's cell. With the probability of being won within the horizon as the weight, the
    expected revenue at the horizon is exactly the sum over deals of amount times win
    probability, even when amounts differ between stages within a class (big deals sitting
    in late stages).

    Parameters
    ----------
    shape : (G, S, A)
    group, state, age : int arrays (n,)
    amount : float array (n,)
        Every deal needs an amount (fill missing ones first).
    edges : array
        Inner edges of the amount classes (:func:`amount_class_edges`).
    cell_weight : array (G, S, A), optional
        Weight of a deal in its class's mean and variance (default: equal weights). A class
        whose deals all have weight zero falls back to equal weights.

    Returns
    -------
    init : int64 array (G, S, A, K)
        Deals per cell; empty amount classes are dropped.
    class_amounts, class_variances : arrays (K,)
        (Weighted) mean and variance of the amounts in each class.

    Examples
    --------
    >>> init, means, variances = count_cells((1, 2, 1), np.zeros(4, int), np.array([0, 0, 1, 1]),
    ...                           np.zeros(4, int), np.array([1.0, 3.0, 10.0, 30.0]),
    ...                           np.array([5.0]))
    >>> init[0, :, 0], means, variances
    (array([[2, 0],
           [0, 2]]), array([ 2., 20.]), array([  1., 100.]))
    """
    g, s, a = shape
    k = len(edges) + 1
    counts = np.zeros(g * s * a * k, dtype=np.int64)
    moments = np.zeros((2, 3, k))  # (equal, weighted) x (weight, amount, amount^2) per class
    weights = None if cell_weight is None else np.asarray(cell_weight, dtype=float).ravel()
    for start in range(0, len(state), COUNT_CHUNK):
        sl = slice(start, start + COUNT_CHUNK)
        x = amount[sl]
        klass = np.searchsorted(edges, x, side="right")
        cell = (group[sl] * s + state[sl]) * a + age[sl]
        counts += np.bincount(cell * k + klass, minlength=counts.size)
        for row, w in enumerate((np.ones(len(x)), None if weights is None else weights[cell])):
            if w is not None:
                for p in range(3):
                    moments[row, p] += np.bincount(klass, weights=w * x**p, minlength=k)
    counts = counts.reshape(g, s, a, k)
    used = counts.sum(axis=(0, 1, 2)) > 0
    if not used.any():
        return np.zeros((g, s, a, 1), dtype=np.int64), np.zeros(1), np.zeros(1)
    m = moments[0][:, used]
    if weights is not None:
        weighted = moments[1][:, used]
        m = np.where(weighted[0] > 0, weighted, m)
    means = m[1] / m[0]
    variances = np.maximum(m[2] / m[0] - means**2, 0.0)
    return counts[..., used], means, variances


def cell_probabilities(move: np.ndarray, stay: np.ndarray,
                       band_edges: tuple[int, ...]) -> np.ndarray:
    """Multinomial probabilities of one week for every cell.

    Parameters
    ----------
    move : array (D, G, B, S, S)
        One-week matrices per draw, group and band.
    stay : array (D, G, B, S)
        Probability of no move during the week.
    band_edges : tuple of int

    Returns
    -------
    array (D, G, S, A, C)
        ``C = S`` when ``A == 1`` (category ``j``: in state ``j`` at age 0 at the end of the
        week), else ``C = S + 1`` (category ``j``: entered ``j`` during the week, age 0;
        category ``S``: never left, one week older). Rows are clipped at zero and sum to one.
    """
    n_ages, band = ages_of(band_edges)
    p = move[:, :, band]  # (D, G, A, S, S)
    p = np.moveaxis(p, 2, 3)  # (D, G, S, A, S)
    if n_ages > 1:
        st = np.moveaxis(stay[:, :, band], 2, 3)  # (D, G, S, A)
        s = p.shape[2]
        idx = np.arange(s)
        returned = p[:, :, idx, :, idx]  # (S, D, G, A) by fancy indexing rules
        returned = np.moveaxis(returned, 0, 2) - st
        p = np.concatenate([p, st[..., None]], axis=-1)
        p[:, :, idx, :, idx] = np.moveaxis(returned, 2, 0)
    p = np.clip(p, 0.0, None)
    return p / p.sum(axis=-1, keepdims=True)


def lognormal_bin_means(mu: np.ndarray, sigma: np.ndarray, n_bins: int) -> np.ndarray:
    """Conditional means of a log-normal within ``n_bins`` equal-probability bins.

    Returns an array ``(..., n_bins)``; the bins' average equals ``exp(mu + sigma**2 / 2)``.

    >>> m = lognormal_bin_means(np.array(0.0), np.array(1.0), 4)
    >>> bool(np.isclose(m.mean(), np.exp(0.5)))
    True
    """
    mu = np.asarray(mu, dtype=float)[..., None]
    sigma = np.asarray(sigma, dtype=float)[..., None]
    z = ndtri(np.linspace(0.0, 1.0, n_bins + 1))  # -inf .. inf
    partial = ndtr(z[None, :] - sigma) if sigma.ndim else ndtr(z - sigma)
    mass = np.diff(partial, axis=-1)
    return n_bins * np.exp(mu + 0.5 * sigma**2) * mass


def lognormal_bin_variances(mu: np.ndarray, sigma: np.ndarray, n_bins: int) -> np.ndarray:
    """Conditional variances of a log-normal within ``n_bins`` equal-probability bins.

    Together with :func:`lognormal_bin_means` they restore the log-normal's variance
    (within-bin variances averaged plus the variance of the bin means).

    >>> mu, s = np.array(0.0), np.array(0.8)
    >>> m, v = lognormal_bin_means(mu, s, 5), lognormal_bin_variances(mu, s, 5)
    >>> bool(np.isclose(v.mean() + m.var(), (np.exp(s**2) - 1) * np.exp(s**2)))
    True
    """
    mu = np.asarray(mu, dtype=float)[..., None]
    sigma = np.asarray(sigma, dtype=float)[..., None]
    z = ndtri(np.linspace(0.0, 1.0, n_bins + 1))
    second = n_bins * np.exp(2 * mu + 2 * sigma**2) * np.diff(ndtr(z - 2 * sigma), axis=-1)
    means = lognormal_bin_means(mu[..., 0], sigma[..., 0], n_bins)
    return np.maximum(second - means**2, 0.0)


def sum_of_amounts(count: np.ndarray, mean: np.ndarray, variance: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """Sum of ``count`` amounts with the given mean and variance, as a gamma variable.

    Zero variance (or zero count) gives ``count * mean`` exactly. Broadcasts.

    >>> rng = np.random.default_rng(0)
    >>> x = sum_of_amounts(np.full(20000, 4), np.array(10.0), np.array(25.0), rng)
    >>> round(float(x.mean()), 0), round(float(x.var()) / 100, 1)
    (40.0, 1.0)
    """
    count, mean, variance = np.broadcast_arrays(np.asarray(count, dtype=float),
                                                np.asarray(mean, dtype=float),
                                                np.asarray(variance, dtype=float))
    ok = (count > 0) & (variance > 0) & (mean > 0)
    shape = np.where(ok, count * mean**2 / np.where(ok, variance, 1.0), 1.0)
    scale = np.where(ok, variance / np.where(ok, mean, 1.0), 1.0)
    return np.where(ok, rng.gamma(shape, scale), count * mean)


@dataclass
class EngineInputs:
    """Everything the engine needs for one segment (numpy arrays only).

    Attributes
    ----------
    rates : array (D, G, B, S, S)
        Posterior rate draws (per week).
    band_edges : tuple of int
    won : int
        Index of Won among the states.
    init : int array (G, S, A, K)
        Today's deals per cell (open and lost deals; Won is ignored).
    class_amounts : array (K,)
        Mean amount of each class of today's deals.
    landing : array (D, G, S)
        Where a new deal is at the end of its arrival week (sums to one over G and S).
    arrival_rate : array (D,) or None
        Expected new deals per week (Poisson), when ``leads_per_week`` is None.
    leads_per_week : float or None
        A fixed number of new deals per week.
    new_amounts : array (D, K_new)
        Bin means of the amount model for deals created during the forecast.
    class_variances : array (K,), optional
        Variance of the amounts within each class (default: zero, each win is worth its
        class mean exactly).
    new_variances : array (D, K_new), optional
        Within-bin variances of the amount model (default: zero).
    """

    rates: np.ndarray
    band_edges: tuple[int, ...]
    won: int
    init: np.ndarray
    class_amounts: np.ndarray
    landing: np.ndarray
    arrival_rate: np.ndarray | None
    leads_per_week: float | None
    new_amounts: np.ndarray
    class_variances: np.ndarray | None = None
    new_variances: np.ndarray | None = None

    @property
    def n_draws(self) -> int:
        return self.rates.shape[0]


@dataclass
class EngineResult:
    """Raw Monte Carlo draws of one segment.

    ``occupancy`` (D, H, 2, S) deals per state at the end of each week; ``wins`` (D, H, 2) and
    ``revenue`` (D, H, 2) won during each week. Axis 2 is the origin: 0 = today's deals
    (pipeline, including today's lost deals that come back), 1 = deals created during the
    forecast.
    """

    occupancy: np.ndarray
    wins: np.ndarray
    revenue: np.ndarray


def run_engine(inputs: EngineInputs, weeks: int, random_seed=None, threads: int = 2,
               week_matrices=None) -> EngineResult:
    """Simulate ``weeks`` weeks for every draw (see the module docstring).

    Parameters
    ----------
    inputs : EngineInputs
    weeks : int
        The horizon in weeks.
    random_seed : int or numpy.random.Generator, optional
    threads : int
        Blocks of draws run in this many threads (numpy's samplers release the GIL). The
        numbers do not depend on it.
    week_matrices : OneWeek, optional
        Precomputed :func:`one_week` of ``inputs.rates``.

    Returns
    -------
    EngineResult

    Examples
    --------
    >>> rates = np.zeros((2, 1, 1, 3, 3)); rates[..., 0, 1] = 1.0; rates[..., 0, 2] = 1.0
    >>> init = np.zeros((1, 3, 1, 1), dtype=np.int64); init[0, 0] = 10
    >>> inputs = EngineInputs(rates, (0,), 1, init, np.array([5.0]),
    ...                       np.array([[[1.0, 0, 0]]] * 2), None, 0.0, np.ones((2, 3)))
    >>> res = run_engine(inputs, weeks=3, random_seed=1)
    >>> res.occupancy.shape, int(res.occupancy[0, -1].sum())
    ((2, 3, 2, 3), 10)
    """
    rng = np.random.default_rng(random_seed)
    w = one_week(inputs.rates) if week_matrices is None else week_matrices
    pvals = cell_probabilities(w.move, w.stay, inputs.band_edges)
    if not np.isfinite(pvals).all():
        bad = np.unique(np.nonzero(~np.isfinite(pvals))[0])
        raise ParameterError(f"the rates of {len(bad)} draw(s) (first: draw {bad[0]}) give "
                             "non-finite one-week probabilities; check the posterior's rates")

    n_draws = inputs.n_draws
    starts = list(range(0, n_draws, DRAW_BLOCK))
    children = rng.spawn(len(starts))
    blocks = [(slice(s, min(s + DRAW_BLOCK, n_draws)), g) for s, g in zip(starts, children,
                                                                       strict=True)]

    def run(block):
        sl, gen = block
        return _simulate_block(inputs, pvals[sl], sl, weeks, gen)

    if threads > 1 and len(blocks) > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            parts = list(pool.map(run, blocks))
    else:
        parts = [run(b) for b in blocks]
    return EngineResult(
        occupancy=np.concatenate([p.occupancy for p in parts]),
        wins=np.concatenate([p.wins for p in parts]),
        revenue=np.concatenate([p.revenue for p in parts]),
    )


def _simulate_block(inputs: EngineInputs, pvals: np.ndarray, sl: slice, weeks: int,
                    rng: np.random.Generator) -> EngineResult:
    d, n_groups, n_states, n_ages, _ = pvals.shape
    n_classes = inputs.init.shape[-1]
    won = inputs.won
    landing = inputs.landing[sl]
    new_amounts = inputs.new_amounts[sl]
    class_amounts = np.asarray(inputs.class_amounts, dtype=float)
    class_vars = (np.zeros_like(class_amounts) if inputs.class_variances is None
                  else np.asarray(inputs.class_variances, dtype=float))
    new_vars = (np.zeros_like(new_amounts) if inputs.new_variances is None
                else inputs.new_variances[sl])

    # cells (G, S, A, K + 1), flattened to (G * S * A, K + 1): the last class holds deals
    # created during the forecast
    init = np.zeros((n_groups, n_states, n_ages, n_classes + 1), dtype=np.int64)
    init[..., :n_classes] = inputs.init
    init[:, won] = 0
    from funnel_lab.forecast._sampler import simulate_counts  # numba: imported on first use

    plan = _move_plan(pvals, won)
    # arrivals do not depend on the counts: drawn for all weeks at once
    arrived = _arrivals(inputs, landing, sl, weeks, rng)  # (d, H, G, S)
    occupancy = np.zeros((d, weeks, 2, n_states), dtype=np.int64)
    class_wins = np.zeros((d, weeks, n_classes + 1), dtype=np.int64)
    simulate_counts(rng, init.reshape(-1, n_classes + 1), *plan, n_ages,
                    np.ascontiguousarray(arrived.reshape(d, weeks, -1)), occupancy, class_wins)

    wins = np.zeros((d, weeks, 2), dtype=np.int64)
    wins[..., PIPELINE] = class_wins[..., :n_classes].sum(axis=-1)
    wins[..., NEW] = class_wins[..., n_classes] + arrived[..., won].sum(axis=-1)
    revenue = np.zeros((d, weeks, 2))
    revenue[..., PIPELINE] = sum_of_amounts(class_wins[..., :n_classes], class_amounts,
                                            class_vars, rng).sum(axis=-1)
    uniform_bins = np.full(new_amounts.shape[-1], 1.0 / new_amounts.shape[-1])
    bins = rng.multinomial(wins[..., NEW], uniform_bins)  # (d, H, K_new)
    revenue[..., NEW] = sum_of_amounts(bins, new_amounts[:, None], new_vars[:, None],
                                       rng).sum(axis=-1)
    return EngineResult(occupancy=occupancy, wins=wins, revenue=revenue)


def _move_plan(pvals: np.ndarray, won: int) -> tuple[np.ndarray, ...]:
    """Flattened cells and each moving cell's categories for :func:`simulate_counts`.

    Categories are put in decreasing probability: the binomial chain stops once a cell's
    deals are all placed, so small cells cost a few binomials instead of ``C``.
    """
    d, n_groups, n_states, n_ages, n_cat = pvals.shape
    g, s, a = np.meshgrid(np.arange(n_groups), np.arange(n_states), np.arange(n_ages),
                          indexing="ij")
    cell = (g * n_states + s) * n_ages + a
    moving = s != won
    src = cell[moving]  # (L,) in (group, state, age) order
    order = np.argsort(-pvals, axis=-1, kind="stable")[:, moving]  # (d, L, C)
    probs = np.take_along_axis(pvals[:, moving], order, axis=-1)
    tail = np.cumsum(probs[..., ::-1], axis=-1)[..., ::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = np.where(tail > 0, np.minimum(probs / tail, 1.0), 1.0)
    # category j < S: state j at age 0; category S: the same state, one week older
    g_l, s_l, a_l = g[moving], s[moving], a[moving]
    older = np.minimum(a_l + 1, n_ages - 1)
    entered = (g_l[:, None] * n_states + np.arange(n_states)[None, :]) * n_ages
    stayed = ((g_l * n_states + s_l) * n_ages + older)[:, None]
    targets = np.concatenate([entered, stayed], axis=1)[:, :n_cat]  # (L, C) by category
    dest = np.take_along_axis(np.broadcast_to(targets, order.shape), order, axis=-1)
    hit = order == won
    wins_at = np.where(hit.any(axis=-1), hit.argmax(axis=-1), -1)
    won_cells = cell[:, won].ravel()
    state_of = s.ravel()
    return (src.astype(np.int64), np.ascontiguousarray(dest, dtype=np.int64),
            np.ascontiguousarray(probs), np.ascontiguousarray(tail), np.ascontiguousarray(cond),
            wins_at.astype(np.int64), won_cells.astype(np.int64), state_of.astype(np.int64))


def _arrivals(inputs: EngineInputs, landing: np.ndarray, sl: slice, weeks: int,
              rng: np.random.Generator) -> np.ndarray:
    """New deals of every week per (draw, week, group, end state)."""
    d = landing.shape[0]
    shape = (d, weeks, *landing.shape[1:])
    if inputs.leads_per_week is None:
        lam = inputs.arrival_rate[sl][:, None, None, None] * landing[:, None]
        return rng.poisson(np.broadcast_to(lam, shape)).astype(np.int64)
    whole = np.floor(inputs.leads_per_week)
    n = whole + (rng.random((d, weeks)) < inputs.leads_per_week - whole)
    flat = rng.multinomial(n.astype(np.int64), landing.reshape(d, 1, -1))
    return flat.reshape(shape).astype(np.int64)
