"""``funnel-lab forecast`` on a simulated CRM folder: JSON document, text summary, errors."""

from __future__ import annotations

import json

import pytest

from funnel_lab.cli import main
from funnel_lab.simulate import simulate_crm, small_settings


@pytest.fixture(scope="module")
def crm_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("forecast_cli")
    simulate_crm(small_settings(), random_seed=3).write(out)
    return out


def _run_json(capsys, *args):
    code = main(["forecast", *args, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_json_document_has_the_agreed_tables(crm_dir, capsys):
    doc = _run_json(capsys, "--data", str(crm_dir), "--horizon-weeks", "6", "--draws", "200",
                    "--seed", "5")
    assert doc["as_of"].startswith("2026-11-29")
    for key in ("weekly", "wins", "revenue", "monthly", "deals"):
        assert doc[key], key
    w = doc["weekly"][0]
    assert {"week_end", "segment", "stage", "mean", "p10", "p50", "p90"} <= set(w)
    assert w["week_end"] == "2026-12-06"
    last = [r for r in doc["wins"] if r["week"] == 6]
    assert {r["segment"] for r in last} == {"SMB", "Enterprise"}
    for r in last:
        assert r["p10"] <= r["p50"] <= r["p90"]
    m = doc["monthly"][0]
    assert {"month", "segment", "wins_mean", "revenue_p90", "from_pipeline_mean",
            "from_new_mean"} <= set(m)
    assert any("week_end falls" in n for n in doc["notes"])
    p4 = [d["p_win_4w"] for d in doc["deals"]]
    assert p4 == sorted(p4, reverse=True) and len(p4) <= 20


def test_same_seed_same_document_and_saved_posterior(crm_dir, capsys, tmp_path):
    args = ["--data", str(crm_dir), "--horizon-weeks", "3", "--draws", "100", "--seed", "9"]
    assert _run_json(capsys, *args) == _run_json(capsys, *args)
    post = tmp_path / "post.nc"
    assert main(["fit", "--data", str(crm_dir), "--draws", "100", "--out", str(post)]) == 0
    capsys.readouterr()
    doc = _run_json(capsys, *args, "--posterior", str(post))
    assert doc["settings"]["draws"] == 100


def test_text_summary_and_bad_arguments(crm_dir, capsys):
    assert main(["forecast", "--data", str(crm_dir), "--horizon-weeks", "4", "--draws",
                 "100"]) == 0
    out = capsys.readouterr().out
    assert "Segment SMB" in out and "p_win_4w" in out
    assert main(["forecast", "--data", str(crm_dir), "--horizon-weeks", "0"]) == 2
    assert "horizon_weeks" in capsys.readouterr().err
