"""Calibration of the pipeline forecast on known truth: do realised wins fall in the 80% interval?

For each seed: simulate a small CRM with 13 future weeks (``funnel_lab.simulate.small_settings``
without owner effects), fit the conjugate model at ``as_of``, forecast 13 weeks, and count the
deals actually won in those 13 weeks (the simulator's future CRM). Per segment and CRM, one
check: is the realised count inside the forecast's [p10, p90]? The coverage is compared with
the 99% binomial band around 80% for that many checks.

Two settings: ``plain`` (no stale deals, no drift; a plain fit) and ``stale+drift`` (stale deals
and drift switched on in the simulation; the fit uses the simulator's age bands and a recency
half-life).

    .venv/bin/python benchmarks/forecast_calibration.py --seeds 200 [--draws 500] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import numpy as np
import pandas as pd
from scipy.stats import binom

from funnel_lab.forecast import forecast
from funnel_lab.model import fit
from funnel_lab.simulate import simulate_crm, small_settings

HALF_LIFE_WEEKS = 13.0


def realised_wins(sim) -> dict[str, int]:
    """Deals won in (as_of, as_of + future weeks], per segment, from the future CRM."""
    fut = sim.future
    ev = fut.events.merge(fut.deals[["deal_id", "segment"]], on="deal_id")
    out = {}
    for seg, f in fut.funnels.items():
        sel = (ev["segment"] == seg) & (ev["stage"] == f.won) & (ev["entered_at"] > sim.crm.as_of)
        out[seg] = int(sel.sum())
    return out


def check_one(seed: int, variant: str, draws: int, horizon: int = 13,
              amount_classes: int = 1) -> list[dict]:
    stale = variant == "stale+drift"
    settings = small_settings(future_weeks=horizon, owner_sd=0.0, stale=stale, drift=stale)
    sim = simulate_crm(settings, random_seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = fit(sim.crm, draws=draws, random_seed=seed, band_edges=settings.band_edges(),
                   half_life_weeks=HALF_LIFE_WEEKS if stale else None)
        fc = forecast(post, sim.crm, horizon_weeks=horizon, random_seed=seed,
                      amount_classes=amount_classes)
    real = realised_wins(sim)
    last = fc.wins[fc.wins["week"] == horizon].set_index("segment")
    rows = []
    for seg, n in real.items():
        r = last.loc[seg]
        rows.append({"variant": variant, "seed": seed, "segment": seg, "realised": n,
                     "mean": r["mean"], "p10": r["p10"], "p90": r["p90"],
                     "covered": bool(r["p10"] <= n <= r["p90"]),
                     "below": bool(n < r["p10"]), "above": bool(n > r["p90"])})
    return rows


def binomial_band(n: int, p: float = 0.8, level: float = 0.99) -> tuple[int, int]:
    """Counts of successes inside the central ``level`` band of Binomial(n, p)."""
    return int(binom.ppf((1 - level) / 2, n, p)), int(binom.isf((1 - level) / 2, n, p))


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    out = []
    for variant, g in rows.groupby("variant", sort=False):
        lo, hi = binomial_band(len(g))
        out.append({"variant": variant, "checks": len(g), "coverage": g["covered"].mean(),
                    "below_p10": g["below"].mean(), "above_p90": g["above"].mean(),
                    "band_lower": lo / len(g), "band_upper": hi / len(g),
                    "inside_band": bool(lo <= g["covered"].sum() <= hi)})
    return pd.DataFrame(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--first-seed", type=int, default=5000)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--variants", default="plain,stale+drift")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    rows = []
    t0 = time.perf_counter()
    for variant in args.variants.split(","):
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            rows += check_one(seed, variant, args.draws)
    rows = pd.DataFrame(rows)
    summary = summarise(rows)
    seconds = time.perf_counter() - t0
    if args.json:
        json.dump({"seconds": seconds, "draws": args.draws,
                   "summary": summary.to_dict(orient="records")}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(summary.to_string(index=False))
        print(f"\n{args.seeds} CRMs per variant, {args.draws} draws, {seconds:.0f} s; coverage "
              "counts p10 <= realised <= p90 (inclusive: wins are whole numbers)")
        bias = rows.groupby("variant", sort=False).apply(
            lambda g: np.mean(g["realised"] - g["mean"]), include_groups=False)
        print("mean realised - forecast mean:", bias.round(2).to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())
