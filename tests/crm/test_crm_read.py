"""Reading a valid CRM: invariants, repairs counted, ties, as_of, gone cold, formats."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pandas as pd
import pytest
from crm_testdata import DEALS, EVENTS, FUNNEL, add_lines, replace_line, write_crm

from funnel_lab.cli import main
from funnel_lab.crm import Funnel, crm_from_frames, format_report, read_crm, stage_summary
from funnel_lab.crm.read import DEFAULT_COLD_QUANTILE, parse_as_of
from funnel_lab.errors import DataWarning

# the tiny CRM has few stays: the "too few to choose a gone-cold rule" warning is expected when
# as_of cuts off the Lost events (it is tested on its own below)
pytestmark = pytest.mark.filterwarnings("ignore:.*too few to choose a gone-cold rule")


def stages_of(crm, deal):
    ev = crm.events.loc[crm.events["deal_id"] == deal]
    return list(ev["stage"]), list(ev["entered_at"].dt.strftime("%Y-%m-%d")), list(ev["imputed"])


# ---------------------------------------------------------------- a clean CRM


def test_clean_crm_invariants(tmp_path):
    crm = read_crm(write_crm(tmp_path))
    assert crm.report.ok and crm.report.problems == []
    assert list(crm.deals.columns) == ["deal_id", "segment", "owner", "team", "amount",
                                       "created_at"]
    assert list(crm.events.columns) == ["deal_id", "stage", "entered_at", "imputed"]
    for col in ("deal_id", "segment", "owner", "team"):
        assert pd.api.types.is_string_dtype(crm.deals[col])
    assert pd.api.types.is_datetime64_any_dtype(crm.deals["created_at"])
    assert pd.api.types.is_datetime64_any_dtype(crm.events["entered_at"])
    assert crm.events["imputed"].dtype == bool and not crm.events["imputed"].any()
    assert crm.funnels["ENT"].stages == ("Qualify", "Proposal", "Negotiation")
    assert set(crm.funnels) == {"SMB", "ENT"}
    # every deal has events; events sorted by deal then time
    assert set(crm.events["deal_id"]) == set(crm.deals["deal_id"])
    key = crm.events[["deal_id", "entered_at"]]
    assert key.equals(key.sort_values(["deal_id", "entered_at"], kind="stable"))
    # default as_of: end of the day of the last event (D1 won on 2025-01-20)
    assert crm.as_of == pd.Timestamp("2025-01-20 23:59:59.999999")
    counts = crm.report.counts
    assert counts["missing_amount"] == 1  # D4
    assert all(counts[k] == 0 for k in ("duplicate_deal_rows", "duplicate_event_rows",
                                        "deals_without_events", "gone_cold",
                                        "events_after_as_of", "deals_after_as_of"))


def test_open_deals_and_stage_summary(tmp_path):
    crm = read_crm(write_crm(tmp_path))
    assert sorted(crm.open_deals()["deal_id"]) == ["D3", "D4"]
    summary = stage_summary(crm)
    assert list(summary.columns) == ["segment", "stage", "open_deals", "amount", "entered"]
    ent = summary.loc[summary["segment"] == "ENT"].set_index("stage")
    assert list(ent.index) == ["Qualify", "Proposal", "Negotiation", "Won", "Lost"]
    assert ent.loc["Proposal", "open_deals"] == 1 and ent.loc["Proposal", "amount"] == 5000
    assert ent.loc["Qualify", "entered"] == 3 and ent.loc["Qualify", "open_deals"] == 1
    smb = summary.loc[summary["segment"] == "SMB"].set_index("stage")
    assert smb.loc["Won", "open_deals"] == 1 and smb.loc["Lost", "open_deals"] == 1
    text = format_report(crm)
    assert "5 deals, 10 events" in text and "Segment ENT" in text and "missing_amount" in text
    assert "Problems:\n  none" in text


def test_cli_validate_json_is_one_document(tmp_path, capsys):
    folder = write_crm(tmp_path)
    assert main(["validate", "--data", str(folder), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["counts"]["missing_amount"] == 1
    assert doc["as_of"].startswith("2025-01-20T23:59:59")
    assert {r["stage"] for r in doc["stages"]} >= {"Lead", "Qualify", "Won"}


def test_problem_makes_validate_exit_2(tmp_path, capsys):
    # no deal of either segment ever leaves its first stage: nothing to estimate
    events = "deal_id,stage,entered_at\nD1,Lead,2025-01-01\nD2,Lead,2025-01-02\n" \
             "D3,Qualify,2025-01-03\nD4,Qualify,2025-01-04\nD5,Qualify,2025-01-05\n"
    crm = read_crm(write_crm(tmp_path, events=events))
    assert len(crm.report.problems) == 2 and not crm.report.ok
    assert main(["validate", "--data", str(tmp_path)]) == 2
    assert "no deal ever left its first stage" in capsys.readouterr().out


# ---------------------------------------------------------------- repairs, all counted


def test_repairs_are_counted(tmp_path):
    deals = add_lines(DEALS,
                      "D2,SMB,Bob,East,200,2025-01-02",  # exact duplicate
                      "D6,SMB,,,50,2025-01-06",  # no owner, no team, no events
                      "",  # a blank line
                      "D7,ENT,Cid,West,10,2025-01-09")  # created after its first event
    events = add_lines(EVENTS,
                       "D1,Demo,2025-01-05",  # exact duplicate
                       "D3,Proposal,2025-01-09",  # re-enters the stage it is in
                       "D7,Qualify,2025-01-07")
    crm = read_crm(write_crm(tmp_path, deals=deals, events=events))
    c = crm.report.counts
    assert c["duplicate_deal_rows"] == 1
    assert c["duplicate_event_rows"] == 1
    assert c["missing_owner"] == 1 and c["missing_team"] == 1
    assert c["deals_without_events"] == 1
    assert c["blank_lines"] == 1
    assert c["created_after_first_event"] == 1
    assert c["repeated_stage_entries"] == 1
    assert c["missing_amount"] == 1
    assert len(crm.deals) == 7 and crm.report.ok
    d6 = crm.deals.set_index("deal_id").loc["D6"]
    assert d6["owner"] == "(unassigned)" and d6["team"] == "(unassigned)"
    assert stages_of(crm, "D6") == (["Lead"], ["2025-01-06"], [True])
    assert stages_of(crm, "D3")[:2] == (["Qualify", "Proposal"], ["2025-01-03", "2025-01-08"])
    assert crm.deals.set_index("deal_id").loc["D7", "created_at"] == pd.Timestamp("2025-01-07")
    assert any("no events" in n for n in crm.report.notes)


def test_every_count_key_is_reported_even_when_zero(tmp_path):
    crm = read_crm(write_crm(tmp_path))
    expected = {"blank_lines", "duplicate_deal_rows", "duplicate_event_rows", "missing_amount",
                "missing_owner", "missing_team", "deals_without_events", "gone_cold",
                "events_after_as_of", "deals_after_as_of", "tied_events",
                "repeated_stage_entries", "created_after_first_event", "missing_created_at"}
    assert expected <= set(crm.report.counts)


# ---------------------------------------------------------------- ties


def test_same_time_ties_follow_the_funnel(tmp_path, caplog):
    # D1 jumps Lead -> Demo -> Won on one day, written in reverse order in the file
    events = replace_line(EVENTS, 2, "D1,Won,2025-01-01")
    events = replace_line(events, 3, "D1,Demo,2025-01-01")
    events = replace_line(events, 4, "D1,Lead,2025-01-01")
    with caplog.at_level(logging.INFO, logger="funnel_lab.crm.read"):
        crm = read_crm(write_crm(tmp_path, events=events))
    assert stages_of(crm, "D1")[0] == ["Lead", "Demo", "Won"]
    assert crm.report.counts["tied_events"] == 3
    assert any("ordered along the funnel" in n for n in crm.report.notes)
    assert "ordered along the funnel" in caplog.text


def test_lost_after_open_stage_at_same_time(tmp_path):
    events = add_lines(EVENTS.replace("D3,Proposal,2025-01-08\n", ""),
                       "D3,Lost,2025-01-08", "D3,Proposal,2025-01-08")
    crm = read_crm(write_crm(tmp_path, events=events))
    assert stages_of(crm, "D3")[0] == ["Qualify", "Proposal", "Lost"]


# ---------------------------------------------------------------- as_of


def test_parse_as_of_forms():
    assert parse_as_of("2025-01-10") == pd.Timestamp("2025-01-10 23:59:59.999999")
    assert parse_as_of(pd.Timestamp("2025-01-10").date()) == \
        pd.Timestamp("2025-01-10 23:59:59.999999")
    assert parse_as_of("2025-01-10T08:30") == pd.Timestamp("2025-01-10 08:30")
    assert parse_as_of(pd.Timestamp("2025-01-10 08:30")) == pd.Timestamp("2025-01-10 08:30")
    assert parse_as_of("2025-01-10T08:30+02:00") == pd.Timestamp("2025-01-10 06:30")
    assert parse_as_of(None) is None


def test_as_of_date_is_end_of_day(tmp_path):
    folder = write_crm(tmp_path)
    # D2 is lost on 2025-01-10: seen at as_of 2025-01-10, not at 2025-01-09
    crm = read_crm(folder, as_of="2025-01-10")
    assert stages_of(crm, "D2")[0] == ["Lead", "Lost"]
    assert crm.report.counts["events_after_as_of"] == 2  # D1 won on 01-20, D5 lost on 01-12
    crm = read_crm(folder, as_of="2025-01-09")
    assert stages_of(crm, "D2")[0] == ["Lead"]
    assert crm.report.counts["events_after_as_of"] == 3


def test_as_of_leaves_out_later_deals_and_events(tmp_path):
    crm = read_crm(write_crm(tmp_path), as_of="2025-01-03")
    assert sorted(crm.deals["deal_id"]) == ["D1", "D2", "D3"]
    assert crm.report.counts["deals_after_as_of"] == 2
    # later events: D1 Demo, D1 Won, D2 Lost, D3 Proposal, D4 Qualify, D5 Qualify, D5 Lost
    assert crm.report.counts["events_after_as_of"] == 7
    assert crm.events["entered_at"].max() <= crm.as_of
    # ENT's only deal by then is D3: its funnel stays; a segment with no deal yet would go
    early = read_crm(write_crm(tmp_path / "early", deals=replace_line(
        DEALS, 4, "D3,ENT,Cid,West,5000,2025-01-04"), events=replace_line(
        EVENTS, 7, "D3,Qualify,2025-01-04")), as_of="2025-01-03")
    assert early.segments == ["SMB"]
    assert not any("ENT" in p for p in early.report.problems)
    assert (crm.deals["created_at"] <= crm.as_of).all()


def test_as_of_as_a_moment(tmp_path):
    events = replace_line(EVENTS, 6, "D2,Lost,2025-01-10T15:00:00")
    folder = write_crm(tmp_path, events=events)
    assert stages_of(read_crm(folder, as_of=pd.Timestamp("2025-01-10 14:59")), "D2")[0] == \
        ["Lead"]
    assert stages_of(read_crm(folder, as_of="2025-01-10T15:00"), "D2")[0] == ["Lead", "Lost"]


# ---------------------------------------------------------------- gone cold


def test_gone_cold_argument(tmp_path):
    folder = write_crm(tmp_path)
    crm = read_crm(folder, as_of="2025-01-31", cold_after_days=10)
    # D3 last moved 01-08 -> Lost 01-18; D4 last moved 01-04 -> Lost 01-14
    assert stages_of(crm, "D3") == (["Qualify", "Proposal", "Lost"],
                                    ["2025-01-03", "2025-01-08", "2025-01-18"],
                                    [False, False, True])
    assert stages_of(crm, "D4")[1] == ["2025-01-04", "2025-01-14"]
    assert crm.report.counts["gone_cold"] == 2
    assert crm.funnels["ENT"].cold_after_days == 10
    assert crm.open_deals().empty


def test_gone_cold_only_when_before_as_of(tmp_path):
    crm = read_crm(write_crm(tmp_path), as_of="2025-01-15", cold_after_days=10)
    # D1 (Demo since 01-05: cold on 01-15) and D4 (01-14); D3 would go cold on 01-18
    assert crm.report.counts["gone_cold"] == 2
    assert stages_of(crm, "D1")[0] == ["Lead", "Demo", "Lost"]
    assert sorted(crm.open_deals()["deal_id"]) == ["D3"]


def test_gone_cold_from_funnel_toml_per_segment(tmp_path):
    funnel = FUNNEL.replace('won = "Won"', 'won = "Won"\ncold_after_days = 5')
    crm = read_crm(write_crm(tmp_path, funnel=funnel), as_of="2025-01-31")
    assert crm.report.counts["gone_cold"] == 2
    assert crm.report.counts["gone_cold[ENT]"] == 2
    assert crm.funnels["SMB"].cold_after_days is None
    # the argument overrides the file
    crm = read_crm(tmp_path, as_of="2025-01-31", cold_after_days=30)
    assert crm.report.counts["gone_cold"] == 0


def _no_lost_frames(n_moved=40, seed=3):
    """A segment that never records Lost: deals move Lead -> Demo after known gaps."""
    rng = np.random.default_rng(seed)
    gaps = rng.integers(1, 60, size=n_moved).astype(float)
    start = pd.Timestamp("2025-01-01")
    ids = [f"M{i}" for i in range(n_moved)] + ["S1", "S2"]
    deals = pd.DataFrame({"deal_id": ids, "segment": "S", "owner": "o", "team": "t",
                          "amount": 1.0, "created_at": start})
    events = pd.DataFrame({
        "deal_id": ids[:n_moved] * 2 + ["S1", "S2"],
        "stage": ["Lead"] * n_moved + ["Demo"] * n_moved + ["Lead", "Lead"],
        "entered_at": [start] * n_moved + list(start + pd.to_timedelta(gaps, unit="D"))
        + [start, pd.Timestamp("2025-06-25")],
    })
    return deals, events, gaps


def test_default_cold_rule_when_no_lost_is_recorded():
    deals, events, gaps = _no_lost_frames()
    with pytest.warns(DataWarning, match="records no 'Lost' at all"):
        crm = crm_from_frames(deals, events, {"S": Funnel("S", ("Lead", "Demo"))},
                              as_of="2025-07-01")
    expected = float(math.ceil(np.quantile(gaps, DEFAULT_COLD_QUANTILE)))
    assert crm.funnels["S"].cold_after_days == expected
    assert any(f"cold_after_days = {expected:g}" in n for n in crm.report.notes)
    # gone cold: S1 (silent since Jan) and every deal sitting in Demo since Feb/March;
    # not S2, which entered Lead six days before as_of
    assert crm.report.counts["gone_cold"] == len(gaps) + 1
    lost = crm.events.loc[crm.events["stage"] == "Lost"]
    assert lost["imputed"].all() and "S2" not in set(lost["deal_id"])
    s1 = crm.events.loc[crm.events["deal_id"] == "S1", "entered_at"]
    assert s1.iloc[-1] == pd.Timestamp("2025-01-01") + pd.Timedelta(days=expected)


@pytest.mark.filterwarnings("default")
def test_too_few_stays_for_a_default_cold_rule():
    deals, events, _ = _no_lost_frames(n_moved=5)
    with pytest.warns(DataWarning, match="5 observed stays .* too few"):
        crm = crm_from_frames(deals, events, {"S": Funnel("S", ("Lead", "Demo"))},
                              as_of="2025-07-01")
    assert crm.funnels["S"].cold_after_days is None
    assert crm.report.counts["gone_cold"] == 0 and len(crm.open_deals()) == 7


def test_no_default_cold_rule_when_lost_is_recorded(tmp_path, recwarn):
    crm = read_crm(write_crm(tmp_path), as_of="2025-12-31")
    assert crm.report.counts["gone_cold"] == 0
    assert crm.funnels["ENT"].cold_after_days is None
    assert not [w for w in recwarn if issubclass(w.category, DataWarning)]


# ---------------------------------------------------------------- inferred funnels


def test_inferred_funnel_is_logged(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="funnel_lab.crm.read"):
        crm = read_crm(write_crm(tmp_path, funnel=None))
    assert crm.funnels["SMB"] == Funnel("SMB", ("Lead", "Demo"))
    assert crm.funnels["ENT"].stages == ("Qualify", "Proposal")
    assert "Qualify > Proposal" in caplog.text
    assert any("inferred from the data: Lead > Demo" in n for n in crm.report.notes)


def test_inferred_order_uses_median_position():
    # most deals go A -> B -> C; one goes C -> A; one re-enters A later
    rows = []
    for i in range(5):
        t = pd.Timestamp("2025-01-01") + pd.Timedelta(days=i)
        rows += [(f"d{i}", "A", t), (f"d{i}", "B", t + pd.Timedelta(days=1)),
                 (f"d{i}", "C", t + pd.Timedelta(days=2))]
    rows += [("x", "C", pd.Timestamp("2025-01-01")), ("x", "A", pd.Timestamp("2025-01-02"))]
    events = pd.DataFrame(rows, columns=["deal_id", "stage", "entered_at"])
    deals = pd.DataFrame({"deal_id": sorted(set(events["deal_id"])), "segment": "S",
                          "owner": "o", "team": "t", "amount": 1.0,
                          "created_at": pd.Timestamp("2025-01-01")})
    with pytest.warns(DataWarning):  # no Lost anywhere: a default gone-cold rule is chosen
        crm = crm_from_frames(deals, events, None)
    assert crm.funnels["S"].stages == ("A", "B", "C")


def test_frames_round_trip_keeps_imputed_events(tmp_path):
    crm = read_crm(write_crm(tmp_path), as_of="2025-01-31", cold_after_days=10)
    again = crm_from_frames(crm.deals, crm.events, crm.funnels, as_of=crm.as_of)
    pd.testing.assert_frame_equal(again.events, crm.events)
    pd.testing.assert_frame_equal(again.deals, crm.deals)
    assert again.report.counts["gone_cold"] == 0  # already in the log, marked imputed


# ---------------------------------------------------------------- other formats


def test_parquet_round_trip(tmp_path):
    csv_crm = read_crm(write_crm(tmp_path / "csv"))
    folder = tmp_path / "pq"
    folder.mkdir()
    csv_crm.deals.to_parquet(folder / "deals.parquet")
    csv_crm.events.drop(columns="imputed").to_parquet(folder / "events.parquet")
    (folder / "funnel.toml").write_text(FUNNEL)
    pq = read_crm(folder)
    pd.testing.assert_frame_equal(pq.deals, csv_crm.deals)
    pd.testing.assert_frame_equal(pq.events, csv_crm.events)
    assert pq.fingerprint() == csv_crm.fingerprint()


def test_duckdb_round_trip(tmp_path):
    import duckdb

    csv_crm = read_crm(write_crm(tmp_path / "csv"))
    folder = tmp_path / "db"
    folder.mkdir()
    con = duckdb.connect(str(folder / "crm.duckdb"))
    deals, events = csv_crm.deals, csv_crm.events.drop(columns="imputed")  # noqa: F841
    con.execute("create table deals as select * from deals")
    con.execute("create table events as select * from events")
    con.close()
    (folder / "funnel.toml").write_text(FUNNEL)
    for path in (folder, folder / "crm.duckdb"):
        db = read_crm(path)
        pd.testing.assert_frame_equal(db.deals, csv_crm.deals)
        pd.testing.assert_frame_equal(db.events, csv_crm.events)


def test_typed_deal_ids_become_strings():
    deals = pd.DataFrame({"deal_id": [101, 102], "segment": "S", "owner": "o", "team": "t",
                          "amount": [1.0, 2.0], "created_at": ["2025-01-01", "2025-01-02"]})
    events = pd.DataFrame({"deal_id": [101.0, 102.0, 101.0], "stage": ["A", "A", "Lost"],
                           "entered_at": ["2025-01-01", "2025-01-02", "2025-01-03"]})
    crm = crm_from_frames(deals, events, {"S": Funnel("S", ("A",))})
    assert list(crm.deals["deal_id"]) == ["101", "102"]
    assert set(crm.events["deal_id"]) == {"101", "102"}


def test_source_column_kept_and_unknown_columns_noted(tmp_path):
    deals = DEALS.replace("created_at\n", "created_at,source,region\n", 1)
    deals = "\n".join(line + (",web,north" if i else "")
                      for i, line in enumerate(deals.splitlines())) + "\n"
    crm = read_crm(write_crm(tmp_path, deals=deals, events=EVENTS.replace(
        "entered_at\n", "Entered_At\n", 1).replace("deal_id,stage", "DEAL_ID, Stage")))
    assert list(crm.deals.columns)[-1] == "source" and set(crm.deals["source"]) == {"web"}
    assert any("columns not used: region" in n for n in crm.report.notes)
    assert len(crm.events) == 10  # header names are matched without case or blanks
