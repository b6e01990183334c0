"""Speed and memory of the forecast's counts engine against a per-deal simulation.

A synthetic segment with six open stages (eight states), ``--draws`` posterior draws of its
rates and ``--weeks`` weeks, for pipelines of 1,000 to 1,000,000 open deals. Each row times the
whole path the forecast takes for one segment: counting the deals into cells (in chunks),
the one-week matrices of every draw, and the Monte Carlo engine (arrivals included); the
exact means are timed apart. ``peak_mib`` is the peak of new allocations during that path
(tracemalloc, measured in a separate untimed run; the deal arrays themselves are inputs).

The per-deal reference simulates every deal of every draw in continuous time (competing
exponential clocks, vectorised over deals and draws in blocks). It is timed on a subset of
draws where that takes under ``--reference-budget`` seconds and scaled linearly to the full
number of draws and deals; ``reference_extrapolated`` says when a number is scaled.

The engine's inner loop is compiled by numba on first use (then cached on disk); that first
call is timed apart and printed, never counted in ``seconds``.

    .venv/bin/python benchmarks/forecast.py [--draws 4000] [--weeks 26] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tracemalloc

import numpy as np

from funnel_lab.forecast.engine import (
    EngineInputs,
    age_index,
    amount_class_edges,
    count_cells,
    lognormal_bin_means,
    lognormal_bin_variances,
    run_engine,
)
from funnel_lab.forecast.exact import exact_means
from funnel_lab.forecast.transition import one_week

N_OPEN = 6
S = N_OPEN + 2
WON, LOST = N_OPEN, N_OPEN + 1
SIZES = (1_000, 10_000, 100_000, 1_000_000)


def synthetic_rates(draws: int, rng: np.random.Generator) -> np.ndarray:
    """(D, 1, 1, S, S): forward, skip, backward, lost, won from the last two stages,
    re-engagement, each with posterior-like noise."""
    r = np.zeros((S, S))
    for i in range(N_OPEN):
        if i + 1 < N_OPEN:
            r[i, i + 1] = 0.45
        if i + 2 < N_OPEN:
            r[i, i + 2] = 0.05
        if i > 0:
            r[i, i - 1] = 0.08
        r[i, LOST] = 0.15 + 0.03 * i
    r[N_OPEN - 2, WON] = 0.1
    r[N_OPEN - 1, WON] = 0.4
    r[LOST, 0] = 0.02
    noise = np.exp(0.15 * rng.standard_normal((draws, S, S)))
    return (r * noise)[:, None, None]


def synthetic_deals(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Today's open deals as the engine's inputs: group, state, age (whole weeks), amount."""
    return {"group": np.zeros(n, dtype=np.int64), "state": rng.integers(0, N_OPEN, n),
            "age": age_index(rng.exponential(20.0, n), 1),
            "amount": rng.lognormal(np.log(5000.0), 0.9, n)}


def forecast_path(deals, rates, weeks, seed, amount_classes, threads):
    """Count deals into cells, then run the engine (what ``forecast`` does per segment)."""
    d = rates.shape[0]
    edges = amount_class_edges(deals["amount"], amount_classes)
    init, class_amounts, class_variances = count_cells(
        (1, S, 1), deals["group"], deals["state"], deals["age"], deals["amount"], edges)
    w = one_week(rates)
    entry = np.zeros(N_OPEN)
    entry[:2] = (0.8, 0.2)
    landing = np.einsum("e,dges->dgs", entry, w.average[:, :, 0, :N_OPEN])
    mu, sigma = np.full(d, np.log(5000.0)), np.full(d, 0.9)
    inputs = EngineInputs(
        rates=rates, band_edges=(0,), won=WON, init=init, class_amounts=class_amounts,
        landing=landing, arrival_rate=np.full(d, 50.0), leads_per_week=None,
        new_amounts=lognormal_bin_means(mu, sigma, 10), class_variances=class_variances,
        new_variances=lognormal_bin_variances(mu, sigma, 10))
    return inputs, w, run_engine(inputs, weeks, seed, threads=threads, week_matrices=w)


def reference(deals, rates, weeks, rng) -> None:
    """Per-deal continuous-time simulation of every deal under every draw given."""
    state0 = deals["state"]
    for d in range(rates.shape[0]):
        r = rates[d, 0, 0]
        state = state0.copy()
        t = np.zeros(len(state))
        active = np.ones(len(state), dtype=bool)
        while active.any():
            s = state[active]
            clocks = rng.exponential(1.0, (len(s), S)) / np.where(r[s] > 0, r[s], np.nan)
            clocks = np.where(np.isnan(clocks), np.inf, clocks)
            nxt = clocks.argmin(axis=1)
            tt = t[active] + clocks.min(axis=1)
            idx = np.flatnonzero(active)
            t[idx] = tt
            moved = tt <= weeks
            state[idx[moved]] = nxt[moved]
            active[idx[~moved | (nxt == WON)]] = False


def time_reference(deals, rates, weeks, budget, rng) -> tuple[float, bool]:
    """Seconds for all draws: timed on as many draws as fit the budget, then scaled."""
    d_all = rates.shape[0]
    t0 = time.perf_counter()
    reference(deals, rates[:1], weeks, rng)
    one = time.perf_counter() - t0
    n = int(min(d_all, max(1, budget // max(one, 1e-9))))
    if n > 1:
        t0 = time.perf_counter()
        reference(deals, rates[:n], weeks, rng)
        one = (time.perf_counter() - t0) / n
    return one * d_all, n < d_all


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--weeks", type=int, default=26)
    parser.add_argument("--amount-classes", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--reference-budget", type=float, default=10.0,
                        help="seconds spent timing the per-deal reference per size")
    parser.add_argument("--reference-max-deals", type=int, default=100_000,
                        help="above this many deals the reference is extrapolated from below")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many timed runs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    rates = synthetic_rates(args.draws, rng)
    # the engine's compiled loop is built (or loaded from numba's cache) on first use
    t0 = time.perf_counter()
    forecast_path(synthetic_deals(10, rng), rates[:2], 1, 0, args.amount_classes, 1)
    first_call = time.perf_counter() - t0
    rows = []
    per_deal_ref = None
    for n in (int(s) for s in args.sizes.split(",")):
        deals = synthetic_deals(n, rng)
        forecast_path(deals, rates[:10], 2, 0, args.amount_classes, args.threads)  # warm up
        best, best_cpu = np.inf, np.inf
        for rep in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            inputs, w, _ = forecast_path(deals, rates, args.weeks, rep, args.amount_classes,
                                         args.threads)
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
        t0 = time.perf_counter()
        exact_means(inputs, args.weeks, week_matrices=w)
        exact_seconds = time.perf_counter() - t0

        tracemalloc.start()
        forecast_path(deals, rates, args.weeks, 0, args.amount_classes, args.threads)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()

        if n <= args.reference_max_deals:
            ref_seconds, scaled = time_reference(deals, rates, args.weeks,
                                                 args.reference_budget, rng)
            per_deal_ref = ref_seconds / n
        else:
            if per_deal_ref is None:  # no smaller size timed: time a subset of the deals
                m = args.reference_max_deals
                sub = {k: v[:m] for k, v in deals.items()}
                per_deal_ref = time_reference(sub, rates, args.weeks, args.reference_budget,
                                              rng)[0] / m
            ref_seconds, scaled = per_deal_ref * n, True
        rows.append({"deals": n, "draws": args.draws, "weeks": args.weeks,
                     "seconds": round(best, 3), "cpu_seconds": round(best_cpu, 3),
                     "amount_classes": args.amount_classes, "peak_mib": round(peak, 1),
                     "exact_seconds": round(exact_seconds, 3),
                     "reference_seconds": round(ref_seconds, 1),
                     "reference_extrapolated": bool(scaled),
                     "speedup": round(ref_seconds / best, 1)})

    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    print(f"{'deals':>10}{'draws':>7}{'weeks':>6}{'seconds':>9}{'cpu s':>8}{'peak MiB':>10}"
          f"{'exact s':>9}{'reference s':>13}{'speedup':>10}")
    for r in rows:
        mark = "*" if r["reference_extrapolated"] else " "
        print(f"{r['deals']:>10,}{r['draws']:>7}{r['weeks']:>6}{r['seconds']:>9.3f}"
              f"{r['cpu_seconds']:>8.2f}{r['peak_mib']:>10.1f}{r['exact_seconds']:>9.3f}"
              f"{r['reference_seconds']:>12.1f}{mark}{r['speedup']:>10.0f}x")
    load = os.getloadavg()[0]
    print(f"\nload average (1 min) before/after: {load_before:.1f}/{load:.1f} on "
          f"{os.cpu_count()} cores (wall seconds suffer from other processes; cpu s is the CPU "
          "time of this process, all threads)")
    print(f"first call (compiling the engine's loop or loading it from numba's cache): "
          f"{first_call:.1f} s, not included below.")
    print(f"seconds: best of {args.repeat} (counting deals into cells, one-week matrices and "
          f"the engine, {args.amount_classes} amount classes, {args.threads} threads).")
    print("* reference timed on a subset of draws (and, above "
          f"{args.reference_max_deals:,} deals, of deals) and scaled linearly.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
