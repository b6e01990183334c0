"""``funnel-lab simulate``: settings from the demo, a TOML file and overrides; write; report."""

from __future__ import annotations

import argparse
import logging
import time

from funnel_lab.simulate.settings import SimulationSettings, demo_settings
from funnel_lab.simulate.simulator import simulate_crm

__all__ = ["run_simulate_command", "settings_from_args"]

log = logging.getLogger(__name__)


def settings_from_args(args: argparse.Namespace) -> SimulationSettings:
    """Settings of a command line, in this order: the demo settings, ``--config FILE.toml``
    (keys it gives replace the demo's; ``segments`` and ``teams`` as whole tables), then
    ``--weeks`` and ``--future-weeks``, then every ``--set key=value`` in turn.

    >>> ns = argparse.Namespace(config=None, weeks=8, future_weeks=None, overrides=["stale=false"])
    >>> s = settings_from_args(ns)
    >>> s.weeks, s.stale, s.drift
    (8, False, True)
    """
    settings = demo_settings()
    if getattr(args, "config", None) is not None:
        settings = SimulationSettings.from_toml(args.config, base=settings)
        log.info("simulation settings read from %s", args.config)
    top = {k: getattr(args, k) for k in ("weeks", "future_weeks")
           if getattr(args, k, None) is not None}
    if top:
        settings = settings.replace(**top)
    if getattr(args, "overrides", None):
        settings = settings.with_overrides(args.overrides)
    return settings


def run_simulate_command(args: argparse.Namespace) -> int:
    """Simulate, write the CRM folder to ``args.out``, print a summary (or one JSON document)."""
    from funnel_lab.cli import emit_json

    settings = settings_from_args(args)
    started = time.perf_counter()
    sim = simulate_crm(settings, random_seed=args.seed)
    out = sim.write(args.out)
    seconds = time.perf_counter() - started
    doc = {"out": str(out), **sim.summary(), "seconds": round(seconds, 3)}
    if getattr(args, "json", False):
        emit_json(doc)
        return 0
    print(f"Simulated CRM written to {out} (seed {args.seed}, as_of {doc['as_of']}, "
          f"{seconds:.1f} s)")
    print(f"  {doc['deals']} deals, {doc['events']} events")
    for seg, c in doc["segments"].items():
        print(f"  {seg}: {c['deals']} deals, {c['open']} open, {c['won']} won, "
              f"{c['lost']} lost")
    if "future" in doc:
        f = doc["future"]
        print(f"  future/ (as_of {f['as_of']}): {f['deals']} deals, {f['events']} events")
    return 0
