"""Helpers shared by the chart modules: column checks, stage order, the notebook renderer."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import altair as alt
import pandas as pd

from funnel_lab.errors import ParameterError

__all__ = [
    "RENDERER_NAME",
    "VEGALITE_MIME",
    "enable_renderer",
    "require_columns",
    "stage_order",
    "stage_sort",
    "with_stage_rank",
]

#: The mime type the notebook renderer writes. JupyterLab draws it natively; altair 6's own
#: "mimetype" renderer writes ``application/vnd.vegalite.v6.json`` (no ``+``), which nbformat
#: rejects when papermill validates the executed notebook.
VEGALITE_MIME = "application/vnd.vegalite.v5+json"
RENDERER_NAME = "funnel_lab"

#: Width of one panel; faceted charts repeat it per panel.
PANEL_WIDTH = 260


def require_columns(table: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Raise ParameterError naming the missing columns of ``table`` (sorted) and what it is for."""
    if not isinstance(table, pd.DataFrame):
        raise ParameterError(f"{what}: expected a pandas DataFrame, got {type(table).__name__}")
    missing = sorted(set(columns) - set(table.columns))
    if missing:
        raise ParameterError(
            f"{what}: the table lacks columns {missing}; it has {sorted(map(str, table.columns))}"
        )


def stage_order(table: pd.DataFrame, column: str = "stage") -> list[str]:
    """Stages in the order they first appear (tidy tables list them in funnel order)."""
    return [str(s) for s in dict.fromkeys(table[column].tolist())]


def with_stage_rank(table: pd.DataFrame, column: str = "stage",
                    rank: str = "stage_rank") -> pd.DataFrame:
    """Add ``rank``: the stage's position within its segment, in order of first appearance.

    Faceted charts sort each segment's axis by it, since segments may have other stages.
    """
    keys = [c for c in ("segment",) if c in table.columns]
    first = table.drop_duplicates([*keys, column])[[*keys, column]].copy()
    first[rank] = first.groupby(keys).cumcount() if keys else range(len(first))
    return table.merge(first, on=[*keys, column], how="left")


def stage_sort(rank: str = "stage_rank") -> alt.EncodingSortField:
    """Sort an axis by the per-segment stage rank of :func:`with_stage_rank`."""
    return alt.EncodingSortField(field=rank, op="min", order="ascending")


def _renderer(spec: dict[str, Any], **_: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    title = spec.get("title")
    if isinstance(title, dict):
        title = title.get("text")
    text = f"<chart: {title}>" if title else "<chart>"
    return {VEGALITE_MIME: spec, "text/plain": text}, {}


def enable_renderer() -> None:
    """Make notebooks show altair charts as Vega-Lite specs (no CDN, valid nbformat).

    JupyterLab draws the spec itself; the report writer turns each spec into an offline
    ``vegaEmbed`` call (see :mod:`funnel_lab.reports.html`).

    Examples
    --------
    >>> enable_renderer()
    >>> import altair as alt
    >>> alt.renderers.active
    'funnel_lab'
    """
    if RENDERER_NAME not in alt.renderers.names():
        alt.renderers.register(RENDERER_NAME, _renderer)
    alt.renderers.enable(RENDERER_NAME)
