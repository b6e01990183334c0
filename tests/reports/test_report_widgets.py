"""The JupyterLab explorer, without a browser: setting a control's value recomputes and redraws."""

from __future__ import annotations

import pytest

from funnel_lab.errors import ParameterError


@pytest.fixture(scope="module")
def fitted():
    from funnel_lab.model import fit
    from funnel_lab.simulate import simulate_crm, small_settings

    crm = simulate_crm(small_settings(), random_seed=5).crm
    return fit(crm, draws=60, random_seed=5), crm


def test_controls_recompute_the_forecast_and_redraw(fitted):
    from funnel_lab.reports import forecast_explorer

    post, crm = fitted
    ex = forecast_explorer(post, crm, horizon_weeks=6, draws=60, random_seed=1)
    assert ex.updates == 1
    assert ex.forecast.horizon_weeks == 6
    first_revenue = ex.forecast.revenue["mean"].iloc[-1]

    ex.horizon.value = 9
    assert ex.updates == 2 and ex.forecast.horizon_weeks == 9
    assert ex.forecast.wins["week"].max() == 9

    ex.lead_inflow.value = 2.0
    assert ex.updates == 3 and ex.forecast.settings["lead_inflow"] == 2.0
    # More leads, more expected revenue from new deals at the same horizon.
    seg = crm.segments[0]
    rev = ex.forecast.revenue
    new_mean = rev.loc[(rev.segment == seg) & (rev.week == 9), "from_new_mean"].item()
    ex.lead_inflow.value = 0.0
    rev0 = ex.forecast.revenue
    assert rev0.loc[(rev0.segment == seg) & (rev0.week == 9), "from_new_mean"].item() == 0
    assert new_mean > 0
    assert first_revenue >= 0

    # The segment filter redraws without recomputing.
    n = ex.updates
    ex.segment.value = seg
    assert ex.updates == n
    spec = ex.chart.to_dict()
    segments = {r["segment"] for rows in spec["datasets"].values() for r in rows
                if "segment" in r}
    assert segments == {seg}
    ex.segment.value = None
    spec = ex.chart.to_dict()
    segments = {r["segment"] for rows in spec["datasets"].values() for r in rows
                if "segment" in r}
    assert segments == set(crm.segments)


def test_unknown_segment_is_refused(fitted):
    from funnel_lab.reports import forecast_explorer

    post, crm = fitted
    with pytest.raises(ParameterError, match="segments"):
        forecast_explorer(post, crm, segment="Nope")
