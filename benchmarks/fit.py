"""Speed of the model: sufficient statistics of large event logs, and the conjugate fit.

Targets (issue 4): sufficient statistics of 10 million events under 10 s; a conjugate fit of
the demo CRM (data/demo) under 2 s. The event logs are synthetic (numpy, not the simulator:
only the size matters here); a vectorised pandas implementation of the same statistics is
timed on the smaller log as a reference and checked to give identical arrays.

    .venv/bin/python benchmarks/fit.py [--events 10000000] [--json]

Times are the best of 2 or 3 runs (the machines are shared by several jobs).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from funnel_lab.crm.eventlog import CRM
from funnel_lab.crm.funnel import Funnel
from funnel_lab.model import fit, sufficient_statistics, summarize
from funnel_lab.model.stats import SECONDS_PER_WEEK

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"sufficient_statistics": (10_000_000, 10.0), "conjugate_fit_demo": (None, 2.0)}


def synthetic_crm(n_events: int, seed: int = 0) -> CRM:
    """A large event log: deals walk through 5 open stages, the last event may close them."""
    rng = np.random.default_rng(seed)
    funnels = {s: Funnel(s, ("Lead", "Qualified", "Demo", "Proposal", "Negotiation"))
               for s in ("SMB", "Enterprise")}
    per_deal = rng.integers(1, 10, size=n_events // 5 + 10)
    ends = np.cumsum(per_deal)
    per_deal = per_deal[: np.searchsorted(ends, n_events) + 1]
    per_deal[-1] -= per_deal.sum() - n_events
    per_deal = per_deal[per_deal > 0]
    n_deals = len(per_deal)
    deal = np.repeat(np.arange(n_deals), per_deal)
    first = np.r_[0, np.cumsum(per_deal)[:-1]]
    last = first + per_deal - 1

    # Open stages without self-moves: a running sum of steps 1..4 modulo 5.
    stage = np.cumsum(rng.integers(1, 5, size=n_events)) % 5
    closing = rng.random(n_deals) < 0.8
    stage[last[closing]] = np.where(rng.random(closing.sum()) < 0.3, 5, 6)  # Won / Lost
    names = np.array(funnels["SMB"].states)

    as_of = pd.Timestamp("2026-11-29 23:59:59.999999")
    start = as_of.value // 1000 - 104 * SECONDS_PER_WEEK * 1_000_000
    created = start + rng.integers(0, 90 * SECONDS_PER_WEEK * 1_000_000, size=n_deals)
    gaps = rng.exponential(2 * SECONDS_PER_WEEK * 1_000_000 / 6, size=n_events).astype(np.int64)
    gaps[first] = 0
    t = created[deal] + (np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first], per_deal))
    keep = t <= as_of.value // 1000
    ids = pd.Series(np.arange(n_deals)).map("d{:08d}".format)
    deals = pd.DataFrame({
        "deal_id": ids,
        "segment": np.where(np.arange(n_deals) % 3 == 0, "Enterprise", "SMB"),
        "owner": pd.Series(rng.integers(0, 40, n_deals)).map("owner{:02d}".format),
        "team": pd.Series(rng.integers(0, 4, n_deals)).map("team{}".format),
        "amount": rng.lognormal(9, 1, n_deals),
        "created_at": pd.to_datetime(created, unit="us"),
    })
    events = pd.DataFrame({
        "deal_id": ids.to_numpy()[deal[keep]],
        "stage": names[stage[keep]],
        "entered_at": pd.to_datetime(t[keep], unit="us"),
    })
    events["imputed"] = False
    return CRM(deals=deals, events=events, funnels=funnels, as_of=as_of)


def pandas_statistics(crm: CRM, band_edges=(0,)) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The same counts and exposure, vectorised pandas (the reference of the ratio column)."""
    ev = crm.events[["deal_id", "stage", "entered_at"]].merge(
        crm.deals[["deal_id", "segment"]], on="deal_id")
    out = {}
    as_of_s = int((crm.as_of - pd.Timestamp(0)) // pd.Timedelta(seconds=1))
    lo = np.array(band_edges, dtype=np.int64) * SECONDS_PER_WEEK
    hi = np.append(lo[1:], 2**62)
    for seg, f in crm.funnels.items():
        e = ev[ev["segment"] == seg].copy()
        e["i"] = e["stage"].map({s: k for k, s in enumerate(f.states)}).astype(np.int64)
        e["t"] = e["entered_at"].astype("datetime64[us]").astype("int64") // 1_000_000
        e = e.sort_values(["deal_id", "entered_at", "i"], kind="stable")
        g = e.groupby("deal_id", sort=False)
        j = g["i"].shift(-1).fillna(-1).to_numpy(dtype=np.int64)
        t1 = g["t"].shift(-1).fillna(as_of_s).to_numpy(dtype=np.int64)
        i = e["i"].to_numpy()
        d = t1 - e["t"].to_numpy()
        n_s = len(f.states)
        counts = np.zeros((len(lo), n_s, n_s), dtype=np.int64)
        expo = np.zeros((len(lo), n_s), dtype=np.int64)
        for b in range(len(lo)):
            inside = d >= lo[b]
            np.add.at(expo[b], i[inside], np.minimum(d[inside], hi[b]) - lo[b])
            moved = inside & (d < hi[b]) & (j >= 0)
            np.add.at(counts[b], (i[moved], j[moved]), 1)
        expo[:, f.n_open] = 0
        out[seg] = (counts, expo)
    return out


def timed(func, *args, repeat: int = 1, **kwargs):
    best, result = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = func(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return best, result


def demo_crm():
    from funnel_lab.crm.read import read_crm

    demo = ROOT / "data" / "demo"
    if (demo / "events.csv").exists() or (demo / "events.parquet").exists():
        return "data/demo", read_crm(demo)
    from funnel_lab.simulate import demo_settings, simulate_crm

    return "demo settings (data/demo missing)", simulate_crm(demo_settings(), 0).crm


def run(n_events: int, n_reference: int, pooled: bool = True) -> list[dict]:
    rows: list[dict] = []

    crm = synthetic_crm(n_reference)
    seconds, stats = timed(sufficient_statistics, crm, band_edges=(0, 4, 13), repeat=3)
    ref_seconds, ref = timed(pandas_statistics, crm, (0, 4, 13))
    for seg, (counts, expo) in ref.items():
        assert np.array_equal(stats[seg].counts.sum(axis=0), counts), seg
        assert np.array_equal(stats[seg].exposure_seconds.sum(axis=0), expo), seg
    rows.append({"task": "sufficient_statistics, bands 0,4,13 (vs pandas)",
                 "events": len(crm.events), "seconds": seconds,
                 "reference_seconds": ref_seconds, "ratio": ref_seconds / seconds})

    crm = synthetic_crm(n_events)
    for label, kwargs in [("sufficient_statistics", {}),
                          ("sufficient_statistics, by owner, bands 0,4,13",
                           {"by": "owner", "band_edges": (0, 4, 13)}),
                          ("sufficient_statistics, half-life 26 weeks",
                           {"half_life_weeks": 26.0})]:
        seconds, _ = timed(sufficient_statistics, crm, repeat=2, **kwargs)
        rows.append({"task": label, "events": len(crm.events), "seconds": seconds})
    del crm

    label, demo = demo_crm()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seconds, post = timed(fit, demo, draws=1000, random_seed=1, repeat=3)
        rows.append({"task": f"conjugate_fit_demo, 1000 draws ({label})",
                     "events": len(demo.events), "seconds": seconds})
        seconds, _ = timed(summarize, post, repeat=3)
        rows.append({"task": "summarize demo posterior", "events": len(demo.events),
                     "seconds": seconds})
        seconds, _ = timed(fit, demo, draws=1000, random_seed=1, by="owner",
                           band_edges=(0, 4, 13), repeat=3)
        rows.append({"task": "conjugate fit demo, by owner, bands 0,4,13",
                     "events": len(demo.events), "seconds": seconds})
        if label == "data/demo":
            from funnel_lab.crm.read import read_crm

            def end_to_end():
                return summarize(fit(read_crm(ROOT / "data" / "demo"), draws=1000,
                                     random_seed=1))

            seconds, _ = timed(end_to_end, repeat=3)
            rows.append({"task": "read_crm + fit + summarize (data/demo)",
                         "events": len(demo.events), "seconds": seconds})
    if pooled and label == "data/demo":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from fit_pooled import pooled_row

        rows.append(pooled_row(ROOT / "data" / "demo"))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--reference-events", type=int, default=1_000_000,
                        help="size of the log on which pandas is timed as the reference")
    parser.add_argument("--no-pooled", dest="pooled", action="store_false",
                        help="skip the pooled PyMC fit of the demo CRM (about a minute)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = run(args.events, args.reference_events, pooled=args.pooled)
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}", na_rep=""))
    print("\ntargets: sufficient statistics of 10M events < 10 s; conjugate fit of the demo "
          "CRM < 2 s; pooled fit of the demo CRM < 120 s with R-hat <= 1.01")
    return 0


if __name__ == "__main__":
    sys.exit(main())
