"""How long the simulator takes: the small test CRM, the demo CRM, and larger demo-like CRMs.

Each row is the median of ``--repeat`` runs of ``simulate_crm`` (validation of the CRM by the
reader included) and, for the demo, of writing the folder.

    .venv/bin/python benchmarks/simulate.py [--repeat 3] [--scale 1 5 20] [--json]

``--scale k`` multiplies the demo's arrivals by k (k x ~3,200 deals, same two years).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time

from funnel_lab.simulate import demo_settings, simulate_crm, small_settings


def _time(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


def run(repeat: int, scales: list[float]) -> list[dict]:
    rows = []
    cases = [("small", small_settings(), False), ("demo", demo_settings(), True),
             ("demo + 13 future weeks", demo_settings().replace(future_weeks=13), False)]
    for k in scales:
        if k != 1:
            base = demo_settings()
            segs = {n: dataclasses.replace(s, arrivals_per_week=s.arrivals_per_week * k)
                    for n, s in base.segments.items()}
            cases.append((f"demo x{k:g} arrivals", dataclasses.replace(base, segments=segs),
                          False))
    for name, settings, write in cases:
        seconds, sim = _time(lambda s=settings: simulate_crm(s, random_seed=1), repeat)
        row = {"task": name, "deals": len(sim.crm.deals), "events": len(sim.crm.events),
               "seconds": round(seconds, 3)}
        if write:
            with tempfile.TemporaryDirectory() as d:
                w, _ = _time(lambda d=d, sim=sim: sim.write(d), repeat)
            row["write_seconds"] = round(w, 3)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--scale", type=float, nargs="*", default=[1, 5, 20])
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows = run(args.repeat, args.scale)
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    print(f"{'task':<26}{'deals':>9}{'events':>10}{'seconds':>10}{'write_s':>9}")
    for r in rows:
        print(f"{r['task']:<26}{r['deals']:>9}{r['events']:>10}{r['seconds']:>10.3f}"
              f"{r.get('write_seconds', float('nan')):>9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
