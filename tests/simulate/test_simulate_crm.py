"""simulate_crm and `funnel-lab simulate`: determinism, files, validation, the future CRM."""

import json
import time

import pandas as pd
import pytest

from funnel_lab.cli import main
from funnel_lab.crm.read import read_crm
from funnel_lab.simulate import SimulationSettings, simulate_crm, small_settings

FILES = ("deals.csv", "events.csv", "funnel.toml", "truth.json", "settings.toml")
# A loose bound on a shared 2-core machine (about 0.2 s measured, validation included); the
# benchmark script times it properly.
SMALL_SECONDS = 2.0


def _bytes(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_files_byte_for_byte(tmp_path):
    settings = small_settings(stale=True, drift=True, owner_sd=0.4, future_weeks=6)
    a = simulate_crm(settings, random_seed=42).write(tmp_path / "a")
    b = simulate_crm(settings, random_seed=42).write(tmp_path / "b")
    c = simulate_crm(settings, random_seed=43).write(tmp_path / "c")
    files_a = _bytes(a)
    assert set(files_a) == {*FILES, *(f"future/{f}" for f in FILES[:3])}
    assert files_a == _bytes(b)
    assert files_a["deals.csv"] != _bytes(c)["deals.csv"]


def test_written_folder_reads_back_as_the_same_crm(tmp_path):
    sim = simulate_crm(small_settings(stale=True, drift=True), random_seed=3)
    sim.write(tmp_path)
    truth = json.loads((tmp_path / "truth.json").read_text())
    crm = read_crm(tmp_path, as_of=truth["as_of"])
    assert crm.report.ok and crm.report.problems == []
    assert crm.as_of == sim.crm.as_of
    pd.testing.assert_frame_equal(crm.deals, sim.crm.deals)
    pd.testing.assert_frame_equal(crm.events, sim.crm.events)
    assert crm.fingerprint() == sim.crm.fingerprint()
    # Without --as-of the reader uses the end of the last event's day: the same or earlier.
    assert read_crm(tmp_path).as_of <= crm.as_of


def test_settings_file_reproduces_the_simulation(tmp_path):
    sim = simulate_crm(small_settings(drift=True, owner_sd=0.3), random_seed=8)
    sim.write(tmp_path / "first")
    again = SimulationSettings.from_toml(tmp_path / "first" / "settings.toml")
    assert again == sim.settings
    simulate_crm(again, random_seed=8).write(tmp_path / "second")
    assert _bytes(tmp_path / "first") == _bytes(tmp_path / "second")


def test_tables_keep_the_crm_invariants():
    sim = simulate_crm(small_settings(stale=True, future_weeks=4), random_seed=4)
    crm = sim.crm
    assert crm.deals["deal_id"].is_unique
    first = crm.events.groupby("deal_id").head(1).set_index("deal_id")["entered_at"]
    created = crm.deals.set_index("deal_id")["created_at"]
    assert (first.reindex(created.index) == created).all()  # first event at creation
    gaps = crm.events.groupby("deal_id")["entered_at"].diff().dropna()
    assert (gaps > pd.Timedelta(0)).all()  # no two events of a deal share a second
    assert (crm.events["entered_at"] <= crm.as_of).all()
    assert (crm.events["entered_at"].dt.microsecond == 0).all()
    won = crm.events.loc[crm.events["stage"] == "Won", "deal_id"]
    last = crm.events.groupby("deal_id")["stage"].last()
    assert (last.loc[won] == "Won").all()  # nothing happens after Won
    assert set(crm.deals["source"]) <= {"Inbound", "Outbound", "Partner"}


def test_history_does_not_depend_on_future_weeks():
    plain = simulate_crm(small_settings(stale=True, drift=True), random_seed=9)
    longer = simulate_crm(small_settings(stale=True, drift=True, future_weeks=13),
                          random_seed=9)
    pd.testing.assert_frame_equal(plain.crm.events, longer.crm.events)
    pd.testing.assert_frame_equal(plain.crm.deals, longer.crm.deals)
    assert plain.future is None and longer.future is not None


def test_future_crm_extends_the_history(tmp_path):
    sim = simulate_crm(small_settings(future_weeks=13), random_seed=5)
    fut = sim.future
    assert fut.as_of == sim.crm.as_of + pd.Timedelta(weeks=13)
    assert sim.truth["future_as_of"] == "2027-02-28"
    later = fut.events["entered_at"] > sim.crm.as_of
    assert later.sum() > 100 and (fut.deals["created_at"] > sim.crm.as_of).sum() > 50
    past = fut.events.loc[~later].reset_index(drop=True)
    pd.testing.assert_frame_equal(past, sim.crm.events)
    sim.write(tmp_path)
    back = read_crm(tmp_path / "future", as_of=sim.truth["future_as_of"])
    pd.testing.assert_frame_equal(back.events, fut.events)
    # A later simulation without future weeks in the same folder removes the stale future/.
    simulate_crm(small_settings(), random_seed=5).write(tmp_path)
    assert not (tmp_path / "future").exists()


def test_cli_simulate_then_validate_reports_no_problems(tmp_path, capsys):
    cfg = tmp_path / "small.toml"
    cfg.write_text(small_settings(stale=True, drift=True, owner_sd=0.3).to_toml())
    out = tmp_path / "crm"
    status = main(["simulate", "--out", str(out), "--seed", "21", "--config", str(cfg),
                   "--weeks", "30", "--future-weeks", "4", "--set", "record_lost=true",
                   "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert status == 0 and doc["deals"] > 100 and doc["future"]["as_of"] == "2026-12-27"
    assert json.loads((out / "truth.json").read_text())["settings"]["weeks"] == 30

    for folder in (out, out / "future"):
        assert main(["validate", "--data", str(folder), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["ok"] is True and report["problems"] == []


def test_cli_text_output_and_bad_override(tmp_path, capsys):
    cfg = tmp_path / "small.toml"
    cfg.write_text(small_settings().to_toml())
    assert main(["simulate", "--out", str(tmp_path / "x"), "--seed", "1", "--config",
                 str(cfg), "--weeks", "8"]) == 0
    assert "deals" in capsys.readouterr().out
    assert main(["simulate", "--out", str(tmp_path / "y"), "--seed", "1",
                 "--set", "stael=true"]) == 2
    err = capsys.readouterr().err
    assert "unknown simulation setting" in err and "stael" in err and "Traceback" not in err


def test_record_lost_false_still_validates(tmp_path):
    sim = simulate_crm(small_settings(record_lost=False), random_seed=6)
    sim.write(tmp_path)
    crm = read_crm(tmp_path, as_of=sim.truth["as_of"])
    assert crm.report.ok


def test_small_settings_are_fast():
    started = time.perf_counter()
    sim = simulate_crm(small_settings(), random_seed=0)
    elapsed = time.perf_counter() - started
    assert 500 <= len(sim.crm.deals) <= 1500
    assert elapsed < SMALL_SECONDS


@pytest.mark.parametrize("seed", [0, 1])
def test_generator_seed_is_accepted(seed):
    import numpy as np

    a = simulate_crm(small_settings(weeks=6), random_seed=np.random.default_rng(seed))
    b = simulate_crm(small_settings(weeks=6), random_seed=seed)
    pd.testing.assert_frame_equal(a.crm.events, b.crm.events)
    assert a.truth["seed"] is None and b.truth["seed"] == seed


def test_source_column_is_optional(tmp_path):
    settings = small_settings(weeks=8).with_overrides(["segments.SMB.sources={}",
                                                       "segments.Enterprise.sources={}"])
    sim = simulate_crm(settings, random_seed=2)
    assert "source" not in sim.crm.deals.columns
    sim.write(tmp_path)
    assert read_crm(tmp_path).report.ok
    assert "source" in simulate_crm(small_settings(weeks=8), random_seed=2).crm.deals.columns
