"""Statistics of the funnel: sufficient statistics, posteriors, derived quantities.

Flow: :func:`sufficient_statistics` (one DuckDB query over the event log) ->
:func:`fit` (conjugate Gamma posteriors, or the pooled PyMC model) -> :class:`Posterior` ->
:func:`summarize` (tidy tables of derived quantities) and :func:`save_posterior` /
:func:`load_posterior`; :func:`run_fit_command` is the ``funnel-lab fit`` command.

Dependency rule: imports funnel_lab.crm, funnel_lab.markov and funnel_lab.errors; never the
forecast, charts or reports; PyMC is imported only inside the pooled model.
"""

from funnel_lab.model.cli_fit import run_fit_command
from funnel_lab.model.conjugate import Prior
from funnel_lab.model.derived import derived_draws, effective_rates, summarize
from funnel_lab.model.fitting import fit
from funnel_lab.model.persist import load_posterior, save_posterior
from funnel_lab.model.posterior import Posterior, SegmentPosterior
from funnel_lab.model.selection import choose_settings, compare_models
from funnel_lab.model.stats import SegmentStats, sufficient_statistics

__all__ = [
    "Posterior",
    "Prior",
    "choose_settings",
    "compare_models",
    "SegmentPosterior",
    "SegmentStats",
    "derived_draws",
    "effective_rates",
    "fit",
    "load_posterior",
    "run_fit_command",
    "save_posterior",
    "sufficient_statistics",
    "summarize",
]
