"""The ``funnel-lab forecast`` command: read the CRM, fit (or load a posterior), forecast, print.

Steps: :func:`funnel_lab.crm.read.read_crm` -> :func:`funnel_lab.model.fit` with the defaults
of ``funnel-lab fit`` (conjugate; age bands and recency chosen by the held-out check), or
:func:`funnel_lab.model.persist.load_posterior` for ``--posterior`` ->
:func:`funnel_lab.forecast.forecast` -> one JSON document (``--json``) or a short summary.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd

from funnel_lab.forecast.api import Forecast, forecast

__all__ = ["format_forecast", "run_forecast_command"]

log = logging.getLogger(__name__)


def run_forecast_command(args: argparse.Namespace) -> int:
    """``funnel-lab forecast``: returns the exit status (0).

    ``args`` is the namespace parsed by :func:`funnel_lab.cli.build_parser`.

    Examples
    --------
    >>> from funnel_lab.cli import main
    >>> main(["forecast", "--horizon-weeks", "13", "--json"])  # doctest: +SKIP
    0
    """
    from funnel_lab.cli import emit_json
    from funnel_lab.crm.read import read_crm
    from funnel_lab.model import fit
    from funnel_lab.model.persist import load_posterior

    if getattr(args, "ci_prob", None) not in (None, 0.9):
        log.info("--ci-prob is not used by forecast: it always reports p10, p50, p90")
    rng = np.random.default_rng(args.seed)
    crm = read_crm(args.data, as_of=args.as_of, cold_after_days=args.cold_after_days)
    if args.posterior is not None:
        post = load_posterior(args.posterior, crm=crm)
        log.info("posterior loaded from %s (%d draws)", args.posterior, post.n_draws)
    else:
        from funnel_lab.model.cli_fit import parse_age_bands, parse_half_life

        post = fit(crm, draws=args.draws, random_seed=rng,
                   band_edges=parse_age_bands(getattr(args, "age_bands", "auto")),
                   half_life_weeks=parse_half_life(getattr(args, "half_life_weeks", "auto")))
        log.info("fitted the conjugate posterior (%d draws) at as_of %s with %s", args.draws,
                 crm.as_of, {k: post.settings[k] for k in ("band_edges", "half_life_weeks")})
    fc = forecast(post, crm, horizon_weeks=args.horizon_weeks, draws=args.draws,
                  lead_inflow=args.lead_inflow, leads_per_week=args.leads_per_week,
                  random_seed=rng)
    if args.json:
        emit_json({"data": crm.source, **fc.to_dict()})
    else:
        print(format_forecast(fc))
    return 0


def _moment(ts) -> str:
    """``2026-11-29 (end of day)`` for an end-of-day ``as_of``, else the timestamp."""
    if ts == ts.normalize() + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1):
        return f"{ts:%Y-%m-%d} (end of day)"
    return str(ts)


def format_forecast(fc: Forecast) -> str:
    """A short readable summary: per segment, cumulative wins and revenue at a few weeks,
    the monthly table and the open deals most likely to be won within four weeks.

    Examples
    --------
    >>> print(format_forecast(forecast(post, crm, random_seed=1)))  # doctest: +SKIP
    """
    lines = [f"Forecast from as_of {_moment(fc.as_of)} over {fc.horizon_weeks} weeks "
             f"({fc.settings['draws']} draws; p10-p90 is an 80% interval)"]
    for seg in fc.wins["segment"].unique():
        w = fc.wins[fc.wins["segment"] == seg]
        r = fc.revenue[fc.revenue["segment"] == seg]
        lines += ["", f"Segment {seg}: cumulative wins and revenue",
                  f"  {'week_end':<12}{'wins':>8}{'p10-p90':>14}{'revenue':>14}"
                  f"{'p10-p90':>26}{'from new leads':>16}"]
        picks = sorted({0, len(w) // 2, len(w) - 1} | set(range(3, len(w), 4)))
        for i in picks:
            a, b = w.iloc[i], r.iloc[i]
            lines.append(
                f"  {a.week_end:%Y-%m-%d}  {a['mean']:>8.1f}{a.p10:>7.0f}-{a.p90:<6.0f}"
                f"{b['mean']:>14,.0f}{b.p10:>13,.0f}-{b.p90:<12,.0f}{b.from_new_mean:>16,.0f}")
        m = fc.monthly[fc.monthly["segment"] == seg]
        lines += ["", f"  {'month':<10}{'weeks':>6}{'wins':>8}{'revenue':>14}{'p10-p90':>26}"]
        for row in m.itertuples():
            lines.append(f"  {row.month:<10}{row.n_weeks:>6}{row.wins_mean:>8.1f}"
                         f"{row.revenue_mean:>14,.0f}{row.revenue_p10:>13,.0f}-"
                         f"{row.revenue_p90:<12,.0f}")
    lines += ["", "(a month adds the weeks whose week_end falls in it)", "",
              "Open deals most likely to be won within 4 weeks"]
    top = fc.deals.head(10)
    lines.append(f"  {'deal_id':<14}{'segment':<12}{'stage':<16}{'amount':>12}"
                 f"{'p_win_4w':>10}{'p_win_13w':>10}")
    for d in top.itertuples():
        lines.append(f"  {str(d.deal_id)[:13]:<14}{str(d.segment)[:11]:<12}"
                     f"{str(d.stage)[:15]:<16}{d.amount:>12,.0f}{d.p_win_4w:>10.0%}"
                     f"{d.p_win_13w:>10.0%}")
    for note in fc.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)
