"""Small hand-made tidy tables in the shapes the charts take (for examples and tests).

The numbers are invented but consistent (intervals contain their means, cumulative values never
fall); names can be replaced to check that text is drawn as text.

Dependency rule: numpy and pandas only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["example_tables"]

_FUNNELS = {"SMB": ["Lead", "Demo", "Proposal"], "Enterprise": ["Lead", "Qualify", "Demo",
                                                                 "Proposal", "Legal"]}


def example_tables(segment_names: tuple[str, str] = ("SMB", "Enterprise"),
                   owner_names: tuple[str, ...] = ("Ann", "Bo", "Cy", "Di"),
                   deal_prefix: str = "D-") -> dict[str, pd.DataFrame]:
    """Tidy tables for every chart, keyed by the chart's input name.

    Examples
    --------
    >>> t = example_tables()
    >>> sorted(t)[:3]
    ['conversion', 'deals', 'flows']
    """
    names = dict(zip(_FUNNELS, segment_names, strict=True))
    rows_conv, rows_win, rows_time, rows_counts, rows_flows = [], [], [], [], []
    for seg, stages in _FUNNELS.items():
        name = names[seg]
        n = len(stages)
        for k, st in enumerate(stages):
            conv = 0.45 + 0.4 * k / n
            win = 0.15 + 0.6 * (k + 1) / n
            rows_conv.append((name, st, conv, conv - 0.08, conv + 0.07))
            rows_win.append((name, st, win, win - 0.1, win + 0.08))
            rows_time.append((name, st, 6.0 + 4 * k, 4.5 + 4 * k, 8.0 + 4 * k))
            rows_counts.append((name, st, 40 - 6 * k))
        states = [*stages, "Won", "Lost"]
        for i, st in enumerate(states[:-2]):
            nxt = states[i + 1]
            rows_flows.append((name, st, nxt, "won" if nxt == "Won" else "forward", 50 - 5 * i))
            rows_flows.append((name, st, "Lost", "lost", 20 + i))
            if i > 0:
                rows_flows.append((name, st, states[i - 1], "backward", 4))
        rows_flows.append((name, "Lost", stages[0], "re-engaged", 3))
    interval = ["segment", "stage", "mean", "lower", "upper"]
    flows = pd.DataFrame(rows_flows, columns=["segment", "stage", "to_stage", "kind", "deals"])
    flows["share"] = flows["deals"] / flows.groupby(["segment", "stage"])["deals"].transform("sum")

    weeks = np.arange(1, 9)
    week_end = pd.Timestamp("2025-03-31") + pd.to_timedelta(7 * weeks, unit="D")
    weekly, wins, revenue, grid = [], [], [], []
    for seg, stages in _FUNNELS.items():
        for k, st in enumerate(stages):
            for w, we in zip(weeks, week_end, strict=True):
                m = 30 - 2 * k - 0.5 * w
                weekly.append((w, we, names[seg], st, m, m - 4, m, m + 4))
        for w, we in zip(weeks, week_end, strict=True):
            m = 2.0 * w
            wins.append((w, we, names[seg], m, m - w, m, m + w, m * 0.7, m * 0.3))
            revenue.append((w, we, names[seg], 1e4 * m, 6e3 * m, 1e4 * m, 1.4e4 * m,
                            7e3 * m, 3e3 * m))
            for inflow in (0.5, 1.0, 1.5):
                mw = m * (0.7 + 0.3 * inflow)
                grid.append((inflow, w, we, names[seg], "wins", mw, 0.7 * mw, mw, 1.3 * mw))
                grid.append((inflow, w, we, names[seg], "revenue", 1e4 * mw, 7e3 * mw, 1e4 * mw,
                             1.3e4 * mw))
    band = ["mean", "p10", "p50", "p90"]
    cum = ["week", "week_end", "segment", *band, "from_pipeline_mean", "from_new_mean"]
    months = pd.DataFrame(
        [(mo, names[seg], 6.0 + i, 3.0 + i, 9.0 + i, 6e4 + i, 3e4 + i, 9e4 + i, 4.0, 2.0 + i)
         for seg in _FUNNELS for i, mo in enumerate(["2025-04", "2025-05"])],
        columns=["month", "segment", "wins_mean", "wins_p10", "wins_p90", "revenue_mean",
                 "revenue_p10", "revenue_p90", "from_pipeline_mean", "from_new_mean"])
    owners = list(owner_names)
    owner_rows = [(names[seg], o, 5 + 7 * j, 0.1 + 0.2 * j, 0.25 + 0.05 * j, 0.15 + 0.05 * j,
                   0.35 + 0.05 * j) for seg in _FUNNELS for j, o in enumerate(owners)]
    deals = pd.DataFrame({
        "deal_id": [f"{deal_prefix}{i}" for i in range(20)],
        "segment": [names["SMB"] if i % 2 else names["Enterprise"] for i in range(20)],
        "owner": [owners[i % len(owners)] for i in range(20)],
        "team": "East",
        "stage": ["Demo" if i % 3 else "Proposal" for i in range(20)],
        "amount": [1000.0 * (i + 1) for i in range(20)],
        "age_days": [2.0 + 3 * i for i in range(20)],
        "p_win_4w": np.linspace(0.05, 0.8, 20),
        "p_win_13w": np.linspace(0.1, 0.9, 20),
    })
    deals["expected_value"] = deals["amount"] * deals["p_win_13w"]
    stale = deals.assign(typical_days=10.0)
    stale["stale"] = stale["age_days"] > 2 * stale["typical_days"]
    return {
        "conversion": pd.DataFrame(rows_conv, columns=interval),
        "win_probability": pd.DataFrame(rows_win, columns=interval),
        "time_in_stage": pd.DataFrame(rows_time, columns=["segment", "stage", "mean_days",
                                                          "lower", "upper"]),
        "stage_counts": pd.DataFrame(rows_counts, columns=["segment", "stage", "open_deals"]),
        "flows": flows,
        "overview": pd.DataFrame(
            [(names[s], m, v, 0.8 * v, 1.2 * v) for s in _FUNNELS
             for m, v in (("win probability", 0.3), ("days to close", 40.0),
                          ("new deals per week", 12.0))],
            columns=["segment", "measure", "mean", "lower", "upper"]),
        "owners": pd.DataFrame(owner_rows, columns=["segment", "owner", "deals", "raw_mean",
                                                    "pooled_mean", "pooled_lower",
                                                    "pooled_upper"]),
        "weekly": pd.DataFrame(weekly, columns=["week", "week_end", "segment", "stage", *band]),
        "wins": pd.DataFrame(wins, columns=cum),
        "revenue": pd.DataFrame(revenue, columns=cum),
        "monthly": months,
        "deals": deals,
        "stale": stale,
        "grid": pd.DataFrame(grid, columns=["lead_inflow", "week", "week_end", "segment",
                                            "measure", *band]),
    }
