"""Calibration of the conjugate model on known truth: interval coverage over many seeds.

Simulates ``--seeds`` small CRMs without owner effects (``funnel_lab.simulate.small_settings``),
fits the conjugate model to each, and prints, per quantity and interval probability, the
share of intervals containing the truth, the 99% binomial band for that many checks, and the
median interval width.

    .venv/bin/python benchmarks/calibration.py --seeds 200 [--stale] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import pandas as pd

from funnel_lab.errors import SparseDataWarning
from funnel_lab.model import fit
from funnel_lab.model.check import binomial_band, truth_coverage
from funnel_lab.simulate import simulate_crm, small_settings


def run(seeds: range, draws: int, stale: bool, ci_probs=(0.5, 0.9)) -> pd.DataFrame:
    settings = small_settings(owner_sd=0.0, stale=stale)
    edges = tuple(settings.band_edges_weeks) if stale else (0,)
    frames = []
    for seed in seeds:
        sim = simulate_crm(settings, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SparseDataWarning)
            post = fit(sim.crm, draws=draws, random_seed=seed, band_edges=edges)
        cov = truth_coverage(post, sim.truth, ci_probs)
        cov["seed"] = seed
        frames.append(cov)
    return pd.concat(frames, ignore_index=True)


def table(cov: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (quantity, p), g in cov.groupby(["quantity", "ci_prob"]):
        lo, hi = binomial_band(len(g), p)
        rows.append({"quantity": quantity, "ci_prob": p, "checks": len(g),
                     "coverage": g["covered"].mean(), "band_lower": lo / len(g),
                     "band_upper": hi / len(g),
                     "inside_band": bool(lo <= g["covered"].sum() <= hi),
                     "median_width": g["width"].median()})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--stale", action="store_true", help="simulate stale deals, fit bands")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    cov = run(range(args.first_seed, args.first_seed + args.seeds), args.draws, args.stale)
    tab = table(cov)
    if args.json:
        json.dump(tab.to_dict(orient="records"), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(f"{args.seeds} seeds, {args.draws} draws, stale={args.stale}, "
              f"{time.perf_counter() - t0:.1f} s")
        print(tab.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
