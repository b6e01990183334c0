"""Helpers of the simulator tests: stays, observed moves and their expected counts.

Written apart from the simulator (pandas on the CRM tables), so the tests check the engine
from the outside. Times are weeks since the start of the history.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from funnel_lab.simulate import SimulatedCRM

SECONDS_PER_WEEK = 7 * 24 * 3600


def stays(sim: SimulatedCRM, crm=None) -> pd.DataFrame:
    """One row per stay in a state of the CRM (``sim.crm`` by default).

    Columns: deal_id, segment, owner, stage, to_stage (NaN when still there at as_of), start,
    end (weeks; end = as_of for censored stays), age_at_end (weeks).
    """
    crm = sim.crm if crm is None else crm
    start0 = pd.Timestamp(sim.truth["history_start"])
    end_of_data = (crm.as_of.ceil("s") - start0) / pd.Timedelta(weeks=1)
    ev = crm.events.merge(crm.deals[["deal_id", "segment", "owner"]], on="deal_id")
    ev = ev.sort_values(["deal_id", "entered_at"], kind="stable").reset_index(drop=True)
    ev["start"] = (ev["entered_at"] - start0) / pd.Timedelta(weeks=1)
    nxt = ev.groupby("deal_id", sort=False)
    ev["to_stage"] = nxt["stage"].shift(-1)
    ev["end"] = nxt["start"].shift(-1).fillna(end_of_data)
    ev["age_at_end"] = ev["end"] - ev["start"]
    return ev[["deal_id", "segment", "owner", "stage", "to_stage", "start", "end",
               "age_at_end"]]


def band_of(age_weeks, edges) -> np.ndarray:
    return np.searchsorted(np.asarray(edges, dtype=float), np.asarray(age_weeks), "right") - 1


def observed_vs_expected(sim: SimulatedCRM) -> pd.DataFrame:
    """Per segment, move and age band: the observed count and its expected count.

    The expected count is the compensator: the integral of the move's hazard over every stay
    at risk of it, with the owner's effect, the drift multiplier over the stay's calendar time
    and the band rates over its ages. Given the paths, count - expected is a martingale whose
    variance is the expected count, so (count - expected) / sqrt(expected) is close to a
    standard normal for every row, whatever the switches.
    """
    settings = sim.settings
    edges = np.asarray(settings.band_edges(), dtype=float)
    limits = np.append(edges[1:], np.inf)
    effects = {o: v["effect"] for o, v in sim.truth["owners"].items()}
    st = stays(sim)
    rows = []
    for seg, spec in settings.segments.items():
        funnel = spec.funnel(seg)
        rates = settings.band_rates(seg)
        prog = settings.progress_mask(seg)
        s = st.loc[st["segment"] == seg]
        frm = s["stage"].map(funnel.order).to_numpy()
        eff = s["owner"].map(effects).to_numpy()
        a, b = s["start"].to_numpy(), s["end"].to_numpy()
        band_end = band_of(s["age_at_end"].to_numpy(), edges)
        moved = s["to_stage"].notna().to_numpy()
        order = {name: k for k, name in enumerate(funnel.states)}
        to = s["to_stage"].map(order).fillna(-1).to_numpy()
        for k in range(edges.size):
            lo = np.minimum(a + edges[k], b)
            hi = np.minimum(a + limits[k], b)
            length = hi - lo
            drifted = settings.drift_integral(lo, hi, "progress") * eff
            for i, j in zip(*np.nonzero(rates.sum(axis=0)), strict=True):
                at_i = frm == i
                exposure = drifted[at_i].sum() if prog[i, j] else length[at_i].sum()
                count = int(np.sum(at_i & moved & (to == j) & (band_end == k)))
                rows.append({"segment": seg, "move": f"{funnel.states[i]}->{funnel.states[j]}",
                             "band": k, "count": count, "expected": rates[k, i, j] * exposure})
    out = pd.DataFrame(rows)
    out["z"] = (out["count"] - out["expected"]) / np.sqrt(out["expected"].clip(lower=1e-12))
    return out
