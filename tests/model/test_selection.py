"""Held-out model comparison: scores, held-out statistics, candidates and the choice."""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from funnel_lab.crm.funnel import Funnel
from funnel_lab.crm.read import crm_from_frames
from funnel_lab.errors import DataWarning, ParameterError, SparseDataWarning
from funnel_lab.model.selection import (
    MIN_GAIN_NATS,
    candidate_settings,
    choose_settings,
    compare_models,
    data_band_edges,
    heldout_statistics,
    model_comparison,
    report_comparison,
    score_heldout,
    split_crm,
)
from funnel_lab.model.stats import SECONDS_PER_WEEK, sufficient_statistics


def tiny_crm(n_deals: int = 60, seed: int = 0):
    """Deals through Lead -> Demo -> Won/Lost, one every few days over a year."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2025-01-01")
    deals, events = [], []
    for k in range(n_deals):
        created = start + pd.Timedelta(days=float(k * 6))
        deals.append((f"d{k}", "S", f"o{k % 3}", "t", 100.0, created))
        t = created
        events.append((f"d{k}", "Lead", t))
        t = t + pd.Timedelta(days=float(rng.exponential(10)))
        events.append((f"d{k}", "Demo" if rng.random() < 0.6 else "Lost", t))
        if events[-1][1] == "Demo":
            t = t + pd.Timedelta(days=float(rng.exponential(20)))
            events.append((f"d{k}", "Won" if rng.random() < 0.5 else "Lost", t))
    deals = pd.DataFrame(deals, columns=["deal_id", "segment", "owner", "team", "amount",
                                         "created_at"])
    events = pd.DataFrame(events, columns=["deal_id", "stage", "entered_at"])
    return crm_from_frames(deals, events, {"S": Funnel("S", ("Lead", "Demo"))},
                           as_of="2025-12-31")


def test_score_is_the_point_process_log_density_averaged_over_draws():
    rates = np.zeros((3, 1, 2, 2))
    rates[:, 0, 0, 1] = [0.2, 0.5, 1.0]
    counts = np.array([[[0, 3], [0, 0]]])
    weeks = np.array([[4.0, 0.0]])
    got = score_heldout(rates, counts, weeks)
    q = np.array([0.2, 0.5, 1.0])
    expected = math.log(np.mean(np.exp(3 * np.log(q) - 4.0 * q)))
    assert got["loglik"] == pytest.approx(expected, rel=1e-12)
    assert got["events"] == 3 and got["unscored_events"] == 0


def test_moves_the_fit_calls_impossible_are_counted_not_scored():
    rates = np.zeros((2, 1, 2, 2))
    rates[:, 0, 0, 1] = 0.5
    counts = np.array([[[0, 1], [4, 0]]])  # 4 moves 1 -> 0, which has rate 0
    got = score_heldout(rates, counts, np.array([[2.0, 3.0]]))
    assert got["unscored_events"] == 4
    assert got["loglik"] == pytest.approx(math.log(0.5) - 0.5 * 2.0 - 0.0, rel=1e-12)


def test_split_and_heldout_statistics_add_up():
    crm = tiny_crm()
    train = split_crm(crm, 13)
    assert train.as_of == crm.as_of - pd.Timedelta(weeks=13)
    assert (train.events["entered_at"] <= train.as_of).all()
    held = heldout_statistics(crm, train, (0, 2))["S"]
    full = sufficient_statistics(crm, band_edges=(0, 2))["S"]
    early = sufficient_statistics(train, band_edges=(0, 2))["S"]
    assert held["clipped"] == 0
    np.testing.assert_array_equal(held["counts"] + early.n_transitions[0],
                                  full.n_transitions[0])
    np.testing.assert_allclose(held["exposure_weeks"] * SECONDS_PER_WEEK
                               + early.exposure_seconds[0], full.exposure_seconds[0])
    # 13 weeks of at most ~all open deals at risk: exposure is positive and bounded.
    assert 0 < held["exposure_weeks"].sum() <= 13 * len(crm.deals)
    with pytest.raises(ParameterError, match="holdout_weeks"):
        split_crm(crm, 400)


def test_candidates_are_deduplicated_and_simplest_first():
    crm = tiny_crm()
    edges = data_band_edges(crm)
    assert edges[0] == 0 and list(edges) == sorted(set(edges))
    cands = candidate_settings(crm, [(0,), (0, 4), (0,)], [None, 26, 13, None])
    names = [c["candidate"] for c in cands]
    assert names == ["bands=0 half_life=none", "bands=0 half_life=26",
                     "bands=0 half_life=13", "bands=0,4 half_life=none",
                     "bands=0,4 half_life=26", "bands=0,4 half_life=13"]
    with pytest.raises(ParameterError):
        candidate_settings(crm, [(0, 4)], [-1])
    with pytest.raises(ParameterError):
        candidate_settings(crm, [(1, 4)], [None])


def test_compare_models_table(caplog):
    crm = tiny_crm(n_deals=60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparseDataWarning)
        table = compare_models(crm, candidate_settings(crm, [(0,), (0, 2)], [None, 13]),
                               draws=200, random_seed=1)
        with caplog.at_level(logging.INFO, logger="funnel_lab.model.selection"):
            choice = choose_settings(crm, candidate_settings(crm, [(0,), (0, 2)], [None, 13]),
                                     draws=200, random_seed=1)
    assert list(table.columns[:4]) == ["candidate", "band_edges", "half_life_weeks",
                                       "heldout_loglik"]
    assert len(table) == 4 and table["delta"].iloc[0] == 0.0
    assert np.all(np.isfinite(table["heldout_loglik"])) and (table["heldout_loglik"] < 0).all()
    assert (table["events"] > 0).all() and (table["events"] == table["events"].iloc[0]).all()
    np.testing.assert_allclose(table["per_event"], table["heldout_loglik"] / table["events"])
    # Same seed, same table.
    pd.testing.assert_frame_equal(table, choice["table"].drop(columns="chosen"))
    assert choice["table"]["chosen"].sum() == 1
    assert "chose" in caplog.text

    # What fit --json reports: the table computed for auto settings is reused as it is.
    doc = model_comparison(crm, (0, 2), 13, table=choice["table"])
    assert doc["used"] == "bands=0,2 half_life=13"
    assert doc["table"]["used"].sum() == 1
    assert doc["table"].loc[doc["table"]["used"], "candidate"].item() == doc["used"]
    assert doc["best"] == table.loc[table["heldout_loglik"].idxmax(), "candidate"]
    assert doc["worth_it"] == (table["delta"].iloc[3] > MIN_GAIN_NATS)


# ---------------------------------------------------------------- on simulated CRMs


def _sim(**overrides):
    from funnel_lab.simulate import simulate_crm, small_settings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return simulate_crm(small_settings(**overrides), random_seed=4).crm


@pytest.mark.slow
def test_held_out_check_finds_stale_deals_and_drift():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparseDataWarning)
        stale = choose_settings(_sim(stale=True),
                                candidate_settings(_sim(stale=True), [(0,), (0, 4, 13)], [None]),
                                draws=500, random_seed=1)
        # Progress rates twice as fast a year ago: the last quarter is clearly different.
        drift = choose_settings(_sim(drift=True, drift_progress_start=2.0),
                                candidate_settings(_sim(), [(0,)], [None, 13]),
                                draws=500, random_seed=1)
        plain = choose_settings(_sim(), candidate_settings(_sim(), [(0,), (0, 4, 13)], [None]),
                                draws=500, random_seed=1)
    assert stale["band_edges"] == (0, 4, 13), stale["table"]
    assert drift["half_life_weeks"] == 13.0, drift["table"]
    assert plain["band_edges"] == (0,), plain["table"]


def test_report_comparison_marks_the_used_setting_or_says_why_it_skipped():
    crm = tiny_crm()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparseDataWarning)
        doc = report_comparison(crm, (0, 3), 26, random_seed=2)
    table = doc["table"]
    # The default grid (3 band settings x 4 half-lives, fewer when edges coincide) plus the
    # used setting, which is not in it.
    assert "bands=0,3 half_life=26" in set(table["candidate"])
    assert table["used"].sum() == 1 and doc["used"] == "bands=0,3 half_life=26"
    assert table["candidate"].iloc[0] == "bands=0 half_life=none"
    skipped = report_comparison(crm, (0,), None, holdout_weeks=400)
    assert set(skipped) == {"skipped"} and "holdout_weeks" in skipped["skipped"]
