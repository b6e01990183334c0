"""``funnel-lab fit --json``: the model comparison, ``auto`` settings, and the pooled method's
diagnostics and owner tables (one small PyMC fit)."""

from __future__ import annotations

import json
import warnings

import pytest

from funnel_lab.cli import main
from funnel_lab.errors import DataWarning


@pytest.fixture(scope="module")
def crm_dir(tmp_path_factory):
    from funnel_lab.simulate import simulate_crm, small_settings

    out = tmp_path_factory.mktemp("crm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        simulate_crm(small_settings(stale=True, owner_sd=0.4), random_seed=8).write(out)
    return out


def run_json(capsys, *args):
    code = main(["fit", *args, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_auto_settings_come_from_the_comparison_it_reports(crm_dir, capsys):
    doc = run_json(capsys, "--data", str(crm_dir), "--age-bands", "auto",
                   "--half-life-weeks", "none", "--draws", "200")
    comparison = doc["model_comparison"]
    table = comparison["table"]
    used = [row for row in table if row["used"]]
    assert len(used) == 1 and used[0]["candidate"] == comparison["used"]
    assert doc["settings"]["band_edges"] == [int(e) for e in used[0]["band_edges"].split(",")]
    # Stale deals were simulated: age bands are chosen and said to be worth it.
    assert doc["settings"]["band_edges"] != [0] and comparison["worth_it"]
    assert table[0]["candidate"] == "bands=0 half_life=none" and table[0]["delta"] == 0


@pytest.mark.slow
def test_pooled_by_owner_reports_diagnostics_and_owner_tables(crm_dir, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few draws: a SamplingWarning is expected
        doc = run_json(capsys, "--data", str(crm_dir), "--method", "pooled", "--by", "owner",
                       "--draws", "100", "--seed", "3")
    assert doc["method"] == "pooled"
    diag = doc["diagnostics"]
    assert {"rhat_max", "ess_bulk_min", "divergences"} <= set(diag)
    assert diag["rhat_max"] >= 0.99 and diag["divergences"] >= 0
    owners = {row["owner"] for row in doc["win_probability"]}
    assert len(owners) >= 2 and all("owner" in row for row in doc["conversion"])
    assert "model_comparison" in doc
