"""Exact (conjugate) posteriors: Gamma rates, Gamma-Poisson arrivals, Dirichlet entry stages,
Normal-Inverse-Gamma log amounts.

Rates
-----
For each segment, group ``g``, age band ``b`` and *possible* move ``i -> j`` the likelihood of
the counts and time at risk is Poisson, ``n ~ Poisson(q * T)``, so a ``Gamma(a, b)`` prior
(shape ``a``, rate ``b`` in weeks) gives the exact posterior ``Gamma(a + n, b + T_weeks)``.
With a recency half-life, ``n`` and ``T`` are weighted (a tempered likelihood), and the same
formula holds.

Default prior (:class:`Prior`, logged at INFO, every field can be overridden with ``prior=``):

* **Which moves are possible** (``possible="observed"``): a move between two states of the
  segment (forward, skip, backward, to Won or Lost, Lost back to an open stage; never out of
  Won, never to itself) is possible when it was observed at least once anywhere in the
  segment (any group, any band). Other moves get rate exactly zero. ``possible="all"`` makes
  every structural move possible; a mapping ``{segment: [(from, to), ...]}`` lists them.
* **Gamma(a, b)** with ``a = rate_shape = 0.5`` (the prior weighs as much as half a
  transition) and, unless ``rate_weeks`` is given, ``b = a * T / (n + a)`` where ``n`` and
  ``T`` are the segment's total count of the move and time at risk in the from-state (all
  groups and bands): the prior mean is the segment's smoothed overall rate ``(n + a) / T``.
  It matters only where a group or band has little exposure, and there it shrinks towards the
  segment (a weak, data-scaled prior; the pooled model does this properly).

Arrivals, entry stage, amounts
------------------------------
* weekly arrival rate ``~ Gamma(arrival_shape + N, arrival_weeks + W)`` (Jeffreys' prior
  ``Gamma(0.5, 0)`` by default), ``N`` deals created over ``W`` weeks of history (both
  weighted with recency);
* entry stage ``~ Dirichlet(entry_concentration + entries)``, group share
  ``~ Dirichlet(group_concentration + deals per group)``;
* log amounts ``~ Normal(mu, sigma)`` with a Normal-Inverse-Gamma prior
  ``(mu0, kappa0, alpha0, beta0)``; the default ``(0, 0, -0.5, 0)`` is the reference prior
  ``p(mu, sigma^2) ~ 1 / sigma^2``, whose posterior is ``sigma^2 ~ InvGamma((n - 1) / 2,
  SS / 2)``, ``mu | sigma^2 ~ Normal(mean, sigma^2 / n)``.

Dependency rule: numpy only (plus funnel_lab.model.stats for the statistics it reads).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from funnel_lab.crm.funnel import Funnel
from funnel_lab.errors import ModelError, ParameterError, SparseDataWarning
from funnel_lab.model.posterior import SegmentPosterior
from funnel_lab.model.stats import SegmentStats

__all__ = [
    "Prior",
    "RatePosterior",
    "conjugate_segment",
    "possible_moves",
    "rate_posterior",
    "resolve_prior",
]

log = logging.getLogger(__name__)

# A stage whose moves out were seen fewer times than this gets a SparseDataWarning.
SPARSE_EXITS = 5


@dataclass(frozen=True)
class Prior:
    """Priors of the conjugate model (see the module docstring for what each field means).

    Examples
    --------
    >>> Prior(rate_shape=1.0, possible="all").rate_shape
    1.0
    """

    rate_shape: float = 0.5
    rate_weeks: float | None = None
    possible: str | Mapping[str, Any] = "observed"
    arrival_shape: float = 0.5
    arrival_weeks: float = 0.0
    entry_concentration: float = 0.5
    group_concentration: float = 0.5
    amount_mu0: float = 0.0
    amount_kappa0: float = 0.0
    amount_alpha0: float = -0.5
    amount_beta0: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if isinstance(self.possible, Mapping):
            out["possible"] = {str(k): [list(m) for m in v] for k, v in self.possible.items()}
        return out


def resolve_prior(prior: Prior | Mapping[str, Any] | None) -> Prior:
    """``None`` gives the defaults; a mapping overrides some fields of them.

    >>> resolve_prior({"rate_shape": 1.0}).rate_shape
    1.0
    """
    if prior is None:
        return Prior()
    if isinstance(prior, Prior):
        return prior
    if isinstance(prior, Mapping):
        names = {f.name for f in dataclasses.fields(Prior)}
        unknown = sorted(set(prior) - names)
        if unknown:
            raise ParameterError(
                f"unknown prior setting(s) {unknown}; valid names: {sorted(names)}"
            )
        return Prior(**dict(prior))
    raise ParameterError(f"prior must be None, a Prior or a mapping, got {type(prior).__name__}")


def _structural(funnel: Funnel) -> np.ndarray:
    n = len(funnel.states)
    mask = ~np.eye(n, dtype=bool)
    mask[funnel.n_open, :] = False  # Won is absorbing
    return mask


def possible_moves(stats: SegmentStats, prior: Prior) -> np.ndarray:
    """Boolean (S, S) mask of the moves that get a rate (see the module docstring).

    >>> possible_moves(stats["SMB"], Prior())        # doctest: +SKIP
    """
    funnel = stats.funnel
    structural = _structural(funnel)
    spec = prior.possible
    if isinstance(spec, Mapping) and funnel.segment in spec:
        mask = np.zeros_like(structural)
        for move in spec[funnel.segment]:
            src, dst = move
            if src not in funnel.states or dst not in funnel.states:
                raise ParameterError(
                    f"prior.possible for segment '{funnel.segment}': unknown stage in move "
                    f"{(src, dst)!r}; stages are {list(funnel.states)}"
                )
            if not structural[funnel.order(src), funnel.order(dst)]:
                raise ParameterError(
                    f"prior.possible for segment '{funnel.segment}': move {(src, dst)!r} is "
                    "not allowed (out of Won, or to itself)"
                )
            mask[funnel.order(src), funnel.order(dst)] = True
        return mask
    if isinstance(spec, Mapping) or spec == "observed":
        return structural & (stats.n_transitions.sum(axis=(0, 1)) > 0)
    if spec == "all":
        return structural
    raise ParameterError(
        f"prior.possible must be 'observed', 'all' or a mapping segment -> moves; got {spec!r}"
    )


@dataclass
class RatePosterior:
    """Gamma posterior parameters of one segment's rates, (group, band, S, S).

    ``shape`` and ``rate`` (per week) are zero where ``possible`` is False.
    """

    shape: np.ndarray
    rate: np.ndarray
    possible: np.ndarray
    prior_shape: np.ndarray
    prior_rate: np.ndarray

    def mean(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.possible, self.shape / np.where(self.possible, self.rate, 1), 0)

    def draw(self, draws: int, rng: np.random.Generator) -> np.ndarray:
        """Independent Gamma draws, (draw, group, band, S, S); zero for impossible moves."""
        shape = np.where(self.possible, self.shape, 1.0)
        scale = np.where(self.possible, 1.0 / np.where(self.possible, self.rate, 1.0), 1.0)
        out = rng.gamma(shape, scale, size=(draws, *shape.shape))
        out[:, ~np.broadcast_to(self.possible, shape.shape)] = 0.0
        return out


def rate_posterior(stats: SegmentStats, prior: Prior | None = None) -> RatePosterior:
    """Gamma(a + n, b + T) parameters of every rate of a segment.

    Examples
    --------
    >>> post = rate_posterior(stats["SMB"])           # doctest: +SKIP
    >>> post.mean().shape                             # doctest: +SKIP
    (1, 1, 5, 5)
    """
    prior = resolve_prior(prior)
    possible = possible_moves(stats, prior)
    counts = np.asarray(stats.counts, dtype=float)
    t_weeks = stats.exposure_weeks

    a = float(prior.rate_shape)
    if not a > 0:
        raise ParameterError(f"prior rate_shape must be > 0, got {a!r}")
    if prior.rate_weeks is None:
        seg_n = counts.sum(axis=(0, 1))
        seg_t = t_weeks.sum(axis=(0, 1))[:, None]
        # b = a T / (n + a): the prior mean is the segment's smoothed rate (n + a) / T; a
        # state never visited in the segment falls back to b = 1 week.
        b = np.where(seg_t > 0, a * seg_t / (seg_n + a), 1.0)
    else:
        if not prior.rate_weeks > 0:
            raise ParameterError(f"prior rate_weeks must be > 0 or None, got {prior.rate_weeks}")
        b = np.full(possible.shape, float(prior.rate_weeks))
    prior_shape = np.where(possible, a, 0.0)
    prior_rate = np.where(possible, b, 0.0)

    shape = np.where(possible, a + counts, 0.0)
    rate = np.where(possible, prior_rate + t_weeks[..., None], 0.0)
    return RatePosterior(shape=shape, rate=rate, possible=possible,
                         prior_shape=prior_shape, prior_rate=prior_rate)


def _warn_sparse(stats: SegmentStats, possible: np.ndarray) -> None:
    exits = stats.n_transitions.sum(axis=(0, 1, 3))
    for k, stage in enumerate(stats.funnel.stages):
        if exits[k] < SPARSE_EXITS:
            warnings.warn(
                f"segment '{stats.segment}', stage '{stage}': only {int(exits[k])} moves out "
                "were observed; its rates (and conversion) rest mostly on the prior",
                SparseDataWarning, stacklevel=4,
            )
        if not possible[k].any():
            warnings.warn(
                f"segment '{stats.segment}', stage '{stage}': no move out is possible (none "
                "observed), so deals never leave it; pass prior={'possible': 'all'} to allow "
                "every move",
                SparseDataWarning, stacklevel=4,
            )


def _arrival_draws(stats: SegmentStats, prior: Prior, draws: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
    rate = prior.arrival_weeks + stats.arrival_exposure_weeks
    shape = prior.arrival_shape + stats.arrival_count
    if not (rate > 0 and shape > 0):
        raise ModelError(
            f"segment '{stats.segment}': no history to estimate arrivals from "
            f"({stats.arrival_exposure_weeks} weeks, {stats.arrival_count} deals)"
        )
    arrivals = rng.gamma(shape, 1.0 / rate, size=draws)
    sources = tuple(stats.source_arrivals)
    src_shape = prior.arrival_shape + np.array([stats.source_arrivals[s] for s in sources])
    source_draws = rng.gamma(src_shape, 1.0 / rate, size=(draws, len(sources)))
    return arrivals, sources, source_draws


def _amount_draws(stats: SegmentStats, prior: Prior, draws: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Normal-Inverse-Gamma posterior of (mu, sigma) of log amounts, with recency weights."""
    x, w = stats.log_amounts, stats.amount_weights
    n = float(w.sum())
    mean = float((w * x).sum() / n) if n > 0 else 0.0
    ss = float((w * (x - mean) ** 2).sum()) if n > 0 else 0.0
    k0, m0, a0, b0 = prior.amount_kappa0, prior.amount_mu0, prior.amount_alpha0, prior.amount_beta0
    kn = k0 + n
    an = a0 + n / 2.0
    bn = b0 + ss / 2.0 + (k0 * n * (mean - m0) ** 2 / (2.0 * kn) if kn > 0 else 0.0)
    if not (kn > 0 and an > 0 and bn > 0):
        warnings.warn(
            f"segment '{stats.segment}': {len(x)} positive amounts are too few for the amount "
            "model (at least 2 distinct ones are needed); amounts of new deals are unknown (NaN)",
            SparseDataWarning, stacklevel=4,
        )
        return np.full(draws, np.nan), np.full(draws, np.nan)
    mn = (k0 * m0 + n * mean) / kn
    sigma2 = bn / rng.gamma(an, 1.0, size=draws)
    mu = mn + np.sqrt(sigma2 / kn) * rng.standard_normal(draws)
    return mu, np.sqrt(sigma2)


def conjugate_segment(
    stats: SegmentStats,
    draws: int,
    rng: np.random.Generator,
    prior: Prior | None = None,
) -> SegmentPosterior:
    """Posterior draws of one segment (rates, arrivals, entry stage, group share, amounts).

    Examples
    --------
    >>> sp = conjugate_segment(stats["SMB"], 500, np.random.default_rng(1))  # doctest: +SKIP
    >>> sp.rates.shape                                                       # doctest: +SKIP
    (500, 1, 1, 5, 5)
    """
    prior = resolve_prior(prior)
    post = rate_posterior(stats, prior)
    _warn_sparse(stats, post.possible)
    moves = [f"{stats.funnel.states[i]}->{stats.funnel.states[j]}"
             for i, j in zip(*np.nonzero(post.possible), strict=True)]
    log.info("segment %s: %s possible moves (%s): %s", stats.segment, len(moves),
             prior.possible if isinstance(prior.possible, str) else "given", ", ".join(moves))

    rates = post.draw(draws, rng)
    arrivals, sources, source_arrivals = _arrival_draws(stats, prior, draws, rng)

    n_open = stats.funnel.n_open
    entries = np.asarray(stats.entries, dtype=float).sum(axis=0)[:n_open]
    entry_probs = rng.dirichlet(prior.entry_concentration + entries, size=draws)
    group_share = rng.dirichlet(prior.group_concentration + stats.group_arrivals, size=draws)
    amount_mu, amount_sigma = _amount_draws(stats, prior, draws, rng)

    return SegmentPosterior(
        funnel=stats.funnel, rates=rates, arrivals=arrivals, entry_probs=entry_probs,
        amount_mu=amount_mu, amount_sigma=amount_sigma, groups=stats.groups,
        group_by=stats.group_by, band_edges=stats.band_edges, group_share=group_share,
        sources=sources, source_arrivals=source_arrivals,
    )
