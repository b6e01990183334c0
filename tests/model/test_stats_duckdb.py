"""Sufficient statistics: the DuckDB query against a plain pandas implementation, exactly."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from funnel_lab.crm.funnel import Funnel
from funnel_lab.crm.read import crm_from_frames
from funnel_lab.errors import ParameterError
from funnel_lab.model import sufficient_statistics
from funnel_lab.model.stats import SECONDS_PER_WEEK, check_band_edges

# Weighted sums are floats summed in a different order by DuckDB and pandas; they agree to
# rounding error of ~1e-16 per term over a few thousand terms.
WEIGHTED_RTOL = 1e-9

FUNNELS = {
    "SMB": Funnel("SMB", ("Lead", "Demo", "Proposal")),
    "ENT": Funnel("ENT", ("Lead", "Qualified", "Demo", "Proposal", "Legal")),
}
AS_OF = pd.Timestamp("2025-06-30 23:59:59.999999")


def random_crm(seed: int, n_deals: int = 400, with_source: bool = True):
    """A messy CRM: skips, back-moves, re-engagement after Lost, ties, sub-second times,
    open deals at ``as_of``, events after ``as_of`` (cut by the reader)."""
    rng = np.random.default_rng(seed)
    deals, events = [], []
    owners = ["Ann", "Bob", "Cy", None]
    for k in range(n_deals):
        seg = "SMB" if rng.random() < 0.6 else "ENT"
        f = FUNNELS[seg]
        created = AS_OF - pd.Timedelta(seconds=float(rng.uniform(0, 40 * SECONDS_PER_WEEK)))
        created = created.floor("ms")
        deal_id = f"d{k:04d}"
        owner = owners[rng.integers(0, len(owners))]
        deals.append({"deal_id": deal_id, "segment": seg, "owner": owner,
                      "team": "East" if k % 3 else "West",
                      "amount": float(rng.lognormal(8, 1)) if rng.random() < 0.9 else np.nan,
                      "created_at": created, "source": ["web", "partner"][k % 2]})
        t = created
        state = int(rng.integers(0, 2)) if rng.random() < 0.9 else f.n_open + 1
        for _ in range(12):
            events.append({"deal_id": deal_id, "stage": f.states[state], "entered_at": t})
            if state == f.n_open:  # Won is absorbing
                break
            if state == f.n_open + 1:
                if rng.random() < 0.7:
                    break
                nxt = int(rng.integers(0, f.n_open))
            else:
                choices = [s for s in range(len(f.states)) if s != state]
                nxt = int(rng.choice(choices))
            step = rng.exponential(2.5 * SECONDS_PER_WEEK)
            # Same-time ties only along the funnel, as a CRM keeping dates only would have.
            if nxt > state and nxt < f.n_open and rng.random() < 0.15:
                step = 0.0
            t = t + pd.Timedelta(seconds=float(step))
            state = nxt
    deals = pd.DataFrame(deals)
    if not with_source:
        deals = deals.drop(columns="source")
    return crm_from_frames(deals, pd.DataFrame(events), FUNNELS, as_of=AS_OF)


def pandas_statistics(crm, by, band_edges, half_life_weeks):
    """The reference: stays with groupby().shift(), bands by plain arithmetic."""
    cols = ["deal_id", "segment"] + ([by] if by else [])
    ev = crm.events.merge(crm.deals[cols], on="deal_id", how="left")
    ev["grp"] = "all" if by is None else ev[by].astype(object).where(ev[by].notna(),
                                                                     "(unknown)")
    ev["i"] = [crm.funnels[s].order(st) for s, st in zip(ev["segment"], ev["stage"],
                                                          strict=True)]
    ev["t"] = ev["entered_at"].astype("datetime64[us]").astype("int64") // 1_000_000
    ev = ev.sort_values(["deal_id", "entered_at", "i"], kind="stable")
    as_of_s = int(np.datetime64(crm.as_of, "us").astype("int64") // 1_000_000)
    nxt = ev.groupby("deal_id")
    ev["j"] = nxt["i"].shift(-1).fillna(-1).astype(int)
    ev["t1"] = nxt["t"].shift(-1).fillna(as_of_s).astype("int64")
    ev["first"] = ~ev["deal_id"].duplicated()
    lo = [e * SECONDS_PER_WEEK for e in band_edges]
    hi = lo[1:] + [2**62]
    k = None if half_life_weeks is None else math.log(2) / (half_life_weeks * SECONDS_PER_WEEK)

    out = {}
    for seg, f in crm.funnels.items():
        sub = ev[ev["segment"] == seg]
        groups = sorted(set(sub["grp"])) if len(sub) else ["all"]
        gi = {g: n for n, g in enumerate(groups)}
        n_s = len(f.states)
        counts = np.zeros((len(groups), len(lo), n_s, n_s))
        expo = np.zeros((len(groups), len(lo), n_s))
        entries = np.zeros((len(groups), n_s))
        for row in sub.itertuples():
            g, i, j, t0, t1 = gi[row.grp], row.i, row.j, row.t, row.t1
            d = t1 - t0
            w_entry = 1.0 if k is None else math.exp(-k * (as_of_s - t0))
            if row.first:
                entries[g, i] += w_entry
            for b in range(len(lo)):
                if d < lo[b]:
                    break
                end = min(d, hi[b])
                if k is None:
                    expo[g, b, i] += end - lo[b]
                else:
                    expo[g, b, i] += (math.exp(-k * (as_of_s - (t0 + end)))
                                      - math.exp(-k * (as_of_s - (t0 + lo[b])))) / k
                if j >= 0 and d < hi[b]:
                    counts[g, b, i, j] += 1.0 if k is None else math.exp(-k * (as_of_s - t1))
        expo[:, :, f.n_open] = 0
        out[seg] = (tuple(groups), counts, expo, entries)
    return out


@pytest.fixture(scope="module")
def crm():
    return random_crm(7)


@pytest.mark.parametrize("by", [None, "owner", "team"])
@pytest.mark.parametrize("band_edges", [(0,), (0, 1, 4), (0, 2, 3, 10)])
def test_duckdb_equals_pandas_exactly(crm, by, band_edges):
    stats = sufficient_statistics(crm, by=by, band_edges=band_edges)
    ref = pandas_statistics(crm, by, band_edges, None)
    for seg, st in stats.items():
        groups, counts, expo, entries = ref[seg]
        assert st.groups == groups
        assert st.counts.dtype == np.int64 and st.exposure_seconds.dtype == np.int64
        np.testing.assert_array_equal(st.counts, counts.astype(np.int64))
        np.testing.assert_array_equal(st.exposure_seconds, expo.astype(np.int64))
        np.testing.assert_array_equal(st.entries, entries.astype(np.int64))


@pytest.mark.parametrize("band_edges", [(0,), (0, 1, 4)])
def test_weighted_statistics_match_pandas(crm, band_edges):
    stats = sufficient_statistics(crm, by="owner", band_edges=band_edges, half_life_weeks=6.0)
    ref = pandas_statistics(crm, "owner", band_edges, 6.0)
    for seg, st in stats.items():
        _, counts, expo, entries = ref[seg]
        np.testing.assert_allclose(st.counts, counts, rtol=WEIGHTED_RTOL, atol=1e-9)
        np.testing.assert_allclose(st.exposure_seconds, expo, rtol=WEIGHTED_RTOL)
        np.testing.assert_allclose(st.entries, entries, rtol=WEIGHTED_RTOL)


def test_bands_split_exposure_and_keep_totals(crm):
    flat = sufficient_statistics(crm)
    banded = sufficient_statistics(crm, band_edges=(0, 1, 3))
    for seg in flat:
        np.testing.assert_array_equal(flat[seg].counts[:, 0],
                                      banded[seg].counts.sum(axis=1))
        np.testing.assert_array_equal(flat[seg].exposure_seconds[:, 0],
                                      banded[seg].exposure_seconds.sum(axis=1))
        # A stay reaches band 2 only after 3 weeks, so band 1 holds at most 2 weeks a stay.
        assert banded[seg].exposure_seconds[:, 1].max() > 0


def test_hand_computed_example():
    """Two deals, every number checked by hand."""
    f = Funnel("S", ("A", "B"))
    day = pd.Timedelta(days=1)
    t0 = pd.Timestamp("2025-01-01")
    deals = pd.DataFrame({"deal_id": ["x", "y"], "segment": "S", "owner": ["o1", "o2"],
                          "team": "T", "amount": [100.0, np.nan],
                          "created_at": [t0, t0 + 2 * day]})
    # x: A (10 days) -> B (3 days) -> A (back, 1 day) -> Lost (open until as_of)
    # y: B (open until as_of)
    events = pd.DataFrame({
        "deal_id": ["x", "x", "x", "x", "y"],
        "stage": ["A", "B", "A", "Lost", "B"],
        "entered_at": [t0, t0 + 10 * day, t0 + 13 * day, t0 + 14 * day, t0 + 2 * day],
    })
    as_of = t0 + 20 * day
    crm = crm_from_frames(deals, events, {"S": f}, as_of=as_of)
    st = sufficient_statistics(crm, band_edges=(0, 1))["S"]
    a, b, won, lost = 0, 1, 2, 3
    c = st.counts[0]
    assert c[0, a, b] == 0 and c[1, a, b] == 1  # 10 days in A: band [1, inf)
    assert c[0, b, a] == 1 and c[0, a, lost] == 1
    assert c.sum() == 3 and c[:, :, won].sum() == 0
    e = st.exposure_seconds[0] / day.total_seconds()
    np.testing.assert_array_equal(e[0], [7 + 1, 7 + 3, 0, 6])  # band 0
    np.testing.assert_array_equal(e[1], [3, 11, 0, 0])  # A: 10 - 7 days; y in B: 18 - 7 days
    np.testing.assert_array_equal(st.entries[0], [1, 1, 0, 0])
    assert st.arrival_count == 2 and st.skipped["amount_missing_or_not_positive"] == 1
    np.testing.assert_allclose(st.log_amounts, [math.log(100.0)])
    assert st.history_weeks == pytest.approx(20 / 7)
    assert st.arrival_weeks.sum() == 2 and len(st.arrival_weeks) == 3


def test_arrivals_and_sources(crm):
    stats = sufficient_statistics(crm, by="team")
    total = sum(st.arrival_count for st in stats.values())
    assert total == len(crm.deals)
    for seg, st in stats.items():
        n_seg = int((crm.deals["segment"] == seg).sum())
        assert st.arrival_weeks.sum() == n_seg
        assert sum(st.source_arrivals.values()) == n_seg
        assert st.group_arrivals.sum() == n_seg
        assert st.arrival_exposure_weeks == pytest.approx(st.history_weeks)
    no_source = sufficient_statistics(random_crm(8, n_deals=50, with_source=False))
    assert all(st.source_arrivals == {} for st in no_source.values())


def test_recency_weights_shrink_old_data(crm):
    plain = sufficient_statistics(crm)
    weighted = sufficient_statistics(crm, half_life_weeks=4.0)
    for seg in plain:
        assert (weighted[seg].exposure_seconds <= plain[seg].exposure_seconds + 1e-6).all()
        assert weighted[seg].counts.sum() < plain[seg].counts.sum()
        np.testing.assert_array_equal(weighted[seg].n_transitions, plain[seg].counts)
        h = 4.0
        expected = h / math.log(2) * (1 - 2 ** (-plain[seg].history_weeks / h))
        assert weighted[seg].arrival_exposure_weeks == pytest.approx(expected)


@pytest.mark.parametrize("edges", [(1, 4), (0, 4, 4), (0, 1.5), ()])
def test_bad_band_edges_are_parameter_errors(edges):
    with pytest.raises(ParameterError, match="band_edges"):
        check_band_edges(edges)


def test_bad_arguments(crm):
    with pytest.raises(ParameterError, match="by must be one of"):
        sufficient_statistics(crm, by="region")
    with pytest.raises(ParameterError, match="half_life_weeks"):
        sufficient_statistics(crm, half_life_weeks=0)


def test_events_that_match_no_deal_are_an_error(crm):
    import dataclasses

    from funnel_lab.errors import DataError

    extra = pd.DataFrame({"deal_id": ["ghost"], "stage": ["Lead"],
                          "entered_at": [AS_OF - pd.Timedelta(days=1)], "imputed": [False]})
    broken = dataclasses.replace(crm, events=pd.concat([crm.events, extra], ignore_index=True))
    with pytest.raises(DataError, match="1 of .* events do not match"):
        sufficient_statistics(broken)


def test_deals_entering_closed_are_counted(crm):
    stats = sufficient_statistics(crm)
    for st in stats.values():
        won = st.funnel.n_open
        assert st.skipped["deals_entering_won_or_lost"] == int(st.entries[:, won:].sum())
    assert sum(st.skipped["deals_entering_won_or_lost"] for st in stats.values()) > 0
