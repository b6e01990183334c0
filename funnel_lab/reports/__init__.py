"""funnel_lab.reports: parameterised notebooks rendered into offline HTML reports.

Flow: :mod:`~funnel_lab.reports.parameters` (check ``-p``/``--params`` against each notebook's
parameters cell, before any kernel starts) -> :mod:`~funnel_lab.reports.render` (papermill runs)
-> :mod:`~funnel_lab.reports.html` (self-contained pages, charts through ``vegaEmbed``, no
network). Notebooks call :func:`cached_fit`, the report tables of
:mod:`~funnel_lab.reports.tables`, :func:`scenario_grid` and :func:`forecast_explorer`.

Dependency rule: may import every other subpackage; nothing imports reports.
"""

from funnel_lab.reports.cache import cache_dir, cached_fit
from funnel_lab.reports.html import count_charts, notebook_to_html, write_index
from funnel_lab.reports.notebook import setup_notebook, show_table
from funnel_lab.reports.parameters import (
    NOTEBOOKS,
    PARAMETERS,
    NotebookParameter,
    coerce_value,
    inspect_parameters,
    resolve_parameters,
)
from funnel_lab.reports.render import (
    render_notebook,
    render_reports,
    resolve_data_path,
    run_report_command,
)
from funnel_lab.reports.scenarios import scenario_grid
from funnel_lab.reports.tables import (
    crm_overview,
    flow_table,
    forecast_summary,
    forecast_tables,
    html_table,
    open_stage_rows,
    owner_comparison,
    segment_overview,
    stale_deals,
)
from funnel_lab.reports.widgets import ForecastExplorer, forecast_explorer

__all__ = [
    "NOTEBOOKS",
    "PARAMETERS",
    "ForecastExplorer",
    "NotebookParameter",
    "cache_dir",
    "cached_fit",
    "coerce_value",
    "count_charts",
    "crm_overview",
    "flow_table",
    "forecast_explorer",
    "forecast_summary",
    "forecast_tables",
    "html_table",
    "inspect_parameters",
    "notebook_to_html",
    "open_stage_rows",
    "owner_comparison",
    "render_notebook",
    "render_reports",
    "resolve_data_path",
    "resolve_parameters",
    "run_report_command",
    "scenario_grid",
    "segment_overview",
    "setup_notebook",
    "show_table",
    "stale_deals",
    "write_index",
]
