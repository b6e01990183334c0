"""Import the Maven Analytics "CRM Sales Opportunities" snapshot as a CRM folder.

The sample is a snapshot, not a stage history: each deal has its current stage
(Prospecting, Engaging, Won, Lost), an engage date and a close date. Turning it into an event
log needs assumptions; each one is listed in the import report with the number of deals it
affects:

* deals with an engage date enter the funnel at Engaging on that date (created_at = engage
  date); the time they spent in Prospecting before is not recorded;
* deals still in Prospecting have no dates at all: they enter Prospecting at the snapshot
  date (the last close date in the file), so they add no time at risk;
* Won and Lost are entered on the close date; no deal is recorded as lost from Prospecting;
* amounts: Won deals keep their close value, open deals take the product's list price
  (``GTXPro`` in the pipeline is ``GTX Pro`` in the price list), Lost deals (recorded as 0)
  get no amount;
* open Engaging deals much older than any closed deal are kept open (counted; a gone-cold
  rule can be applied when reading, with ``cold_after_days``).

Dependency rule: pandas and funnel_lab.crm only.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from funnel_lab.crm.read import _read_csv, _Source, read_crm
from funnel_lab.errors import DataError, MissingFileError, ParameterError

__all__ = ["ImportResult", "import_maven"]

log = logging.getLogger(__name__)

STAGES = ("Prospecting", "Engaging")
WON, LOST = "Won", "Lost"
SEGMENT_BY = ("regional_office", "series")
#: Names the pipeline writes differently from the price list.
PRODUCT_ALIASES = {"GTXPro": "GTX Pro"}

_PIPELINE_COLUMNS = ("opportunity_id", "sales_agent", "product", "account", "deal_stage",
                     "engage_date", "close_date", "close_value")
_TEAM_COLUMNS = ("sales_agent", "manager", "regional_office")
_PRODUCT_COLUMNS = ("product", "series", "sales_price")


@dataclass
class Assumption:
    """One assumption of the import and how many deals it affects."""

    key: str
    deals: int
    text: str


@dataclass
class ImportResult:
    """What :func:`import_maven` wrote and assumed.

    Attributes
    ----------
    out : Path
        The CRM folder written (deals.csv, events.csv, funnel.toml, import_report.json).
    as_of : pandas.Timestamp
        The snapshot moment (end of the day of the last close date).
    n_deals, n_events : int
    segment_by : str
    segments : dict of str to int
        Deals per segment.
    assumptions : list of Assumption
        Every assumption with the number of deals it affects.
    validation : dict
        The validation report of reading the written folder back with ``read_crm``.
    """

    out: Path
    as_of: pd.Timestamp
    n_deals: int
    n_events: int
    segment_by: str
    segments: dict[str, int] = field(default_factory=dict)
    assumptions: list[Assumption] = field(default_factory=list)
    validation: dict[str, Any] = field(default_factory=dict)

    def assumption(self, key: str) -> Assumption:
        """The assumption named ``key``."""
        for a in self.assumptions:
            if a.key == key:
                return a
        raise KeyError(f"no assumption {key!r}; known: {[a.key for a in self.assumptions]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": "maven_crm", "out": str(self.out), "as_of": self.as_of.isoformat(),
            "segment_by": self.segment_by, "n_deals": self.n_deals, "n_events": self.n_events,
            "segments": dict(self.segments),
            "assumptions": [{"key": a.key, "deals": a.deals, "text": a.text}
                            for a in self.assumptions],
            "validation": self.validation,
        }

    def format(self) -> str:
        """The import report as text for people."""
        lines = [f"Imported the Maven CRM snapshot into {self.out}",
                 f"  {self.n_deals} deals, {self.n_events} events, as_of {self.as_of}, "
                 f"segments by {self.segment_by}: "
                 + ", ".join(f"{k} ({v})" for k, v in self.segments.items()),
                 "", "Assumptions (deals affected):"]
        width = max(len(str(a.deals)) for a in self.assumptions)
        lines += [f"  {a.deals:>{width}}  {a.text}" for a in self.assumptions]
        ok = "no problems" if self.validation.get("ok") else \
            f"problems: {self.validation.get('problems')}"
        lines += ["", f"Read back with read_crm: {ok}."]
        return "\n".join(lines)


def import_maven(src: str | Path, out: str | Path,
                 segment_by: str = "regional_office") -> ImportResult:
    """Convert the Maven CRM snapshot in ``src`` into a CRM folder ``out``.

    Parameters
    ----------
    src : str or Path
        The folder with sales_pipeline.csv, sales_teams.csv and products.csv.
    out : str or Path
        The CRM folder to write (created if needed; its CRM files are overwritten).
    segment_by : {"regional_office", "series"}
        Segment deals by the agent's regional office (which nests the managers' teams) or by
        the product series.

    Returns
    -------
    ImportResult
        What was written and every assumption with the number of deals it affects.

    Examples
    --------
    >>> result = import_maven("../shared/data/maven_crm", "/tmp/maven")  # doctest: +SKIP
    >>> print(result.format())  # doctest: +SKIP
    """
    if segment_by not in SEGMENT_BY:
        raise ParameterError(f"segment_by must be one of {list(SEGMENT_BY)}, got {segment_by!r}")
    src, out = Path(src), Path(out)
    pipeline, teams, products, psrc = _load(src)

    deals, events, assumptions = _convert(pipeline, teams, products, psrc, segment_by)
    as_of = pd.Timestamp(events["entered_at"].max()).normalize() + pd.Timedelta(days=1) \
        - pd.Timedelta(microseconds=1)
    result = ImportResult(out=out, as_of=as_of, n_deals=len(deals), n_events=len(events),
                          segment_by=segment_by,
                          segments=deals["segment"].value_counts().sort_index().to_dict(),
                          assumptions=assumptions)

    _write(out, deals, events, result)
    crm = read_crm(out)
    result.validation = crm.report.to_dict()
    (out / "import_report.json").write_text(json.dumps(result.to_dict(), indent=1) + "\n",
                                            encoding="utf-8")
    log.info("imported %s deals into %s", len(deals), out)
    return result


def _load(src: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, _Source]:
    if not src.is_dir():
        raise MissingFileError("no such folder; expected the Maven CRM folder with "
                               "sales_pipeline.csv, sales_teams.csv and products.csv",
                               path=str(src))
    frames = []
    for name, cols in (("sales_pipeline.csv", _PIPELINE_COLUMNS),
                       ("sales_teams.csv", _TEAM_COLUMNS), ("products.csv", _PRODUCT_COLUMNS)):
        path = src / name
        if not path.exists():
            raise MissingFileError(f"{name} is missing; expected the Maven CRM files "
                                   "sales_pipeline.csv, sales_teams.csv and products.csv",
                                   path=str(path))
        frame = _read_csv(path, _Source(str(path), csv=True), cols)
        frame.attrs.pop("blank_lines", None)
        frames.append(frame)
    return frames[0], frames[1], frames[2], _Source(str(src / "sales_pipeline.csv"), csv=True)


def _dates(p: pd.DataFrame, column: str, src: _Source) -> pd.Series:
    text = p[column]
    out = pd.to_datetime(text.where(text != "", None), format="ISO8601", errors="coerce")
    bad = out.isna() & (text != "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"cannot read {text.iat[i]!r} as a date; expected YYYY-MM-DD",
                        path=src.label, line=int(p["_row"].iat[i]) + 2, column=column,
                        deal_id=p["opportunity_id"].iat[i])
    return out.astype("datetime64[us]")


def _fail(p: pd.DataFrame, mask: pd.Series, src: _Source, column: str, message: str) -> None:
    if mask.any():
        i = int(np.flatnonzero(mask.to_numpy())[0])
        raise DataError(message.format(value=p[column].iat[i]), path=src.label,
                        line=int(p["_row"].iat[i]) + 2, column=column,
                        deal_id=p["opportunity_id"].iat[i])


def _convert(p: pd.DataFrame, teams: pd.DataFrame, products: pd.DataFrame, src: _Source,
             segment_by: str) -> tuple[pd.DataFrame, pd.DataFrame, list[Assumption]]:
    p = p.copy()
    for col in _PIPELINE_COLUMNS:
        p[col] = p[col].str.strip()
    _fail(p, p["opportunity_id"] == "", src, "opportunity_id",
          "the opportunity_id is blank; expected a deal id")
    _fail(p, p["opportunity_id"].duplicated(), src, "opportunity_id",
          "opportunity_id {value!r} appears twice; expected one row per deal")
    known_stages = (*STAGES, WON, LOST)
    _fail(p, ~p["deal_stage"].isin(known_stages), src, "deal_stage",
          "deal_stage {value!r} is unknown; expected one of " + str(list(known_stages)))
    engage, close = _dates(p, "engage_date", src), _dates(p, "close_date", src)
    stage = p["deal_stage"]
    closed = stage.isin([WON, LOST])
    _fail(p, closed & close.isna().to_numpy(), src, "close_date",
          "a Won or Lost deal has no close_date; expected YYYY-MM-DD")
    _fail(p, (stage != "Prospecting") & engage.isna().to_numpy(), src, "engage_date",
          "an Engaging, Won or Lost deal has no engage_date; expected YYYY-MM-DD")
    _fail(p, (close < engage).fillna(False), src, "close_date",
          "close_date is before engage_date; expected a close on or after the engage date")

    # products: the pipeline's names, mapped onto the price list
    prices = products.assign(price=pd.to_numeric(products["sales_price"], errors="coerce"))
    prices = prices.set_index(prices["product"].str.strip())
    product = p["product"].replace(PRODUCT_ALIASES)
    renamed = int((product != p["product"]).sum())
    _fail(p, ~product.isin(prices.index), src, "product",
          "product {value!r} is not in products.csv; expected one of "
          + str(sorted(prices.index)))

    team_of = teams.assign(**{c: teams[c].str.strip() for c in _TEAM_COLUMNS}) \
        .drop_duplicates("sales_agent").set_index("sales_agent")
    no_team = ~p["sales_agent"].isin(team_of.index)

    snapshot = close.max()
    if pd.isna(snapshot):
        snapshot = engage.max()
    if segment_by == "regional_office":
        segment = p["sales_agent"].map(team_of["regional_office"]).fillna("(unassigned)")
    else:
        segment = product.map(prices["series"].str.strip())
    value = pd.to_numeric(p["close_value"].where(p["close_value"] != "", None), errors="coerce")
    is_open = stage.isin(STAGES)
    amount = pd.Series(np.nan, index=p.index)
    amount[stage == WON] = value[stage == WON]
    amount[is_open] = product[is_open].map(prices["price"])

    prospecting = stage == "Prospecting"
    created = engage.where(~prospecting, snapshot)
    deals = pd.DataFrame({
        "deal_id": p["opportunity_id"], "segment": segment,
        "owner": p["sales_agent"].where(p["sales_agent"] != "", "(unassigned)"),
        "team": p["sales_agent"].map(team_of["manager"]).fillna("(unassigned)"),
        "amount": amount, "created_at": created,
    })
    events = pd.concat([
        pd.DataFrame({"deal_id": p["opportunity_id"][prospecting], "stage": "Prospecting",
                      "entered_at": snapshot, "imputed": True}),
        pd.DataFrame({"deal_id": p["opportunity_id"][~prospecting], "stage": "Engaging",
                      "entered_at": engage[~prospecting], "imputed": False}),
        pd.DataFrame({"deal_id": p["opportunity_id"][closed], "stage": stage[closed],
                      "entered_at": close[closed], "imputed": False}),
    ], ignore_index=True)
    events["entered_at"] = events["entered_at"].astype("datetime64[us]")
    events = events.sort_values(["deal_id", "entered_at"], kind="stable").reset_index(drop=True)

    longest = (close - engage)[closed].max()
    engaging_age = snapshot - engage[stage == "Engaging"]
    stale = int((engaging_age > longest).sum())
    lost_value = value[stage == LOST]
    assumptions = [
        Assumption("prospecting_without_dates", int(prospecting.sum()),
                   "deals in Prospecting have no dates at all: they enter Prospecting (and are "
                   f"created) at the snapshot date {snapshot.date()}, so they add no time at "
                   "risk (events marked imputed)"),
        Assumption("engaged_without_prospecting_date", int((~prospecting).sum()),
                   "deals with an engage date enter the funnel at Engaging on that date "
                   "(created_at = engage date); their time in Prospecting is not recorded"),
        Assumption("closed_on_close_date", int(closed.sum()),
                   "Won and Lost deals enter Won or Lost on their close date"),
        Assumption("lost_from_prospecting", int(((stage == LOST) & engage.isna()).sum()),
                   "deals recorded as lost from Prospecting: every Lost deal has an engage "
                   "date, so Prospecting -> Lost is never observed (its rate rests on the "
                   "prior)"),
        Assumption("stale_engaging", stale,
                   f"open Engaging deals older at the snapshot than the longest time to close "
                   f"of any closed deal ({longest.days} days); kept open (no Lost recorded). "
                   f"Read with cold_after_days={longest.days + 1} to treat them as lost"),
        Assumption("open_amount_from_price_list", int(is_open.sum()),
                   "open deals have no value: amount = the product's list price "
                   "(products.csv)"),
        Assumption("product_renamed", renamed,
                   "deals whose product is written 'GTXPro' in the pipeline, 'GTX Pro' in the "
                   "price list"),
        Assumption("won_amount_from_close_value", int((stage == WON).sum()),
                   "Won deals: amount = close_value"),
        Assumption("lost_without_amount", int((stage == LOST).sum()),
                   "Lost deals record close_value "
                   f"{_values(lost_value)}: amount left empty (the deal's size is unknown)"),
        Assumption("agent_without_team", int(no_team.sum()),
                   "deals whose sales agent is not in sales_teams.csv: team (and office) "
                   "'(unassigned)'"),
        Assumption("open_without_account", int((is_open & (p["account"] == "")).sum()),
                   "open deals without an account (the account is not used)"),
    ]
    for a in assumptions:
        log.info("assumption %s: %s deals", a.key, a.deals)
    return deals.reset_index(drop=True), events, assumptions


def _values(s: pd.Series) -> str:
    vals = sorted(set(s.dropna().tolist()))
    if not vals:
        return "nothing"
    return ", ".join(f"{v:g}" for v in vals[:3]) + (" ..." if len(vals) > 3 else "")


def _write(out: Path, deals: pd.DataFrame, events: pd.DataFrame, result: ImportResult) -> None:
    out.mkdir(parents=True, exist_ok=True)
    d = deals.copy()
    d["created_at"] = d["created_at"].dt.strftime("%Y-%m-%d")
    d.to_csv(out / "deals.csv", index=False)
    e = events.copy()
    e["entered_at"] = e["entered_at"].dt.strftime("%Y-%m-%d")
    e.to_csv(out / "events.csv", index=False)
    lines = ["# Written by funnel-lab import maven: the funnel of the Maven CRM sample.",
             "# Every segment has the same stages (Prospecting > Engaging > Won / Lost)."]
    for seg in sorted(result.segments):
        lines += ["", f"[{json.dumps(seg)}]",
                  f"stages = [{', '.join(json.dumps(s) for s in STAGES)}]",
                  f"won = {json.dumps(WON)}", f"lost = {json.dumps(LOST)}"]
    (out / "funnel.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
