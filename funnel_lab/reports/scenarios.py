"""A precomputed grid of forecast scenarios for the kernel-free explorer of a report.

Dependency rule: calls :func:`funnel_lab.forecast.forecast`; never imports charts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from funnel_lab.errors import ParameterError

__all__ = ["DEFAULT_LEAD_INFLOWS", "scenario_grid"]

log = logging.getLogger(__name__)

#: Lead inflow multipliers of the default grid (half to one and a half of the fitted inflow).
DEFAULT_LEAD_INFLOWS = (0.5, 0.75, 1.0, 1.25, 1.5)


def scenario_grid(posterior: Any, crm: Any, lead_inflows: Sequence[float] = DEFAULT_LEAD_INFLOWS,
                  horizon_weeks: int = 13, draws: int | None = 300,
                  random_seed: int = 0) -> pd.DataFrame:
    """Cumulative wins and revenue, week by week, for each lead inflow multiplier.

    One forecast per multiplier, at the longest horizon (shorter horizons are its first
    weeks). Every forecast gets the same integer seed, so scenarios differ by the inflow, not
    by Monte Carlo noise alone.

    Parameters
    ----------
    posterior, crm
        As for :func:`funnel_lab.forecast.forecast`.
    lead_inflows : sequence of float
        Multipliers of the fitted inflow of new deals, evenly spaced (the explorer's slider
        steps through them).
    horizon_weeks : int
        Weeks forecast.
    draws : int, optional
        Monte Carlo draws per scenario (None: every posterior draw).
    random_seed : int
        The seed of every scenario.

    Returns
    -------
    DataFrame
        ``lead_inflow, week, week_end, segment, measure ("wins" | "revenue"), mean, p10, p50,
        p90, from_pipeline_mean, from_new_mean``.

    Examples
    --------
    >>> grid = scenario_grid(post, crm, horizon_weeks=8, random_seed=1)   # doctest: +SKIP
    >>> sorted(grid.lead_inflow.unique())                                 # doctest: +SKIP
    [0.5, 0.75, 1.0, 1.25, 1.5]
    """
    from funnel_lab.forecast import forecast

    values = np.sort(np.asarray(list(lead_inflows), dtype=float))
    if values.size == 0 or (values < 0).any():
        raise ParameterError(f"lead_inflows must be numbers >= 0, got {list(lead_inflows)}")
    if values.size > 2 and not np.allclose(np.diff(values), np.diff(values)[0]):
        raise ParameterError(f"lead_inflows must be evenly spaced (a slider steps through "
                             f"them), got {values.tolist()}")
    if isinstance(random_seed, np.random.Generator):
        raise ParameterError("scenario_grid needs an integer random_seed (the same for every "
                             "scenario)")
    frames = []
    for inflow in values:
        fc = forecast(posterior, crm, horizon_weeks=horizon_weeks, draws=draws,
                      lead_inflow=float(inflow), random_seed=random_seed)
        for measure, table in (("wins", fc.wins), ("revenue", fc.revenue)):
            frames.append(table.assign(lead_inflow=float(inflow), measure=measure))
        log.info("scenario lead_inflow=%s done", inflow)
    grid = pd.concat(frames, ignore_index=True)
    first = ["lead_inflow", "week", "week_end", "segment", "measure"]
    return grid[first + [c for c in grid.columns if c not in first]]
