"""Benchmark row ``task = "pooled"``: the pooled fit of the demo CRM by owner, on 2 cores.

Target (issue 5): under 2 minutes including PyMC compilation, R-hat <= 1.01. Meant to be
merged into ``benchmarks/fit.py`` as one more row; run alone it prints the row as JSON.

    .venv/bin/python benchmarks/fit_pooled.py            # warm PyTensor compile cache
    .venv/bin/python benchmarks/fit_pooled.py --cold     # fresh, empty compile cache

``--cold`` points PyTensor at an empty temporary compile directory (set before PyTensor is
imported), so the time includes every compilation. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECONDS_TARGET = 120.0
RHAT_TARGET = 1.01


def pooled_row(data: Path, by: str = "owner", band_edges=(0, 4, 13), draws: int = 1000,
               tune: int = 1000, chains: int = 4, cores: int = 2, seed: int = 0) -> dict:
    """Time reading, statistics and the pooled fit of ``data``; return the benchmark row."""
    start = time.perf_counter()
    from funnel_lab.crm.read import read_crm
    from funnel_lab.errors import SamplingWarning
    from funnel_lab.model.pooled import fit_pooled
    from funnel_lab.model.stats import sufficient_statistics

    crm = read_crm(data)
    stats = sufficient_statistics(crm, by=by, band_edges=band_edges)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplingWarning)
        rates, diag = fit_pooled(stats, draws=draws, tune=tune, chains=chains, cores=cores,
                                 random_seed=seed)
    seconds = time.perf_counter() - start
    return {
        "task": "pooled", "seconds": round(seconds, 1), "rhat_max": round(diag["rhat_max"], 4),
        "ess_bulk_min": round(diag["ess_bulk_min"], 0), "divergences": diag["divergences"],
        "sampling_seconds": diag["seconds"], "n_parameters": diag["n_parameters"],
        "deals": len(crm.deals), "by": by, "band_edges": list(band_edges), "draws": draws,
        "tune": tune, "chains": chains, "cores": cores,
        "sampling_warning": any(issubclass(w.category, SamplingWarning) for w in caught),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT / "data" / "demo")
    p.add_argument("--cold", action="store_true", help="empty PyTensor compile cache")
    p.add_argument("--by", default="owner", choices=["owner", "team"])
    p.add_argument("--cores", type=int, default=2)
    args = p.parse_args(argv)
    if args.cold:
        tmp = tempfile.mkdtemp(prefix="pytensor-cold-")
        os.environ["PYTENSOR_FLAGS"] = f"base_compiledir={tmp}"
    row = pooled_row(args.data, by=args.by, cores=args.cores)
    row["cold_compile_cache"] = bool(args.cold)
    print(json.dumps(row))
    ok = row["seconds"] < SECONDS_TARGET and row["rhat_max"] <= RHAT_TARGET
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
