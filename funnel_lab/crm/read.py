"""Reading a CRM folder (CSV, Parquet or DuckDB) into a validated :class:`~funnel_lab.crm.CRM`.

The steps, in order (each is a short function below):

1. **load**: find the tables (``deals``/``events`` as CSV, Parquet or DuckDB tables) and the
   optional ``funnel.toml``; check encoding, delimiter and columns (:func:`read_crm` only).
2. **parse**: text, dates and amounts column by column; every bad cell is an error that names
   the file, the line, the column and the deal.
3. **check identity**: exact duplicate rows are dropped (counted); a deal_id with two different
   deal rows, a blank deal_id or an event of an unknown deal is an error.
4. **funnels**: from ``funnel.toml`` or inferred from the order deals enter the stages (logged).
5. **order**: events sorted by deal, time and funnel order (same-time ties along the funnel);
   Won and Lost at the same moment, or an event after Won, is an error.
6. **as_of**: later events and deals are left out (counted).
7. **repairs**: a first stage for deals without events, the gone-cold rule (counted).

Dependency rule: imports pandas, numpy, duckdb (lazily) and funnel_lab.errors only.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import tomllib
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from funnel_lab.crm.eventlog import CRM, DEAL_COLUMNS, EVENT_COLUMNS, ValidationReport
from funnel_lab.crm.funnel import Funnel
from funnel_lab.errors import (
    DataError,
    DataWarning,
    FunnelDefinitionError,
    MissingFileError,
    ParameterError,
)

__all__ = [
    "crm_from_frames",
    "format_report",
    "parse_as_of",
    "read_crm",
    "read_funnel_toml",
    "stage_summary",
]

log = logging.getLogger(__name__)

#: Quantile of the observed time-in-stage of deals that moved on, used as the default
#: ``cold_after_days`` of a segment whose data records no Lost at all.
DEFAULT_COLD_QUANTILE = 0.95
#: Fewer observed stays than this and no default gone-cold rule is chosen (a quantile of a
#: handful of gaps says nothing): the segment is left without one, with a warning.
MIN_STAYS_FOR_DEFAULT_COLD = 10

OPTIONAL_DEAL_COLUMNS = ("source",)
UNASSIGNED = "(unassigned)"
_ROW = "_row"  # 0-based position of a row in its source table, kept to name lines in errors
_DATE_HINT = "a date or time like 2024-03-31 or 2024-03-31T14:05:00"
_FUNNEL_KEYS = ("stages", "won", "lost", "cold_after_days")
_ARROW_STR = pd.StringDtype("pyarrow", na_value=np.nan)  # the default "str" dtype
# every line boundary of str.splitlines
_LINE_BREAK = re.compile("\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_OTHER_DELIMITERS = {";": "';' (semicolon)", "\t": "a tab", "|": "'|' (pipe)"}


# ---------------------------------------------------------------- where a row is


@dataclass(frozen=True)
class _Source:
    """Where a table came from, so that errors can name the file and the line."""

    label: str
    csv: bool = False  # CSV: row r is file line r + 2 (the header is line 1)

    def where(self, row: int | None) -> dict[str, Any]:
        """``DataError`` keyword arguments for 0-based table row ``row``."""
        if row is None:
            return {"path": self.label}
        if self.csv:
            return {"path": self.label, "line": int(row) + 2}
        return {"path": f"{self.label}, row {int(row) + 1}"}

    def name_row(self, row: int) -> str:
        return f"line {int(row) + 2}" if self.csv else f"row {int(row) + 1}"


def _error(src: _Source, row: int | None, message: str, *, column: str | None = None,
           deal_id: str | None = None, cls: type[DataError] = DataError) -> DataError:
    return cls(message, column=column, deal_id=deal_id, **src.where(row))


# ---------------------------------------------------------------- public API


def read_crm(
    path: str | Path,
    as_of: Any = None,
    cold_after_days: float | None = None,
) -> CRM:
    """Read and validate a CRM folder.

    Parameters
    ----------
    path : str or Path
        A folder holding ``deals`` and ``events`` as CSV (``deals.csv``, ``events.csv``) or
        Parquet files, or a DuckDB database file with tables ``deals`` and ``events`` (or a
        folder containing exactly one ``.duckdb`` file). An optional ``funnel.toml`` next to
        them defines the funnels; without it they are inferred from the data (and logged).
    as_of : None, str, date, datetime or Timestamp
        The snapshot moment. A date means the end of that day. Default: the end of the day of
        the last event. Later events and deals are left out and counted.
    cold_after_days : float, optional
        Gone-cold rule for every segment (overrides ``funnel.toml``): an open deal with no
        event for this many days enters Lost at that moment.

    Returns
    -------
    CRM
        Deals, events, funnels, ``as_of`` and the validation report.

    Raises
    ------
    DataError
        Bad input; the message names the file, line, column and deal, and what was expected.

    Examples
    --------
    >>> crm = read_crm("data/demo", as_of="2025-06-30")  # doctest: +SKIP
    >>> print(format_report(crm))  # doctest: +SKIP
    """
    root = Path(path)
    tables, funnel_path, label = _locate(root)
    deals, deal_src = _load_table(tables["deals"], "deals", DEAL_COLUMNS)
    events, event_src = _load_table(tables["events"], "events", EVENT_COLUMNS)
    funnels = read_funnel_toml(funnel_path) if funnel_path is not None else None
    report = ValidationReport()
    report.add("blank_lines", int(deals.attrs.pop("blank_lines", 0))
               + int(events.attrs.pop("blank_lines", 0)))
    return _build(deals, events, funnels, as_of, cold_after_days, label, deal_src, event_src,
                  report, funnel_label=None if funnel_path is None else str(funnel_path))


def crm_from_frames(
    deals: pd.DataFrame,
    events: pd.DataFrame,
    funnels: dict[str, Funnel] | None = None,
    as_of: Any = None,
    cold_after_days: float | None = None,
    source: str | None = None,
) -> CRM:
    """Validate in-memory deal and event tables into a :class:`CRM` (same rules as files).

    Parameters
    ----------
    deals : DataFrame
        ``deal_id, segment, owner, team, amount, created_at`` (+ optional ``source``).
    events : DataFrame
        ``deal_id, stage, entered_at`` (+ optional bool ``imputed``).
    funnels : dict of str to Funnel, optional
        One funnel per segment; None infers them from the data (the order is logged).
    as_of, cold_after_days
        As in :func:`read_crm`.
    source : str, optional
        A label for the data, used in error messages and kept as ``CRM.source``.

    Returns
    -------
    CRM

    Examples
    --------
    >>> deals = pd.DataFrame({"deal_id": ["a", "b"], "segment": "SMB", "owner": "Ann",
    ...                       "team": "East", "amount": [100.0, None],
    ...                       "created_at": pd.to_datetime(["2025-01-02", "2025-01-03"])})
    >>> events = pd.DataFrame({"deal_id": ["a", "a", "b", "b"],
    ...                        "stage": ["Lead", "Won", "Lead", "Lost"],
    ...                        "entered_at": pd.to_datetime(["2025-01-02", "2025-01-09",
    ...                                                      "2025-01-03", "2025-01-05"])})
    >>> crm = crm_from_frames(deals, events, {"SMB": Funnel("SMB", ("Lead",))})
    >>> crm.report.counts["missing_amount"], str(crm.as_of)
    (1, '2025-01-09 23:59:59.999999')
    """
    label = source or "in-memory tables"
    deal_src = _Source(f"{label}: deals" if source else "deals table")
    event_src = _Source(f"{label}: events" if source else "events table")
    deals = _frame_columns(deals, deal_src, DEAL_COLUMNS)
    events = _frame_columns(events, event_src, EVENT_COLUMNS)
    if funnels is not None:
        funnels = dict(funnels)
        for seg, f in funnels.items():
            if not isinstance(f, Funnel):
                raise ParameterError(f"funnels['{seg}'] must be a Funnel, got {type(f).__name__}")
    report = ValidationReport()
    report.add("blank_lines", 0)
    return _build(deals, events, funnels, as_of, cold_after_days, source, deal_src, event_src,
                  report, funnel_label="funnels argument")


def parse_as_of(as_of: Any) -> pd.Timestamp | None:
    """Turn an ``as_of`` argument into a moment (a date means the end of that day).

    Examples
    --------
    >>> str(parse_as_of("2025-03-31"))
    '2025-03-31 23:59:59.999999'
    >>> str(parse_as_of("2025-03-31T12:00"))
    '2025-03-31 12:00:00'
    """
    if as_of is None:
        return None
    if isinstance(as_of, pd.Timestamp | dt.datetime):
        ts = pd.Timestamp(as_of)
    elif isinstance(as_of, dt.date):
        return _end_of_day(pd.Timestamp(as_of))
    elif isinstance(as_of, str):
        text = as_of.strip()
        try:
            ts = pd.Timestamp(text)
        except (ValueError, TypeError):
            ts = pd.NaT
        if pd.isna(ts):
            raise ParameterError(f"as_of: cannot read {as_of!r} as a moment; expected "
                                 f"{_DATE_HINT}")
        if re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}", text):
            ts = _end_of_day(ts)
    else:
        raise ParameterError(f"as_of must be None, a date string, a date or a Timestamp; got "
                             f"{type(as_of).__name__}")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.as_unit("us")


def read_funnel_toml(path: str | Path) -> dict[str, Funnel]:
    """Read ``funnel.toml``: one table per segment with ``stages``, ``won``, ``lost``.

    Examples
    --------
    A file with ``[SMB]`` and ``stages = ["Lead", "Demo"]`` gives
    ``{"SMB": Funnel("SMB", ("Lead", "Demo"))}``.
    """
    path = Path(path)
    label = str(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise FunnelDefinitionError("not UTF-8 text; expected a UTF-8 TOML file", path=label,
                                    line=line) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line = int(m.group(1)) if m else None
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        col = f", column {m.group(2)}" if m else ""
        raise FunnelDefinitionError(f"TOML syntax error{col}: {msg}; expected one table per "
                                    "segment, e.g. [SMB] stages = [\"Lead\", \"Demo\"]",
                                    path=label, line=line) from None
    if not doc:
        raise FunnelDefinitionError("defines no segment; expected one table per segment, "
                                    "e.g. [SMB] stages = [\"Lead\", \"Demo\"]", path=label)
    funnels = {}
    for seg, spec in doc.items():
        line = _toml_line(text, seg)
        if not isinstance(spec, dict):
            raise FunnelDefinitionError(
                f"'{seg}' is a {type(spec).__name__}; expected a table [{seg}] with "
                "stages = [...]", path=label, line=line)
        unknown = sorted(set(spec) - set(_FUNNEL_KEYS))
        if unknown:
            raise FunnelDefinitionError(
                f"segment '{seg}': unknown keys {unknown}; expected only {list(_FUNNEL_KEYS)}",
                path=label, line=line)
        if "stages" not in spec:
            raise FunnelDefinitionError(
                f"segment '{seg}' has no 'stages'; expected stages = [\"...\", ...] (the open "
                "stages in funnel order)", path=label, line=line)
        stages = spec["stages"]
        if (not isinstance(stages, list) or not stages
                or not all(isinstance(s, str) and s.strip() for s in stages)):
            raise FunnelDefinitionError(
                f"segment '{seg}': stages = {stages!r}; expected a non-empty list of stage "
                "names (strings)", path=label, line=line)
        kwargs: dict[str, Any] = {}
        for key in ("won", "lost"):
            if key in spec:
                if not isinstance(spec[key], str) or not spec[key].strip():
                    raise FunnelDefinitionError(
                        f"segment '{seg}': {key} = {spec[key]!r}; expected a stage name "
                        "(a string)", path=label, line=line)
                kwargs[key] = spec[key].strip()
        if "cold_after_days" in spec:
            cold = spec["cold_after_days"]
            if isinstance(cold, bool) or not isinstance(cold, int | float) or not cold > 0:
                raise FunnelDefinitionError(
                    f"segment '{seg}': cold_after_days = {cold!r}; expected a number of days "
                    "> 0", path=label, line=line)
            kwargs["cold_after_days"] = float(cold)
        try:
            funnels[str(seg)] = Funnel(str(seg), tuple(s.strip() for s in stages), **kwargs)
        except FunnelDefinitionError as exc:
            raise FunnelDefinitionError(exc.detail, path=label, line=line) from None
    return funnels


# ---------------------------------------------------------------- load files


def _locate(root: Path) -> tuple[dict[str, Any], Path | None, str]:
    """Find the deals and events tables and funnel.toml under ``root``."""
    if not root.exists():
        raise MissingFileError("no such file or folder; expected a CRM folder (deals.csv, "
                               "events.csv) or a DuckDB file", path=str(root))
    if root.is_file():
        if root.suffix.lower() in (".csv", ".parquet"):
            root = root.parent
        else:
            return _duckdb_tables(root), _maybe(root.parent / "funnel.toml"), str(root)
    dbs = sorted(root.glob("*.duckdb"))
    has_files = any((root / f"deals{ext}").exists() for ext in (".csv", ".parquet"))
    if dbs and not has_files:
        if len(dbs) > 1:
            raise DataError(f"holds {len(dbs)} DuckDB files ({', '.join(d.name for d in dbs)});"
                            " expected one, or pass the file itself", path=str(root))
        return _duckdb_tables(dbs[0]), _maybe(root / "funnel.toml"), str(dbs[0])
    tables: dict[str, Any] = {}
    for name in ("deals", "events"):
        for ext in (".csv", ".parquet"):
            if (root / f"{name}{ext}").exists():
                tables[name] = root / f"{name}{ext}"
                break
        else:
            raise MissingFileError(f"{name}.csv (or {name}.parquet) is missing; a CRM folder "
                                   "holds deals.csv and events.csv", path=str(root / f"{name}.csv"))
    return tables, _maybe(root / "funnel.toml"), str(root)


def _maybe(p: Path) -> Path | None:
    return p if p.exists() else None


def _duckdb_tables(db: Path) -> dict[str, Any]:
    """Read tables ``deals`` and ``events`` of a DuckDB file into data frames."""
    import duckdb

    head = db.read_bytes()[:64]
    if b"DUCK" not in head:
        raise DataError("is not a DuckDB database (and not a .csv or .parquet file); expected "
                        "a CRM folder or a DuckDB file with tables deals and events",
                        path=str(db))
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error as exc:
        raise DataError(f"cannot open the DuckDB database ({exc})", path=str(db)) from None
    try:
        names = {r[0] for r in con.execute("select table_name from information_schema.tables")
                 .fetchall()}
        out = {}
        for name in ("deals", "events"):
            if name not in names:
                raise MissingFileError(f"the database has no table '{name}' (tables: "
                                       f"{sorted(names)}); expected tables deals and events",
                                       path=str(db))
            out[name] = ("duckdb", con.execute(f'select * from "{name}"').df(), f"{db}:{name}")
        return out
    finally:
        con.close()


def _load_table(spec: Any, name: str, required: tuple[str, ...]) -> tuple[pd.DataFrame, _Source]:
    if isinstance(spec, tuple):  # from DuckDB
        _, frame, label = spec
        src = _Source(label)
        return _frame_columns(frame, src, required), src
    path = Path(spec)
    if path.suffix.lower() == ".parquet":
        src = _Source(str(path))
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a broken file
            raise DataError(f"cannot read as Parquet ({type(exc).__name__}: {exc}); expected a "
                            f"Parquet table with columns {', '.join(required)}",
                            path=str(path)) from None
        return _frame_columns(frame, src, required), src
    src = _Source(str(path), csv=True)
    return _read_csv(path, src, required), src


def _read_csv(path: Path, src: _Source, required: tuple[str, ...]) -> pd.DataFrame:
    """Read a CSV as text, after checking it is UTF-8, comma-separated and a table at all."""
    raw = path.read_bytes()
    expect = f"expected a comma-separated table with columns {', '.join(required)}"
    if not raw.strip():
        raise DataError(f"the file is empty; {expect}", path=src.label)
    if b"\x00" in raw[:65536]:
        raise DataError(f"contains NUL bytes: a binary file (or UTF-16 text), not a CSV table; "
                        f"{expect} (UTF-8)", path=src.label)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} cannot be decoded); "
                        "save the file as UTF-8", path=src.label, line=line) from None
    header = _LINE_BREAK.split(text, maxsplit=1)[0]  # = text.splitlines()[0], without the copy
    fields = [f.strip().strip('"').lower() for f in header.split(",")]
    if not any(c in fields for c in required):
        for delim, name in _OTHER_DELIMITERS.items():
            other = [f.strip().strip('"').lower() for f in header.split(delim)]
            if len(other) > 1 and len(other) > len(fields):
                raise DataError(f"the columns are separated by {name}, not commas; {expect}",
                                path=src.label, line=1)
        shown = header if len(header) <= 60 else header[:57] + "..."
        raise DataError(f"is not a CRM table: line 1 ({shown!r}) has none of the expected "
                        f"column names; {expect}", path=src.label, line=1)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False,
                            skip_blank_lines=False, encoding="utf-8-sig")
    except pd.errors.ParserError as exc:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if m:
            raise DataError(f"has {m.group(3)} fields; expected {m.group(1)} like the header",
                            path=src.label, line=int(m.group(2))) from None
        raise DataError(f"cannot be read as CSV ({exc}); {expect}", path=src.label) from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    blank = (frame == "").all(axis=1) if len(frame.columns) else pd.Series(False)
    frame[_ROW] = np.arange(len(frame))
    frame = frame.loc[~blank.to_numpy()].reset_index(drop=True)
    frame.attrs["blank_lines"] = int(blank.sum())
    _check_columns(frame, src, required)
    return frame


def _frame_columns(frame: pd.DataFrame, src: _Source, required: tuple[str, ...]) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise ParameterError(f"{src.label}: expected a pandas DataFrame, got "
                             f"{type(frame).__name__}")
    frame = frame.copy()
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    if _ROW not in frame.columns:
        frame[_ROW] = np.arange(len(frame))
    frame = frame.reset_index(drop=True)
    _check_columns(frame, src, required)
    return frame


def _check_columns(frame: pd.DataFrame, src: _Source, required: tuple[str, ...]) -> None:
    have = [c for c in frame.columns if c != _ROW]
    missing = [c for c in required if c not in have]
    if missing:
        raise DataError(f"missing column{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(repr(c) for c in missing)}; expected columns "
                        f"{', '.join(required)} (found: {', '.join(have) or 'none'})",
                        path=src.label, column=missing[0], line=1 if src.csv else None)
    if len(frame) == 0:
        raise DataError(f"the table has no rows; expected at least one row under the "
                        f"columns {', '.join(required)}", path=src.label)


# ---------------------------------------------------------------- parse cells


def _text(s: pd.Series) -> pd.Series:
    """Strings without surrounding blanks; missing values become ''."""
    if s.dtype == _ARROW_STR:
        # the general path below ends in the same arrow strip; skip its round trip via object
        return s.fillna("").str.strip()
    if pd.api.types.is_float_dtype(s):
        vals = s.to_numpy(dtype=float, na_value=np.nan)
        finite = vals[np.isfinite(vals)]
        if finite.size and np.all(finite == np.round(finite)):
            s = s.astype("Int64")
    out = s.astype(object).where(s.notna(), "").astype(str).str.strip()
    return out.astype("str")


def _isin(values: pd.Series, allowed: Any) -> np.ndarray:
    """``values.isin(allowed)`` as a bool array; much faster than isin on arrow strings."""
    index = pd.Index(pd.unique(np.asarray(list(allowed) if isinstance(allowed, set | dict)
                                          else allowed, dtype=object)))
    # look up each distinct value once; code -1 (missing) is never allowed
    codes, uniques = pd.factorize(pd.Series(values, copy=False).reset_index(drop=True))
    found = index.get_indexer(np.asarray(uniques, dtype=object)) >= 0
    return np.append(found, False)[codes]


def _first_bad(mask: pd.Series | np.ndarray) -> int:
    return int(np.flatnonzero(np.asarray(mask))[0])


def _parse_dates(frame: pd.DataFrame, column: str, src: _Source, *,
                 allow_blank: bool) -> pd.Series:
    s = frame[column]
    if pd.api.types.is_datetime64_any_dtype(s):
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        out = s.astype("datetime64[us]")
    else:
        text = _text(s)
        values = text.where(text != "", None)
        out = pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")
        bad = out.isna() & (text != "")
        if bad.any():  # not ISO 8601: let pandas infer one consistent format for the column
            alt = pd.to_datetime(values, utc=True, errors="coerce")
            if (alt.notna() | (text == "")).all():
                log.info("column %s: dates are not ISO 8601; read with the inferred format",
                         column)
                out = alt
                bad = out.isna() & (text != "")
        if bad.any():
            i = _first_bad(bad)
            raise _error(src, int(frame[_ROW].iat[i]),
                         f"cannot read {text.iat[i]!r} as a date; expected {_DATE_HINT}",
                         column=column, deal_id=_deal_of(frame, i))
        out = out.dt.tz_localize(None).astype("datetime64[us]")
    if not allow_blank and out.isna().any():
        i = _first_bad(out.isna())
        raise _error(src, int(frame[_ROW].iat[i]), f"the {column} is blank; expected "
                     f"{_DATE_HINT}", column=column, deal_id=_deal_of(frame, i))
    return out


def _deal_of(frame: pd.DataFrame, i: int) -> str | None:
    if "deal_id" not in frame.columns:
        return None
    v = frame["deal_id"].iat[i]
    return None if pd.isna(v) or str(v).strip() == "" else str(v).strip()


def _parse_amount(frame: pd.DataFrame, src: _Source) -> pd.Series:
    s = frame["amount"]
    if pd.api.types.is_bool_dtype(s):
        raise _error(src, None, "amount holds true/false values; expected numbers",
                     column="amount")
    if pd.api.types.is_numeric_dtype(s):
        out = s.astype(float)
    else:
        text = _text(s)
        out = pd.to_numeric(text.where(text != "", None), errors="coerce").astype(float)
        bad = out.isna() & (text != "")
        if bad.any():
            i = _first_bad(bad)
            raise _error(src, int(frame[_ROW].iat[i]),
                         f"cannot read {text.iat[i]!r} as an amount; expected a plain number "
                         "like 1250.50 (no currency signs or thousands separators) or blank",
                         column="amount", deal_id=_deal_of(frame, i))
    bad = np.isinf(out.to_numpy()) | (out.to_numpy() < 0)
    if bad.any():
        i = _first_bad(bad)
        raise _error(src, int(frame[_ROW].iat[i]),
                     f"amount is {float(out.iat[i]):g}; expected a finite number >= 0 or blank",
                     column="amount", deal_id=_deal_of(frame, i))
    return out


def _parse_deals(frame: pd.DataFrame, src: _Source) -> pd.DataFrame:
    out = pd.DataFrame({_ROW: frame[_ROW].to_numpy()})
    for col in ("deal_id", "segment", "owner", "team", *OPTIONAL_DEAL_COLUMNS):
        if col in frame.columns:
            out[col] = _text(frame[col]).array  # no round trip via Python objects
    out["deal_id"] = out["deal_id"].astype("str")
    _check_blank(out, "deal_id", src, "a deal id")
    _check_blank(out, "segment", src, "a segment name")
    out["amount"] = _parse_amount(frame, src).to_numpy()
    out["created_at"] = _parse_dates(frame, "created_at", src, allow_blank=True).to_numpy()
    for col in ("deal_id", "segment", "owner", "team", *OPTIONAL_DEAL_COLUMNS):
        if col in out.columns:
            out[col] = out[col].astype("str")
    return out


def _parse_events(frame: pd.DataFrame, src: _Source) -> pd.DataFrame:
    out = pd.DataFrame({_ROW: frame[_ROW].to_numpy()})
    out["deal_id"] = _text(frame["deal_id"]).array  # no round trip via Python objects
    out["stage"] = _text(frame["stage"]).array
    _check_blank(out, "deal_id", src, "the id of a deal in the deals table")
    _check_blank(out, "stage", src, "a stage name")
    out["entered_at"] = _parse_dates(frame, "entered_at", src, allow_blank=False).to_numpy()
    if "imputed" in frame.columns:
        out["imputed"] = _parse_bool(frame, "imputed", src).to_numpy()
    else:
        out["imputed"] = False
    for col in ("deal_id", "stage"):
        out[col] = out[col].astype("str")
    return out


def _parse_bool(frame: pd.DataFrame, column: str, src: _Source) -> pd.Series:
    s = frame[column]
    if pd.api.types.is_bool_dtype(s):
        return s.fillna(False).astype(bool)
    text = _text(s).str.lower()
    truth = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False,
             "": False, "1.0": True, "0.0": False}
    bad = ~_isin(text, list(truth))
    if bad.any():
        i = _first_bad(bad)
        raise _error(src, int(frame[_ROW].iat[i]), f"cannot read {text.iat[i]!r} as true/false;"
                     " expected true or false", column=column, deal_id=_deal_of(frame, i))
    return text.map(truth).astype(bool)


def _check_blank(frame: pd.DataFrame, column: str, src: _Source, what: str) -> None:
    blank = frame[column] == ""
    if blank.any():
        i = _first_bad(blank)
        deal = None if column == "deal_id" else _deal_of(frame, i)
        raise _error(src, int(frame[_ROW].iat[i]), f"the {column} is blank; expected {what}",
                     column=column, deal_id=deal)


# ---------------------------------------------------------------- the pipeline


def _build(deals_in: pd.DataFrame, events_in: pd.DataFrame, funnels: dict[str, Funnel] | None,
           as_of: Any, cold_after_days: float | None, label: str | None, deal_src: _Source,
           event_src: _Source, report: ValidationReport,
           funnel_label: str | None) -> CRM:
    as_of_ts = parse_as_of(as_of)
    if cold_after_days is not None:
        if isinstance(cold_after_days, bool) or not (
                isinstance(cold_after_days, int | float) and cold_after_days > 0):
            raise ParameterError(f"cold_after_days must be a number of days > 0, got "
                                 f"{cold_after_days!r}")

    for frame, src, known in ((deals_in, deal_src, (*DEAL_COLUMNS, *OPTIONAL_DEAL_COLUMNS)),
                              (events_in, event_src, (*EVENT_COLUMNS, "imputed"))):
        unused = [c for c in frame.columns if c not in (*known, _ROW)]
        if unused:
            report.notes.append(f"{src.label}: columns not used: {', '.join(unused)}.")
    deals = _parse_deals(deals_in, deal_src)
    events = _parse_events(events_in, event_src)
    deals = _dedupe_deals(deals, deal_src, report)
    events = _dedupe_events(events, report)
    pos = _check_known_deals(deals, events, event_src)
    deals = _repair_created_at(deals, events, pos, deal_src, report)
    deals, events, segs = _add_deal_codes(deals, events, pos)

    if funnels is None:
        funnels = _infer_funnels(events, segs, report)
    events, codes = _check_funnels(deals, events, segs, funnels, deal_src, event_src,
                                   funnel_label)
    idle = sorted(set(funnels) - set(codes.segs))
    if idle:
        report.notes.append(f"funnels without any deal (not used): {', '.join(idle)}.")
    funnels = {seg: funnels[seg] for seg in codes.segs}

    events = _order_events(events, codes, funnels, event_src, report)
    _check_after_won(events, codes, event_src)

    if as_of_ts is None:
        as_of_ts = _end_of_day(events["entered_at"].max())
        log.info("as_of not given: using the end of the day of the last event, %s", as_of_ts)
    deals, events = _cut_at(deals, events, as_of_ts, report)
    if deals.empty:
        raise DataError(f"no deal was created at or before as_of = {as_of_ts}; expected "
                        "an as_of after the first deal", path=label)
    funnels = {seg: funnels[seg] for seg in _deal_segments(deals, codes)}

    deals = _fill_unassigned(deals, report)
    events = _impute_first_stage(deals, events, codes, report)
    events = _drop_repeats(events, report)
    funnels, events = _gone_cold(events, funnels, codes, as_of_ts, cold_after_days, report)
    events = _sort(events)

    amount_missing = int(deals["amount"].isna().sum())
    report.add("missing_amount", amount_missing, f"{amount_missing} deals have no amount (the "
               "amount model fills them in forecasts).")
    _find_problems(deals, events, funnels, codes, report)
    cols = [c for c in (*DEAL_COLUMNS, *OPTIONAL_DEAL_COLUMNS) if c in deals.columns]
    # _KEY is the rank of deal_id: the same order as sorting by deal_id
    deals = deals[cols].take(np.argsort(deals[_KEY].to_numpy(), kind="stable")) \
        .reset_index(drop=True)
    events = events[[*EVENT_COLUMNS, "imputed"]].reset_index(drop=True)
    log.info("read %s deals and %s events at as_of %s", len(deals), len(events), as_of_ts)
    return CRM(deals=deals, events=events, funnels=funnels, as_of=as_of_ts, report=report,
               source=label)


def _end_of_day(ts: pd.Timestamp) -> pd.Timestamp:
    return (pd.Timestamp(ts).normalize() + pd.Timedelta(days=1)
            - pd.Timedelta(microseconds=1)).as_unit("us")


def _fill_unassigned(deals: pd.DataFrame, report: ValidationReport) -> pd.DataFrame:
    """Deals without an owner or team are grouped together rather than dropped."""
    deals = deals.copy()
    for col in ("owner", "team"):
        blank = deals[col] == ""
        report.add(f"missing_{col}", int(blank.sum()),
                   f"{int(blank.sum())} deals have no {col}; they are grouped as '{UNASSIGNED}'.")
        deals.loc[blank, col] = UNASSIGNED
    return deals


def _dedupe_deals(deals: pd.DataFrame, src: _Source, report: ValidationReport) -> pd.DataFrame:
    data_cols = [c for c in deals.columns if c != _ROW]
    dup = deals.duplicated(subset=data_cols, keep="first")
    report.add("duplicate_deal_rows", int(dup.sum()),
               f"{int(dup.sum())} exact duplicate deal rows were dropped.")
    deals = deals.loc[~dup].reset_index(drop=True)
    twice = deals.duplicated(subset=["deal_id"], keep=False)
    if twice.any():
        first = deals.loc[twice].iloc[0]
        other = deals.loc[twice & (deals["deal_id"] == first["deal_id"])].iloc[1]
        differ = [c for c in data_cols if c != "deal_id"
                  and not (pd.isna(first[c]) and pd.isna(other[c])) and first[c] != other[c]]
        raise _error(src, int(other[_ROW]),
                     f"deal_id appears in two different rows ({src.name_row(first[_ROW])} and "
                     f"{src.name_row(other[_ROW])}; they differ in {', '.join(differ)}); "
                     "expected one row per deal", column="deal_id", deal_id=first["deal_id"])
    return deals


def _dedupe_events(events: pd.DataFrame, report: ValidationReport) -> pd.DataFrame:
    dup = events.duplicated(subset=["deal_id", "stage", "entered_at"], keep="first")
    report.add("duplicate_event_rows", int(dup.sum()),
               f"{int(dup.sum())} exact duplicate event rows were dropped.")
    return events.loc[~dup].reset_index(drop=True)


def _check_known_deals(deals: pd.DataFrame, events: pd.DataFrame, src: _Source) -> np.ndarray:
    """Each event's row in ``deals`` (deal ids are unique by now); an unknown deal is an error."""
    # one factorize of both id columns: far faster than an Index look-up of arrow strings
    # (or of fresh Python strings, whose hashes are not cached yet)
    codes, ids = pd.factorize(pd.concat([deals["deal_id"], events["deal_id"]],
                                        ignore_index=True))
    row = np.full(len(ids), -1, dtype=np.int64)
    row[codes[:len(deals)]] = np.arange(len(deals))
    pos = row[codes[len(deals):]]
    unknown = pos < 0
    if unknown.any():
        i = _first_bad(unknown)
        n = int(events.loc[unknown, "deal_id"].nunique())
        raise _error(src, int(events[_ROW].iat[i]),
                     f"event of a deal that is not in the deals table ({n} unknown deal id"
                     f"{'s' if n > 1 else ''} in all); expected every event's deal_id in deals",
                     column="deal_id", deal_id=events["deal_id"].iat[i])
    return pos


def _repair_created_at(deals: pd.DataFrame, events: pd.DataFrame, pos: np.ndarray,
                       src: _Source, report: ValidationReport) -> pd.DataFrame:
    """Blank created_at: the first event; created after the first event: moved back to it."""
    when = events["entered_at"].to_numpy()
    nat = np.iinfo(np.int64).min  # NaT as int64; entered_at is never NaT
    first = np.full(len(deals), np.iinfo(np.int64).max)
    np.minimum.at(first, pos, np.asarray(when).view(np.int64))
    first[first == np.iinfo(np.int64).max] = nat
    first_of = pd.Series(first.view(when.dtype), index=deals.index)
    blank = deals["created_at"].isna()
    no_info = blank & first_of.isna()
    if no_info.any():
        i = _first_bad(no_info)
        raise _error(src, int(deals[_ROW].iat[i]), "created_at is blank and the deal has no "
                     f"events; expected {_DATE_HINT}", column="created_at",
                     deal_id=deals["deal_id"].iat[i])
    late = ~blank & first_of.notna() & (first_of < deals["created_at"])
    report.add("missing_created_at", int(blank.sum()),
               f"{int(blank.sum())} deals have no created_at; their first event is used.")
    report.add("created_after_first_event", int(late.sum()),
               f"{int(late.sum())} deals have events before their created_at; created_at is "
               "moved back to the first event.")
    deals = deals.copy()
    fix = blank | late
    deals.loc[fix, "created_at"] = first_of[fix].to_numpy()
    return deals


_WON_NAMES = ("won", "closed won", "closed-won", "closed_won", "closedwon", "win")
_LOST_NAMES = ("lost", "closed lost", "closed-lost", "closed_lost", "closedlost", "loss")


def _infer_funnels(events: pd.DataFrame, segs: tuple[str, ...],
                   report: ValidationReport) -> dict[str, Funnel]:
    """Order each segment's stages by the median position of their first entry in histories.

    Works on the integer codes of :func:`_add_deal_codes`; stage names are coded in sorted
    order, so grouping by code groups (and sorts) like grouping by name.
    """
    when = events["entered_at"].to_numpy()
    by_time = np.lexsort((np.asarray(when).view(np.int64), events[_DEAL].to_numpy()))
    deal = events[_DEAL].to_numpy()[by_time]
    seg_of = events[_SEG].to_numpy()[by_time]
    when = when[by_time]
    stage, stage_names = pd.factorize(events["stage"].to_numpy(dtype=object)[by_time],
                                      sort=True)
    stage_names = np.asarray(stage_names, dtype=object)
    funnels = {}
    for k in np.unique(seg_of):
        seg = segs[k]
        in_seg = seg_of == k
        names = [str(n) for n in stage_names[np.unique(stage[in_seg])]]
        won = _pick_name(names, _WON_NAMES, "Won")
        lost = _pick_name(names, _LOST_NAMES, "Lost")
        closed = [i for i, n in enumerate(stage_names) if n in (won, lost)]
        keep = in_seg & ~np.isin(stage, closed)
        first = pd.DataFrame({"deal": deal[keep], "stage": stage[keep], "entered_at": when[keep]})
        first = first.loc[~first.duplicated(["deal", "stage"]).to_numpy()]
        d = first["deal"].to_numpy()
        row = np.arange(len(d))
        start = np.ones(len(d), dtype=bool)
        start[1:] = d[1:] != d[:-1]  # rows are sorted by deal: cumcount within deal
        first = first.assign(pos=row - np.maximum.accumulate(np.where(start, row, 0)))
        stats = first.groupby("stage")["pos"].agg(["median", "mean"])
        stats["t"] = first.groupby("stage")["entered_at"].min()
        stats.index = pd.Index([str(n) for n in stage_names[stats.index.to_numpy()]],
                               name="stage")
        stages = tuple(stats.sort_values(["median", "mean", "t"]).index)
        if not stages:
            stages = ("Open",)  # a segment whose deals all closed at once: a placeholder stage
        funnels[str(seg)] = Funnel(str(seg), stages, won=won, lost=lost)
        note = (f"segment '{seg}': no funnel.toml, stage order inferred from the data: "
                f"{' > '.join(stages)}; won = '{won}', lost = '{lost}'.")
        log.info("%s", note)
        report.notes.append(note)
    report.add("inferred_funnels", len(funnels))
    return funnels


def _pick_name(names: list[str], candidates: tuple[str, ...], default: str) -> str:
    hits = [n for n in names if n.strip().lower() in candidates]
    return hits[0] if len(hits) == 1 else default


# Integer codes carried by the tables from the funnel check on, so that sorting, grouping and
# look-ups run on int arrays instead of strings: deals get _KEY (rank of deal_id in sorted
# order) and _SEG (segment code); events get _DEAL (their deal's _KEY), _SEG and _ORD (position
# of the stage in the segment's funnel states). The output tables drop these columns.
_KEY = "_key"
_DEAL = "_deal"
_SEG = "_seg"
_ORD = "_ord"


@dataclass(frozen=True)
class _Codes:
    """What the integer codes stand for: segment names (sorted) and per-segment lookups."""

    segs: tuple[str, ...]
    n_open: np.ndarray  # per segment code: number of open stages (won = n_open, lost = +1)
    first_stage: np.ndarray  # per segment code: the first open stage (object array)
    n_deals: int  # deal keys are 0 .. n_deals - 1

    def code(self, seg: str) -> int:
        return self.segs.index(seg)


def _add_deal_codes(deals: pd.DataFrame, events: pd.DataFrame,
                    pos: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame, tuple[str, ...]]:
    """Add _KEY, _SEG to deals and _DEAL, _SEG to events; return the segment names.

    ``pos`` is each event's row in ``deals`` (from :func:`_check_known_deals`).
    """
    deal_seg, seg_names = pd.factorize(deals["segment"].to_numpy(dtype=object), sort=True)
    key = np.empty(len(deals), dtype=np.int64)
    key[deals["deal_id"].argsort(kind="stable").to_numpy()] = np.arange(len(deals))
    deal_seg = deal_seg.astype(np.int64)
    deals = deals.assign(**{_KEY: key, _SEG: deal_seg})
    events = events.assign(**{_DEAL: key[pos], _SEG: deal_seg[pos]})
    return deals, events, tuple(str(s) for s in seg_names)


def _check_funnels(deals: pd.DataFrame, events: pd.DataFrame, segs: tuple[str, ...],
                   funnels: dict[str, Funnel], deal_src: _Source, event_src: _Source,
                   funnel_label: str | None) -> tuple[pd.DataFrame, _Codes]:
    """Check every segment has a funnel and every stage is in it; add the funnel order _ORD."""
    missing = ~_isin(deals["segment"], list(funnels))
    if missing.any():
        i = _first_bad(missing)
        segs = sorted(set(deals.loc[missing, "segment"]))
        raise _error(deal_src, int(deals[_ROW].iat[i]),
                     f"segment {deals['segment'].iat[i]!r} has no funnel in "
                     f"{funnel_label or 'the funnel definitions'} (segments without one: "
                     f"{segs}); expected one of {sorted(funnels)}", column="segment",
                     deal_id=deals["deal_id"].iat[i], cls=FunnelDefinitionError)
    vocab = pd.Index(pd.unique(np.array([st for s in segs for st in funnels[s].states],
                                        dtype=object)))
    table = np.full((len(segs), len(vocab)), -1, dtype=np.int64)
    for k, s in enumerate(segs):
        table[k, vocab.get_indexer(np.array(funnels[s].states, dtype=object))] = \
            np.arange(len(funnels[s].states))
    ev_seg = events[_SEG].to_numpy()
    stage_code = vocab.get_indexer(events["stage"].to_numpy(dtype=object))
    order = np.where(stage_code >= 0, table[ev_seg, stage_code], -1)
    bad = order < 0
    if bad.any():
        # the first bad event of the first segment (by name) that has one
        k = int(ev_seg[bad].min())
        row = events.iloc[_first_bad(bad & (ev_seg == k))]
        raise _error(event_src, int(row[_ROW]),
                     f"stage {row['stage']!r} is not in the funnel of segment {segs[k]!r}; "
                     f"expected one of {list(funnels[segs[k]].states)}", column="stage",
                     deal_id=row["deal_id"])
    codes = _Codes(segs=segs, n_open=np.array([funnels[s].n_open for s in segs], dtype=np.int64),
                   first_stage=np.array([funnels[s].stages[0] for s in segs], dtype=object),
                   n_deals=len(deals))
    return events.assign(**{_ORD: order}), codes


def _deal_segments(deals: pd.DataFrame, codes: _Codes) -> list[str]:
    """The segments (sorted) that have at least one deal."""
    return [codes.segs[k] for k in np.unique(deals[_SEG].to_numpy())]


def _outcomes(events: pd.DataFrame, codes: _Codes) -> tuple[np.ndarray, np.ndarray]:
    """Boolean arrays: the event enters its segment's won stage / its lost stage."""
    order = events[_ORD].to_numpy()
    n_open = codes.n_open[events[_SEG].to_numpy()]
    return order == n_open, order == n_open + 1


def _sort(events: pd.DataFrame) -> pd.DataFrame:
    """Sort by deal_id, entered_at, then funnel order (stable, like a stable sort_values)."""
    deal, rank = events[_DEAL].to_numpy(), events[_ORD].to_numpy()
    when = np.asarray(events["entered_at"].to_numpy()).view(np.int64)
    # already in order (a stable sort would change nothing): skip the sort and the copy
    d0, d1, t0, t1 = deal[:-1], deal[1:], when[:-1], when[1:]
    if ((d1 > d0) | ((d1 == d0) & ((t1 > t0) | ((t1 == t0) & (rank[1:] >= rank[:-1]))))).all():
        return events.reset_index(drop=True)
    order = np.lexsort((rank, when, deal))
    return events.take(order).reset_index(drop=True)


def _order_events(events: pd.DataFrame, codes: _Codes, funnels: dict[str, Funnel],
                  src: _Source, report: ValidationReport) -> pd.DataFrame:
    events = _sort(events)
    deal = events[_DEAL].to_numpy()
    when = np.asarray(events["entered_at"].to_numpy()).view(np.int64)
    same = (deal[1:] == deal[:-1]) & (when[1:] == when[:-1])  # same moment as the row before
    tied = np.zeros(len(events), dtype=bool)
    tied[1:] |= same
    tied[:-1] |= same
    n_tied = int(tied.sum())
    note = None
    if n_tied:
        note = (f"{n_tied} events share their deal's timestamp with another event; they are "
                "ordered along the funnel (open stages in order, then Won, then Lost).")
        log.info("%s", note)
    report.add("tied_events", n_tied, note)
    won, lost = _outcomes(events, codes)
    group = np.cumsum(np.r_[True, ~same]) - 1  # one group per (deal, moment)
    won_at = np.zeros(group[-1] + 1 if len(group) else 0, dtype=bool)
    lost_at = won_at.copy()
    won_at[group[won]] = True
    lost_at[group[lost]] = True
    clash = won_at[group] & lost_at[group] & lost
    if clash.any():
        i = _first_bad(clash)
        f = funnels[codes.segs[int(events[_SEG].iat[i])]]
        raise _error(src, int(events[_ROW].iat[i]),
                     f"the deal enters {f.won!r} and {f.lost!r} at the same moment "
                     f"({events['entered_at'].iat[i]}); expected one outcome at a time",
                     column="stage", deal_id=events["deal_id"].iat[i])
    return events


def _check_after_won(events: pd.DataFrame, codes: _Codes, src: _Source) -> None:
    """Events are sorted by deal (see :func:`_order_events`)."""
    won = _outcomes(events, codes)[0]
    deal = events[_DEAL].to_numpy()
    # a repeated Won entry is harmless (dropped later as a repeat); anything else after Won is not
    total = np.cumsum(won)
    start = np.r_[True, deal[1:] != deal[:-1]]
    before = (total - won)[start][np.cumsum(start) - 1]  # Won entries of earlier deals
    seen = total - before - won
    after = (seen > 0) & ~won
    if after.any():
        i = _first_bad(after)
        deal_id = events["deal_id"].iat[i]
        won_at = events.loc[won & (deal == deal[i]), "entered_at"].min()
        raise _error(src, int(events[_ROW].iat[i]),
                     f"the deal enters {events['stage'].iat[i]!r} at "
                     f"{events['entered_at'].iat[i]} after it was won at {won_at}; expected no "
                     "event after Won (Won is final)", column="stage", deal_id=deal_id)


def _cut_at(deals: pd.DataFrame, events: pd.DataFrame, as_of: pd.Timestamp,
            report: ValidationReport) -> tuple[pd.DataFrame, pd.DataFrame]:
    late_deals = deals["created_at"] > as_of
    late_events = events["entered_at"] > as_of
    report.add("deals_after_as_of", int(late_deals.sum()),
               f"{int(late_deals.sum())} deals created after as_of ({as_of}) are left out.")
    report.add("events_after_as_of", int(late_events.sum()),
               f"{int(late_events.sum())} events after as_of ({as_of}) are left out.")
    return (deals.loc[~late_deals].reset_index(drop=True),
            events.loc[~late_events].reset_index(drop=True))


def _impute_first_stage(deals: pd.DataFrame, events: pd.DataFrame, codes: _Codes,
                        report: ValidationReport) -> pd.DataFrame:
    has_events = np.zeros(codes.n_deals, dtype=bool)
    has_events[events[_DEAL].to_numpy()] = True
    bare = deals.loc[~has_events[deals[_KEY].to_numpy()]]
    report.add("deals_without_events", len(bare),
               f"{len(bare)} deals have no events (at as_of); each enters its segment's first "
               "stage at created_at (imputed).")
    if bare.empty:
        return events
    add = pd.DataFrame({
        _ROW: -1,
        "deal_id": bare["deal_id"].to_numpy(),
        "stage": codes.first_stage[bare[_SEG].to_numpy()],
        "entered_at": bare["created_at"].to_numpy(),
        "imputed": True,
        _DEAL: bare[_KEY].to_numpy(),
        _SEG: bare[_SEG].to_numpy(),
        _ORD: 0,
    })
    # appended unsorted: these deals have no other rows, so dropping repeats and finding each
    # deal's last event work as on sorted rows, and _build sorts once at the end (the sort
    # keys deal, time, funnel order never tie here, so the result is the same)
    return pd.concat([events, add.astype({"deal_id": "str", "stage": "str"})],
                     ignore_index=True)


def _drop_repeats(events: pd.DataFrame, report: ValidationReport) -> pd.DataFrame:
    """A stage entered again without leaving it is no move: keep the first entry."""
    deal = events[_DEAL].to_numpy()
    order = events[_ORD].to_numpy()  # one segment per deal: same order = same stage
    same = np.zeros(len(events), dtype=bool)
    same[1:] = (deal[1:] == deal[:-1]) & (order[1:] == order[:-1])
    report.add("repeated_stage_entries", int(same.sum()),
               f"{int(same.sum())} events re-enter the stage the deal is already in; the "
               "later entries are dropped.")
    return events.loc[~same].reset_index(drop=True)


def _gone_cold(events: pd.DataFrame, funnels: dict[str, Funnel], codes: _Codes,
               as_of: pd.Timestamp, cold_after_days: float | None,
               report: ValidationReport) -> tuple[dict[str, Funnel], pd.DataFrame]:
    """Events are sorted by deal: a deal's last event is its last row."""
    seg_of = events[_SEG].to_numpy()
    order = events[_ORD].to_numpy()
    deal = events[_DEAL].to_numpy()
    is_last = np.r_[deal[1:] != deal[:-1], True] if len(deal) else np.zeros(0, dtype=bool)
    out_funnels = dict(funnels)
    added = []
    report.add("gone_cold", 0)
    for seg, f in funnels.items():
        k = codes.code(seg)
        in_seg = seg_of == k
        days = cold_after_days if cold_after_days is not None else f.cold_after_days
        if days is None and not (order[in_seg] == f.n_open + 1).any():
            days = _default_cold_days(events.loc[in_seg], f)
            if days is None:
                continue
            report.notes.append(
                f"segment '{seg}' records no {f.lost!r}: gone-cold rule chosen from the data, "
                f"cold_after_days = {days:g} (the {DEFAULT_COLD_QUANTILE:.0%} quantile of the "
                "stays of deals that moved on).")
        if days is None:
            continue
        days = float(days)
        out_funnels[seg] = replace(f, cold_after_days=days)
        cand = events.loc[is_last & in_seg & (order < f.n_open)]
        at = cand["entered_at"] + pd.Timedelta(days=days)
        is_cold = (at <= as_of).to_numpy()
        cold = cand.loc[is_cold]
        if len(cold):
            added.append(pd.DataFrame({_ROW: -1, "deal_id": cold["deal_id"].to_numpy(),
                                       "stage": f.lost, "imputed": True,
                                       "entered_at": at.loc[is_cold].to_numpy(),
                                       _DEAL: cold[_DEAL].to_numpy(), _SEG: k,
                                       _ORD: f.n_open + 1}))
        report.add("gone_cold", len(cold))
        report.add(f"gone_cold[{seg}]", len(cold))
        if len(cold):
            report.notes.append(f"segment '{seg}': {len(cold)} open deals had no event for "
                                f"{days:g} days and enter {f.lost!r} at that moment (gone cold).")
    if added:
        events = pd.concat([events, *[a.astype({"deal_id": "str", "stage": "str"})
                                      for a in added]], ignore_index=True)
    return out_funnels, events


def _default_cold_days(events: pd.DataFrame, f: Funnel) -> float | None:
    """A segment that never records Lost: the 95th percentile of the observed stays."""
    deal = events[_DEAL].to_numpy()
    nxt = np.zeros(len(events), dtype=bool)
    nxt[:-1] = deal[1:] == deal[:-1]
    gaps = (events["entered_at"].shift(-1) - events["entered_at"]).loc[
        nxt & (events[_ORD].to_numpy() < f.n_open)]
    days = gaps.dt.total_seconds().to_numpy() / 86400.0
    days = days[days > 0]
    if days.size < MIN_STAYS_FOR_DEFAULT_COLD:
        warnings.warn(f"segment '{f.segment}' records no {f.lost!r}, and {days.size} observed "
                      f"stays (fewer than {MIN_STAYS_FOR_DEFAULT_COLD}) are too few to choose "
                      "a gone-cold rule; open deals are never treated as lost. Pass "
                      "cold_after_days to set one.", DataWarning, stacklevel=5)
        return None
    chosen = float(max(1.0, math.ceil(np.quantile(days, DEFAULT_COLD_QUANTILE))))
    log.info("segment %s records no %s: cold_after_days = %s (the %s quantile of %s observed "
             "stays of deals that moved on)", f.segment, f.lost, chosen, DEFAULT_COLD_QUANTILE,
             days.size)
    warnings.warn(f"segment '{f.segment}' records no {f.lost!r} at all: open deals with no event "
                  f"for {chosen:g} days (the {DEFAULT_COLD_QUANTILE:.0%} quantile of observed "
                  "stays) are treated as lost. Pass cold_after_days to choose another rule.",
                  DataWarning, stacklevel=5)
    return chosen


def _find_problems(deals: pd.DataFrame, events: pd.DataFrame, funnels: dict[str, Funnel],
                   codes: _Codes, report: ValidationReport) -> None:
    """Findings that leave nothing to learn from: a segment where no deal ever moved."""
    n = np.bincount(events[_DEAL].to_numpy(), minlength=codes.n_deals)
    seg_moves = np.zeros(len(codes.segs), dtype=np.int64)
    np.maximum.at(seg_moves, deals[_SEG].to_numpy(), n[deals[_KEY].to_numpy()])
    for seg in funnels:
        if seg_moves[codes.code(seg)] < 2:
            report.problems.append(f"segment '{seg}': no deal ever left its first stage at "
                                   "as_of, so no stage movement can be estimated.")


# ---------------------------------------------------------------- summaries


def stage_summary(crm: CRM) -> pd.DataFrame:
    """Open deals per segment and stage at ``as_of``, plus won and lost counts.

    Returns
    -------
    DataFrame
        ``segment, stage, open_deals, amount`` (sum of known amounts of those deals) and
        ``entered`` (deals that ever entered the stage), one row per state of every funnel,
        in funnel order. For Won and Lost, ``open_deals`` counts the deals sitting there.

    Examples
    --------
    >>> stage_summary(crm)  # doctest: +SKIP
    """
    cur = crm.current_stage()
    entered = crm.events.merge(crm.deals[["deal_id", "segment"]], on="deal_id") \
        .drop_duplicates(["deal_id", "stage"]).groupby(["segment", "stage"]).size()
    rows = []
    for seg in crm.segments:
        f = crm.funnels[seg]
        here = cur.loc[cur["segment"] == seg]
        for st in f.states:
            at = here.loc[here["stage"] == st]
            rows.append({"segment": seg, "stage": st, "open_deals": len(at),
                         "amount": float(at["amount"].sum(min_count=0)),
                         "entered": int(entered.get((seg, st), 0))})
    return pd.DataFrame(rows, columns=["segment", "stage", "open_deals", "amount", "entered"])


def format_report(crm: CRM) -> str:
    """The validation report as text for people: counts, notes, problems, stages per segment.

    Examples
    --------
    >>> print(format_report(crm))  # doctest: +SKIP
    """
    r = crm.report
    lines = [f"CRM {crm.source or '(in memory)'} at as_of {crm.as_of}",
             f"  {len(crm.deals)} deals, {len(crm.events)} events "
             f"({int(crm.events['imputed'].sum())} imputed), {len(crm.funnels)} segments",
             "", "Checks and repairs (count):"]
    width = max((len(k) for k in r.counts), default=0)
    lines += [f"  {k:<{width}}  {v}" for k, v in r.counts.items()]
    if r.notes:
        lines += ["", "Notes:"] + [f"  - {n}" for n in r.notes]
    lines += ["", "Problems:"] + ([f"  - {p}" for p in r.problems] if r.problems else ["  none"])
    summary = stage_summary(crm)
    for seg in crm.segments:
        f = crm.funnels[seg]
        cold = f"; gone cold after {f.cold_after_days:g} days" if f.cold_after_days else ""
        lines += ["", f"Segment {seg} ({f.n_open} open stages{cold})",
                  f"  {'stage':<24} {'now':>7} {'entered':>8} {'amount':>14}"]
        for row in summary.loc[summary["segment"] == seg].itertuples():
            lines.append(f"  {row.stage:<24} {row.open_deals:>7} {row.entered:>8} "
                         f"{row.amount:>14,.0f}")
    return "\n".join(lines)


def _toml_line(text: str, seg: str) -> int | None:
    """The line of ``[seg]`` in a TOML text (for error messages)."""
    pat = re.compile(r"^\s*\[\s*\"?" + re.escape(str(seg)) + r"\"?\s*\]|^\s*\"?"
                     + re.escape(str(seg)) + r"\"?\s*=")
    for i, line in enumerate(text.splitlines(), start=1):
        if pat.match(line):
            return i
    return None
