"""``simulate_crm``: deals, their stage histories, the CRM at ``as_of`` and the truth.

Steps: owner effects -> arrivals and deal attributes -> exact paths (:mod:`.engine`) ->
timestamps in whole seconds -> CRM tables cut at ``as_of`` (and at ``as_of + future_weeks``)
-> validated CRM objects -> truth (:mod:`.truth`).

Time: the history starts at midnight ``weeks`` weeks before the end of the ``as_of`` day, and
``as_of`` is the end of that day (CONTRACTS.md), so events at ``as_of`` date 23:59:59 are
seen. Simulated times are continuous; timestamps are truncated to whole seconds, and the rare
move that would share its second with the previous event of the same deal is pushed one
second later (counted in ``truth["timestamps_nudged"]``), so no two events of a deal tie.

Randomness: one generator from ``random_seed``; it spawns independent streams for the owner
effects, the deals created before ``as_of`` and those created after, and within each the
engine lays random numbers out per deal. Hence the history at ``as_of`` does not depend on
``future_weeks``: the same seed with and without future weeks gives the same CRM at ``as_of``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from funnel_lab.crm.eventlog import CRM
from funnel_lab.crm.funnel import Funnel
from funnel_lab.simulate import _toml
from funnel_lab.simulate.engine import simulate_paths
from funnel_lab.simulate.settings import SimulationSettings, demo_settings
from funnel_lab.simulate.truth import build_truth

__all__ = ["SimulatedCRM", "simulate_crm", "funnel_toml"]

log = logging.getLogger(__name__)

SECONDS_PER_WEEK = 7 * 24 * 3600
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_CRM_FILES = ("deals.csv", "events.csv", "funnel.toml")


@dataclass
class SimulatedCRM:
    """A simulated CRM with its truth.

    Attributes
    ----------
    crm : CRM
        The CRM at ``as_of`` (deals created and events up to the end of the ``as_of`` day).
    truth : dict
        The truth.json document (see :mod:`funnel_lab.simulate`).
    future : CRM or None
        The CRM at ``as_of + future_weeks`` weeks (None when ``future_weeks`` is 0).
    settings : SimulationSettings
    deals, events : DataFrame
        Every simulated deal and event (through the end of the future, when any), in the
        CSV layout.
    """

    crm: CRM
    truth: dict[str, Any]
    future: CRM | None
    settings: SimulationSettings
    deals: pd.DataFrame
    events: pd.DataFrame

    def write(self, path: str | Path) -> Path:
        """Write deals.csv, events.csv, funnel.toml, truth.json, settings.toml (+ future/).

        The same simulation gives the same bytes. A ``future/`` folder left by an earlier
        simulation in ``path`` is removed when this one has no future weeks.

        >>> import tempfile
        >>> from funnel_lab.simulate import simulate_crm, small_settings
        >>> with tempfile.TemporaryDirectory() as d:
        ...     out = simulate_crm(small_settings(weeks=4), random_seed=1).write(d)
        ...     sorted(p.name for p in out.iterdir())
        ['deals.csv', 'events.csv', 'funnel.toml', 'settings.toml', 'truth.json']
        """
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        as_of_end = _end_of_day(self.settings.as_of)
        _write_crm_folder(out, self.deals, self.events, self.settings, as_of_end)
        (out / "truth.json").write_text(
            json.dumps(self.truth, indent=1, ensure_ascii=False, allow_nan=False) + "\n",
            encoding="utf-8")
        (out / "settings.toml").write_text(self.settings.to_toml(), encoding="utf-8")
        future_dir = out / "future"
        if self.future is not None:
            future_dir.mkdir(exist_ok=True)
            end = _end_of_day(self.truth["future_as_of"])
            _write_crm_folder(future_dir, self.deals, self.events, self.settings, end)
        elif future_dir.is_dir():
            for name in _CRM_FILES:
                (future_dir / name).unlink(missing_ok=True)
            if not any(future_dir.iterdir()):
                future_dir.rmdir()
                log.info("removed the future/ folder of an earlier simulation in %s", out)
        log.info("wrote the simulated CRM to %s", out)
        return out

    def summary(self) -> dict[str, Any]:
        """Counts per segment at ``as_of`` (and in the future CRM): deals, events, outcomes."""
        doc: dict[str, Any] = {"as_of": self.truth["as_of"], "seed": self.truth["seed"],
                               **_crm_counts(self.crm)}
        if self.future is not None:
            doc["future"] = {"as_of": self.truth["future_as_of"], **_crm_counts(self.future)}
        return doc


def simulate_crm(settings: SimulationSettings | None = None,
                 random_seed: int | np.random.Generator | None = None) -> SimulatedCRM:
    """Simulate a CRM with known truth.

    Parameters
    ----------
    settings : SimulationSettings, optional
        Default: :func:`~funnel_lab.simulate.demo_settings`.
    random_seed : int or numpy.random.Generator, optional
        The same seed gives the same CRM, byte for byte once written.

    Returns
    -------
    SimulatedCRM

    Examples
    --------
    >>> from funnel_lab.simulate import small_settings
    >>> sim = simulate_crm(small_settings(), random_seed=3)
    >>> sorted(sim.crm.funnels), sim.truth["as_of"]
    (['Enterprise', 'SMB'], '2026-11-29')
    >>> 0 < sim.truth["segments"]["SMB"]["by_stage"]["Lead"]["win_probability"] < 1
    True
    """
    settings = demo_settings() if settings is None else settings
    rng = np.random.default_rng(random_seed)
    rng_owners, rng_history, rng_future = rng.spawn(3)
    seed = int(random_seed) if isinstance(random_seed, int | np.integer) else None

    owners = settings.owners()
    z = rng_owners.standard_normal(len(owners))  # drawn even when owner_sd = 0: same stream
    effects = {o: float(np.exp(settings.owner_sd * zi)) for o, zi in zip(owners, z,
                                                                        strict=True)}
    history = _simulate_phase(settings, effects, rng_history, 0.0, float(settings.weeks))
    future = None
    if settings.future_weeks:
        future = _simulate_phase(settings, effects, rng_future, float(settings.weeks),
                                 float(settings.weeks + settings.future_weeks))
    deals, events, nudged = _tables(settings, history, future)

    funnels = settings.funnels()
    crm = _make_crm(deals, events, funnels, settings.as_of)
    future_crm = None
    extra: dict[str, Any] = {"as_of_timestamp": str(_end_of_day(settings.as_of)),
                             "history_start": str(_history_start(settings))}
    if settings.future_weeks:
        future_date = (pd.Timestamp(settings.as_of)
                       + pd.Timedelta(weeks=settings.future_weeks)).date().isoformat()
        extra["future_as_of"] = future_date
        future_crm = _make_crm(deals, events, funnels, future_date)
    extra["timestamps_nudged"] = nudged
    truth = build_truth(settings, seed, effects, extra)
    log.info("simulated %d deals and %d events up to %s (%d deals in all)",
             len(crm.deals), len(crm.events), settings.as_of, len(deals))
    return SimulatedCRM(crm, truth, future_crm, settings, deals, events)


# ---------------------------------------------------------------- simulation steps


@dataclass
class _Phase:
    """Deals created in one time window and their moves (times in weeks)."""

    segment: np.ndarray
    owner: np.ndarray  # index into settings.owners()
    created: np.ndarray
    entry: np.ndarray
    amount: np.ndarray
    source: np.ndarray
    move_deal: np.ndarray
    move_state: np.ndarray
    move_time: np.ndarray


def _simulate_phase(settings: SimulationSettings, effects: dict[str, float],
                    rng: np.random.Generator, t0: float, t1: float) -> _Phase:
    """Deals created in ``[t0, t1)`` weeks, simulated until the end of the future."""
    owner_names = list(settings.owners())
    parts = []
    for g, (name, spec) in enumerate(settings.segments.items()):
        created = _arrival_times(settings, spec.arrivals_per_week, t0, t1, rng)
        n = created.size
        probs = np.array(list(spec.entry_probabilities().values()))
        entry = rng.choice(probs.size, size=n, p=probs)
        eligible = np.array([owner_names.index(o) for o in settings.owners_of(name)])
        owner = eligible[rng.integers(eligible.size, size=n)]
        amount = np.round(np.exp(np.log(spec.amount_median)
                                 + spec.amount_sigma * rng.standard_normal(n)), 2)
        if spec.sources:
            shares = np.array(list(spec.sources.values()), dtype=float)
            pick = rng.choice(shares.size, size=n, p=shares / shares.sum())
            source = np.array(list(spec.sources), dtype=object)[pick]
        else:
            source = np.full(n, None, dtype=object)
        parts.append((np.full(n, g), owner, created, entry, amount, source))

    segment, owner, created, entry, amount, source = (np.concatenate(p) for p in zip(*parts,
                                                                                      strict=True))
    order = np.argsort(created, kind="stable")
    segment, owner, created = segment[order], owner[order], created[order]
    entry, amount, source = entry[order], amount[order], source[order]

    band_rates, progress = _padded_rates(settings)
    effect = np.array([effects[o] for o in owner_names])[owner] if owner.size else np.ones(0)
    drift_max = max(settings.drift_start("progress"), 1.0)
    paths = simulate_paths(
        band_rates, progress, np.asarray(settings.band_edges(), dtype=float), segment, entry,
        created, effect, float(settings.weeks + settings.future_weeks), rng,
        progress_drift=(lambda t: settings.drift_multiplier(t, "progress"))
        if settings.drift else None,
        drift_max=drift_max,
    )
    log.debug("engine: %d deals, %d candidates, %d moves", segment.size, paths.candidates,
              paths.deal.size)
    return _Phase(segment, owner, created, entry, amount, source, paths.deal, paths.state,
                  paths.time)


def _arrival_times(settings: SimulationSettings, per_week: float, t0: float, t1: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Creation times of a Poisson process with rate ``per_week * drift(t)`` on [t0, t1).

    Exact by thinning: a homogeneous process at the largest rate, each point kept with
    probability ``drift(t) / max drift``.
    """
    top = max(settings.drift_start("arrivals"), 1.0)
    n = rng.poisson(per_week * top * (t1 - t0))
    times = np.sort(t0 + (t1 - t0) * rng.random(n))
    keep = rng.random(n) * top < settings.drift_multiplier(times, "arrivals")
    return times[keep]


def _padded_rates(settings: SimulationSettings) -> tuple[np.ndarray, np.ndarray]:
    """Band rates (G, B, S, S) and progress masks (G, S, S), padded to the largest funnel."""
    names = list(settings.segments)
    size = max(len(settings.segments[n].stages) + 2 for n in names)
    n_band = len(settings.band_edges())
    rates = np.zeros((len(names), n_band, size, size))
    progress = np.zeros((len(names), size, size), dtype=bool)
    for g, name in enumerate(names):
        r = settings.band_rates(name)
        s = r.shape[-1]
        rates[g, :, :s, :s] = r
        progress[g, :s, :s] = settings.progress_mask(name)
    return rates, progress


def _tables(settings: SimulationSettings, history: _Phase, future: _Phase | None
            ) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Deals and events tables in the CSV layout, timestamps in whole seconds."""
    phases = [history] if future is None else [history, future]
    offsets = np.cumsum([0] + [p.segment.size for p in phases])
    seg = np.concatenate([p.segment for p in phases])
    n = seg.size
    width = max(6, len(str(n)))
    deal_ids = np.array([f"D{k + 1:0{width}d}" for k in range(n)], dtype=object)

    names = list(settings.segments)
    funnels = settings.funnels()
    owner_names = np.array(list(settings.owners()), dtype=object)
    teams = settings.owners()
    owner = np.concatenate([p.owner for p in phases])
    created = np.concatenate([p.created for p in phases])
    created_sec = np.floor(created * SECONDS_PER_WEEK).astype(np.int64)

    # Events: the entry stage at creation, then every move, per deal in time order.
    ev_deal = np.concatenate([np.arange(n)] + [p.move_deal + off for p, off in
                                               zip(phases, offsets, strict=False)])
    ev_state = np.concatenate([np.concatenate([p.entry for p in phases])]
                              + [p.move_state for p in phases])
    ev_sec = np.concatenate([created_sec] + [np.floor(p.move_time * SECONDS_PER_WEEK)
                                             .astype(np.int64) for p in phases])
    ev_first = np.concatenate([np.zeros(n, dtype=np.int64), np.ones(ev_deal.size - n,
                                                                    dtype=np.int64)])
    order = np.lexsort((ev_first, ev_deal))  # stable: moves keep their time order
    ev_deal, ev_state, ev_sec = ev_deal[order], ev_state[order], ev_sec[order]
    ev_sec, nudged = _strictly_increasing(ev_deal, ev_sec)
    if nudged:
        log.info("moved %d event(s) one second later so that no two events of a deal tie",
                 nudged)

    stage_names = {g: np.array(funnels[name].states, dtype=object)
                   for g, name in enumerate(names)}
    ev_seg = seg[ev_deal]
    stage = np.empty(ev_deal.size, dtype=object)
    for g, states in stage_names.items():
        mask = ev_seg == g
        stage[mask] = states[ev_state[mask]]
    if not settings.record_lost:
        lost = np.zeros(ev_deal.size, dtype=bool)
        for g, name in enumerate(names):
            lost |= (ev_seg == g) & (ev_state == funnels[name].n_open + 1)
        ev_deal, stage, ev_sec = ev_deal[~lost], stage[~lost], ev_sec[~lost]

    start = np.datetime64(_history_start(settings).to_datetime64(), "s")
    deals = pd.DataFrame({
        "deal_id": pd.array(deal_ids, dtype="str"),
        "segment": pd.array(np.array(names, dtype=object)[seg], dtype="str"),
        "owner": pd.array(owner_names[owner], dtype="str"),
        "team": pd.array([teams[o] for o in owner_names[owner]], dtype="str"),
        "amount": np.concatenate([p.amount for p in phases]).astype(float),
        "created_at": (start + created_sec.astype("timedelta64[s]")).astype("datetime64[us]"),
    })
    source = np.concatenate([p.source for p in phases])
    if any(spec.sources for spec in settings.segments.values()):
        deals["source"] = pd.array(source, dtype="str")
    events = pd.DataFrame({
        "deal_id": pd.array(deal_ids[ev_deal], dtype="str"),
        "stage": pd.array(stage, dtype="str"),
        "entered_at": (start + ev_sec.astype("timedelta64[s]")).astype("datetime64[us]"),
    })
    return deals, events, nudged


def _strictly_increasing(deal: np.ndarray, sec: np.ndarray) -> tuple[np.ndarray, int]:
    """Push events one second past the previous event of the same deal when they tie.

    ``s'_k = max(s_k, s'_(k-1) + 1)`` within a deal: with ``k`` the position in the deal,
    ``s'_k - k`` is the running maximum of ``s_k - k``. Deals are contiguous and increasing,
    so a per-deal offset larger than any time keeps the running maximum inside each deal.
    """
    if not sec.size:
        return sec, 0
    starts = np.flatnonzero(np.r_[True, deal[1:] != deal[:-1]])
    pos = np.arange(sec.size) - np.repeat(starts, np.diff(np.r_[starts, sec.size]))
    offset = deal.astype(np.int64) * (1 << 36)
    fixed = np.maximum.accumulate(sec - pos + offset) - offset + pos
    return fixed, int(np.count_nonzero(fixed != sec))


# ---------------------------------------------------------------- CRM objects and files


def _history_start(settings: SimulationSettings) -> pd.Timestamp:
    return pd.Timestamp(settings.as_of) + pd.Timedelta(days=1) - pd.Timedelta(
        weeks=settings.weeks)


def _end_of_day(date: str) -> pd.Timestamp:
    """The last whole second of ``date`` (every simulated timestamp is a whole second)."""
    return pd.Timestamp(date) + pd.Timedelta(days=1) - pd.Timedelta(seconds=1)


def _cut(deals: pd.DataFrame, events: pd.DataFrame, end: pd.Timestamp
         ) -> tuple[pd.DataFrame, pd.DataFrame]:
    d = deals.loc[deals["created_at"] <= end].reset_index(drop=True)
    e = events.loc[events["entered_at"] <= end].reset_index(drop=True)
    return d, e


def _make_crm(deals: pd.DataFrame, events: pd.DataFrame, funnels: dict[str, Funnel],
              as_of: str) -> CRM:
    """The CRM at the end of day ``as_of``, through the reader's validation.

    The tables are cut at ``as_of`` first, exactly as they are written, so that reading the
    written folder at the same ``as_of`` gives the same CRM (report included).
    """
    from funnel_lab.crm.read import crm_from_frames

    d, e = _cut(deals, events, _end_of_day(as_of))
    return crm_from_frames(d, e, funnels, as_of=as_of)


def funnel_toml(funnels: dict[str, Funnel]) -> str:
    """funnel.toml text: one table per segment with ``stages``, ``won``, ``lost``.

    >>> print(funnel_toml({"SMB": Funnel("SMB", ("Lead", "Demo"))}), end="")
    [SMB]
    stages = ["Lead", "Demo"]
    won = "Won"
    lost = "Lost"
    """
    doc: dict[str, Any] = {}
    for name, f in funnels.items():
        table: dict[str, Any] = {"stages": list(f.stages), "won": f.won, "lost": f.lost}
        if f.cold_after_days is not None:
            table["cold_after_days"] = float(f.cold_after_days)
        doc[name] = table
    return _toml.dumps(doc)


def _write_crm_folder(out: Path, deals: pd.DataFrame, events: pd.DataFrame,
                      settings: SimulationSettings, end: pd.Timestamp) -> None:
    d, e = _cut(deals, events, end)
    d.to_csv(out / "deals.csv", index=False, float_format="%.2f", date_format=_TIME_FORMAT,
             lineterminator="\n")
    e.to_csv(out / "events.csv", index=False, date_format=_TIME_FORMAT, lineterminator="\n")
    (out / "funnel.toml").write_text(funnel_toml(settings.funnels()), encoding="utf-8")


def _crm_counts(crm: CRM) -> dict[str, Any]:
    last = crm.events.groupby("deal_id", sort=False)["stage"].last()
    cur = crm.deals.set_index("deal_id")["segment"].to_frame().join(last)
    per_segment = {}
    for seg, f in crm.funnels.items():
        rows = cur.loc[cur["segment"] == seg, "stage"]
        per_segment[seg] = {"deals": int(rows.size),
                            "open": int(rows.isin(f.stages).sum()),
                            "won": int((rows == f.won).sum()),
                            "lost": int((rows == f.lost).sum())}
    return {"deals": int(len(crm.deals)), "events": int(len(crm.events)),
            "segments": per_segment}
