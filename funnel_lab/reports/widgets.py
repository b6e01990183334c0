"""Live what-if controls for JupyterLab: horizon, segment and lead inflow redraw the forecast.

Widget state does not survive papermill, so rendered reports show the kernel-free scenario
explorer (:func:`funnel_lab.charts.scenario_explorer`) instead; this module is for a person at a
kernel. Everything it draws comes from :func:`funnel_lab.forecast.forecast` and the chart
functions; the explorer keeps its last forecast and chart as attributes, so it can be tested
without a browser by setting a control's ``.value``.

Dependency rule: ipywidgets, the forecast and the charts.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from funnel_lab.errors import ParameterError

__all__ = ["REPORT_ENV", "ForecastExplorer", "forecast_explorer"]

#: Set (to "1") in the kernel's environment while ``funnel-lab report`` renders a notebook.
REPORT_ENV = "FUNNEL_LAB_REPORT"

log = logging.getLogger(__name__)

_ALL = "all segments"


class ForecastExplorer:
    """Controls (horizon, segment, lead inflow) and the forecast they produce.

    Attributes
    ----------
    horizon, segment, lead_inflow : ipywidgets controls
        Changing ``.value`` recomputes the forecast and redraws.
    output : ipywidgets.Output
        Where the charts and the summary are drawn.
    widget : ipywidgets.VBox
        Controls above the output (what the notebook displays).
    forecast : Forecast
        The latest forecast (all segments; the chart filters by segment).
    chart : altair chart
        The latest chart.
    updates : int
        How many times the forecast was computed.
    """

    def __init__(self, posterior: Any, crm: Any, horizon_weeks: int = 13,
                 segment: str | None = None, lead_inflow: float = 1.0, draws: int | None = 300,
                 random_seed: int = 0, max_horizon_weeks: int = 52) -> None:
        import ipywidgets as w

        segments = list(crm.segments)
        if segment is not None and segment not in segments:
            raise ParameterError(f"segment {segment!r} is not in the CRM; segments: {segments}")
        self._posterior = posterior
        self._crm = crm
        self._draws = draws
        self._seed = random_seed
        self.horizon = w.IntSlider(value=horizon_weeks, min=1,
                                   max=max(max_horizon_weeks, horizon_weeks), step=1,
                                   description="horizon (weeks)", continuous_update=False,
                                   style={"description_width": "initial"})
        self.segment = w.Dropdown(options=[(_ALL, None)] + [(s, s) for s in segments],
                                  value=segment, description="segment")
        self.lead_inflow = w.FloatSlider(value=lead_inflow, min=0.0, max=3.0, step=0.05,
                                         description="lead inflow x", continuous_update=False,
                                         style={"description_width": "initial"})
        self.output = w.Output()
        self.widget = w.VBox([w.HBox([self.horizon, self.segment, self.lead_inflow]),
                              self.output])
        self.forecast: Any = None
        self.chart: Any = None
        self.updates = 0
        for control in (self.horizon, self.lead_inflow):
            control.observe(self._recompute, names="value")
        self.segment.observe(self._redraw, names="value")
        self._recompute()

    def _recompute(self, change: Any = None) -> None:
        from funnel_lab.forecast import forecast

        # One thread: threaded forecasts in the cell that displays the widget hung the kernel
        # under papermill (after earlier threaded forecasts); the numbers do not depend on it.
        self.forecast = forecast(self._posterior, self._crm, horizon_weeks=self.horizon.value,
                                 draws=self._draws, lead_inflow=float(self.lead_inflow.value),
                                 random_seed=self._seed, threads=1)
        self.updates += 1
        log.info("explorer: forecast %s recomputed (horizon %s, lead inflow %s)", self.updates,
                 self.horizon.value, self.lead_inflow.value)
        self._redraw()

    def _redraw(self, change: Any = None) -> None:
        import altair as alt
        from IPython.display import HTML

        from funnel_lab.charts import fan_chart, split_chart
        from funnel_lab.reports.tables import forecast_summary, open_stage_rows

        fc = self.forecast
        seg = self.segment.value

        def pick(table: Any) -> Any:
            return table if seg is None else table[table["segment"] == seg]

        weekly = open_stage_rows(pick(fc.weekly), self._crm)
        self.chart = alt.vconcat(fan_chart(weekly), split_chart(pick(fc.revenue)))
        summary = forecast_summary(pick(fc.wins), pick(fc.revenue), self.horizon.value,
                                   pick(fc.deals))
        # Outputs are set on the widget itself rather than captured with ``with output:``,
        # which hung notebook runs under papermill (nbclient's output-widget capture).
        self.output.outputs = ()
        self.output.append_display_data(self.chart)
        self.output.append_display_data(HTML(summary))

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        if os.environ.get(REPORT_ENV):
            # Rendering a report: widget state would not survive, so say where it lives.
            display(HTML('<p class="funnel-lab-note">Live controls (horizon, segment, lead '
                         "inflow) appear when this notebook runs in JupyterLab.</p>"))
            return
        display(self.widget)


def forecast_explorer(posterior: Any, crm: Any, **kwargs: Any) -> ForecastExplorer:
    """Build a :class:`ForecastExplorer` (display it as the last expression of a cell).

    Examples
    --------
    >>> ex = forecast_explorer(post, crm, horizon_weeks=8)   # doctest: +SKIP
    >>> ex.lead_inflow.value = 1.5                           # doctest: +SKIP
    >>> ex.forecast.settings["lead_inflow"]                  # doctest: +SKIP
    1.5
    """
    return ForecastExplorer(posterior, crm, **kwargs)
