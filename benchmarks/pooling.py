"""Pooling pays: owner-level estimates of the pooled model against per-owner conjugate fits.

On simulated CRMs where salespeople differ (``owner_sd``) and each has few deals, compare
the posterior-mean win probability of every (owner, open stage) with the truth (truth.json
``owners``), for the pooled model (``fit_pooled``) and for separate conjugate fits per owner
with the same prior. Prints one row per seed and the mean, and exits 1 if pooling does not
lower the RMSE on average and on at least 4 of 5 seeds.

Run: ``PYTENSOR_FLAGS=base_compiledir=.cache/pytensor .venv/bin/python benchmarks/pooling.py``
(about 10-20 s per seed on 2 cores once PyMC's compile cache is warm).
"""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings

import numpy as np
import pandas as pd

from funnel_lab import markov
from funnel_lab.errors import SamplingWarning

#: Salespeople in the one-segment CRM, and its history: ~260 deals, ~17 per owner.
N_OWNERS = 15
WEEKS = 26
#: Owner log effects ~ Normal(0, OWNER_SD) multiply the progress rates.
OWNER_SD = 0.5
DRAWS, TUNE, CHAINS = 500, 500, 2


def pooling_settings():
    """A one-segment CRM (the small SMB funnel) split among many owners with few deals each."""
    from funnel_lab.simulate import small_settings
    from funnel_lab.simulate.settings import TeamSpec

    base = small_settings()
    owners = tuple(f"Owner{k:02d}" for k in range(N_OWNERS))
    return dataclasses.replace(
        base, segments={"SMB": base.segments["SMB"]}, teams={"Sales": TeamSpec(owners)},
        weeks=WEEKS, owner_sd=OWNER_SD,
    )


def owner_win_rmse(seed: int, cores: int = 2) -> dict[str, float]:
    """RMSE of owner-level win probabilities: pooled and separate conjugate fits, one CRM."""
    from funnel_lab.model.conjugate import rate_posterior
    from funnel_lab.model.pooled import fit_pooled
    from funnel_lab.model.stats import sufficient_statistics
    from funnel_lab.simulate import simulate_crm

    rng = np.random.default_rng(seed)
    sim = simulate_crm(pooling_settings(), random_seed=rng)
    stats = sufficient_statistics(sim.crm, by="owner")
    start = time.perf_counter()
    with warnings.catch_warnings():
        # Short chains: diagnostics are looked at in the pooled tests, not here.
        warnings.simplefilter("ignore", SamplingWarning)
        pooled, diag = fit_pooled(stats, draws=DRAWS, tune=TUNE, chains=CHAINS, cores=cores,
                                  random_seed=rng)
    seconds = time.perf_counter() - start

    err_pooled, err_conj, deals = [], [], []
    for seg, st in stats.items():
        n_open = st.funnel.n_open
        truth = sim.truth["segments"][seg]["owners"]
        conj = rate_posterior(st).draw(CHAINS * DRAWS, rng)
        for g, owner in enumerate(st.groups):
            if owner not in truth:
                continue
            true_win = np.array([truth[owner]["by_stage"][s]["win_probability"]
                                 for s in st.funnel.stages])
            win_p = markov.win_probability(pooled[seg][:, g, 0], n_open).mean(axis=0)
            win_c = markov.win_probability(conj[:, g, 0], n_open).mean(axis=0)
            err_pooled.append(win_p - true_win)
            err_conj.append(win_c - true_win)
            deals.append(int((sim.crm.deals["owner"] == owner).sum()))
    rmse = lambda e: float(np.sqrt(np.mean(np.square(np.concatenate(e)))))  # noqa: E731
    return {"seed": seed, "rmse_pooled": rmse(err_pooled), "rmse_conjugate": rmse(err_conj),
            "deals_per_owner": float(np.mean(deals)), "rhat_max": diag["rhat_max"],
            "seconds": seconds}


def main(seeds=range(1, 6)) -> int:
    rows = pd.DataFrame([owner_win_rmse(s) for s in seeds])
    rows["pooled_better"] = rows["rmse_pooled"] < rows["rmse_conjugate"]
    with pd.option_context("display.width", 120):
        print(rows.to_string(index=False))
    print(f"mean RMSE pooled {rows['rmse_pooled'].mean():.4f}, "
          f"conjugate {rows['rmse_conjugate'].mean():.4f}; pooled better on "
          f"{int(rows['pooled_better'].sum())} of {len(rows)} seeds")
    ok = (rows["rmse_pooled"].mean() < rows["rmse_conjugate"].mean()
          and rows["pooled_better"].sum() >= len(rows) - 1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
