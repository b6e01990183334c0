"""Pooled posterior of stage rates (PyMC): salespeople or teams partially pooled to their segment.

The model, for every segment, group ``g`` (owner or team), age band ``b`` and possible move
``i -> j`` (a *cell*)::

    n[g, b, i, j] ~ Poisson(q[g, b, i, j] * T[g, b, i])         counts with time at risk
    log q[g, b, i, j] = log q[b, i, j] + sigma[i, j] * z[g, b, i, j]
    z ~ Normal(0, 1)                                            non-centred group effects
    log q[b, i, j] ~ Normal(mu[i, j], log_rate_sd)               the typical salesperson
    sigma[i, j] ~ HalfNormal(sigma_scale)                        how much groups differ

so a salesperson with five deals is pulled towards the segment's typical rate, and one with
five hundred is not. ``q[b, i, j]`` is the rate of the *typical* group (effect exactly 1), the
segment-level truth of CONTRACTS.md.

What is sampled is an exact reparametrisation of this model, which mixes much better when a
segment has few groups (with ``log q`` and the ``z`` sampled directly, a shift of ``log q``
against the mean of the ``z`` is nearly free and R-hat of the demo CRM hovered at 1.01). The
vector ``z`` of a cell splits into its mean over the segment's ``G`` groups, ``zbar ~
Normal(0, 1/G)``, and the deviations ``z - zbar``, a ``ZeroSumNormal(1)``, independent of
``zbar``. With ``m = log q + sigma * zbar`` (the groups' mean log rate, well determined by the
data)::

    m[b, i, j] ~ Normal(mu[i, j], sqrt(log_rate_sd**2 + sigma[i, j]**2 / G))
    log q[g, b, i, j] = m[b, i, j] + sigma[i, j] * (z - zbar)[g, b, i, j]

The likelihood depends on ``m``, ``sigma`` and ``z - zbar`` only, so nothing else needs to be
sampled; group rates come straight out of it, groups with no time at risk in a cell included.

Priors (weakly informative, logged at INFO):

* The typical rate gets **the conjugate model's prior** (:mod:`funnel_lab.model.conjugate`,
  ``Gamma(a, b)`` with ``a = 0.5`` and prior mean the segment's smoothed rate of the move by
  default), carried to the log scale by matching moments: ``log q[b, i, j] ~ Normal(digamma(a)
  - log(b), sqrt(trigamma(a)))`` (sd 2.2 for ``a = 0.5``: weak). So the pooled and the
  per-group conjugate fits use the same prior and differ only in the pooling.
  ``prior={"log_rate_mu": ..., "log_rate_sd": ...}`` replaces it.
* ``sigma_scale`` (default 0.5): a salesperson twice or half as fast as the typical one is
  plausible (log 2 = 0.7 is 1.4 prior standard deviations), ten times is not. One ``sigma``
  per move, shared by its age bands.
* With recency weights (a half-life), counts and exposure are weighted: the Poisson term is
  then the tempered likelihood ``n log(mu) - mu`` with non-integer ``n`` (a ``pm.Potential``),
  as in the conjugate model.

Only possible moves are parameters, the ones that get a rate in the conjugate model (by
default: seen at least once in the segment, any group, any band). Cells are flattened into
vectors over every segment at once, so one small model is compiled (Poisson with exposure
compiles in seconds; the PyTensor compile cache makes repeats cheap). A band that no deal of
the segment ever reached copies the nearest lower band (or higher, for the first band).

Dependency rule: numpy and scipy; PyMC and ArviZ only inside functions (importing this module
stays cheap); funnel_lab.crm.funnel, funnel_lab.errors and funnel_lab.model.conjugate. Never
the forecast, charts or reports.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
from scipy.special import digamma, polygamma

from funnel_lab.crm.funnel import Funnel
from funnel_lab.errors import ModelError, ParameterError, SamplingWarning

__all__ = [
    "DEFAULT_POOLED_PRIOR",
    "ESS_PER_CHAIN_OK",
    "MIN_DRAWS_PER_CHAIN",
    "RHAT_OK",
    "fit_pooled",
    "fit_pooled_draws",
    "fit_pooled_segment",
    "pooled_prior",
    "sampling_problems",
]

log = logging.getLogger(__name__)

SECONDS_PER_WEEK = 7 * 24 * 3600.0

#: R-hat above this means the chains disagree (Vehtari et al. 2021 recommend 1.01).
RHAT_OK = 1.01
#: Bulk ESS below this many per chain is too few draws for stable 90% intervals.
ESS_PER_CHAIN_OK = 100
#: Draws per chain that fit_pooled_draws samples at least: with a few hundred parameters the
#: largest R-hat of 4 x 1000 draws of a sampler that works stays below 1.01 (demo CRM: 1.006 to
#: 1.009 over seeds); 4 x 250 would cross it by noise alone.
MIN_DRAWS_PER_CHAIN = 1000

#: Pooled-only prior settings (see the module docstring); None means "from the conjugate prior".
DEFAULT_POOLED_PRIOR: dict[str, float | None] = {
    "log_rate_mu": None,
    "log_rate_sd": None,
    "sigma_scale": 0.5,
}
_POOLED_KEYS = tuple(DEFAULT_POOLED_PRIOR)


def pooled_prior(prior: Any = None) -> tuple[dict[str, float | None], Any]:
    """Split ``prior`` into the pooled model's own settings and the conjugate model's prior.

    Parameters
    ----------
    prior : None, :class:`funnel_lab.model.conjugate.Prior` or mapping
        A mapping may mix the pooled settings ``log_rate_mu`` (log of a rate per week),
        ``log_rate_sd`` (> 0) and ``sigma_scale`` (> 0) with any field of the conjugate
        ``Prior`` (``rate_shape``, ``rate_weeks``, ``possible``, ...), which sets the prior of
        the typical rate and the possible moves exactly as in the conjugate model.

    Returns
    -------
    pooled : dict
        ``log_rate_mu``, ``log_rate_sd``, ``sigma_scale`` (None: derived from the conjugate
        prior).
    conjugate : Prior

    Examples
    --------
    >>> pooled, conj = pooled_prior({"sigma_scale": 0.3, "rate_shape": 1.0})
    >>> pooled["sigma_scale"], conj.rate_shape
    (0.3, 1.0)
    """
    from funnel_lab.model.conjugate import Prior, resolve_prior

    out = dict(DEFAULT_POOLED_PRIOR)
    if prior is None or isinstance(prior, Prior):
        return out, resolve_prior(prior)
    if not isinstance(prior, Mapping):
        raise ParameterError(
            f"prior must be None, a Prior or a mapping of names to values, got "
            f"{type(prior).__name__}"
        )
    for key in _POOLED_KEYS:
        if key not in prior or (prior[key] is None and key != "sigma_scale"):
            continue
        value = prior[key]
        ok = isinstance(value, int | float | np.number) and not isinstance(value, bool) \
            and np.isfinite(value) and (key == "log_rate_mu" or value > 0)
        if not ok:
            need = "a finite number" if key == "log_rate_mu" else "a number > 0"
            raise ParameterError(f"prior['{key}'] must be {need}, got {value!r}")
        out[key] = float(value)
    conjugate = resolve_prior({k: v for k, v in prior.items() if k not in _POOLED_KEYS})
    return out, conjugate


# ---------------------------------------------------------------- layout


@dataclass
class _SegmentLayout:
    """The flattened cells of one segment (indices into that segment's arrays)."""

    name: str
    shape: tuple[int, int, int, int]  # (group, band, S, S)
    cell_band: np.ndarray  # (K,) band of each typical-rate cell
    cell_from: np.ndarray  # (K,)
    cell_to: np.ndarray  # (K,)
    cell_sigma: np.ndarray  # (K,) index of the cell's sigma within the segment
    cell_mu: np.ndarray  # (K,) prior mean of log q
    cell_sd: np.ndarray  # (K,) prior sd of log q
    n_sigma: int
    obs_group: np.ndarray  # (N,) group of each observed (group, cell)
    obs_cell: np.ndarray  # (N,) cell index within the segment
    obs_count: np.ndarray  # (N,) float
    obs_weeks: np.ndarray  # (N,) float time at risk in weeks
    copy_bands: list[tuple[int, int, int]]  # (state, empty band, band copied from)


def _layout_segment(
    name: str,
    stats: Any,
    pooled: Mapping[str, float | None],
    conjugate: Any,
) -> _SegmentLayout:
    from funnel_lab.model.conjugate import rate_posterior

    counts = np.asarray(stats.counts, dtype=float)
    weeks = np.asarray(stats.exposure_seconds, dtype=float) / SECONDS_PER_WEEK
    if counts.ndim != 4 or counts.shape[-1] != counts.shape[-2]:
        raise ParameterError(
            f"segment '{name}': counts must have shape (group, band, S, S), got {counts.shape}"
        )
    if weeks.shape != counts.shape[:3]:
        raise ParameterError(
            f"segment '{name}': exposure_seconds must have shape {counts.shape[:3]}, "
            f"got {weeks.shape}"
        )
    if not (np.isfinite(counts).all() and np.isfinite(weeks).all()) or (counts < 0).any() \
            or (weeks < 0).any():
        raise ParameterError(f"segment '{name}': counts and exposure must be finite and >= 0")
    n_group, n_band, n_state, _ = counts.shape

    # The conjugate model decides which moves are possible and the prior of each rate.
    conj = rate_posterior(stats, conjugate)
    move = np.asarray(conj.possible, dtype=bool).reshape(-1, n_state, n_state).any(axis=0)
    prior_shape = np.broadcast_to(conj.prior_shape, (n_band, n_state, n_state))
    prior_rate = np.broadcast_to(conj.prior_rate, (n_band, n_state, n_state))
    seg_weeks = weeks.sum(axis=0)  # (band, S)

    # Cells: every possible move in every band that some deal of the segment reached.
    band_i: list[int] = []
    from_i: list[int] = []
    to_i: list[int] = []
    copy_bands: list[tuple[int, int, int]] = []
    for i in range(n_state):
        targets = np.flatnonzero(move[i])
        reached = np.flatnonzero((seg_weeks[:, i] > 0) | (counts[:, :, i, :].sum(axis=(0, 2)) > 0))
        if targets.size == 0 or reached.size == 0:
            continue
        for b in range(n_band):
            if b in reached:
                band_i += [b] * targets.size
                from_i += [i] * targets.size
                to_i += targets.tolist()
            else:
                lower = reached[reached < b]
                copy_bands.append((i, b, int(lower[-1] if lower.size else reached[0])))
    cell_band = np.asarray(band_i, dtype=int)
    cell_from = np.asarray(from_i, dtype=int)
    cell_to = np.asarray(to_i, dtype=int)

    # One sigma per move i -> j, shared by the move's bands.
    uniq, cell_sigma = np.unique(cell_from * n_state + cell_to, return_inverse=True)
    a = prior_shape[cell_band, cell_from, cell_to]
    b_rate = prior_rate[cell_band, cell_from, cell_to]
    # log q under Gamma(a, b) has mean digamma(a) - log(b) and variance trigamma(a): the
    # typical rate gets the log-normal with the conjugate prior's moments on the log scale.
    cell_mu = digamma(a) - np.log(b_rate) if pooled["log_rate_mu"] is None \
        else np.full(cell_band.size, float(pooled["log_rate_mu"]))
    cell_sd = np.sqrt(polygamma(1, a)) if pooled["log_rate_sd"] is None \
        else np.full(cell_band.size, float(pooled["log_rate_sd"]))

    # Observations: (group, cell) pairs with time at risk or events.
    n_cell = cell_band.size
    g_grid = np.repeat(np.arange(n_group), n_cell)
    k_grid = np.tile(np.arange(n_cell), n_group)
    obs_count = counts[g_grid, cell_band[k_grid], cell_from[k_grid], cell_to[k_grid]]
    obs_weeks = weeks[g_grid, cell_band[k_grid], cell_from[k_grid]]
    keep = (obs_weeks > 0) | (obs_count > 0)
    return _SegmentLayout(
        name=name,
        shape=(n_group, n_band, n_state, n_state),
        cell_band=cell_band,
        cell_from=cell_from,
        cell_to=cell_to,
        cell_sigma=cell_sigma.astype(int).reshape(-1),
        cell_mu=cell_mu,
        cell_sd=cell_sd,
        n_sigma=int(uniq.size),
        obs_group=g_grid[keep],
        obs_cell=k_grid[keep],
        obs_count=obs_count[keep],
        obs_weeks=obs_weeks[keep],
        copy_bands=copy_bands,
    )


# ---------------------------------------------------------------- model


def _z_name(k: int) -> str:
    return f"z_{k}"


def _build_model(layouts: list[_SegmentLayout], prior: Mapping[str, float | None]):
    """The PyMC model, reparametrised exactly (see the module docstring)."""
    import pymc as pm
    import pytensor.tensor as pt

    cell_off = np.cumsum([0] + [lay.cell_band.size for lay in layouts])
    sig_off = np.cumsum([0] + [lay.n_sigma for lay in layouts])
    z_off = np.cumsum([0] + [lay.cell_band.size * lay.shape[0] for lay in layouts])
    mu = np.concatenate([lay.cell_mu for lay in layouts])
    sd = np.concatenate([lay.cell_sd for lay in layouts])
    n_groups = np.concatenate([np.full(lay.cell_band.size, lay.shape[0]) for lay in layouts])
    cell_sigma = np.concatenate([lay.cell_sigma + o for lay, o in zip(layouts, sig_off,
                                                                       strict=False)])
    obs_cell = np.concatenate([lay.obs_cell + o for lay, o in zip(layouts, cell_off,
                                                                   strict=False)])
    # Position of each observed (group, cell) in the flattened (cell, group) effects.
    obs_z = np.concatenate([lay.obs_cell * lay.shape[0] + lay.obs_group + o
                            for lay, o in zip(layouts, z_off, strict=False)])
    count = np.concatenate([lay.obs_count for lay in layouts])
    weeks = np.concatenate([lay.obs_weeks for lay in layouts])
    if mu.size == 0:
        raise ModelError("the pooled model has no parameters: no stage move was seen in the data")

    with pm.Model() as model:
        sigma = pm.HalfNormal("sigma", sigma=float(prior["sigma_scale"]), shape=int(sig_off[-1]))
        sig_cell = sigma[cell_sigma]
        # m = log q + sigma * mean(z): the groups' mean log rate, whose prior follows from
        # log q ~ Normal(mu, sd) and mean(z) ~ Normal(0, 1 / G).
        m = pm.Normal("group_mean_log_rate", mu=mu,
                      sigma=pt.sqrt(sd**2 + sig_cell**2 / n_groups), shape=mu.size)
        parts = []
        for k, lay in enumerate(layouts):
            n_cell, n_group = lay.cell_band.size, lay.shape[0]
            if n_group > 1 and n_cell > 0:
                # z - mean(z) over groups: a zero-sum normal, independent of mean(z).
                parts.append(pm.ZeroSumNormal(_z_name(k), sigma=1.0,
                                              shape=(n_cell, n_group)).reshape((-1,)))
            else:
                parts.append(pt.zeros(n_cell * n_group))
        z_flat = pt.concatenate(parts)
        log_mu = m[obs_cell] + sig_cell[obs_cell] * z_flat[obs_z]
        # Poisson log likelihood up to a constant; a Potential so that recency-weighted
        # (non-integer) counts give the tempered likelihood of the conjugate model.
        pm.Potential("loglik", (count * log_mu - pm.math.exp(log_mu) * weeks).sum())
    return model


# ---------------------------------------------------------------- public


def fit_pooled(
    stats: Mapping[str, Any],
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    cores: int = 2,
    random_seed: int | np.random.Generator | None = None,
    prior: Mapping[str, Any] | None = None,
    target_accept: float = 0.9,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Sample the pooled posterior of every segment's stage rates in one PyMC model.

    Parameters
    ----------
    stats : dict of segment -> SegmentStats
        From :func:`funnel_lab.model.sufficient_statistics` with ``by="owner"`` or
        ``by="team"`` (``by=None`` works too: one group, nothing to pool). Read: ``funnel``,
        ``counts`` (group, band, S, S), ``exposure_seconds`` (group, band, S) and
        ``n_transitions`` (for the possible moves, as in the conjugate model).
    draws, tune, chains : int
        NUTS draws kept and tuning steps, per chain.
    cores : int
        Chains run in parallel on this many processes.
    random_seed : int, numpy Generator or None
        One Generator is made from it; it draws the integer seed handed to PyMC.
    prior : None, conjugate ``Prior`` or mapping, optional
        See :func:`pooled_prior`: the conjugate model's prior fields plus ``sigma_scale``,
        ``log_rate_mu``, ``log_rate_sd``.
    target_accept : float
        NUTS target acceptance; raise it (0.95, 0.99) when there are divergences.

    Returns
    -------
    rates : dict of segment -> array (draw, group, band, S, S)
        Rates per week, ``chains * draws`` draws (chains stacked); zero for impossible moves.
    diagnostics : dict
        ``rhat_max``, ``ess_bulk_min``, ``divergences``, ``worst_parameter``, ``chains``,
        ``draws``, ``tune``, ``target_accept``, ``n_parameters``, ``seconds``, ``ok``.
        A :class:`~funnel_lab.errors.SamplingWarning` is issued when they are bad.

    Examples
    --------
    >>> stats = sufficient_statistics(crm, by="owner")  # doctest: +SKIP
    >>> rates, diag = fit_pooled(stats, draws=500, random_seed=1)  # doctest: +SKIP
    >>> diag["rhat_max"] <= 1.01  # doctest: +SKIP
    True
    """
    _check_sampler_args(draws, tune, chains, cores, target_accept)
    pooled, conjugate = pooled_prior(prior)
    rng = np.random.default_rng(random_seed)
    if not stats:
        raise ParameterError("stats is empty: no segment to fit")

    layouts = [_layout_segment(str(name), st, pooled, conjugate) for name, st in stats.items()]
    log.info("pooled model: %s segment(s), %s typical rates, %s group effects; prior: "
             "log_rate_mu %s, log_rate_sd %s (None = matched to the conjugate Gamma prior), "
             "sigma_scale %s", len(layouts), sum(lay.cell_band.size for lay in layouts),
             sum(lay.obs_cell.size for lay in layouts), pooled["log_rate_mu"],
             pooled["log_rate_sd"], pooled["sigma_scale"])

    idata, seconds = _sample(layouts, pooled, draws, tune, chains, cores, rng, target_accept)
    diagnostics = _diagnostics(idata, chains)
    diagnostics.update(chains=chains, draws=draws, tune=tune, target_accept=target_accept,
                       seconds=round(seconds, 2),
                       n_parameters=int(sum(lay.cell_band.size * max(lay.shape[0], 1) + lay.n_sigma
                                            for lay in layouts)))
    problems = sampling_problems(diagnostics)
    diagnostics["ok"] = not problems
    if problems:
        warnings.warn(_sampling_message(problems, diagnostics), SamplingWarning, stacklevel=2)

    rates = _rates_from_idata(idata, layouts)
    return {lay.name: r for lay, r in zip(layouts, rates, strict=True)}, diagnostics


def fit_pooled_draws(
    stats: Mapping[str, Any],
    total_draws: int = 1000,
    chains: int = 4,
    min_draws_per_chain: int = MIN_DRAWS_PER_CHAIN,
    **kwargs: Any,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """:func:`fit_pooled` returning exactly ``total_draws`` draws (what ``fit(draws=...)`` means).

    Each chain keeps ``max(ceil(total_draws / chains), min_draws_per_chain)`` draws, so that
    R-hat and ESS (computed on all of them) are reliable even when few draws are wanted; the
    stacked draws are then thinned evenly (every chain contributes alike) to ``total_draws``.

    Examples
    --------
    >>> rates, diag = fit_pooled_draws(stats, total_draws=500, random_seed=1)  # doctest: +SKIP
    >>> rates["SMB"].shape[0], diag["draws"]  # doctest: +SKIP
    (500, 1000)
    """
    for name, value, low in (("draws", total_draws, 1), ("chains", chains, 1),
                             ("min_draws_per_chain", min_draws_per_chain, 1)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ParameterError(f"{name} must be an integer >= {low}, got {value!r}")
    per_chain = max(-(-int(total_draws) // int(chains)), int(min_draws_per_chain))
    rates, diagnostics = fit_pooled(stats, draws=per_chain, chains=chains, **kwargs)
    keep = np.round(np.linspace(0, per_chain * chains - 1, int(total_draws))).astype(int)
    diagnostics["total_draws"] = int(total_draws)
    return {seg: r[keep] for seg, r in rates.items()}, diagnostics


def fit_pooled_segment(
    counts: np.ndarray,
    exposure_seconds: np.ndarray,
    funnel: Funnel,
    **kwargs: Any,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The pooled model for one segment's arrays (see :func:`fit_pooled` for ``kwargs``).

    Parameters
    ----------
    counts : array (group, band, S, S)
        Moves per group, band (time already spent in the from-state), from-state, to-state.
    exposure_seconds : array (group, band, S)
        Time at risk in seconds.
    funnel : Funnel
        The segment's funnel (``S = funnel.states``).

    Returns
    -------
    rates : array (draw, group, band, S, S)
    diagnostics : dict

    Examples
    --------
    >>> f = Funnel("SMB", ("Lead",))
    >>> counts = np.zeros((3, 1, 3, 3)); counts[:, 0, 0, 1] = [2, 5, 9]; counts[:, 0, 0, 2] = 4
    >>> exposure = np.zeros((3, 1, 3)); exposure[:, 0, 0] = 20 * SECONDS_PER_WEEK
    >>> rates, diag = fit_pooled_segment(counts, exposure, f, draws=200, tune=200,
    ...                                  random_seed=1)  # doctest: +SKIP
    >>> rates.shape  # doctest: +SKIP
    (800, 3, 1, 3, 3)
    """
    counts = np.asarray(counts)
    exposure = np.asarray(exposure_seconds)
    stats = SimpleNamespace(
        funnel=funnel, segment=funnel.segment, counts=counts, exposure_seconds=exposure,
        exposure_weeks=exposure.astype(float) / SECONDS_PER_WEEK,
        n_transitions=np.rint(counts).astype(np.int64),
    )
    rates, diagnostics = fit_pooled({funnel.segment: stats}, **kwargs)
    return rates[funnel.segment], diagnostics


def sampling_problems(diagnostics: Mapping[str, Any]) -> list[str]:
    """Plain-words list of what is wrong with a sampler run (empty when it looks fine).

    Examples
    --------
    >>> sampling_problems({"rhat_max": 1.2, "ess_bulk_min": 900, "divergences": 0,
    ...                    "chains": 4})
    ['the chains disagree (R-hat up to 1.2, should be at most 1.01)']
    """
    problems = []
    rhat = diagnostics.get("rhat_max")
    if rhat is not None and np.isfinite(rhat) and rhat > RHAT_OK:
        problems.append(f"the chains disagree (R-hat up to {rhat:.3g}, should be at most "
                        f"{RHAT_OK})")
    ess = diagnostics.get("ess_bulk_min")
    need = ESS_PER_CHAIN_OK * int(diagnostics.get("chains", 4))
    if ess is not None and np.isfinite(ess) and ess < need:
        problems.append(f"too few effective draws (bulk ESS down to {ess:.0f}, should be at "
                        f"least {need})")
    div = diagnostics.get("divergences") or 0
    if div > 0:
        problems.append(f"{div} divergent transitions (the sampler hit regions it could not "
                        "follow, so the draws may be biased)")
    return problems


# ---------------------------------------------------------------- helpers


def _check_sampler_args(draws, tune, chains, cores, target_accept) -> None:
    for name, value, low in (("draws", draws, 1), ("tune", tune, 0), ("chains", chains, 1),
                             ("cores", cores, 1)):
        if not isinstance(value, int | np.integer) or value < low:
            raise ParameterError(f"{name} must be an integer >= {low}, got {value!r}")
    if not 0 < float(target_accept) < 1:
        raise ParameterError(f"target_accept must be between 0 and 1, got {target_accept!r}")


def _sample(layouts, prior, draws, tune, chains, cores, rng, target_accept):
    import pymc as pm

    model = _build_model(layouts, prior)
    seed = int(rng.integers(2**31 - 1))
    start = time.perf_counter()
    with model:
        idata = pm.sample(
            draws=draws, tune=tune, chains=chains, cores=cores, random_seed=seed,
            target_accept=target_accept, progressbar=False,
            # We compute and report R-hat/ESS ourselves (with a plain-words warning).
            compute_convergence_checks=False,
        )
    seconds = time.perf_counter() - start
    log.info("pooled model sampled %s chains x %s draws (+%s tuning) in %.1f s",
             chains, draws, tune, seconds)
    return idata, seconds


def _diagnostics(idata, chains: int) -> dict[str, Any]:
    import arviz as az

    diverging = idata["sample_stats"]["diverging"]
    out: dict[str, Any] = {"divergences": int(diverging.values.sum())}
    if chains < 2:
        # R-hat needs two chains; ESS alone still says something.
        out.update(rhat_max=None)
    names = [v for v in idata["posterior"].data_vars
             if v in ("group_mean_log_rate", "sigma") or v.startswith("z_")]
    summary = az.summary(idata, var_names=names, kind="diagnostics")
    r_hat = summary["r_hat"].to_numpy(dtype=float)
    ess = summary["ess_bulk"].to_numpy(dtype=float)
    if chains >= 2:
        finite = np.isfinite(r_hat)
        out["rhat_max"] = float(r_hat[finite].max()) if finite.any() else None
        out["worst_parameter"] = str(summary.index[int(np.nanargmax(r_hat))]) if finite.any() \
            else None
    finite = np.isfinite(ess)
    out["ess_bulk_min"] = float(ess[finite].min()) if finite.any() else None
    return out


def _sampling_message(problems: list[str], diagnostics: Mapping[str, Any]) -> str:
    lines = "; ".join(problems)
    return (
        f"The pooled model's sampler did not do its job: {lines}. Its intervals may be wrong. "
        "What to try: (1) more tuning steps (tune=2000 or more); "
        f"(2) a higher target_accept (now {diagnostics.get('target_accept')}; try 0.95 or 0.99); "
        "(3) more draws; (4) fewer groups (by='team' instead of by='owner', or merge "
        "salespeople with very few deals); (5) fewer age bands; (6) method='conjugate', "
        "which needs no sampling."
    )


def _rates_from_idata(idata, layouts: list[_SegmentLayout]) -> list[np.ndarray]:
    post = idata["posterior"]
    m_all = _stack(post["group_mean_log_rate"].values)
    sigma_all = _stack(post["sigma"].values)
    n_draw = m_all.shape[0]

    out = []
    cell_o = sig_o = 0
    for k, lay in enumerate(layouts):
        n_group, n_cell = lay.shape[0], lay.cell_band.size
        m = m_all[:, cell_o:cell_o + n_cell]
        sigma = sigma_all[:, sig_o:sig_o + lay.n_sigma]
        cell_o, sig_o = cell_o + n_cell, sig_o + lay.n_sigma
        if _z_name(k) in post:
            z = np.swapaxes(_stack(post[_z_name(k)].values), 1, 2)  # (draw, group, cell)
        else:
            z = np.zeros((n_draw, n_group, n_cell))
        log_rate = m[:, None, :] + sigma[:, None, lay.cell_sigma] * z
        rates = np.zeros((n_draw, *lay.shape))
        rates[:, :, lay.cell_band, lay.cell_from, lay.cell_to] = np.exp(log_rate)
        for state, band, src in lay.copy_bands:
            rates[:, :, band, state, :] = rates[:, :, src, state, :]
        out.append(rates)
    return out


def _stack(values: np.ndarray) -> np.ndarray:
    """(chain, draw, ...) -> (chain * draw, ...), chains one after the other."""
    return values.reshape(-1, *values.shape[2:])
