"""Saving and loading posteriors: round trip, and mismatches named."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

from funnel_lab.errors import (
    DataError,
    MissingFileError,
    PosteriorMismatchError,
    SparseDataWarning,
)
from funnel_lab.model import fit, load_posterior, save_posterior

ARRAYS = ("rates", "arrivals", "entry_probs", "amount_mu", "amount_sigma", "group_share",
          "source_arrivals")


@pytest.fixture(scope="module")
def sim():
    from funnel_lab.simulate import simulate_crm, small_settings

    return simulate_crm(small_settings(), 3)


@pytest.fixture(scope="module")
def posterior(sim):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparseDataWarning)
        return fit(sim.crm, by="team", draws=60, random_seed=2, band_edges=(0, 3),
                   half_life_weeks=26)


def test_round_trip_is_exact(posterior, sim, tmp_path):
    path = save_posterior(posterior, tmp_path / "sub" / "post.nc")
    back = load_posterior(path, crm=sim.crm, as_of=sim.crm.as_of)
    assert back.as_of == posterior.as_of and back.method == posterior.method
    assert back.fingerprint == posterior.fingerprint
    assert back.settings == posterior.settings
    assert back.settings["band_edges"] == [0, 3] and back.settings["half_life_weeks"] == 26
    assert sorted(back.segments) == sorted(posterior.segments)
    for seg, sp in posterior.segments.items():
        other = back.segments[seg]
        assert other.funnel == sp.funnel
        assert (other.groups, other.group_by, other.band_edges, other.sources) == (
            sp.groups, sp.group_by, sp.band_edges, sp.sources)
        for name in ARRAYS:
            np.testing.assert_array_equal(getattr(other, name), getattr(sp, name), err_msg=name)


def test_other_as_of_is_a_mismatch(posterior, tmp_path):
    path = save_posterior(posterior, tmp_path / "post.nc")
    other_day = (posterior.as_of - pd.Timedelta(days=1)).date().isoformat()
    with pytest.raises(PosteriorMismatchError, match="as_of mismatch") as err:
        load_posterior(path, as_of=other_day)
    assert err.value.path == str(path)
    load_posterior(path, as_of=posterior.as_of.date().isoformat())  # end of the same day


def test_other_data_is_a_mismatch(posterior, sim, tmp_path):
    from funnel_lab.crm.read import crm_from_frames

    path = save_posterior(posterior, tmp_path / "post.nc")
    crm = sim.crm
    events = crm.events.drop(index=crm.events.index[-1])
    changed = crm_from_frames(crm.deals, events[["deal_id", "stage", "entered_at"]],
                              crm.funnels, as_of=crm.as_of)
    with pytest.raises(PosteriorMismatchError, match="data mismatch"):
        load_posterior(path, crm=changed)

    earlier = dataclasses.replace(crm, as_of=crm.as_of - pd.Timedelta(weeks=1))
    with pytest.raises(PosteriorMismatchError, match="as_of mismatch"):
        load_posterior(path, crm=earlier)

    one_segment = {s: f for s, f in crm.funnels.items() if s == "SMB"}
    with pytest.raises(PosteriorMismatchError, match="segment mismatch"):
        load_posterior(path, crm=dataclasses.replace(crm, funnels=one_segment))

    funnels = dict(crm.funnels)
    funnels["SMB"] = dataclasses.replace(funnels["SMB"], stages=("Lead", "Proposal"))
    with pytest.raises(PosteriorMismatchError, match="funnel mismatch in segment 'SMB'"):
        load_posterior(path, crm=dataclasses.replace(crm, funnels=funnels))


def test_missing_or_foreign_file(tmp_path):
    with pytest.raises(MissingFileError):
        load_posterior(tmp_path / "nope.nc")
    bad = tmp_path / "bad.nc"
    bad.write_text("not netcdf")
    with pytest.raises(DataError, match="cannot read a saved posterior"):
        load_posterior(bad)
