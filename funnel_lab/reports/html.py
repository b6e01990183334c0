"""Offline HTML from executed notebooks: one self-contained page per report, plus an index.

Charts travel in the notebook as Vega-Lite specs (see :func:`funnel_lab.charts.enable_renderer`).
Here every spec becomes an inert ``<div>`` with its JSON in a ``<script type="application/json">``
block; the page carries the Vega JavaScript bundle of :func:`vl_convert.javascript_bundle` once
and one small script that calls ``vegaEmbed`` on every chart. Nothing is loaded from a network:
the template drops nbconvert's require.js, MathJax, Mermaid and widget-manager links, and widget
outputs (which need a kernel) are replaced by a note.

Dependency rule: nbconvert, nbformat, jinja2 and vl_convert; never imports the model.
"""

from __future__ import annotations

import copy
import functools
import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

__all__ = ["CHART_CLASS", "ReportPage", "count_charts", "notebook_to_html", "write_index"]

CHART_CLASS = "funnel-lab-chart"
_VEGALITE_MIME = re.compile(r"^application/vnd\.vegalite\.v\d+\+json$")
_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}
<style type="text/css">
  .funnel-lab-header { padding: 12px 20px; border-bottom: 1px solid #ddd; font-family: sans-serif; }
  .funnel-lab-header table { border-collapse: collapse; font-size: 13px; }
  .funnel-lab-header td { padding: 1px 10px 1px 0; }
  .funnel-lab-chart { margin: 6px 0; }
  .funnel-lab-chart-error { color: #a51c1c; font-family: monospace; }
  .funnel-lab-note { color: #555; font-style: italic; }
</style>
{%- endblock extra_css -%}
{%- block body_header -%}
{{ super() }}
{{ resources.funnel_lab_header }}
{%- endblock body_header -%}
{%- block body_footer -%}
</main>
<script type="text/javascript">{{ resources.funnel_lab_bundle }}</script>
<script type="text/javascript">{{ resources.funnel_lab_boot }}</script>
</body>
{%- endblock body_footer -%}
"""

# Runs once after the bundle: embeds every chart as SVG, and marks each div with the outcome so
# that a person (and the browser test) can see which chart failed and why.
_BOOT = """
(function () {
  var divs = document.querySelectorAll("div.%(cls)s");
  var pending = [];
  divs.forEach(function (div) {
    var holder = document.getElementById(div.getAttribute("data-spec-id"));
    try {
      var spec = JSON.parse(holder.textContent);
      pending.push(vegaEmbed(div, spec, {renderer: "svg", actions: false}).then(function () {
        div.setAttribute("data-rendered", "ok");
      }).catch(function (err) {
        div.setAttribute("data-rendered", "error");
        div.className += " funnel-lab-chart-error";
        div.textContent = "Chart error: " + err;
      }));
    } catch (err) {
      div.setAttribute("data-rendered", "error");
      div.textContent = "Chart error: " + err;
    }
  });
  Promise.all(pending).then(function () {
    document.body.setAttribute("data-charts-done", String(divs.length));
  });
})();
"""


@functools.cache
def _vega_bundle() -> str:
    import vl_convert

    # The bundle holds no "</script"; guard anyway so the page can never be cut short.
    return vl_convert.javascript_bundle().replace("</script", "<\\/script")


def _json_for_script(obj: Any) -> str:
    """JSON that is safe inside a <script> block: no '<', '>' or '&' reaches the HTML parser."""
    text = json.dumps(obj, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _chart_html(spec: dict[str, Any], index: int) -> str:
    spec_id = f"funnel-lab-spec-{index}"
    return (
        f'<div class="{CHART_CLASS}" id="funnel-lab-chart-{index}" data-spec-id="{spec_id}">'
        "</div>\n"
        f'<script type="application/json" id="{spec_id}">{_json_for_script(spec)}</script>'
    )


def _prepare(nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, int]:
    """A copy of ``nb`` with charts as embed divs and widgets as notes; the number of charts."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    n_charts = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            data = output.get("data")
            if not data:
                continue
            mime = next((m for m in data if _VEGALITE_MIME.match(m)), None)
            if mime is not None:
                spec = data[mime]
                if isinstance(spec, str):
                    spec = json.loads(spec)
                output["data"] = {"text/html": _chart_html(spec, n_charts)}
                n_charts += 1
            elif _WIDGET_MIME in data:
                output["data"] = {"text/html": (
                    '<p class="funnel-lab-note">Interactive controls (ipywidgets) appear when '
                    "this notebook runs in JupyterLab; the sliders of the scenario explorer "
                    "in this report work without a kernel.</p>")}
    return nb, n_charts


def count_charts(nb: nbformat.NotebookNode) -> int:
    """How many altair charts an executed notebook displays (outputs holding a Vega-Lite spec).

    Examples
    --------
    >>> nb = nbformat.v4.new_notebook()
    >>> count_charts(nb)
    0
    """
    return sum(
        1
        for cell in nb.cells if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if any(_VEGALITE_MIME.match(m) for m in output.get("data", {}))
    )


def _header_html(title: str, parameters: dict[str, Any], seconds: float | None) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td><code>{html.escape(repr(v))}</code></td></tr>"
        for k, v in parameters.items()
    )
    took = "" if seconds is None else f" &middot; rendered in {seconds:.1f} s"
    return (
        f'<div class="funnel-lab-header"><strong>{html.escape(title)}</strong>{took}'
        f'<br><a href="index.html">all reports</a>'
        + (f"<table><tr><td colspan=2>parameters (defaults unless given):</td></tr>{rows}"
           "</table>" if rows else "")
        + "</div>"
    )


def notebook_to_html(nb: nbformat.NotebookNode, title: str,
                     parameters: dict[str, Any] | None = None,
                     seconds: float | None = None, exclude_input: bool = True) -> tuple[str, int]:
    """Render an executed notebook as one self-contained, offline HTML page.

    Parameters
    ----------
    nb : NotebookNode
        The executed notebook (it is not modified).
    title : str
        Shown in the page header (escaped).
    parameters : dict, optional
        The parameters the notebook ran with, listed in the header (escaped).
    seconds : float, optional
        How long the run took, shown in the header.
    exclude_input : bool
        Hide code cells' source (a report shows results; the notebook file keeps the code).

    Returns
    -------
    (str, int)
        The page and the number of charts in it.

    Examples
    --------
    >>> nb = nbformat.v4.new_notebook()
    >>> nb.cells.append(nbformat.v4.new_markdown_cell("# Hello"))
    >>> page, n = notebook_to_html(nb, "demo")
    >>> n, "vegaEmbed" in page, "cdnjs" in page
    (0, True, False)
    """
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    prepared, n_charts = _prepare(nb)
    exporter = HTMLExporter(
        template_name="lab",
        template_file="funnel_lab_report.html.j2",
        extra_loaders=[DictLoader({"funnel_lab_report.html.j2": _TEMPLATE})],
        exclude_input=exclude_input,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    resources = {
        "metadata": {"name": title},
        "funnel_lab_header": _header_html(title, parameters or {}, seconds),
        "funnel_lab_bundle": _vega_bundle(),
        "funnel_lab_boot": _BOOT % {"cls": CHART_CLASS},
    }
    body, _ = exporter.from_notebook_node(prepared, resources=resources)
    return body, n_charts


@dataclass
class ReportPage:
    """One line of the index: a rendered report."""

    name: str
    title: str
    html_path: str
    notebook_path: str
    seconds: float
    parameters: dict[str, Any] = field(default_factory=dict)
    charts: int = 0


def write_index(pages: Sequence[ReportPage], path: Path | str,
                generated: str | None = None) -> Path:
    """Write ``index.html`` listing the reports, their run time and parameters (all escaped).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> p = write_index([ReportPage("a", "<b>A</b>", "a.html", "a.ipynb", 1.0)], d / "index.html")
    >>> "&lt;b&gt;A&lt;/b&gt;" in p.read_text()
    True
    """
    path = Path(path)
    rows = []
    for page in pages:
        params = ", ".join(f"{html.escape(str(k))}={html.escape(repr(v))}"
                           for k, v in page.parameters.items()) or "defaults"
        rows.append(
            "<tr>"
            f'<td><a href="{html.escape(page.html_path)}">{html.escape(page.title)}</a></td>'
            f"<td>{page.charts}</td><td>{page.seconds:.1f} s</td><td><code>{params}</code></td>"
            f'<td><a href="{html.escape(page.notebook_path)}">notebook</a></td>'
            "</tr>"
        )
    stamp = f"<p>Generated {html.escape(generated)}.</p>" if generated else ""
    path.write_text(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>funnel_lab reports</title>"
        "<style>body{font-family:sans-serif;margin:24px}td,th{padding:4px 12px;"
        "text-align:left;border-bottom:1px solid #ddd}table{border-collapse:collapse}</style>"
        "</head><body><h1>funnel_lab reports</h1>" + stamp +
        "<table><tr><th>report</th><th>charts</th><th>time</th><th>parameters</th><th></th>"
        "</tr>" + "".join(rows) + "</table></body></html>\n",
        encoding="utf-8",
    )
    return path
