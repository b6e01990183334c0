"""``fit``: from a CRM to a :class:`~funnel_lab.model.posterior.Posterior`.

Validate the arguments, compute the sufficient statistics once (DuckDB), then draw the
posterior: exactly (``method="conjugate"``) or with the pooled PyMC model
(``method="pooled"``, :func:`funnel_lab.model.pooled.fit_pooled`, imported lazily so that the
conjugate path never imports PyMC). Arrivals, entry stages, group shares and amounts are
conjugate in both methods.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from funnel_lab.crm.eventlog import CRM
from funnel_lab.errors import ModelError, ParameterError
from funnel_lab.model.conjugate import Prior, conjugate_segment, possible_moves, resolve_prior
from funnel_lab.model.posterior import Posterior
from funnel_lab.model.stats import sufficient_statistics

__all__ = ["AUTO", "METHODS", "fit", "resolve_auto_settings"]

log = logging.getLogger(__name__)

METHODS = ("conjugate", "pooled")
AUTO = "auto"


def _check_draws(draws: Any) -> int:
    if isinstance(draws, bool) or not isinstance(draws, int | np.integer) or draws < 1:
        raise ParameterError(f"draws must be a positive integer, got {draws!r}")
    return int(draws)


def _conjugate_part(prior: Any, method: str) -> Any:
    """The pooled fit's prior mapping may also hold the pooled model's keys: split them off."""
    if method != "pooled" or not isinstance(prior, Mapping):
        return prior
    names = set(Prior.__dataclass_fields__)
    return {k: v for k, v in prior.items() if k in names}


def _pooled(stats: dict, draws: int, rng: np.random.Generator, prior: Any, prior_obj: Prior,
            pooled_kwargs: dict[str, Any]) -> tuple[dict, Any]:
    """Rates from the pooled PyMC model; arrivals, entry stages and amounts stay conjugate,
    with as many draws as the sampler returned (chains x draws)."""
    from funnel_lab.model.pooled import fit_pooled

    for st in stats.values():
        st.possible = possible_moves(st, prior_obj)
    # fit_pooled accepts a Prior object or a mapping, so the user's prior reaches both parts
    rates, diagnostics = fit_pooled(stats, draws=draws, random_seed=rng, prior=prior,
                                    **pooled_kwargs)
    segments = {}
    for seg, st in stats.items():
        seg_rates = np.asarray(rates[seg] if isinstance(rates, Mapping) else rates, dtype=float)
        n_states = len(st.funnel.states)
        expected = (len(st.groups), len(st.band_edges), n_states, n_states)
        if seg_rates.ndim != 5 or seg_rates.shape[1:] != expected:
            raise ModelError(
                f"pooled fit of segment '{seg}' returned rates of shape {seg_rates.shape}, "
                f"expected (draw, {', '.join(str(n) for n in expected)})"
            )
        sp = conjugate_segment(st, seg_rates.shape[0], rng, prior_obj)
        sp.rates = seg_rates
        segments[seg] = sp
    return segments, diagnostics


def resolve_auto_settings(
    crm: CRM, band_edges: Any, half_life_weeks: Any, random_seed: Any = None
) -> tuple[Any, Any, dict[str, Any] | None]:
    """Replace ``"auto"`` band edges / half-life by the held-out check's choice.

    Only what is ``"auto"`` varies among the candidates. Returns the settings and, when
    anything was chosen, a record of the choice (``candidate``, ``holdout_weeks`` and the
    score ``table``, which a model comparison can reuse; ``None`` otherwise).
    """
    edges_auto = isinstance(band_edges, str) and band_edges == AUTO
    half_auto = isinstance(half_life_weeks, str) and half_life_weeks == AUTO
    for name, value in (("band_edges", band_edges), ("half_life_weeks", half_life_weeks)):
        if isinstance(value, str) and value != AUTO:
            raise ParameterError(f"{name} must be a number, None or 'auto', got {value!r}")
    if not (edges_auto or half_auto):
        return band_edges, half_life_weeks, None
    from funnel_lab.model.selection import candidate_settings, choose_settings

    candidates = candidate_settings(
        crm,
        band_edges=None if edges_auto else [band_edges],
        half_lives=None if half_auto else [half_life_weeks],
    )
    choice = choose_settings(crm, candidates=candidates, random_seed=random_seed)
    log.info("auto settings: %s", choice["candidate"])
    return tuple(choice["band_edges"]), choice["half_life_weeks"], {
        "candidate": choice["candidate"], "holdout_weeks": choice["holdout_weeks"],
        "table": choice["table"]}


def fit(
    crm: CRM,
    method: str = "conjugate",
    by: str | None = None,
    draws: int = 1000,
    random_seed: int | np.random.Generator | None = None,
    band_edges: Sequence[int] = (0,),
    half_life_weeks: float | None = None,
    prior: Prior | Mapping[str, Any] | None = None,
    **pooled_kwargs: Any,
) -> Posterior:
    """Fit the flow model of every segment of ``crm`` at ``crm.as_of``.

    Parameters
    ----------
    crm : CRM
        The validated CRM.
    method : {"conjugate", "pooled"}
        Exact Gamma posteriors, or the partially pooled PyMC model (groups shrunk towards
        their segment).
    by : {None, "owner", "team"}
        Fit per salesperson or department instead of per segment only.
    draws : int
        Number of posterior draws. For ``method="pooled"`` it is the number of draws *per
        chain* (as in ``pm.sample``): the posterior holds ``chains * draws`` draws;
        :func:`funnel_lab.model.pooled.fit_pooled_draws` gives an exact total instead.
    random_seed : int or numpy.random.Generator, optional
        Same seed, same draws.
    band_edges : sequence of int or "auto"
        Age-band lower edges in weeks (``(0,)``: no bands). ``"auto"`` lets the held-out
        check of :func:`funnel_lab.model.selection.choose_settings` choose (logged at INFO and
        kept in ``posterior.settings["auto"]``); the command line's default.
    half_life_weeks : float, None or "auto"
        Recency weighting of the data (tempered likelihood); ``"auto"`` as for ``band_edges``.
    prior : Prior or mapping, optional
        Overrides of the default priors (:class:`funnel_lab.model.conjugate.Prior`).
    **pooled_kwargs
        Passed to :func:`funnel_lab.model.pooled.fit_pooled` (e.g. ``cores``, ``tune``).

    Returns
    -------
    Posterior

    Examples
    --------
    >>> from funnel_lab.simulate import simulate_crm, small_settings
    >>> crm = simulate_crm(small_settings(), 1).crm
    >>> post = fit(crm, draws=500, random_seed=1)
    >>> post.segments["SMB"].rates.shape
    (500, 1, 1, 5, 5)
    """
    if method not in METHODS:
        raise ParameterError(f"method must be one of {list(METHODS)}, got {method!r}")
    if method == "conjugate" and pooled_kwargs:
        raise ParameterError(
            f"unknown argument(s) {sorted(pooled_kwargs)} for method='conjugate'"
        )
    draws = _check_draws(draws)
    prior_obj = resolve_prior(_conjugate_part(prior, method))
    rng = np.random.default_rng(random_seed)
    band_edges, half_life_weeks, auto = resolve_auto_settings(crm, band_edges, half_life_weeks,
                                                              rng)

    stats = sufficient_statistics(crm, by=by, band_edges=band_edges,
                                  half_life_weeks=half_life_weeks)
    log.info("prior: %s", prior_obj.to_dict())
    if method == "conjugate":
        segments = {seg: conjugate_segment(st, draws, rng, prior_obj)
                    for seg, st in stats.items()}
        diagnostics = None
    else:
        segments, diagnostics = _pooled(stats, draws, rng, prior, prior_obj, pooled_kwargs)
    first = next(iter(stats.values()), None)
    settings = {
        "group_by": by,
        "band_edges": list(first.band_edges) if first else list(band_edges),
        "half_life_weeks": None if half_life_weeks is None else float(half_life_weeks),
        "draws": draws,
        "prior": prior_obj.to_dict(),
        "possible": {
            seg: [f"{st.funnel.states[i]}->{st.funnel.states[j]}"
                  for i, j in zip(*np.nonzero(possible_moves(st, prior_obj)), strict=True)]
            for seg, st in stats.items()
        },
        **({"pooled": {k: v for k, v in pooled_kwargs.items()}} if pooled_kwargs else {}),
        **({"auto": {k: v for k, v in auto.items() if k != "table"}} if auto else {}),
    }
    return Posterior(as_of=crm.as_of, method=method, segments=segments,
                     fingerprint=crm.fingerprint(), settings=settings, diagnostics=diagnostics)
