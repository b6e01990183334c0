"""How long reading and validating a CRM takes, by number of deals (CSV and in memory).

Run: ``.venv/bin/python benchmarks/bench_crm_read.py [N ...]`` (default 10000 50000 200000).
The CRM is a plain synthetic funnel (Lead > Demo > Proposal, Won/Lost) made here with numpy,
so the benchmark does not depend on the simulator. Columns: seconds for ``crm_from_frames``
with funnels given, ``read_crm`` of the same tables as CSV, ``crm_from_frames`` with inferred
funnels, and ``CRM.current_stage()`` of the in-memory CRM.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from funnel_lab.crm import Funnel, crm_from_frames, read_crm

STAGES = ("Lead", "Demo", "Proposal")


def synthetic(n: int, random_seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(random_seed)
    start = pd.Timestamp("2024-01-01")
    created = start + pd.to_timedelta(rng.uniform(0, 700, n), unit="D")
    ids = np.array([f"D{i:07d}" for i in range(n)])
    deals = pd.DataFrame({"deal_id": ids, "segment": rng.choice(["SMB", "ENT"], n),
                          "owner": rng.choice([f"o{i}" for i in range(30)], n),
                          "team": rng.choice(["East", "West", "North"], n),
                          "amount": np.round(rng.gamma(2, 1000, n), 2), "created_at": created})
    # every deal: Lead, then how far it got (0-2 more open stages), then Won / Lost / still open
    reach = rng.integers(0, 3, n)
    outcome = rng.choice(["Won", "Lost", ""], n, p=[0.3, 0.5, 0.2])
    rows_id, rows_stage, rows_t = [], [], []
    t = created.to_numpy()
    for k in range(3):
        m = reach >= k
        rows_id.append(ids[m])
        rows_stage.append(np.full(m.sum(), STAGES[k]))
        t = t + pd.to_timedelta(rng.exponential(14, n), unit="D").to_numpy()
        rows_t.append(t[m])
    m = outcome != ""
    rows_id.append(ids[m])
    rows_stage.append(outcome[m])
    rows_t.append(t[m] + pd.to_timedelta(rng.exponential(7, m.sum()), unit="D").to_numpy())
    events = pd.DataFrame({"deal_id": np.concatenate(rows_id),
                           "stage": np.concatenate(rows_stage),
                           "entered_at": np.concatenate(rows_t)})
    return deals, events


def main(sizes: list[int]) -> None:
    funnels = {s: Funnel(s, STAGES) for s in ("SMB", "ENT")}
    print(f"{'deals':>8} {'events':>9} {'in memory s':>12} {'CSV s':>8} {'inferred s':>11} "
          f"{'current_stage s':>16}")
    for n in sizes:
        deals, events = synthetic(n)
        t0 = time.perf_counter()
        crm = crm_from_frames(deals, events, funnels, as_of="2025-12-31")
        t_mem = time.perf_counter() - t0
        t0 = time.perf_counter()
        crm.current_stage()
        t_cur = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            deals.to_csv(Path(tmp) / "deals.csv", index=False)
            events.to_csv(Path(tmp) / "events.csv", index=False)
            t0 = time.perf_counter()
            read_crm(tmp, as_of="2025-12-31")
            t_csv = time.perf_counter() - t0
        t0 = time.perf_counter()
        crm_from_frames(deals, events, None, as_of="2025-12-31")
        t_inf = time.perf_counter() - t0
        print(f"{n:>8} {len(events):>9} {t_mem:>12.2f} {t_csv:>8.2f} {t_inf:>11.2f} "
              f"{t_cur:>16.2f}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10_000, 50_000, 200_000])
