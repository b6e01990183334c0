"""The demo CRM: every kind of move is there, at the configured rates; data/demo is its output."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from simulate_testkit import observed_vs_expected

from funnel_lab.crm.read import read_crm
from funnel_lab.simulate import demo_settings, simulate_crm

DEMO_SEED = 2026  # the seed of data/demo (data/README.md gives the command)
DEMO_DIR = Path(__file__).resolve().parents[2] / "data" / "demo"
# Each move must be seen at least this often in the demo (issue 3), so fits have data.
MIN_MOVES = 50
# (count - expected) / sqrt(expected) is close to a standard normal for each row (see
# simulate_testkit.observed_vs_expected). About 30 moves and 60 well-filled (move, band) rows
# are tested: with |z| < 4.5 the chance that any of them fails by chance is below 0.1%, while
# a rate off by 15% on a move seen 400 times (z ~ 3 sd per 10%) or a wrong band multiplier
# still fails.
Z_TOL = 4.5
# Per-band rows are only tested when they expect this many moves (normal approximation).
MIN_EXPECTED = 20.0
# The demo must stay small enough to ship with the package.
MAX_DEMO_BYTES = 3_000_000


@pytest.fixture(scope="module")
def demo():
    return simulate_crm(demo_settings(), random_seed=DEMO_SEED)


@pytest.fixture(scope="module")
def checks(demo):
    return observed_vs_expected(demo)


def test_demo_size_and_shape(demo):
    crm = demo.crm
    assert 2_000 <= len(crm.deals) <= 5_000
    assert crm.deals["owner"].nunique() == 12 and crm.deals["team"].nunique() == 3
    assert sorted(crm.funnels) == ["Enterprise", "SMB"]
    span = crm.deals["created_at"].max() - crm.deals["created_at"].min()
    assert span > pd.Timedelta(weeks=103)


def test_every_move_occurs_at_least_50_times(checks):
    per_move = checks.groupby(["segment", "move"])["count"].sum()
    assert len(per_move) == sum(len(s.rates) for s in demo_settings().segments.values())
    assert per_move.min() >= MIN_MOVES, per_move.sort_values().head()


def test_observed_moves_match_the_configured_rates(checks):
    per_move = checks.groupby(["segment", "move"])[["count", "expected"]].sum()
    z = (per_move["count"] - per_move["expected"]) / np.sqrt(per_move["expected"])
    assert z.abs().max() < Z_TOL, z.sort_values()
    banded = checks.loc[checks["expected"] >= MIN_EXPECTED]
    assert banded["band"].nunique() == 3  # every age band is tested somewhere
    assert banded["z"].abs().max() < Z_TOL, banded.sort_values("z")


def test_the_check_catches_a_wrong_rate(demo, checks):
    # The same comparison against rates 15% off must fail: the test has power.
    per_move = checks.groupby(["segment", "move"])[["count", "expected"]].sum()
    big = per_move.loc[per_move["count"] > 400]
    z = (big["count"] - 1.15 * big["expected"]) / np.sqrt(1.15 * big["expected"])
    assert z.abs().max() > Z_TOL


def test_demo_shows_drift_and_stale_deals(demo):
    crm = demo.crm
    weeks = (crm.deals["created_at"] - pd.Timestamp(demo.truth["history_start"])) / \
        pd.Timedelta(weeks=1)
    assert (weeks >= 91).sum() > 1.2 * (weeks < 13).sum()
    open_deals = crm.open_deals()
    assert (open_deals["age_days"] > 13 * 7).sum() >= 20  # stale deals in the pipeline


def test_data_demo_is_this_simulation(demo, tmp_path):
    assert DEMO_DIR.is_dir(), "data/demo is missing; see data/README.md to regenerate it"
    demo.write(tmp_path)
    for name in ("deals.csv", "events.csv", "funnel.toml", "truth.json", "settings.toml"):
        assert (DEMO_DIR / name).read_bytes() == (tmp_path / name).read_bytes(), name
    size = sum(p.stat().st_size for p in DEMO_DIR.rglob("*") if p.is_file())
    assert size < MAX_DEMO_BYTES


def test_data_demo_validates(demo):
    crm = read_crm(DEMO_DIR)
    assert crm.report.ok and crm.report.problems == []
    assert crm.fingerprint() == read_crm(DEMO_DIR, as_of=demo.truth["as_of"]).fingerprint()
