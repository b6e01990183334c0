"""Hand-made posteriors and CRMs for the forecast tests (no model fit, no simulator)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from funnel_lab.crm.funnel import Funnel
from funnel_lab.crm.read import crm_from_frames
from funnel_lab.forecast.engine import EngineInputs, lognormal_bin_means
from funnel_lab.forecast.transition import one_week
from funnel_lab.model.posterior import Posterior, SegmentPosterior

FUNNEL = Funnel("SMB", ("Lead", "Demo", "Proposal"))
LEAD, DEMO, PROPOSAL, WON, LOST = range(5)

# rates per week of a typical deal: forward, back, lost, won and re-engagement
BASE_MOVES = {
    (LEAD, DEMO): 0.5, (LEAD, LOST): 0.3,
    (DEMO, PROPOSAL): 0.4, (DEMO, LEAD): 0.1, (DEMO, LOST): 0.2,
    (PROPOSAL, WON): 0.35, (PROPOSAL, DEMO): 0.1, (PROPOSAL, LOST): 0.25,
    (LOST, LEAD): 0.05,
}


def toy_rates(n_draws: int, rng: np.random.Generator, n_groups: int = 1,
              band_multipliers: tuple[float, ...] = (1.0,), spread: float = 0.2) -> np.ndarray:
    """(D, G, B, 5, 5) rates: the base moves times log-normal noise per draw and group."""
    rates = np.zeros((n_draws, n_groups, len(band_multipliers), 5, 5))
    for (i, j), r in BASE_MOVES.items():
        noise = np.exp(spread * rng.standard_normal((n_draws, n_groups)))
        for b, m in enumerate(band_multipliers):
            rates[:, :, b, i, j] = r * noise * (m if j != LOST else 1.0 / m)
    return rates


def toy_segment_posterior(n_draws: int = 400, seed: int = 0, n_groups: int = 1,
                          band_edges: tuple[int, ...] = (0,),
                          band_multipliers: tuple[float, ...] | None = None,
                          arrivals: float = 6.0) -> SegmentPosterior:
    rng = np.random.default_rng(seed)
    mult = band_multipliers or tuple(0.7**b for b in range(len(band_edges)))
    groups = ("all",) if n_groups == 1 else tuple(f"owner{g}" for g in range(n_groups))
    share = rng.dirichlet(np.full(n_groups, 20.0), n_draws)
    return SegmentPosterior(
        funnel=FUNNEL,
        rates=toy_rates(n_draws, rng, n_groups, mult),
        arrivals=arrivals * np.exp(0.1 * rng.standard_normal(n_draws)),
        entry_probs=rng.dirichlet([30.0, 8.0, 2.0], n_draws),
        amount_mu=np.log(1000.0) + 0.05 * rng.standard_normal(n_draws),
        amount_sigma=np.full(n_draws, 0.8),
        groups=groups, group_by=None if n_groups == 1 else "owner",
        band_edges=band_edges, group_share=share,
    )


def toy_inputs(sp: SegmentPosterior, init: np.ndarray, class_amounts=None,
               leads_per_week: float | None = None, lead_inflow: float = 1.0) -> EngineInputs:
    """Engine inputs straight from a segment posterior and a cell table (G, S, A, K)."""
    w = one_week(sp.rates)
    avg = w.average[:, :, 0]
    landing = sp.group_share[:, :, None] * np.einsum("de,dges->dgs", sp.entry_probs,
                                                     avg[:, :, :FUNNEL.n_open])
    k = init.shape[-1]
    amounts = np.linspace(500.0, 5000.0, k) if class_amounts is None else class_amounts
    return EngineInputs(
        rates=sp.rates, band_edges=sp.band_edges, won=WON, init=init,
        class_amounts=np.asarray(amounts, dtype=float), landing=landing,
        arrival_rate=None if leads_per_week is not None else sp.arrivals * lead_inflow,
        leads_per_week=leads_per_week,
        new_amounts=lognormal_bin_means(sp.amount_mu, sp.amount_sigma, 10),
    )


def toy_init(n_groups: int = 1, n_ages: int = 1, n_classes: int = 3, seed: int = 1,
             scale: int = 40) -> np.ndarray:
    """Today's deals per cell, (G, 5, A, K); nothing in Won."""
    rng = np.random.default_rng(seed)
    init = rng.integers(0, scale, size=(n_groups, 5, n_ages, n_classes))
    init[:, WON] = 0
    return init.astype(np.int64)


def toy_posterior(sp: SegmentPosterior, as_of) -> Posterior:
    return Posterior(as_of=pd.Timestamp(as_of), method="conjugate", segments={"SMB": sp},
                     fingerprint="toy")


def toy_crm(n_deals: int = 120, seed: int = 2, as_of: str = "2026-03-31",
            owners: tuple[str, ...] = ("owner0", "owner1")):
    """A small CRM: open deals in every stage with various ages, a few lost and won deals."""
    rng = np.random.default_rng(seed)
    end = pd.Timestamp(as_of)
    deal_rows, event_rows = [], []
    for n in range(n_deals):
        did = f"D{n:04d}"
        created = end - pd.Timedelta(days=int(rng.integers(10, 200)))
        path = ["Lead"]
        final = rng.choice(["Lead", "Demo", "Proposal", "Lost", "Won"],
                           p=[0.3, 0.25, 0.2, 0.2, 0.05])
        if final in ("Demo", "Proposal"):
            path = ["Lead", "Demo"] + (["Proposal"] if final == "Proposal" else [])
        elif final in ("Lost", "Won"):
            path = ["Lead", "Demo", final]
        times = np.sort(rng.uniform(0, (end - created).days, len(path)))
        times[0] = 0.0
        amount = float(np.round(rng.lognormal(np.log(1000), 0.8), 2)) if n % 17 else np.nan
        deal_rows.append({"deal_id": did, "segment": "SMB", "owner": owners[n % len(owners)],
                          "team": "East", "amount": amount, "created_at": created})
        for stage, t in zip(path, times, strict=True):
            event_rows.append({"deal_id": did, "stage": stage,
                               "entered_at": created + pd.Timedelta(days=float(t))})
    return crm_from_frames(pd.DataFrame(deal_rows), pd.DataFrame(event_rows),
                           {"SMB": FUNNEL}, as_of=as_of)
