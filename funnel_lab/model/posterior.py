"""The fitted posterior: the one object the model hands to forecasts, plans and reports.

Shapes are fixed here so that the model (which fills them) and the forecast (which reads
them) agree. For a segment with funnel states ``S = funnel.states`` (open stages in order,
then Won, then Lost; ``n_states = len(S)``):

``rates``          (draw, group, band, from_state, to_state), events per deal-week of time at
                   risk; zero on the diagonal, zero out of Won, zero for impossible moves.
``band_edges``     age-band lower edges in whole weeks of time already spent in the state,
                   starting at 0: ``(0,)`` means no age bands; ``(0, 4, 13)`` means bands
                   [0, 4), [4, 13), [13, inf) weeks. Lost has bands too (time since lost), so
                   re-engagement can fade.
``groups``         ``("all",)`` for a segment-level fit, else owner or team names
                   (``group_by`` says which).
``arrivals``       (draw,) new deals per week for the segment at ``as_of``.
``group_share``    (draw, group) share of new deals that go to each group (ones for "all").
``entry_probs``    (draw, n_open) the open stage at which new deals enter.
``amount_mu``, ``amount_sigma``  (draw,) log-normal parameters of amounts of future deals.
``sources``, ``source_arrivals``  optional: source names and (draw, source) new deals per week
                   from each source (empty when the deals have no ``source`` column).

Dependency rule: numpy, pandas and xarray only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from funnel_lab.crm.funnel import Funnel

__all__ = ["Posterior", "SegmentPosterior"]


@dataclass
class SegmentPosterior:
    """Posterior draws of one segment (shapes in the module docstring)."""

    funnel: Funnel
    rates: np.ndarray
    arrivals: np.ndarray
    entry_probs: np.ndarray
    amount_mu: np.ndarray
    amount_sigma: np.ndarray
    groups: tuple[str, ...] = ("all",)
    group_by: str | None = None
    band_edges: tuple[int, ...] = (0,)
    group_share: np.ndarray | None = None
    sources: tuple[str, ...] = ()
    source_arrivals: np.ndarray | None = None

    def __post_init__(self) -> None:
        d, g, b, s, s2 = self.rates.shape
        if (s, s2) != (len(self.funnel.states),) * 2:
            raise ValueError(f"rates have {s}x{s2} states, funnel has {len(self.funnel.states)}")
        if g != len(self.groups) or b != len(self.band_edges):
            raise ValueError("rates' group/band axes do not match groups/band_edges")
        if self.group_share is None:
            self.group_share = np.full((d, g), 1.0 / g)
        if self.source_arrivals is None:
            self.source_arrivals = np.zeros((d, len(self.sources)))

    @property
    def n_draws(self) -> int:
        return self.rates.shape[0]

    @property
    def segment(self) -> str:
        return self.funnel.segment


@dataclass
class Posterior:
    """Posterior draws for every segment of a CRM at ``as_of``.

    ``settings`` records what was chosen (priors, age bands, recency, group_by, ...);
    ``fingerprint`` is :meth:`funnel_lab.crm.CRM.fingerprint` of the data it was fitted on;
    ``diagnostics`` holds R-hat / ESS / divergences for sampled (pooled) fits.
    """

    as_of: pd.Timestamp
    method: str
    segments: dict[str, SegmentPosterior]
    fingerprint: str
    settings: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] | None = None

    @property
    def n_draws(self) -> int:
        return min(sp.n_draws for sp in self.segments.values())
