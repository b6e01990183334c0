"""What a report notebook calls to set itself up and to show tables and text safely.

Dependency rule: IPython, the charts' renderer and :mod:`funnel_lab.reports.tables`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from funnel_lab.charts import enable_renderer
from funnel_lab.reports.tables import html_table

__all__ = ["setup_notebook", "show_table"]


def setup_notebook() -> None:
    """Draw altair charts as offline-ready Vega-Lite specs (see
    :func:`funnel_lab.charts.enable_renderer`).

    Examples
    --------
    >>> setup_notebook()
    """
    enable_renderer()
    # PyMC logs its sampling progress at INFO; in a report that is noise beside the charts.
    # Its warnings (and funnel_lab's SamplingWarning) still show. PyMC sets its logger's level
    # when it is imported, so import it first (about 2 s), then quieten it.
    import pymc  # noqa: F401

    logging.getLogger("pymc").setLevel(logging.WARNING)


def show_table(table: pd.DataFrame, columns: Mapping[str, str] | Sequence[str] | None = None,
               formats: Mapping[str, str] | None = None, max_rows: int = 30) -> Any:
    """An IPython HTML object of :func:`funnel_lab.reports.tables.html_table` (cells escaped).

    Examples
    --------
    >>> show_table(pd.DataFrame({"owner": ["<b>Ann</b>"]})).data.count("&lt;b&gt;")
    1
    """
    from IPython.display import HTML

    return HTML(html_table(table, columns, formats, max_rows))
