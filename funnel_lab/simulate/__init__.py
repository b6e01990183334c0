"""The known-truth simulator: CRMs generated from a continuous-time multi-state funnel.

Model (rates per week; matrices ordered as ``Funnel.states``; definitions in CONTRACTS.md):

* **Segments** with their own open stages. New deals arrive as a Poisson process per segment
  (``arrivals_per_week``), enter an open stage drawn from ``entry``, get a log-normal amount,
  an optional ``source``, and an owner drawn uniformly among the owners whose team sells to
  the segment.
* **Moves** from an open stage: forward, skip, backward, Won, Lost, each with its rate;
  from Lost, small re-engagement rates back into open stages. Won is absorbing.
* **Owners** (salespeople) have effects ``exp(u)``, ``u ~ Normal(0, owner_sd)``, multiplying
  their deals' progress rates (forward, skip, Won).
* **Stale deals** (``stale``): piecewise-constant rates by the time already spent in the
  state, over whole-week age bands (``band_edges_weeks``), Lost included (time since lost).
* **Drift** (``drift``): arrivals and progress rates multiplied by a factor that moves from
  ``drift_*_start`` at the start of the history to 1 at ``as_of`` (linear or a step), and stays
  1 afterwards. The truth is at ``as_of``.
* **Unrecorded Lost** (``record_lost=False``): lost deals go silent (no event, no
  re-engagement), for the gone-cold rule.
* **Future** (``future_weeks``): the same deals (and new ones) simulated beyond ``as_of``.

Paths are simulated exactly (thinning; :mod:`funnel_lab.simulate.engine`), no time grid.

truth.json (``SimulatedCRM.truth``)::

    as_of                "2026-11-29" (a date: the end of that day), as_of_timestamp,
    history_start, future_as_of (with future weeks), seed, settings (as settings.toml),
    record_lost, owner_sd, band_edges_weeks + stale (with stale), drift (with drift),
    timestamps_nudged, teams {team: {owners, segments}},
    owners {owner: {team, effect, log_effect}},
    segments {segment: {
        stages, won, lost, arrivals_per_week (at as_of), arrivals_per_week_by_source,
        entry_probabilities {stage: p}, amount_lognormal {mu, sigma, median},
        transition_kinds {"A->B": forward|skip|backward|won|lost|reengage},
        rates_per_week {"A->B": rate}          typical owner, at as_of, first age band,
        rates_per_week_by_band [{...}, ...]   with stale: one dict per age band,
        by_stage {stage: {conversion, win_probability, mean_days_in_stage,
                          expected_days_to_close}},
        owners {owner: {team, effect, rates_per_week, [rates_per_week_by_band], by_stage}}}}

``by_stage`` follows CONTRACTS.md: conversion and win probability treat Lost as absorbing;
mean days in stage is the expected length of one visit. With age bands they are computed
exactly on the banded process (the stay-distribution closed forms in
:mod:`funnel_lab.simulate.truth`). :func:`truth_table` turns them into a tidy table.

Dependency rule: numpy, pandas and funnel_lab.crm / funnel_lab.markov only; never the model,
forecast, charts or reports.
"""

from funnel_lab.simulate.command import run_simulate_command
from funnel_lab.simulate.settings import (
    SegmentSpec,
    SimulationSettings,
    TeamSpec,
    demo_settings,
    small_settings,
    transition_kind,
)
from funnel_lab.simulate.simulator import SimulatedCRM, simulate_crm
from funnel_lab.simulate.truth import truth_table

__all__ = [
    "SegmentSpec",
    "SimulatedCRM",
    "SimulationSettings",
    "TeamSpec",
    "demo_settings",
    "run_simulate_command",
    "simulate_crm",
    "small_settings",
    "transition_kind",
    "truth_table",
]
