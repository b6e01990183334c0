"""Each switch of the simulator shows its effect in the data (same seed, switch on and off)."""

import warnings

import numpy as np
import pandas as pd
import pytest
from simulate_testkit import band_of, stays

from funnel_lab.errors import DataWarning
from funnel_lab.simulate import simulate_crm, small_settings

SEED = 17


def _progress_rate_by_band(sim, segment="SMB", stage="Lead"):
    """Progress moves (forward, skip, won) per week at risk out of one stage, by age band."""
    st = stays(sim)
    st = st.loc[(st["segment"] == segment) & (st["stage"] == stage)]
    order = sim.settings.segments[segment].funnel(segment).order
    progress = st["to_stage"].map(lambda b: isinstance(b, str) and b != "Lost"
                                  and order(b) > order(stage)).astype(bool)
    edges = np.array([0, 4, 13], dtype=float)
    limits = np.append(edges[1:], np.inf)
    rates = []
    for k in range(2):
        exposure = (np.clip(st["age_at_end"], edges[k], limits[k]) - edges[k]).sum()
        moves = (progress & (band_of(st["age_at_end"], edges) == k)).sum()
        rates.append(moves / exposure)
    return np.array(rates)


def test_stale_deals_progress_slower_with_age():
    on = _progress_rate_by_band(simulate_crm(small_settings(stale=True, weeks=104), SEED))
    off = _progress_rate_by_band(simulate_crm(small_settings(stale=False, weeks=104), SEED))
    # Configured progress multipliers are 1 and 0.5 for bands [0, 4) and [4, 13) weeks;
    # without bands every age is alike. (Stays beyond 13 weeks are too rare in a small CRM;
    # the demo test checks every band against its rate.) The bounds leave room for the
    # Poisson noise of ~100 moves in band [4, 13).
    assert on[1] / on[0] < 0.7
    assert 0.75 < off[1] / off[0] < 1.3


def test_stale_reengagement_fades_with_time_since_lost():
    def reengaged_share(stale):
        sim = simulate_crm(small_settings(stale=stale, weeks=104), SEED)
        st = stays(sim)
        lost = st.loc[st["stage"] == "Lost"]
        # Lost for more than 13 weeks, then back: rare when re-engagement fades.
        late = lost["to_stage"].notna() & (lost["age_at_end"] > 13)
        return late.sum() / len(lost)

    assert reengaged_share(True) < 0.5 * reengaged_share(False)


def test_drift_changes_arrivals_and_conversion():
    def early_vs_late(drift):
        sim = simulate_crm(small_settings(drift=drift, weeks=104, drift_arrivals_start=0.5,
                                          drift_progress_start=2.5), SEED)
        weeks = (sim.crm.deals["created_at"] - pd.Timestamp(sim.truth["history_start"])) / \
            pd.Timedelta(weeks=1)
        arrivals = (weeks >= 91).sum() / (weeks < 13).sum()
        st = stays(sim)
        lead = st.loc[(st["segment"] == "SMB") & (st["stage"] == "Lead")]
        forward = lead["to_stage"].isin(["Qualified", "Proposal"])
        early = lead["start"] < 52
        rate_early = forward[early].sum() / lead.loc[early, "age_at_end"].sum()
        rate_late = forward[~early].sum() / lead.loc[~early, "age_at_end"].sum()
        return arrivals, rate_early / rate_late

    arrivals_on, progress_on = early_vs_late(True)
    arrivals_off, progress_off = early_vs_late(False)
    # Arrival multiplier 0.5 -> 1: the last quarter has ~1.7x the first quarter's deals
    # (about 130 deals a quarter, so the ratio's noise is ~0.15).
    assert arrivals_on > 1.35 and 0.8 < arrivals_off < 1.25
    # Progress multiplier 2.5 -> 1: forward rates of Lead stays are ~1.55x higher in the first
    # year than in the second; ~500 moves a year give the ratio a noise of ~0.07.
    assert progress_on > 1.3 and 0.8 < progress_off < 1.2


def test_record_lost_false_never_records_lost():
    on = simulate_crm(small_settings(), SEED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # the reader's gone-cold default
        off = simulate_crm(small_settings(record_lost=False), SEED)
    assert (on.events["stage"] == "Lost").sum() > 100
    assert (off.events["stage"] == "Lost").sum() == 0
    # Lost deals went silent: the last event is an open stage for many more deals.
    silent = off.events.groupby("deal_id")["stage"].last().isin(["Lead", "Qualified",
                                                                "Proposal", "Discovery",
                                                                "Demo"])
    assert silent.sum() > 3 * (on.crm.open_deals().shape[0])
    # Whatever Lost the CRM holds was imputed by the reader's gone-cold rule, and counted.
    crm_lost = off.crm.events.loc[off.crm.events["stage"] == "Lost"]
    assert crm_lost["imputed"].all() and off.crm.report.counts.get("gone_cold", 0) > 0


@pytest.mark.parametrize("segment", ["SMB"])
def test_owner_effects_spread_win_rates(segment):
    def dispersion(owner_sd):
        sim = simulate_crm(small_settings(owner_sd=owner_sd, weeks=104), SEED)
        last = sim.crm.events.groupby("deal_id")["stage"].last().rename("outcome")
        d = sim.crm.deals.join(last, on="deal_id")
        d = d.loc[(d["segment"] == segment) & d["outcome"].isin(["Won", "Lost"])]
        per = d.groupby("owner")["outcome"].agg(n="size", won=lambda s: (s == "Won").sum())
        p = per["won"].sum() / per["n"].sum()
        # Pearson dispersion: about 1 when owners share one win rate.
        chi2 = ((per["won"] - per["n"] * p) ** 2 / (per["n"] * p * (1 - p))).sum()
        return chi2 / (len(per) - 1), sim.truth

    spread, truth = dispersion(0.6)
    alike, truth0 = dispersion(0.0)
    assert all(v["effect"] == 1.0 for v in truth0["owners"].values())
    assert np.std([np.log(v["effect"]) for v in truth["owners"].values()]) > 0.2
    assert alike < 3.0 and spread > 3 * alike


def test_future_weeks_add_later_events():
    sim = simulate_crm(small_settings(future_weeks=8), SEED)
    fut = sim.future
    assert fut.events["entered_at"].max() > sim.crm.as_of + pd.Timedelta(weeks=7)
    assert len(fut.deals) > len(sim.crm.deals)
    # Deals open at as_of moved on afterwards: some of them are won only in the future.
    open_now = set(sim.crm.open_deals()["deal_id"])
    won_later = fut.events.loc[(fut.events["stage"] == "Won")
                               & (fut.events["entered_at"] > sim.crm.as_of), "deal_id"]
    assert len(open_now & set(won_later)) > 10
