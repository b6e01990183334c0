"""Calibration of the pipeline forecast on known truth: do realised wins fall in the 80% interval?

For each seed: simulate a small CRM with 13 future weeks (``funnel_lab.simulate.small_settings``
without owner effects), fit the conjugate model at ``as_of``, forecast 13 weeks, and count the
deals actually won in those 13 weeks (the simulator's future CRM). Per segment and CRM, one
check: is the realised count inside the forecast's [p10, p90]? The coverage is compared with
the 99% binomial band around 80% for that many checks.

Variants:

* ``plain``: no stale deals, no drift; a plain fit (no age bands, no recency).
* ``stale+drift``: stale deals and drift switched on in the simulation; the fit uses the
  simulator's age bands ``(0, 4, 13)`` and a fixed 13-week recency half-life.
* ``stale+drift auto``: the same CRMs, fitted with ``band_edges="auto"`` and
  ``half_life_weeks="auto"`` (the held-out choice of ``funnel_lab.model.selection``), the
  defaults of ``funnel-lab fit`` and ``funnel-lab forecast``: what users actually get.
* ``stale+drift oracle`` (not run by default): the same CRMs forecast with the simulator's
  true rates, arrivals and entry stages at ``as_of`` (no estimation error, no parameter
  uncertainty): separates the forecast engine from the estimation of the rates.

    .venv/bin/python benchmarks/forecast_calibration.py --seeds 150 [--draws 500] [--json]
    .venv/bin/python benchmarks/forecast_calibration.py --variants "stale+drift oracle"
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import numpy as np
import pandas as pd
from scipy.stats import binom

from funnel_lab.forecast import forecast
from funnel_lab.model import fit
from funnel_lab.simulate import simulate_crm, small_settings

HALF_LIFE_WEEKS = 13.0
VARIANTS = ("plain", "stale+drift", "stale+drift auto", "stale+drift oracle")
DEFAULT_VARIANTS = "plain,stale+drift,stale+drift auto"


def realised_wins(sim, created_by_as_of: bool = False) -> dict[str, int]:
    """Deals won in (as_of, as_of + future weeks], per segment, from the future CRM.

    With ``created_by_as_of``, only the deals of today's pipeline (created by ``as_of``).
    """
    fut = sim.future
    ev = fut.events.merge(fut.deals[["deal_id", "segment", "created_at"]], on="deal_id")
    if created_by_as_of:
        ev = ev[ev["created_at"] <= sim.crm.as_of]
    out = {}
    for seg, f in fut.funnels.items():
        sel = (ev["segment"] == seg) & (ev["stage"] == f.won) & (ev["entered_at"] > sim.crm.as_of)
        out[seg] = int(sel.sum())
    return out


def true_posterior(post, settings):
    """``post`` with every draw replaced by the simulator's rates, arrivals and entry at as_of.

    Drift ends at ``as_of`` (its multiplier is 1 from then on), so the band rates of the
    settings are the rates of the forecast horizon. ``post`` must have the simulator's bands.
    """
    for seg, sp in post.segments.items():
        rates = settings.band_rates(seg)
        if rates.shape[0] != sp.rates.shape[2]:
            raise ValueError(f"{seg}: posterior has {sp.rates.shape[2]} bands, "
                             f"truth {rates.shape[0]}")
        sp.rates[:] = rates[None, None]
        spec = settings.segments[seg]
        sp.arrivals[:] = spec.arrivals_per_week
        entry = spec.entry_probabilities()
        probs = np.array([entry.get(stage, 0.0) for stage in spec.stages])
        sp.entry_probs[:] = (probs / probs.sum())[None]
    return post


def check_one(seed: int, variant: str, draws: int, horizon: int = 13,
              amount_classes: int = 1) -> list[dict]:
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; choose from {VARIANTS}")
    stale = variant.startswith("stale+drift")
    settings = small_settings(future_weeks=horizon, owner_sd=0.0, stale=stale, drift=stale)
    sim = simulate_crm(settings, random_seed=seed)
    if variant == "stale+drift auto":
        fit_kwargs = {"band_edges": "auto", "half_life_weeks": "auto"}
    elif variant == "stale+drift oracle":
        fit_kwargs = {"band_edges": settings.band_edges()}
    else:
        fit_kwargs = {"band_edges": settings.band_edges(),
                      "half_life_weeks": HALF_LIFE_WEEKS if stale else None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = fit(sim.crm, draws=draws, random_seed=seed, **fit_kwargs)
        if variant == "stale+drift oracle":
            post = true_posterior(post, settings)
        fc = forecast(post, sim.crm, horizon_weeks=horizon, random_seed=seed,
                      amount_classes=amount_classes)
    real = realised_wins(sim)
    real_pipeline = realised_wins(sim, created_by_as_of=True)
    last = fc.wins[fc.wins["week"] == horizon].set_index("segment")
    rows = []
    for seg, n in real.items():
        r = last.loc[seg]
        rows.append({"variant": variant, "seed": seed, "segment": seg, "realised": n,
                     "realised_pipeline": real_pipeline[seg], "mean": r["mean"],
                     "from_pipeline_mean": r["from_pipeline_mean"],
                     "band_edges": str(tuple(post.settings["band_edges"])),
                     "half_life_weeks": post.settings["half_life_weeks"],
                     "p10": r["p10"], "p90": r["p90"],
                     "covered": bool(r["p10"] <= n <= r["p90"]),
                     "below": bool(n < r["p10"]), "above": bool(n > r["p90"])})
    return rows


def binomial_band(n: int, p: float = 0.8, level: float = 0.99) -> tuple[int, int]:
    """Counts of successes inside the central ``level`` band of Binomial(n, p)."""
    return int(binom.ppf((1 - level) / 2, n, p)), int(binom.isf((1 - level) / 2, n, p))


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    out = []
    for variant, g in rows.groupby("variant", sort=False):
        lo, hi = binomial_band(len(g))
        out.append({"variant": variant, "checks": len(g), "coverage": g["covered"].mean(),
                    "below_p10": g["below"].mean(), "above_p90": g["above"].mean(),
                    "band_lower": lo / len(g), "band_upper": hi / len(g),
                    "inside_band": bool(lo <= g["covered"].sum() <= hi),
                    # realised - forecast mean, in wins per check: all, and today's pipeline
                    "bias": float(np.mean(g["realised"] - g["mean"])),
                    "bias_pipeline": float(np.mean(g["realised_pipeline"]
                                                   - g["from_pipeline_mean"]))})
    return pd.DataFrame(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--first-seed", type=int, default=5000)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--variants", default=DEFAULT_VARIANTS,
                        help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    rows = []
    t0 = time.perf_counter()
    for variant in args.variants.split(","):
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            rows += check_one(seed, variant, args.draws)
    rows = pd.DataFrame(rows)
    summary = summarise(rows)
    seconds = time.perf_counter() - t0
    if args.json:
        json.dump({"seconds": seconds, "draws": args.draws,
                   "summary": summary.to_dict(orient="records")}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(summary.to_string(index=False))
        print(f"\n{args.seeds} CRMs per variant, {args.draws} draws, {seconds:.0f} s; coverage "
              "counts p10 <= realised <= p90 (inclusive: wins are whole numbers)")
        print("bias: mean realised - forecast mean (wins per check); bias_pipeline: the same "
              "for the deals open at as_of")
        chosen = rows.drop_duplicates(["variant", "seed"]).fillna({"half_life_weeks": 0.0})
        print("settings fitted (half_life_weeks 0 = no recency):")
        print(chosen.groupby(["variant", "band_edges", "half_life_weeks"], sort=False)
              .size().rename("crms").to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
