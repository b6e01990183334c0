"""The Maven CRM snapshot import, end to end, on the public sample (read in place).

Expected counts are computed here from the raw file with the csv module, independently of the
importer's pandas code, so the test checks the importer rather than repeating it.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from funnel_lab.cli import main
from funnel_lab.crm import import_maven, read_crm
from funnel_lab.errors import DataError, MissingFileError, ParameterError

MAVEN = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "maven_crm"
pytestmark = pytest.mark.skipif(not (MAVEN / "sales_pipeline.csv").exists(),
                                reason=f"the Maven CRM sample is not at {MAVEN}")


@pytest.fixture(scope="module")
def raw():
    with open(MAVEN / "sales_pipeline.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with open(MAVEN / "products.csv", newline="", encoding="utf-8") as fh:
        prices = {r["product"]: float(r["sales_price"]) for r in csv.DictReader(fh)}
    return rows, prices


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("maven")
    return import_maven(MAVEN, out), out


def day(s: str) -> dt.date:
    return dt.date.fromisoformat(s)


def test_assumption_counts(raw, imported):
    rows, _ = raw
    result, _ = imported
    n = {s: sum(r["deal_stage"] == s for r in rows) for s in ("Prospecting", "Engaging",
                                                              "Won", "Lost")}
    closed = [r for r in rows if r["deal_stage"] in ("Won", "Lost")]
    longest = max((day(r["close_date"]) - day(r["engage_date"])).days for r in closed)
    snapshot = max(day(r["close_date"]) for r in closed)
    stale = sum(r["deal_stage"] == "Engaging"
                and (snapshot - day(r["engage_date"])).days > longest for r in rows)
    a = {x.key: x.deals for x in result.assumptions}
    assert a["prospecting_without_dates"] == n["Prospecting"] > 0
    assert a["engaged_without_prospecting_date"] == len(rows) - n["Prospecting"]
    assert a["closed_on_close_date"] == n["Won"] + n["Lost"]
    assert a["lost_from_prospecting"] == sum(r["deal_stage"] == "Lost" and not r["engage_date"]
                                             for r in rows) == 0
    assert a["stale_engaging"] == stale > 0
    assert a["open_amount_from_price_list"] == n["Prospecting"] + n["Engaging"]
    assert a["product_renamed"] == sum(r["product"] == "GTXPro" for r in rows) > 0
    assert a["lost_without_amount"] == n["Lost"]
    assert a["won_amount_from_close_value"] == n["Won"]
    assert str(longest) in result.assumption("stale_engaging").text
    assert result.as_of == pd.Timestamp(snapshot) + pd.Timedelta(days=1) \
        - pd.Timedelta(microseconds=1)


def test_written_folder_reads_back(raw, imported):
    rows, prices = raw
    result, out = imported
    assert {p.name for p in out.iterdir()} >= {"deals.csv", "events.csv", "funnel.toml",
                                               "import_report.json"}
    crm = read_crm(out)
    assert crm.report.ok and result.validation["ok"]
    assert len(crm.deals) == len(rows) == result.n_deals
    assert len(crm.events) == result.n_events
    assert set(crm.segments) == {"Central", "East", "West"}
    assert all(f.stages == ("Prospecting", "Engaging") for f in crm.funnels.values())
    # the current stage of every deal is its snapshot stage
    cur = crm.current_stage().set_index("deal_id")["stage"]
    assert all(cur[r["opportunity_id"]] == r["deal_stage"] for r in rows)
    deals = crm.deals.set_index("deal_id")
    for r in rows[:: 97]:  # a spread of deals: amounts follow the stated rules
        amount = deals.loc[r["opportunity_id"], "amount"]
        if r["deal_stage"] == "Won":
            assert amount == float(r["close_value"])
        elif r["deal_stage"] == "Lost":
            assert np.isnan(amount)
        else:
            assert amount == prices[r["product"].replace("GTXPro", "GTX Pro")]
    # Prospecting deals enter at the snapshot date and are marked imputed
    prosp = crm.events.loc[crm.events["stage"] == "Prospecting"]
    assert prosp["imputed"].all() and (prosp["entered_at"] == crm.as_of.normalize()).all()
    assert crm.report.counts["missing_amount"] == result.assumption("lost_without_amount").deals


def test_report_json_lists_every_assumption(imported):
    result, out = imported
    doc = json.loads((out / "import_report.json").read_text())
    assert doc == json.loads(json.dumps(result.to_dict()))
    assert [a["key"] for a in doc["assumptions"]] == [a.key for a in result.assumptions]
    assert all(isinstance(a["deals"], int) and a["text"] for a in doc["assumptions"])
    text = result.format()
    for a in result.assumptions:
        assert f"{a.deals}  {a.text}" in text


def test_cold_rule_on_the_import_closes_the_stale_deals(imported):
    result, out = imported
    days = int(result.assumption("stale_engaging").text.split("cold_after_days=")[1].split()[0])
    crm = read_crm(out, cold_after_days=days)
    assert crm.report.counts["gone_cold"] == result.assumption("stale_engaging").deals


def test_segment_by_series_through_cli(tmp_path, capsys, raw):
    rows, _ = raw
    status = main(["import", "maven", str(MAVEN), "--out", str(tmp_path),
                   "--segment-by", "series", "--json"])
    assert status == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["segments"]) == {"GTX", "MG", "GTK"}
    assert sum(doc["segments"].values()) == len(rows)
    assert read_crm(tmp_path).segments == ["GTK", "GTX", "MG"]


def test_bad_sources(tmp_path, capsys):
    with pytest.raises(MissingFileError, match="sales_pipeline.csv"):
        import_maven(tmp_path, tmp_path / "out")
    with pytest.raises(ParameterError, match="regional_office"):
        import_maven(MAVEN, tmp_path / "out", segment_by="sector")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("sales_teams.csv", "products.csv"):
        (src / name).write_bytes((MAVEN / name).read_bytes())
    text = (MAVEN / "sales_pipeline.csv").read_text(encoding="utf-8").splitlines()
    text[3] = text[3].replace("Won", "Negotiating", 1)
    (src / "sales_pipeline.csv").write_text("\n".join(text) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        import_maven(src, tmp_path / "out")
    msg = str(info.value)
    assert "sales_pipeline.csv, line 4" in msg and "column 'deal_stage'" in msg
    assert "'Negotiating'" in msg and "expected one of" in msg
    assert main(["import", "maven", str(src), "--out", str(tmp_path / "o2")]) == 2
    assert "Traceback" not in capsys.readouterr().err
