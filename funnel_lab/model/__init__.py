"""Statistics of the funnel: sufficient statistics, posteriors, derived quantities.

Dependency rule: imports funnel_lab.crm, funnel_lab.markov and funnel_lab.errors; never the
forecast, charts or reports; PyMC is imported only inside the pooled model.
"""

from funnel_lab.model.posterior import Posterior, SegmentPosterior

__all__ = ["Posterior", "SegmentPosterior"]
