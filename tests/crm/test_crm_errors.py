"""Every kind of bad CRM input: a funnel_lab error naming file, line, column, deal, expectation.

Each test spoils one thing in the small valid CRM of ``crm_testdata`` and checks the pieces of
the message (and the error's attributes), not only that something was raised. A few run through
the command line to check exit status 2, a one- or two-line message and no traceback.
"""

from __future__ import annotations

import pandas as pd
import pytest
from crm_testdata import DEALS, EVENTS, add_lines, replace_line, write_crm

from funnel_lab.cli import main
from funnel_lab.crm import Funnel, crm_from_frames, read_crm
from funnel_lab.errors import (
    DataError,
    FunnelDefinitionError,
    MissingFileError,
    ParameterError,
)


def read_error(folder, cls=DataError, **kwargs) -> DataError:
    with pytest.raises(cls) as info:
        read_crm(folder, **kwargs)
    return info.value


def assert_pieces(exc: Exception, *pieces: str) -> None:
    text = str(exc)
    missing = [p for p in pieces if p not in text]
    assert not missing, f"{missing} not in message: {text}"


def cli_validate(folder, capsys, *extra: str) -> str:
    """Run ``funnel-lab validate`` and check the bad-input contract; returns stderr."""
    status = main(["validate", "--data", str(folder), *extra])
    err = capsys.readouterr().err
    assert status == 2
    assert "Traceback" not in err
    assert 1 <= len(err.strip().splitlines()) <= 2
    return err


# ---------------------------------------------------------------- files and tables


def test_missing_file(tmp_path, capsys):
    folder = write_crm(tmp_path / "crm")
    (folder / "events.csv").unlink()
    exc = read_error(folder, MissingFileError)
    assert_pieces(exc, "events.csv", "missing", "deals.csv and events.csv")
    assert isinstance(exc, FileNotFoundError)
    err = cli_validate(folder, capsys)
    assert "events.csv" in err


def test_missing_folder(tmp_path, capsys):
    exc = read_error(tmp_path / "nowhere", MissingFileError)
    assert_pieces(exc, "nowhere", "no such file or folder", "expected a CRM folder")
    assert "nowhere" in cli_validate(tmp_path / "nowhere", capsys)


def test_missing_column(tmp_path, capsys):
    deals = DEALS.replace(",team,", ",squad,")
    folder = write_crm(tmp_path, deals=deals)
    exc = read_error(folder)
    assert_pieces(exc, "deals.csv", "line 1", "column 'team'", "missing column 'team'",
                  "expected columns deal_id, segment, owner, team, amount, created_at",
                  "found: deal_id, segment, owner, squad")
    assert exc.column == "team" and exc.line == 1
    assert "column 'team'" in cli_validate(folder, capsys)


def test_empty_table(tmp_path, capsys):
    folder = write_crm(tmp_path, events="deal_id,stage,entered_at\n")
    exc = read_error(folder)
    assert_pieces(exc, "events.csv", "no rows", "expected at least one row")
    assert "no rows" in cli_validate(folder, capsys)


def test_empty_file(tmp_path):
    folder = write_crm(tmp_path, deals="")
    assert_pieces(read_error(folder), "deals.csv", "empty", "expected a comma-separated table")


def test_not_utf8(tmp_path, capsys):
    deals = replace_line(DEALS, 3, "D2,SMB,Bøb,East,200,2025-01-02").encode("latin-1")
    folder = write_crm(tmp_path, deals=deals)
    exc = read_error(folder)
    assert_pieces(exc, "deals.csv", "line 3", "not UTF-8", "0xf8", "save the file as UTF-8")
    assert exc.line == 3
    assert "not UTF-8" in cli_validate(folder, capsys)


@pytest.mark.parametrize(("delim", "name"), [(";", "semicolon"), ("\t", "a tab"),
                                             ("|", "pipe")])
def test_other_delimiter(tmp_path, delim, name):
    folder = write_crm(tmp_path, events=EVENTS.replace(",", delim))
    exc = read_error(folder)
    assert_pieces(exc, "events.csv", "line 1", f"separated by {name}".replace(
        "by semicolon", "by ';' (semicolon)").replace("by pipe", "by '|' (pipe)"),
        "expected a comma-separated table with columns deal_id, stage, entered_at")


def test_delimiter_through_cli(tmp_path, capsys):
    folder = write_crm(tmp_path, deals=DEALS.replace(",", ";"))
    assert "';' (semicolon)" in cli_validate(folder, capsys)


def test_binary_file_is_not_a_table(tmp_path, capsys):
    folder = write_crm(tmp_path, events=b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")
    exc = read_error(folder)
    assert_pieces(exc, "events.csv", "binary file", "not a CSV table",
                  "expected a comma-separated table with columns deal_id, stage, entered_at")
    assert "binary" in cli_validate(folder, capsys)


def test_text_blob_is_not_a_table(tmp_path):
    blob = "Dear team, here is the export you asked for. Best wishes from sales\n" * 3
    folder = write_crm(tmp_path, deals=blob)
    exc = read_error(folder)
    assert_pieces(exc, "deals.csv", "line 1", "is not a CRM table", "Dear team",
                  "none of the expected column names",
                  "expected a comma-separated table with columns deal_id")


def test_wrong_number_of_fields(tmp_path):
    folder = write_crm(tmp_path, events=replace_line(EVENTS, 5, "D2,Lead,2025-01-02,extra"))
    exc = read_error(folder)
    assert_pieces(exc, "events.csv", "line 5", "has 4 fields", "expected 3")


def test_broken_parquet(tmp_path):
    write_crm(tmp_path)
    (tmp_path / "deals.csv").unlink()
    (tmp_path / "deals.parquet").write_bytes(b"PAR1 this is not parquet")
    assert_pieces(read_error(tmp_path), "deals.parquet", "cannot read as Parquet",
                  "expected a Parquet table with columns deal_id")


def test_duckdb_without_events_table(tmp_path):
    import duckdb

    db = tmp_path / "crm.duckdb"
    con = duckdb.connect(str(db))
    con.execute("create table deals as select 'D1' as deal_id")
    con.close()
    exc = read_error(db, MissingFileError)
    assert_pieces(exc, "crm.duckdb", "no table 'events'", "expected tables deals and events")


def test_file_that_is_not_a_database(tmp_path):
    db = tmp_path / "crm.duckdb"
    db.write_text("hello")
    assert_pieces(read_error(db), "crm.duckdb", "is not a DuckDB database")


# ---------------------------------------------------------------- cells


def test_unparseable_date(tmp_path, capsys):
    folder = write_crm(tmp_path, events=replace_line(EVENTS, 3, "D1,Demo,2025-13-45"))
    exc = read_error(folder)
    assert_pieces(exc, "events.csv", "line 3", "column 'entered_at'", "deal 'D1'",
                  "'2025-13-45'", "expected a date or time like 2024-03-31")
    assert (exc.line, exc.column, exc.deal_id) == (3, "entered_at", "D1")
    assert "line 3" in cli_validate(folder, capsys)


def test_unparseable_created_at(tmp_path):
    folder = write_crm(tmp_path, deals=replace_line(DEALS, 4, "D3,ENT,Cid,West,5000,soon"))
    exc = read_error(folder)
    assert_pieces(exc, "deals.csv", "line 4", "column 'created_at'", "deal 'D3'", "'soon'")


def test_blank_event_time(tmp_path):
    folder = write_crm(tmp_path, events=replace_line(EVENTS, 2, "D1,Lead,"))
    exc = read_error(folder)
    assert_pieces(exc, "events.csv", "line 2", "column 'entered_at'", "deal 'D1'", "blank")


def test_unparseable_as_of(tmp_path, capsys):
    folder = write_crm(tmp_path)
    exc = read_error(folder, ParameterError, as_of="end of March")
    assert_pieces(exc, "as_of", "'end of March'", "expected a date or time like 2024-03-31")
    err = cli_validate(folder, capsys, "--as-of", "2025-02-30")
    assert "2025-02-30" in err and "as_of" in err


@pytest.mark.parametrize("bad", ["12abc", "$1,000"])
def test_non_numeric_amount(tmp_path, capsys, bad):
    quoted = f'"{bad}"' if "," in bad else bad
    folder = write_crm(tmp_path, deals=replace_line(DEALS, 3, f"D2,SMB,Bob,East,{quoted},"
                                                              "2025-01-02"))
    exc = read_error(folder)
    assert_pieces(exc, "deals.csv", "line 3", "column 'amount'", "deal 'D2'", repr(bad),
                  "expected a plain number")
    assert "column 'amount'" in cli_validate(folder, capsys)


def test_negative_amount(tmp_path):
    folder = write_crm(tmp_path, deals=replace_line(DEALS, 4, "D3,ENT,Cid,West,-5,2025-01-03"))
    exc = read_error(folder)
    assert_pieces(exc, "deals.csv", "line 4", "column 'amount'", "deal 'D3'", "-5",
                  "expected a finite number >= 0")


def test_negative_amount_in_memory_names_the_row():
    deals = pd.DataFrame({"deal_id": ["a", "b"], "segment": "S", "owner": "o", "team": "t",
                          "amount": [1.0, -2.0],
                          "created_at": pd.to_datetime(["2025-01-01", "2025-01-02"])})
    events = pd.DataFrame({"deal_id": ["a", "b"], "stage": "Lead",
                           "entered_at": pd.to_datetime(["2025-01-01", "2025-01-02"])})
    with pytest.raises(DataError) as info:
        crm_from_frames(deals, events, {"S": Funnel("S", ("Lead",))})
    assert_pieces(info.value, "deals table, row 2", "column 'amount'", "deal 'b'")


# ---------------------------------------------------------------- identity


def test_blank_deal_id_in_deals(tmp_path, capsys):
    folder = write_crm(tmp_path, deals=replace_line(DEALS, 5, ",ENT,Cid,West,,2025-01-04"))
    exc = read_error(folder)
    assert_pieces(exc, "deals.csv", "line 5", "column 'deal_id'", "blank", "expected a deal id")
    assert "line 5" in cli_validate(folder, capsys)


def test_blank_deal_id_in_events(tmp_path):
    folder = write_crm(tmp_path, events=replace_line(EVENTS, 9, " ,Qualify,2025-01-04"))
    exc = read_error(folder)
    assert_pieces(exc, "events.csv", "line 9", "column 'deal_id'", "blank")


def test_one_deal_id_two_different_rows(tmp_path, capsys):
    folder = write_crm(tmp_path, deals=add_lines(DEALS, "D2,SMB,Bob,East,250,2025-01-02"))
    exc = read_error(folder)
    assert_pieces(exc, "deals.csv", "line 7", "column 'deal_id'", "deal 'D2'", "line 3",
                  "differ in amount", "expected one row per deal")
    assert "deal 'D2'" in cli_validate(folder, capsys)


def test_event_for_unknown_deal(tmp_path, capsys):
    folder = write_crm(tmp_path, events=add_lines(EVENTS, "D9,Lead,2025-01-05"))
    exc = read_error(folder)
    assert_pieces(exc, "events.csv", "line 12", "column 'deal_id'", "deal 'D9'",
                  "not in the deals table")
    assert "deal 'D9'" in cli_validate(folder, capsys)


# ---------------------------------------------------------------- funnels and stages


def test_stage_not_in_funnel(tmp_path, capsys):
    folder = write_crm(tmp_path, events=replace_line(EVENTS, 8, "D3,Closing,2025-01-08"))
    exc = read_error(folder)
    assert_pieces(exc, "events.csv", "line 8", "column 'stage'", "deal 'D3'", "'Closing'",
                  "segment 'ENT'", "expected one of ['Qualify', 'Proposal', 'Negotiation', "
                  "'Won', 'Lost']")
    assert "'Closing'" in cli_validate(folder, capsys)


def test_segment_without_funnel(tmp_path, capsys):
    folder = write_crm(tmp_path, deals=add_lines(DEALS, "D6,MID,Dee,North,10,2025-01-05"))
    exc = read_error(folder, FunnelDefinitionError)
    assert_pieces(exc, "deals.csv", "line 7", "column 'segment'", "deal 'D6'", "'MID'",
                  "funnel.toml", "expected one of ['ENT', 'SMB']")
    assert "'MID'" in cli_validate(folder, capsys)


def test_funnel_toml_syntax_error(tmp_path, capsys):
    folder = write_crm(tmp_path, funnel='[SMB]\nstages = ["Lead", "Demo"\n\n[ENT]\n')
    exc = read_error(folder, FunnelDefinitionError)
    assert_pieces(exc, "funnel.toml", "TOML syntax error", "expected one table per segment")
    assert exc.line is not None and exc.line >= 2
    assert "funnel.toml" in cli_validate(folder, capsys)


def test_funnel_toml_missing_stages(tmp_path):
    folder = write_crm(tmp_path, funnel='[SMB]\nstages = ["Lead"]\n\n[ENT]\nwon = "Won"\n')
    exc = read_error(folder, FunnelDefinitionError)
    assert_pieces(exc, "funnel.toml", "line 4", "segment 'ENT' has no 'stages'",
                  "expected stages = [")


@pytest.mark.parametrize(("body", "pieces"), [
    ('stages = "Lead"', ["stages = 'Lead'", "expected a non-empty list of stage names"]),
    ('stages = ["Lead", 3]', ["expected a non-empty list of stage names"]),
    ('stages = ["Lead"]\nwon = 3', ["won = 3", "expected a stage name"]),
    ('stages = ["Lead"]\ncold_after_days = "soon"', ["cold_after_days = 'soon'",
                                                     "expected a number of days > 0"]),
    ('stages = ["Lead"]\ncold_after_days = -1', ["expected a number of days > 0"]),
    ('stages = ["Lead"]\nstage_order = 1', ["unknown keys ['stage_order']"]),
    ('stages = ["Lead", "Lead"]', ["stage names must be distinct"]),
])
def test_funnel_toml_wrong_types(tmp_path, body, pieces):
    folder = write_crm(tmp_path, funnel=f"[ENT]\nstages = [\"Qualify\"]\n\n[SMB]\n{body}\n")
    exc = read_error(folder, FunnelDefinitionError)
    assert_pieces(exc, "funnel.toml", "line 4", "'SMB'", *pieces)


def test_funnel_toml_not_a_table(tmp_path):
    folder = write_crm(tmp_path, funnel='SMB = ["Lead", "Demo"]\n')
    exc = read_error(folder, FunnelDefinitionError)
    assert_pieces(exc, "funnel.toml", "line 1", "'SMB' is a list", "expected a table [SMB]")


# ---------------------------------------------------------------- histories


def test_won_and_lost_at_the_same_moment(tmp_path, capsys):
    folder = write_crm(tmp_path, events=add_lines(EVENTS, "D1,Lost,2025-01-20"))
    exc = read_error(folder)
    assert_pieces(exc, "events.csv", "line 12", "column 'stage'", "deal 'D1'",
                  "'Won' and 'Lost' at the same moment", "expected one outcome at a time")
    assert "same moment" in cli_validate(folder, capsys)


def test_event_after_won(tmp_path, capsys):
    folder = write_crm(tmp_path, events=add_lines(EVENTS, "D1,Demo,2025-02-01"))
    exc = read_error(folder)
    assert_pieces(exc, "events.csv", "line 12", "column 'stage'", "deal 'D1'", "'Demo'",
                  "after it was won at 2025-01-20", "expected no event after Won")
    assert "after it was won" in cli_validate(folder, capsys)


def test_created_at_blank_without_events(tmp_path):
    deals = add_lines(DEALS, "D6,SMB,Ann,East,1,")
    exc = read_error(write_crm(tmp_path, deals=deals))
    assert_pieces(exc, "deals.csv", "line 7", "column 'created_at'", "deal 'D6'",
                  "no events")


def test_bad_cold_after_days_argument(tmp_path, capsys):
    folder = write_crm(tmp_path)
    exc = read_error(folder, ParameterError, cold_after_days=0)
    assert_pieces(exc, "cold_after_days", "> 0", "got 0")
    assert "cold_after_days" in cli_validate(folder, capsys, "--cold-after-days", "-3")


def test_nothing_before_as_of(tmp_path):
    exc = read_error(write_crm(tmp_path), as_of="2024-06-30")
    assert_pieces(exc, "no deal was created at or before as_of")
