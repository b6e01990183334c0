"""``funnel-lab fit``: the JSON document, the human table, saving, bad options."""

from __future__ import annotations

import json

import pytest

from funnel_lab.cli import main
from funnel_lab.model import load_posterior

REQUIRED = {
    "conversion": {"segment", "stage", "mean", "lower", "upper"},
    "win_probability": {"segment", "stage", "mean", "lower", "upper"},
    "transitions": {"segment", "stage", "to_stage", "rate_per_week_mean", "lower", "upper"},
    "time_in_stage": {"segment", "stage", "mean_days", "lower", "upper"},
    "arrivals": {"segment", "per_week_mean", "lower", "upper"},
}


@pytest.fixture(scope="module")
def crm_dir(tmp_path_factory):
    from funnel_lab.simulate import simulate_crm, small_settings

    path = tmp_path_factory.mktemp("crm")
    simulate_crm(small_settings(), 5).write(path)
    return path


def run(capsys, *argv):
    code = main(["fit", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_document_has_the_required_keys(crm_dir, capsys, tmp_path):
    out_file = tmp_path / "post.nc"
    code, out, _ = run(capsys, "--data", str(crm_dir), "--as-of", "2026-11-29", "--json",
                       "--draws", "200", "--ci-prob", "0.8", "--out", str(out_file))
    assert code == 0
    doc = json.loads(out)
    assert doc["as_of"].startswith("2026-11-29T23:59:59")
    assert doc["ci_prob"] == 0.8 and doc["method"] == "conjugate"
    assert doc["settings"]["band_edges"] == [0]
    for key, fields in REQUIRED.items():
        assert doc[key], key
        assert fields <= set(doc[key][0]), key
    segments = {r["segment"] for r in doc["conversion"]}
    assert segments == {"SMB", "Enterprise"}
    for r in doc["conversion"] + doc["win_probability"]:
        assert 0 <= r["lower"] <= r["mean"] <= r["upper"] <= 1
    post = load_posterior(out_file, as_of="2026-11-29")
    assert post.n_draws == 200 and doc["fingerprint"] == post.fingerprint


def test_same_seed_same_json(crm_dir, capsys):
    args = ("--data", str(crm_dir), "--json", "--draws", "100", "--seed", "7")
    first = run(capsys, *args)[1]
    assert run(capsys, *args)[1] == first
    assert run(capsys, "--data", str(crm_dir), "--json", "--draws", "100", "--seed", "8")[1] \
        != first


def test_human_table_by_owner_with_bands(crm_dir, capsys):
    code, out, _ = run(capsys, "--data", str(crm_dir), "--draws", "100", "--by", "owner",
                       "--age-bands", "0,4", "--half-life-weeks", "26")
    assert code == 0
    assert "Segment SMB" in out and "Segment Enterprise" in out
    assert "conversion" in out and "Alice" in out


@pytest.mark.parametrize("option, value", [("--age-bands", "0,x"), ("--age-bands", "2,4"),
                                           ("--half-life-weeks", "-3"), ("--ci-prob", "1.5")])
def test_bad_options_exit_2(crm_dir, capsys, option, value):
    code, out, err = run(capsys, "--data", str(crm_dir), "--draws", "10", option, value)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) <= 2


def test_public_api_is_exported():
    import funnel_lab.model as model

    mine = {"Posterior", "Prior", "SegmentPosterior", "SegmentStats", "derived_draws",
            "effective_rates", "fit", "load_posterior", "run_fit_command", "save_posterior",
            "sufficient_statistics", "summarize"}
    assert mine <= set(model.__all__)
    for name in model.__all__:
        assert getattr(model, name) is not None
