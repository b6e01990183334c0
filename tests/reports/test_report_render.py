"""Rendering machinery on tiny notebooks: offline HTML, the index, failing cells, the cache."""

from __future__ import annotations

import json
import re

import nbformat
import pytest

import funnel_lab.charts as charts
import funnel_lab.reports as reports
from funnel_lab.charts.examples import example_tables
from funnel_lab.errors import ReportError
from funnel_lab.reports.html import count_charts, notebook_to_html, write_index

KERNEL_META = {"kernelspec": {"name": "python3", "display_name": "Python 3",
                              "language": "python"}, "language_info": {"name": "python"}}


def _chart_notebook(n_charts: int = 2, owner: str = "Ann") -> nbformat.NotebookNode:
    import altair as alt

    t = example_tables(owner_names=(owner, "Bo"))
    made = [charts.fan_chart(t["weekly"]), charts.owners_chart(t["owners"]),
            charts.scenario_explorer(t["grid"])][:n_charts]
    old = alt.renderers.active
    charts.enable_renderer()
    nb = nbformat.v4.new_notebook(metadata=KERNEL_META)
    nb.cells.append(nbformat.v4.new_markdown_cell("# Title"))
    try:
        for chart in made:
            cell = nbformat.v4.new_code_cell("chart")
            bundle, _ = chart._repr_mimebundle_()
            cell.outputs.append(nbformat.v4.new_output("execute_result", data=bundle,
                                                       execution_count=1))
            nb.cells.append(cell)
    finally:
        alt.renderers.enable(old)
    widget = nbformat.v4.new_code_cell("w")
    widget.outputs.append(nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "x", "version_major": 2,
                                                     "version_minor": 0},
        "text/plain": "VBox()"}))
    nb.cells.append(widget)
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    return nb


def test_page_is_offline_and_embeds_every_chart():
    nb = _chart_notebook(3)
    page, n = notebook_to_html(nb, "Demo", {"draws": 10}, 1.5)
    assert n == count_charts(nb) == 3
    assert page.count('class="funnel-lab-chart"') == 3
    assert "window.vegaEmbed" in page  # the bundle is inline, once
    assert page.count("window.vegaEmbed=") == 1
    # No script, stylesheet or font is loaded from elsewhere.
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"<link[^>]+href=\"?https?:", page)
    for cdn in ("cdnjs", "jsdelivr", "unpkg", "require.min.js", "MathJax.js", "mermaid"):
        assert cdn not in page, cdn
    # Widgets need a kernel: replaced by a note, and no widget manager is linked.
    assert "widget-view" not in page and "Interactive controls" in page
    assert "rendered in 1.5 s" in page and "draws" in page


def test_chart_json_cannot_close_its_script_block():
    nb = _chart_notebook(2, owner="</script><script>document.body.dataset.pwned=1</script>")
    page, _ = notebook_to_html(nb, "x")
    blocks = re.findall(r'<script[^>]*id="funnel-lab-spec-\d+"[^>]*>(.*?)</script>', page,
                        flags=re.S)
    assert len(blocks) == 2
    spec = json.loads(blocks[1])
    owners = {r["owner"] for rows in spec["datasets"].values() for r in rows}
    assert "</script><script>document.body.dataset.pwned=1</script>" in owners
    assert "<script>document.body.dataset.pwned" not in page


def test_index_lists_reports_with_time_and_escaped_parameters(tmp_path):
    pages = [reports.html.ReportPage("a", "A report", "a.html", "a.ipynb", 12.34,
                                     {"segment": "<b>x</b>"}, 3)]
    text = write_index(pages, tmp_path / "index.html", generated="today").read_text()
    assert 'href="a.html"' in text and "12.3 s" in text and "<td>3</td>" in text
    assert "&lt;b&gt;x&lt;/b&gt;" in text and "<b>x</b>" not in text


@pytest.fixture
def notebook_dir(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nb = nbformat.v4.new_notebook(metadata=KERNEL_META)
    params = nbformat.v4.new_code_cell("n: int = 2\nfail: bool = False")
    params.metadata["tags"] = ["parameters"]
    nb.cells += [
        params,
        nbformat.v4.new_code_cell("import funnel_lab.reports as reports\nreports.setup_notebook()"),
        nbformat.v4.new_code_cell(
            "import altair as alt, pandas as pd\n"
            "alt.Chart(pd.DataFrame({'x': range(n)})).mark_point().encode(x='x')"),
        nbformat.v4.new_code_cell("if fail:\n    raise ValueError('boom on purpose')"),
        nbformat.v4.new_code_cell("print('after')"),
    ]
    nbformat.write(nb, folder / "tiny.ipynb")
    return folder


def test_render_writes_notebook_page_and_index(notebook_dir, tmp_path):
    import io

    out = tmp_path / "out"
    stream = io.StringIO()
    pages = reports.render_reports(["tiny"], out, cli_parameters=["n=3"],
                                   notebook_dir=notebook_dir, progress=False, stream=stream)
    assert [p.name for p in pages] == ["tiny"]
    assert pages[0].charts == 1 and pages[0].parameters == {"n": 3}
    executed = nbformat.read(out / "tiny.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "n = 3" in injected[0].source
    assert count_charts(executed) == 1
    assert (out / "tiny.html").exists() and (out / "index.html").exists()
    log = stream.getvalue()
    assert "[1/1] rendering tiny" in log and re.search(r"tiny: \d+\.\d s, 1 charts", log)


def test_failing_cell_names_notebook_and_cell_and_keeps_partial_notebook(notebook_dir,
                                                                          tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ReportError) as info:
        reports.render_reports(["tiny"], out, cli_parameters=["fail=true"],
                               notebook_dir=notebook_dir, progress=False)
    err = info.value
    assert err.notebook == "tiny"
    assert "report 'tiny' failed in cell" in str(err) and "boom on purpose" in str(err)
    assert err.output_path == str(out / "tiny.ipynb")
    partial = nbformat.read(out / "tiny.ipynb", as_version=4)
    failing = [c for c in partial.cells if c.cell_type == "code"
               and any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert len(failing) == 1 and "raise ValueError" in failing[0].source
    assert err.cell == 3  # the cell's index in the notebook as written (0-based)
    assert "cell 3 of tiny.ipynb" in str(err)
    after = [c for c in partial.cells if c.cell_type == "code" and "after" in c.source][0]
    assert not after.get("outputs")  # nothing ran after the failure
    assert not (out / "tiny.html").exists()


def test_cached_fit_does_not_refit(monkeypatch, tmp_path):
    import funnel_lab.model as model
    from funnel_lab.simulate import simulate_crm, small_settings

    monkeypatch.setenv("FUNNEL_LAB_CACHE", str(tmp_path / "cache"))
    crm = simulate_crm(small_settings(), random_seed=3).crm
    calls = []
    real_fit = model.fit

    def counting_fit(*args, **kwargs):
        calls.append(kwargs)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(model, "fit", counting_fit)
    first = reports.cached_fit(crm, draws=50, random_seed=1)
    again = reports.cached_fit(crm, draws=50, random_seed=1)
    assert len(calls) == 1
    seg = crm.segments[0]
    assert (first.segments[seg].rates == again.segments[seg].rates).all()
    assert list((tmp_path / "cache").glob("fit-*.pkl"))
    reports.cached_fit(crm, draws=50, random_seed=2)  # another seed is another fit
    reports.cached_fit(crm, draws=60, random_seed=1)
    assert len(calls) == 3
    import numpy as np

    reports.cached_fit(crm, draws=50, random_seed=np.random.default_rng(1))  # not cacheable
    assert len(calls) == 4


def test_public_api_names_exist():
    for name in reports.__all__:
        assert hasattr(reports, name), name
    assert {"cached_fit", "run_report_command", "render_reports", "forecast_explorer",
            "PARAMETERS"} <= set(reports.__all__)
