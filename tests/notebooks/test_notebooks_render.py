"""Both report notebooks run through papermill and render offline; checked in a real browser.

The notebooks run once per session with few draws (the pooled fit is switched off: the model's
own tests cover it, and ``make report`` runs it). The browser checks need Debian's chromium and
are skipped, saying why, where it is absent. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import html as html_lib
import json
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from funnel_lab.reports import NOTEBOOKS, count_charts, render_reports
from funnel_lab.reports.browser import dump_dom, find_chromium, screenshot

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "data" / "demo"
ARTIFACTS = ROOT / "test-artifacts"

#: Few draws: the tests check that everything runs and renders, not the numbers.
FAST = ["draws=150", "pooled=false", "horizon_weeks=8"]

needs_demo = pytest.mark.skipif(not (DEMO / "deals.csv").exists(),
                                reason="the demo CRM data/demo/ has not been generated")
needs_chromium = pytest.mark.skipif(find_chromium() is None,
                                    reason="chromium is not installed (apt-get install chromium)")

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def demo_reports(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FUNNEL_LAB_CACHE", str(cache))
        pages = render_reports(list(NOTEBOOKS), out, cli_parameters=FAST, progress=False)
    return out, {p.name: p for p in pages}


# Names that would run script or draw markup if any layer forgot to escape them.
EVIL_SEGMENT = "Ent<script>document.body.dataset.pwned='segment'</script>"
EVIL_OWNER = "<img src=x onerror=\"document.body.dataset.pwned='owner'\">"
BOLD = "<b>SMB</b>"


@pytest.fixture(scope="module")
def evil_reports(tmp_path_factory):
    from funnel_lab.simulate import simulate_crm, small_settings

    data = tmp_path_factory.mktemp("evil_crm")
    simulate_crm(small_settings(), random_seed=11).write(data)
    deals = pd.read_csv(data / "deals.csv")
    events = pd.read_csv(data / "events.csv")
    owners = sorted(deals["owner"].unique())
    deals["owner"] = deals["owner"].replace({owners[0]: EVIL_OWNER, owners[1]: "<b>Bo</b>"})
    deals["segment"] = deals["segment"].replace({"SMB": BOLD, "Enterprise": EVIL_SEGMENT})
    ids = {d: f"<i>{d}</i>" for d in deals["deal_id"]}
    deals["deal_id"] = deals["deal_id"].map(ids)
    events["deal_id"] = events["deal_id"].map(ids)
    deals.to_csv(data / "deals.csv", index=False)
    events.to_csv(data / "events.csv", index=False)
    toml = (data / "funnel.toml").read_text()
    toml = toml.replace("[SMB]", f'["{BOLD}"]').replace("[Enterprise]", f'["{EVIL_SEGMENT}"]')
    (data / "funnel.toml").write_text(toml)

    out = tmp_path_factory.mktemp("evil_reports")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FUNNEL_LAB_CACHE", str(tmp_path_factory.mktemp("evil_cache")))
        render_reports(list(NOTEBOOKS), out, progress=False,
                       cli_parameters=[f"data={data}", "draws=100", "pooled=false",
                                       "scenarios=false", "horizon_weeks=6"])
    return out


@needs_demo
def test_both_notebooks_run_on_the_demo_data(demo_reports):
    out, pages = demo_reports
    assert set(pages) == set(NOTEBOOKS)
    for name, page in pages.items():
        nb = nbformat.read(out / f"{name}.ipynb", as_version=4)
        errors = [o for c in nb.cells for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert not errors, name
        assert page.charts == count_charts(nb) >= 6, name
        injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert "draws = 150" in injected[0].source
    index = (out / "index.html").read_text()
    assert all(f'href="{n}.html"' in index for n in NOTEBOOKS)


@needs_demo
def test_the_forecast_report_carries_the_scenario_explorer(demo_reports):
    out, _ = demo_reports
    page = (out / "pipeline_forecast.html").read_text()
    specs = [json.loads(s) for s in re.findall(
        r'<script[^>]*id="funnel-lab-spec-\d+"[^>]*>(.*?)</script>', page, flags=re.S)]
    explorers = [s for s in specs if any(p.get("bind") for p in s.get("params", []))]
    assert len(explorers) == 1
    inflows = {r["lead_inflow"] for rows in explorers[0]["datasets"].values() for r in rows}
    assert inflows == {0.5, 0.75, 1.0, 1.25, 1.5}


def _chart_segments(dom: str) -> list[str]:
    """The DOM of each chart div (from its opening tag to the next chart)."""
    starts = [m.start() for m in re.finditer(r'<div[^>]*class="funnel-lab-chart[ "]', dom)]
    return [dom[a:b] for a, b in zip(starts, [*starts[1:], len(dom)], strict=True)]


@needs_demo
@needs_chromium
@pytest.mark.browser
@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_every_chart_renders_offline_in_chromium(demo_reports, name):
    out, pages = demo_reports
    dom = dump_dom(out / f"{name}.html")
    charts = _chart_segments(dom)
    assert len(charts) == pages[name].charts
    for i, part in enumerate(charts):
        opening = part[:part.index(">") + 1]
        assert 'data-rendered="ok"' in opening, f"chart {i}: {opening}"
        assert "<svg" in part, f"chart {i} drew nothing"
    assert 'data-rendered="error"' not in dom
    assert f'data-charts-done="{pages[name].charts}"' in dom
    body = re.sub(r"<script.*?</script>", "", dom, flags=re.S)
    assert "Chart error" not in body and "Error:" not in re.sub(r"<pre.*?</pre>", "", body,
                                                               flags=re.S)
    shot = screenshot(out / f"{name}.html", ARTIFACTS / f"{name}.png", height=3000)
    assert shot.stat().st_size > 20_000  # a blank page is a few KB


_SLIDER_PROBE = """
<script>
(function () {
  var tries = 0;
  function svgOf(div) { var s = div.querySelector("svg"); return s ? s.outerHTML : ""; }
  function probe() {
    var inputs = document.querySelectorAll(".funnel-lab-chart input[type=range]");
    tries += 1;
    if ((!document.body.getAttribute("data-charts-done") || !inputs.length) && tries < 100) {
      setTimeout(probe, 100);
      return;
    }
    var result = {sliders: inputs.length, steps: []};
    if (!inputs.length) { done(result); return; }
    var div = inputs[0].closest(".funnel-lab-chart");
    var moves = [[0, inputs[0].max], [1, "2"]];
    function next(k, before) {
      if (k === moves.length) { done(result); return; }
      var input = inputs[moves[k][0]];
      input.value = moves[k][1];
      input.dispatchEvent(new Event("input", {bubbles: true}));
      setTimeout(function () {
        var after = svgOf(div);
        result.steps.push({changed: after !== before, paths: (after.match(/<path/g) || []).length});
        next(k + 1, after);
      }, 800);
    }
    next(0, svgOf(div));
  }
  function done(result) {
    var pre = document.createElement("pre");
    pre.id = "slider-probe";
    pre.textContent = JSON.stringify(result);
    document.body.appendChild(pre);
  }
  setTimeout(probe, 100);
})();
</script>
"""


@needs_demo
@needs_chromium
@pytest.mark.browser
def test_moving_a_kernel_free_slider_changes_what_is_drawn(demo_reports, tmp_path):
    out, _ = demo_reports
    page = (out / "pipeline_forecast.html").read_text()
    probe = tmp_path / "probe.html"
    head, tag, tail = page.rpartition("</body>")
    probe.write_text(head + _SLIDER_PROBE + tag + tail)
    dom = dump_dom(probe, budget_ms=20000)
    m = re.search(r'<pre id="slider-probe">(.*?)</pre>', dom, flags=re.S)
    assert m, "the probe did not finish"
    result = json.loads(html_lib.unescape(m.group(1)))
    assert result["sliders"] == 2  # lead inflow and horizon
    lead, horizon = result["steps"]
    assert lead["changed"], "moving the lead-inflow slider did not redraw"
    assert horizon["changed"], "moving the horizon slider did not redraw"


@needs_chromium
@pytest.mark.browser
def test_html_in_names_is_shown_as_text_never_run(evil_reports):
    for name in sorted(NOTEBOOKS):
        page = evil_reports / f"{name}.html"
        dom = dump_dom(page)
        assert "data-pwned" not in dom, f"{name}: a name ran as script"
        body = re.sub(r"<script.*?</script>", "", dom, flags=re.S)
        assert "<img src=" not in body and "<img src=\"x\"" not in body, name
        assert BOLD not in body and "<b>Bo</b>" not in body, f"{name}: a name became markup"
        assert "<i>D0" not in body, name
        # ... and the names are there, as text (tables, headings and chart labels).
        assert "&lt;b&gt;SMB&lt;/b&gt;" in body, name
        assert "&lt;script&gt;document.body.dataset.pwned" in body, name
        assert 'data-rendered="error"' not in dom, name
        screenshot(page, ARTIFACTS / f"{name}_html_names.png", height=2500)
    health = (evil_reports / "funnel_health.html").read_text()
    assert "&lt;img src=x onerror=" in health  # the owner table shows the name as text
