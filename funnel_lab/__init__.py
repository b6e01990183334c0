"""funnel_lab: a Bayesian toolkit and simulation lab for sales funnels.

The package follows the flow of data (see DESIGN.md)::

    crm/       CRM export -> validated event log (CRM)
    simulate/  a CRM with known truth
    model/     event log -> sufficient statistics -> posterior draws
    forecast/  posterior + open deals -> Monte Carlo forecast (tidy tables)
    charts/    tidy tables -> altair charts
    reports/   parameterised notebooks -> offline HTML

Nothing below a layer imports anything above it.
"""

from funnel_lab.crm import CRM, Funnel, ValidationReport
from funnel_lab.errors import (
    DataError,
    FunnelLabError,
    ModelError,
    ParameterError,
    ReportError,
)

__version__ = "0.1.0"

__all__ = [
    "CRM",
    "DataError",
    "Funnel",
    "FunnelLabError",
    "ModelError",
    "ParameterError",
    "ReportError",
    "ValidationReport",
    "__version__",
]
