"""The ``funnel-lab fit`` command: read the CRM, fit, summarise, optionally save.

Steps: parse the age-band and half-life options (``auto`` asks the held-out check of
:mod:`funnel_lab.model.selection`) -> :func:`funnel_lab.crm.read.read_crm` ->
:func:`funnel_lab.model.fit` -> :func:`funnel_lab.model.summarize` -> save (``--out``) ->
print one JSON document (``--json``) or a short table per segment.
"""

from __future__ import annotations

import argparse
import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from funnel_lab.errors import ParameterError
from funnel_lab.model.derived import summarize
from funnel_lab.model.fitting import fit, resolve_auto_settings
from funnel_lab.model.posterior import Posterior

__all__ = ["fit_document", "format_summary", "run_fit_command"]

log = logging.getLogger(__name__)

AUTO = "auto"


def parse_age_bands(text: str | None) -> tuple[int, ...] | str:
    if text is None or text.strip().lower() in ("", "none"):
        return (0,)
    if text.strip().lower() == AUTO:
        return AUTO
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise ParameterError(
            f"--age-bands: expected whole weeks like 0,4,13, 'auto' or 'none'; got {text!r}"
        ) from None


def parse_half_life(text: Any) -> float | None | str:
    if text is None or str(text).strip().lower() in ("", "none"):
        return None
    if str(text).strip().lower() == AUTO:
        return AUTO
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ParameterError(
            f"--half-life-weeks: expected a number of weeks > 0, 'auto' or 'none'; got {text!r}"
        )
    return value


def fit_document(post: Posterior, tables: dict[str, pd.DataFrame], ci_prob: float,
                 **extra: Any) -> dict[str, Any]:
    """The ``--json`` document: settings and every summary table (rows as records)."""
    return {
        "as_of": post.as_of,
        "ci_prob": ci_prob,
        "method": post.method,
        "fingerprint": post.fingerprint,
        "draws": post.n_draws,
        "settings": post.settings,
        "diagnostics": post.diagnostics,
        **extra,
        **tables,
    }


def format_summary(post: Posterior, tables: dict[str, pd.DataFrame], ci_prob: float) -> str:
    """A short readable table per segment (stage: conversion, win probability, days)."""
    pct = f"{ci_prob:.0%}"
    lines = [f"Posterior at as_of {post.as_of} ({post.method}, {post.n_draws} draws, "
             f"{pct} intervals)"]
    gcol = post.settings.get("group_by")
    for seg in sorted(post.segments):
        lines.append("")
        arr = tables["arrivals"].set_index("segment").loc[seg]
        lines.append(f"Segment {seg}: {arr['per_week_mean']:.1f} new deals a week "
                     f"[{arr['lower']:.1f}, {arr['upper']:.1f}]")
        conv = tables["conversion"][tables["conversion"]["segment"] == seg]
        win = tables["win_probability"][tables["win_probability"]["segment"] == seg]
        days = tables["time_in_stage"][tables["time_in_stage"]["segment"] == seg]
        head = f"  {'stage':<16}{'conversion':>22}{'win probability':>22}{'days in stage':>24}"
        if gcol:
            head = f"  {gcol:<14}" + head[2:]
        lines.append(head)
        for c, w, d in zip(conv.itertuples(), win.itertuples(), days.itertuples(),
                           strict=True):
            who = f"  {getattr(c, gcol)[:13]:<14}" if gcol else "  "
            lines.append(
                f"{who}{c.stage[:15]:<16}"
                f"{c.mean:>8.0%} [{c.lower:>4.0%}, {c.upper:>4.0%}]"
                f"{w.mean:>8.0%} [{w.lower:>4.0%}, {w.upper:>4.0%}]"
                + (f"{d.mean_days:>10.1f} [{d.lower:>5.1f}, {d.upper:>5.1f}]"
                   if math.isfinite(d.mean_days) else f"{'no exit observed':>24}")
            )
    return "\n".join(lines)


def run_fit_command(args: argparse.Namespace) -> int:
    """``funnel-lab fit``: returns the exit status (0)."""
    from funnel_lab.cli import emit_json
    from funnel_lab.crm.read import read_crm
    from funnel_lab.model.derived import _check_ci_prob
    from funnel_lab.model.persist import save_posterior

    ci_prob = _check_ci_prob(args.ci_prob)
    edges = parse_age_bands(getattr(args, "age_bands", None))
    half_life = parse_half_life(getattr(args, "half_life_weeks", None))

    crm = read_crm(args.data, as_of=args.as_of, cold_after_days=args.cold_after_days)
    pooled_kwargs = {"cores": args.cores} if args.method == "pooled" else {}
    # Resolve "auto" here (as fit() would, on the same generator, so the numbers are the
    # same) to keep the held-out scores for the model comparison instead of scoring twice.
    rng = np.random.default_rng(args.seed)
    edges, half_life, auto = resolve_auto_settings(crm, edges, half_life, rng)
    post = fit(crm, method=args.method, by=args.by, draws=args.draws, random_seed=rng,
               band_edges=edges, half_life_weeks=half_life, **pooled_kwargs)
    if auto is not None:
        post.settings["auto"] = {k: v for k, v in auto.items() if k != "table"}
    edges = tuple(post.settings["band_edges"])
    tables = summarize(post, ci_prob=ci_prob)
    saved = None
    if args.out is not None:
        saved = save_posterior(post, args.out)

    if args.json:
        # --- issue 5 (added by the pooled/selection helper): the held-out model comparison,
        # funnel_lab.model.selection.report_comparison; {"skipped": reason} on short CRMs.
        from funnel_lab.model.selection import report_comparison

        comparison = report_comparison(crm, edges, half_life, random_seed=args.seed,
                                       table=None if auto is None else auto["table"])
        # --- end issue 5
        emit_json(fit_document(post, tables, ci_prob, data=crm.source, saved=saved,
                               model_comparison=comparison))
    else:
        print(format_summary(post, tables, ci_prob))
        if saved is not None:
            print(f"\nPosterior saved to {saved}")
    return 0
