"""funnel_lab.charts: altair charts drawn from the package's tidy tables.

Dependency rule: altair, pandas and numpy only; charts never compute statistics (the model,
forecast and reports hand them finished tables) and never import the model or the forecast.
"""

from funnel_lab.charts._common import enable_renderer
from funnel_lab.charts.forecast import (
    fan_chart,
    monthly_chart,
    scenario_explorer,
    split_chart,
    top_deals_chart,
)
from funnel_lab.charts.funnel import (
    flows_chart,
    funnel_chart,
    owners_chart,
    segments_chart,
    stage_counts_chart,
    stale_deals_chart,
    time_in_stage_chart,
)

__all__ = [
    "enable_renderer",
    "fan_chart",
    "flows_chart",
    "funnel_chart",
    "monthly_chart",
    "owners_chart",
    "scenario_explorer",
    "segments_chart",
    "split_chart",
    "stage_counts_chart",
    "stale_deals_chart",
    "time_in_stage_chart",
    "top_deals_chart",
]
