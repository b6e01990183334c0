"""Simulation settings: presets, TOML round trip, overrides, checks and the drift integral."""

import tomllib

import numpy as np
import pytest

import funnel_lab.simulate as simulate
from funnel_lab.crm.funnel import Funnel
from funnel_lab.errors import ParameterError
from funnel_lab.simulate import (
    SimulationSettings,
    demo_settings,
    small_settings,
    transition_kind,
)
from funnel_lab.simulate._toml import dumps

# Riemann sums on a fine grid against the closed-form integral: the grid error is below this.
GRID_TOL = 1e-6


def test_public_api_is_exactly_all():
    public = {n for n in dir(simulate) if not n.startswith("_")}
    modules = {"command", "engine", "settings", "simulator", "truth"}
    assert public - modules == set(simulate.__all__)


def test_demo_settings_match_the_brief():
    s = demo_settings()
    assert list(s.segments) == ["SMB", "Enterprise"]
    assert s.segments["SMB"].stages != s.segments["Enterprise"].stages
    assert len(s.teams) == 3 and len(s.owners()) == 12
    assert s.weeks == 104 and s.stale and s.drift and s.record_lost and s.owner_sd > 0
    kinds = {k for seg in s.segments for k in s.kind_matrix(seg).ravel() if k}
    assert kinds == {"forward", "skip", "backward", "won", "lost", "reengage"}
    assert s.segments["Enterprise"].amount_median > s.segments["SMB"].amount_median


def test_small_settings_switches_off_and_overrides():
    s = small_settings()
    assert (s.stale, s.drift, s.owner_sd, s.record_lost, s.future_weeks) == (
        False, False, 0.0, True, 0)
    assert small_settings(future_weeks=13, stale=True).future_weeks == 13
    with pytest.raises(ParameterError, match="unknown simulation setting"):
        small_settings(stael=True)


def test_toml_round_trip_is_exact():
    s = demo_settings().replace(future_weeks=5, owner_sd=0.45)
    text = s.to_toml()
    back = SimulationSettings.from_dict(tomllib.loads(text), base=small_settings())
    assert back == s
    assert back.to_toml() == text


def test_toml_writer_quotes_keys_and_writes_plain_values():
    doc = tomllib.loads(dumps({"a": True, "b": [1, 2.5], "t": {"x y": "q\"uote", "A->B": 0.1}}))
    assert doc == {"a": True, "b": [1, 2.5], "t": {"x y": 'q"uote', "A->B": 0.1}}


def test_partial_config_file_keeps_other_settings(tmp_path):
    cfg = tmp_path / "sim.toml"
    cfg.write_text("weeks = 20\nstale = false\n[segments.SMB]\nstages = ['A', 'B']\n"
                   "arrivals_per_week = 5\n[segments.SMB.rates]\n'A->B' = 0.5\n'B->Won' = 0.3\n"
                   "'B->Lost' = 0.2\n'A->Lost' = 0.1\n[teams.T]\nowners = ['x', 'y']\n")
    s = SimulationSettings.from_toml(cfg)
    assert s.weeks == 20 and not s.stale and s.drift  # drift kept from the demo
    assert list(s.segments) == ["SMB"] and s.owners() == {"x": "T", "y": "T"}


def test_overrides_parse_toml_values():
    s = demo_settings().with_overrides(["stale=false", "owner_sd=0", "as_of=2026-06-30",
                                        "band_edges_weeks=[0, 2, 8]",
                                        "segments.SMB.rates.Lead->Won=0.01",
                                        "drift_shape=step"])
    assert not s.stale and s.owner_sd == 0.0 and s.as_of == "2026-06-30"
    assert s.band_edges_weeks == (0, 2, 8) and s.drift_shape == "step"
    assert s.segments["SMB"].rates["Lead->Won"] == 0.01


@pytest.mark.parametrize("override, message", [
    ("weeks=zero", "whole number"),
    ("segments.SMB.ratez.Lead->Won=1", "unknown setting"),
    ("segments.SMB.rates.Lead->Nowhere=1", "unknown stage 'Nowhere'"),
    ("segments.SMB.rates.Won->Lead=1", "no move Won->Lead"),
    ("stale_progress=[1.0, 0.5]", "one multiplier"),
    ("drift_shape=wiggle", "linear"),
    ("nonsense", "KEY=VALUE"),
])
def test_bad_overrides_name_the_problem(override, message):
    with pytest.raises(ParameterError, match=message):
        demo_settings().with_overrides([override])


def test_owner_in_two_teams_is_an_error():
    with pytest.raises(ParameterError, match="owner 'Alice' is in teams"):
        demo_settings().with_overrides(["teams.South.owners=['Alice']"])


def test_transition_kinds():
    f = Funnel("E", ("Lead", "Demo", "Proposal"))
    assert transition_kind(f, "Proposal", "Lead") == "backward"
    assert transition_kind(f, "Demo", "Won") == "won"
    with pytest.raises(ParameterError):
        transition_kind(f, "Lost", "Won")


@pytest.mark.parametrize("shape", ["linear", "step"])
def test_drift_integral_is_the_integral_of_the_multiplier(shape):
    s = small_settings(drift=True, drift_shape=shape, drift_progress_start=1.8,
                       drift_arrivals_start=0.4)
    a, b = np.array([0.0, 10.0, 30.0, 50.0]), np.array([5.0, 40.0, 31.5, 70.0])
    for which in ("arrivals", "progress"):
        exact = s.drift_integral(a, b, which)
        for lo, hi, value in zip(a, b, exact, strict=True):
            grid = np.linspace(lo, hi, 400_001)
            mid = (grid[1:] + grid[:-1]) / 2
            approx = s.drift_multiplier(mid, which).sum() * (hi - lo) / mid.size
            assert value == pytest.approx(approx, abs=GRID_TOL * 100 if shape == "step"
                                          else GRID_TOL)
    assert s.drift_multiplier([0.0, 52.0, 60.0], "progress").tolist()[1:] == [1.0, 1.0]


def test_band_rates_apply_the_stale_multipliers():
    s = small_settings(stale=True)
    r = s.band_rates("SMB")
    kinds = s.kind_matrix("SMB")
    assert r.shape == (3, 5, 5)
    i, j = np.argwhere(kinds == "forward")[0]
    np.testing.assert_allclose(r[:, i, j] / r[0, i, j], s.stale_progress)
    i, j = np.argwhere(kinds == "reengage")[0]
    np.testing.assert_allclose(r[:, i, j] / r[0, i, j], s.stale_reengage)
    silent = small_settings(record_lost=False).band_rates("SMB")
    assert silent[0, 4].sum() == 0  # no re-engagement when Lost is never recorded
