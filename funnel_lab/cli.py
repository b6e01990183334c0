"""The ``funnel-lab`` command line: parses arguments, calls the package, prints.

Exit status: 0 on success, 2 for bad input or arguments (a short message, no traceback),
1 for an unexpected failure (including a notebook cell failing while a report renders).
``--json`` prints exactly one JSON document on stdout; logs and progress go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from funnel_lab.errors import FunnelLabError, ReportError

__all__ = ["DEFAULT_DATA", "main"]

DEFAULT_DATA = Path(__file__).resolve().parent.parent / "data" / "demo"

log = logging.getLogger("funnel_lab")


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with a one-line message (no usage dump) on bad arguments."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _jsonable(obj: Any) -> Any:
    """Make tables, timestamps and numpy scalars JSON-safe (NaN becomes null)."""
    import numpy as np
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        return [_jsonable(r) for r in obj.to_dict(orient="records")]
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def emit_json(doc: Any) -> None:
    """Print exactly one JSON document on stdout."""
    json.dump(_jsonable(doc), sys.stdout, indent=1, allow_nan=False)
    sys.stdout.write("\n")


# ---------------------------------------------------------------- commands


def cmd_validate(args: argparse.Namespace) -> int:
    from funnel_lab.crm.read import format_report, read_crm

    crm = read_crm(args.data, as_of=args.as_of, cold_after_days=args.cold_after_days)
    if args.json:
        emit_json(crm_summary_doc(crm))
    else:
        print(format_report(crm))
    return 0 if crm.report.ok else 2


def crm_summary_doc(crm: Any) -> dict[str, Any]:
    from funnel_lab.crm.read import stage_summary

    return {"data": crm.source, "as_of": crm.as_of, "fingerprint": crm.fingerprint(),
            **crm.report.to_dict(), "stages": stage_summary(crm)}


def cmd_import(args: argparse.Namespace) -> int:
    from funnel_lab.crm.maven import import_maven

    result = import_maven(args.src, args.out, segment_by=args.segment_by)
    if args.json:
        emit_json(result.to_dict())
    else:
        print(result.format())
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from funnel_lab.simulate import run_simulate_command

    return run_simulate_command(args)


def cmd_fit(args: argparse.Namespace) -> int:
    from funnel_lab.model import run_fit_command

    return run_fit_command(args)


def cmd_forecast(args: argparse.Namespace) -> int:
    from funnel_lab.forecast import run_forecast_command

    return run_forecast_command(args)


def cmd_report(args: argparse.Namespace) -> int:
    from funnel_lab.reports import run_report_command

    return run_report_command(args)


# ---------------------------------------------------------------- parser


def _add_common(p: argparse.ArgumentParser, *, as_of: bool = True) -> None:
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="CRM folder (CSV/Parquet files or a .duckdb file); default: demo data")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same numbers)")
    if as_of:
        p.add_argument("--as-of", dest="as_of", default=None,
                       help="snapshot moment; a date means the end of that day")
    p.add_argument("--cold-after-days", dest="cold_after_days", type=float, default=None,
                   help="treat open deals with no event for this many days as lost")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.add_argument("-v", "--verbose", action="store_true", help="log decisions at INFO")


def _add_model_settings(p: argparse.ArgumentParser) -> None:
    p.add_argument("--age-bands", dest="age_bands", default="auto",
                   help="age-band edges in weeks, e.g. 0,4,13; 'none'; or 'auto' (default: "
                        "chosen by a held-out check on the CRM itself)")
    p.add_argument("--half-life-weeks", dest="half_life_weeks", default="auto",
                   help="recency half-life in weeks; 'none'; or 'auto' (default: chosen by "
                        "the held-out check)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="funnel-lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("validate", help="read a CRM folder and report what is wrong with it")
    _add_common(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("import", help="convert a snapshot export into a CRM folder")
    p.add_argument("kind", choices=["maven"])
    p.add_argument("src", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--segment-by", dest="segment_by", default="regional_office",
                   choices=["regional_office", "series"])
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("simulate", help="write a CRM with known truth")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--weeks", type=int, default=None,
                   help="weeks of history before as_of (default: the settings', 104 for the demo)")
    p.add_argument("--future-weeks", dest="future_weeks", type=int, default=None,
                   help="weeks simulated beyond as_of, written to OUT/future (default: 0)")
    p.add_argument("--config", type=Path, default=None, help="TOML file of simulation settings")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set stale=false")
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("fit", help="posterior of stage rates, arrivals and amounts")
    _add_common(p)
    p.add_argument("--method", choices=["conjugate", "pooled"], default="conjugate")
    p.add_argument("--by", choices=["owner", "team"], default=None)
    p.add_argument("--ci-prob", dest="ci_prob", type=float, default=0.9)
    p.add_argument("--draws", type=int, default=1000)
    _add_model_settings(p)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--out", type=Path, default=None, help="save the posterior (netCDF)")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("forecast", help="Monte Carlo forecast of stages, wins and revenue")
    _add_common(p)
    p.add_argument("--horizon-weeks", dest="horizon_weeks", type=int, default=13)
    p.add_argument("--draws", type=int, default=2000)
    p.add_argument("--posterior", type=Path, default=None, help="a saved posterior (netCDF)")
    _add_model_settings(p)
    p.add_argument("--lead-inflow", dest="lead_inflow", type=float, default=1.0,
                   help="multiplier of the expected lead inflow")
    p.add_argument("--leads-per-week", dest="leads_per_week", type=float, default=None,
                   help="a fixed number of new deals per week instead of the fitted inflow")
    p.add_argument("--ci-prob", dest="ci_prob", type=float, default=0.9)
    p.set_defaults(func=cmd_forecast)

    p = sub.add_parser("report", help="render the notebooks into offline HTML reports")
    p.add_argument("names", nargs="*", help="notebooks to render (default: all)")
    p.add_argument("--all", action="store_true", help="render every notebook")
    p.add_argument("-p", dest="params", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--params", dest="params_file", type=Path, default=None,
                   help="a YAML or JSON file of parameters")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (also used by the console script)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: bad arguments -> 2, --help -> 0
        return int(exc.code or 0)

    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr,
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ReportError as exc:  # a notebook failed while running: not the user's input
        print(f"funnel-lab {args.command}: {exc}", file=sys.stderr)
        return 1
    except FunnelLabError as exc:
        print(f"funnel-lab {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("funnel-lab: interrupted", file=sys.stderr)
        return 1
    except Exception as exc:  # an unexpected failure: say so briefly, traceback on request
        if os.environ.get("FUNNEL_LAB_DEBUG"):
            raise
        print(f"funnel-lab {args.command}: unexpected error ({type(exc).__name__}: {exc}); "
              "set FUNNEL_LAB_DEBUG=1 for the traceback", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
