"""Simulation settings: segments and their rates, teams and owners, the switches.

A :class:`SimulationSettings` is plain data. It converts to and from a nested ``dict`` (the
``settings`` entry of ``truth.json``) and TOML (``settings.toml``, ``--config``), and takes
dotted overrides (``--set segments.SMB.arrivals_per_week=30``).

Rates are per week of time at risk, at ``as_of``, for the typical salesperson (effect 1) and a
deal that has just entered its stage (the first age band). Transition kinds, from an open
stage ``i`` to a state ``j`` (funnel order):

* ``forward``: to the next open stage; ``skip``: to a later open stage;
* ``backward``: to an earlier open stage;
* ``won``: to Won (from any open stage); ``lost``: to Lost;
* ``reengage``: from Lost to an open stage.

Forward, skip and won moves are the *progress* moves: the salesperson effect ``exp(u)``, the
stale multipliers ``stale_progress`` and the conversion drift multiply them. Backward and lost
moves take ``stale_setback``; re-engagement takes ``stale_reengage`` (by time since lost).

Dependency rule: numpy and the standard library only (plus funnel_lab.errors/crm.funnel).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from funnel_lab.crm.funnel import Funnel
from funnel_lab.errors import FunnelDefinitionError, ParameterError
from funnel_lab.simulate import _toml

__all__ = [
    "PROGRESS_KINDS",
    "TRANSITION_KINDS",
    "SegmentSpec",
    "SimulationSettings",
    "TeamSpec",
    "demo_settings",
    "small_settings",
    "transition_kind",
]

log = logging.getLogger(__name__)

TRANSITION_KINDS = ("forward", "skip", "backward", "won", "lost", "reengage")
PROGRESS_KINDS = ("forward", "skip", "won")
DRIFT_SHAPES = ("linear", "step")


def transition_kind(funnel: Funnel, from_stage: str, to_stage: str) -> str:
    """The kind of a move (see the module docstring).

    >>> f = Funnel("SMB", ("Lead", "Qualified", "Proposal"))
    >>> [transition_kind(f, "Lead", s) for s in ("Qualified", "Proposal", "Won", "Lost")]
    ['forward', 'skip', 'won', 'lost']
    >>> transition_kind(f, "Lost", "Lead")
    'reengage'
    """
    i, j = funnel.order(from_stage), funnel.order(to_stage)
    n = funnel.n_open
    if i == j or i == n:
        raise ParameterError(f"segment '{funnel.segment}': no move {from_stage}->{to_stage}")
    if i == n + 1:
        if j >= n:
            raise ParameterError(
                f"segment '{funnel.segment}': from {funnel.lost} deals can only re-enter an "
                f"open stage, got {from_stage}->{to_stage}")
        return "reengage"
    if j == n:
        return "won"
    if j == n + 1:
        return "lost"
    if j == i + 1:
        return "forward"
    return "skip" if j > i else "backward"


@dataclass(frozen=True)
class SegmentSpec:
    """One segment of the simulated CRM.

    Parameters
    ----------
    stages : tuple of str
        Open stages in funnel order.
    rates : dict
        ``{"A->B": rate per week}`` at ``as_of`` for the typical salesperson and fresh deals;
        moves not listed are impossible. ``"Lost->A"`` entries are re-engagement rates.
    arrivals_per_week : float
        New deals per week at ``as_of`` (Poisson).
    entry : dict, optional
        Probabilities of the open stage a new deal enters (normalised); default: first stage.
    amount_median, amount_sigma : float
        Log-normal amounts: ``log(amount) ~ Normal(log(amount_median), amount_sigma)``.
    sources : dict, optional
        ``{source: share}`` of new deals; empty: no ``source`` column.
    won, lost : str
        Names of the won and lost stages.
    """

    stages: tuple[str, ...]
    rates: dict[str, float]
    arrivals_per_week: float
    entry: dict[str, float] = field(default_factory=dict)
    amount_median: float = 10_000.0
    amount_sigma: float = 0.6
    sources: dict[str, float] = field(default_factory=dict)
    won: str = "Won"
    lost: str = "Lost"

    def funnel(self, segment: str) -> Funnel:
        return Funnel(segment, tuple(self.stages), self.won, self.lost)

    def rate_matrix(self, segment: str) -> np.ndarray:
        """Rates as an (S, S) matrix ordered as ``Funnel.states``."""
        f = self.funnel(segment)
        r = np.zeros((len(f.states), len(f.states)))
        for key, value in self.rates.items():
            a, b = _split_move(segment, key)
            r[f.order(a), f.order(b)] = value
        return r

    def entry_probabilities(self) -> dict[str, float]:
        entry = self.entry or {self.stages[0]: 1.0}
        total = sum(entry.values())
        return {s: entry.get(s, 0.0) / total for s in self.stages}


@dataclass(frozen=True)
class TeamSpec:
    """A team of owners (salespeople) and the segments it sells to (empty: all)."""

    owners: tuple[str, ...]
    segments: tuple[str, ...] = ()


@dataclass(frozen=True)
class SimulationSettings:
    """Everything that defines a simulated CRM except the seed.

    Parameters
    ----------
    segments : dict of str to SegmentSpec
    teams : dict of str to TeamSpec
        Owners belong to teams; a deal goes to an owner, at random, among the owners whose
        team sells to its segment.
    as_of : str
        The date of the snapshot (``as_of`` is the end of that day).
    weeks : int
        Weeks of history before ``as_of``; the history starts at midnight ``weeks`` weeks
        before the end of ``as_of``.
    future_weeks : int
        Weeks simulated beyond ``as_of`` (the ``future`` CRM).
    owner_sd : float
        Standard deviation of the owners' log effects ``u ~ Normal(0, owner_sd)``; each
        owner's progress rates are multiplied by ``exp(u)``. 0 switches owner effects off.
    stale : bool
        Rates change with the time already spent in the state: age bands
        ``band_edges_weeks`` with multipliers ``stale_progress`` (forward, skip, won),
        ``stale_setback`` (backward, lost) and ``stale_reengage`` (Lost -> open, by time since
        lost).
    drift : bool
        Arrivals and progress rates change over the history: their multiplier goes from
        ``drift_arrivals_start`` / ``drift_progress_start`` at the start of the history to 1 at
        ``as_of`` (a straight line for ``drift_shape="linear"``; a jump at
        ``drift_step_fraction`` of the history for ``"step"``) and stays 1 after ``as_of``.
    record_lost : bool
        False: Lost is never recorded; lost deals go silent and are never re-engaged.

    Examples
    --------
    >>> s = small_settings(stale=True)
    >>> s.stale, s.weeks, sorted(s.segments)
    (True, 52, ['Enterprise', 'SMB'])
    >>> s.with_overrides({"segments.SMB.arrivals_per_week": 12}).segments["SMB"].arrivals_per_week
    12.0
    """

    segments: dict[str, SegmentSpec]
    teams: dict[str, TeamSpec]
    as_of: str = "2026-11-29"
    weeks: int = 104
    future_weeks: int = 0
    owner_sd: float = 0.0
    stale: bool = False
    band_edges_weeks: tuple[int, ...] = (0, 4, 13)
    stale_progress: tuple[float, ...] = (1.0, 0.5, 0.2)
    stale_setback: tuple[float, ...] = (1.0, 1.0, 1.0)
    stale_reengage: tuple[float, ...] = (1.0, 0.4, 0.1)
    drift: bool = False
    drift_shape: str = "linear"
    drift_arrivals_start: float = 0.7
    drift_progress_start: float = 1.35
    drift_step_fraction: float = 0.5
    record_lost: bool = True

    def __post_init__(self) -> None:
        _validate(self)

    # ------------------------------------------------------------ derived views

    @property
    def as_of_date(self) -> dt.date:
        return dt.date.fromisoformat(self.as_of)

    def funnels(self) -> dict[str, Funnel]:
        return {name: spec.funnel(name) for name, spec in self.segments.items()}

    def owners(self) -> dict[str, str]:
        """``{owner: team}`` in settings order."""
        return {o: team for team, spec in self.teams.items() for o in spec.owners}

    def owners_of(self, segment: str) -> list[str]:
        """The owners who sell to ``segment``, in settings order."""
        return [o for spec in self.teams.values() if not spec.segments
                or segment in spec.segments for o in spec.owners]

    def band_edges(self) -> tuple[int, ...]:
        """Age-band lower edges in weeks actually used: ``(0,)`` when ``stale`` is off."""
        return tuple(self.band_edges_weeks) if self.stale else (0,)

    def band_multipliers(self) -> dict[str, np.ndarray]:
        """Per band, the multiplier of each move family (ones when ``stale`` is off)."""
        if not self.stale:
            return {k: np.ones(1) for k in ("progress", "setback", "reengage")}
        return {"progress": np.asarray(self.stale_progress, dtype=float),
                "setback": np.asarray(self.stale_setback, dtype=float),
                "reengage": np.asarray(self.stale_reengage, dtype=float)}

    def drift_multiplier(self, t_weeks: Any, which: str) -> np.ndarray:
        """Multiplier of arrivals (``which="arrivals"``) or progress rates (``"progress"``).

        ``t_weeks`` counts weeks since the start of the history; the multiplier is 1 from
        ``as_of`` on (``t_weeks >= weeks``) and everywhere when ``drift`` is off.

        >>> s = small_settings(drift=True, drift_progress_start=2.0)
        >>> s.drift_multiplier([0.0, 26.0, 52.0, 60.0], "progress").tolist()
        [2.0, 1.5, 1.0, 1.0]
        """
        t = np.asarray(t_weeks, dtype=float)
        start = self.drift_start(which)
        if not self.drift or start == 1.0:
            return np.ones_like(t)
        if self.drift_shape == "linear":
            frac = np.clip(t / self.weeks, 0.0, 1.0)
            return start + (1.0 - start) * frac
        return np.where(t < self.drift_step_fraction * self.weeks, start, 1.0)

    def drift_start(self, which: str) -> float:
        if which not in ("arrivals", "progress"):
            raise ParameterError(f"drift applies to 'arrivals' or 'progress', got {which!r}")
        if not self.drift:
            return 1.0
        return self.drift_arrivals_start if which == "arrivals" else self.drift_progress_start

    def drift_integral(self, a_weeks: Any, b_weeks: Any, which: str) -> np.ndarray:
        """Integral of :meth:`drift_multiplier` over ``[a, b]`` (weeks), elementwise, exact."""
        a = np.asarray(a_weeks, dtype=float)
        b = np.asarray(b_weeks, dtype=float)
        return _antiderivative(self, b, which) - _antiderivative(self, a, which)

    def kind_matrix(self, segment: str) -> np.ndarray:
        """(S, S) array of transition kinds (``""`` where no move is configured)."""
        spec = self.segments[segment]
        f = spec.funnel(segment)
        kinds = np.full((len(f.states),) * 2, "", dtype=object)
        for key, value in spec.rates.items():
            a, b = _split_move(segment, key)
            if value > 0:
                kinds[f.order(a), f.order(b)] = transition_kind(f, a, b)
        return kinds

    def progress_mask(self, segment: str) -> np.ndarray:
        """(S, S) bool: the moves the owner effect and the conversion drift multiply."""
        return np.isin(self.kind_matrix(segment), PROGRESS_KINDS)

    def band_rates(self, segment: str) -> np.ndarray:
        """(B, S, S) rates per week by age band at ``as_of`` for the typical owner.

        Without ``stale``, B = 1. With ``record_lost=False`` re-engagement is zero (lost deals
        go silent for good).
        """
        base = self.segments[segment].rate_matrix(segment)
        kinds = self.kind_matrix(segment)
        mult = self.band_multipliers()
        family = {"forward": "progress", "skip": "progress", "won": "progress",
                  "backward": "setback", "lost": "setback", "reengage": "reengage"}
        out = np.zeros((len(mult["progress"]), *base.shape))
        for (i, j), kind in np.ndenumerate(kinds):
            if kind == "reengage" and not self.record_lost:
                continue
            if kind:
                out[:, i, j] = base[i, j] * mult[family[kind]]
        return out

    # ------------------------------------------------------------ conversions

    def to_dict(self) -> dict[str, Any]:
        """A nested dict of plain values (the ``settings`` of truth.json and settings.toml)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("segments", "teams"):
                continue
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        out["teams"] = {name: {"owners": list(t.owners), "segments": list(t.segments)}
                        for name, t in self.teams.items()}
        out["segments"] = {name: _segment_dict(s) for name, s in self.segments.items()}
        return out

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], base: SimulationSettings | None = None
                  ) -> SimulationSettings:
        """Settings from a nested dict; keys not given come from ``base`` (default: demo).

        ``segments`` and ``teams``, when given, replace the base's tables as a whole.
        """
        base = demo_settings() if base is None else base
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(doc) - set(names))
        if unknown:
            raise ParameterError(f"unknown simulation setting(s) {unknown}; "
                                 f"expected some of {sorted(names)}")
        kw: dict[str, Any] = {}
        for name in names:
            if name not in doc:
                continue
            v = doc[name]
            if name == "segments":
                v = {str(k): _segment_from(str(k), s) for k, s in _mapping(v, name).items()}
            elif name == "teams":
                v = {str(k): _team_from(str(k), t) for k, t in _mapping(v, name).items()}
            else:
                v = _scalar_setting(name, v, getattr(base, name))
            kw[name] = v
        return dataclasses.replace(base, **kw)

    def to_toml(self) -> str:
        """The settings as TOML text (what ``write`` puts in settings.toml)."""
        return _toml.dumps(self.to_dict())

    @classmethod
    def from_toml(cls, path: str | Path, base: SimulationSettings | None = None
                  ) -> SimulationSettings:
        """Read a settings TOML file (complete, or partial over ``base``, default demo)."""
        path = Path(path)
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ParameterError(f"settings file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ParameterError(f"{path}: not valid TOML ({exc})") from exc
        return cls.from_dict(doc, base=base)

    def with_overrides(self, overrides: Mapping[str, Any] | Iterable[str]) -> SimulationSettings:
        """Apply dotted overrides, ``{"stale": True}`` or ``["segments.SMB.rates.Lead->Won=0.1"]``.

        String values of ``key=value`` items are read as TOML values (``true``, ``0.5``,
        ``[0, 4]``); anything that is not valid TOML is taken as a string.
        """
        if not isinstance(overrides, Mapping):
            overrides = dict(_parse_override(item) for item in overrides)
        doc = self.to_dict()
        for key, value in overrides.items():
            _set_path(doc, key, value)
        return SimulationSettings.from_dict(doc, base=self)

    def replace(self, **changes: Any) -> SimulationSettings:
        """A copy with top-level settings changed (names checked)."""
        return SimulationSettings.from_dict(changes, base=self)


# ---------------------------------------------------------------- presets


def demo_settings() -> SimulationSettings:
    """The settings of the demo CRM in ``data/demo`` (two segments, three teams, 12 owners).

    Two years of history, stale deals and a visible drift (more leads, lower conversion over
    time) are switched on; owners differ (``owner_sd = 0.3``). Stale deals: after 4 and 13
    weeks in a stage, progress rates fall to 40% and 10%, and backward and lost rates to 50%
    and 15% (old deals linger rather than being closed out); re-engagement fades to 40% and
    10% with the time since lost.

    >>> s = demo_settings()
    >>> s.weeks, len(s.owners()), list(s.segments)
    (104, 12, ['SMB', 'Enterprise'])
    """
    smb = SegmentSpec(
        stages=("Lead", "Qualified", "Proposal"),
        rates={
            "Lead->Qualified": 0.30, "Lead->Proposal": 0.05, "Lead->Lost": 0.20,
            "Qualified->Proposal": 0.35, "Qualified->Won": 0.04, "Qualified->Lead": 0.06,
            "Qualified->Lost": 0.15,
            "Proposal->Won": 0.30, "Proposal->Qualified": 0.07, "Proposal->Lost": 0.25,
            "Lost->Lead": 0.012, "Lost->Qualified": 0.008,
        },
        arrivals_per_week=24.0,
        entry={"Lead": 0.8, "Qualified": 0.2},
        amount_median=6_000.0,
        amount_sigma=0.5,
        sources={"Inbound": 0.6, "Outbound": 0.25, "Partner": 0.15},
    )
    enterprise = SegmentSpec(
        stages=("Lead", "Discovery", "Demo", "Proposal", "Negotiation"),
        rates={
            "Lead->Discovery": 0.25, "Lead->Demo": 0.05, "Lead->Lost": 0.12,
            "Discovery->Demo": 0.22, "Discovery->Proposal": 0.04, "Discovery->Lead": 0.04,
            "Discovery->Lost": 0.08,
            "Demo->Proposal": 0.22, "Demo->Discovery": 0.06, "Demo->Lost": 0.08,
            "Proposal->Negotiation": 0.25, "Proposal->Demo": 0.06, "Proposal->Lost": 0.07,
            "Negotiation->Won": 0.22, "Negotiation->Proposal": 0.09,
            "Negotiation->Lost": 0.08,
            "Lost->Lead": 0.014, "Lost->Discovery": 0.016,
        },
        arrivals_per_week=12.0,
        entry={"Lead": 0.7, "Discovery": 0.3},
        amount_median=80_000.0,
        amount_sigma=0.7,
        sources={"Inbound": 0.3, "Outbound": 0.5, "Partner": 0.2},
    )
    teams = {
        "North": TeamSpec(("Alice", "Bruno", "Chloe", "Dmitri"), ("SMB",)),
        "South": TeamSpec(("Elena", "Farid", "Grace", "Hiro"), ("SMB", "Enterprise")),
        "Strategic": TeamSpec(("Ines", "Jonas", "Kemi", "Liam"), ("Enterprise",)),
    }
    return SimulationSettings(
        segments={"SMB": smb, "Enterprise": enterprise}, teams=teams,
        as_of="2026-11-29", weeks=104, future_weeks=0, owner_sd=0.3,
        stale=True, band_edges_weeks=(0, 4, 13), stale_progress=(1.0, 0.4, 0.1),
        stale_setback=(1.0, 0.5, 0.15), stale_reengage=(1.0, 0.4, 0.1),
        drift=True, drift_shape="linear", drift_arrivals_start=0.7, drift_progress_start=1.35,
        record_lost=True,
    )


def small_settings(**overrides: Any) -> SimulationSettings:
    """A small, fast CRM for tests: two segments, one year, about 700 deals, switches off.

    The funnels and the stale and drift parameters are the demo's, so switching one on gives
    the demo's behaviour on a smaller CRM.

    Keyword arguments replace top-level settings (``stale=True``, ``future_weeks=13``, ...).

    >>> s = small_settings(owner_sd=0.5)
    >>> s.owner_sd, s.stale, s.drift, s.record_lost
    (0.5, False, False, True)
    """
    demo = demo_settings()
    smb = dataclasses.replace(demo.segments["SMB"], arrivals_per_week=10.0)
    enterprise = dataclasses.replace(demo.segments["Enterprise"], arrivals_per_week=3.5)
    base = SimulationSettings(
        segments={"SMB": smb, "Enterprise": enterprise},
        teams={"North": TeamSpec(("Alice", "Bruno", "Chloe"), ("SMB",)),
               "South": TeamSpec(("Elena", "Farid", "Grace"), ())},
        as_of="2026-11-29", weeks=52, owner_sd=0.0, stale=False, drift=False,
        band_edges_weeks=demo.band_edges_weeks, stale_progress=demo.stale_progress,
        stale_setback=demo.stale_setback, stale_reengage=demo.stale_reengage,
        drift_shape=demo.drift_shape, drift_arrivals_start=demo.drift_arrivals_start,
        drift_progress_start=demo.drift_progress_start,
    )
    return base.replace(**overrides) if overrides else base


# ---------------------------------------------------------------- validation and parsing


def _validate(s: SimulationSettings) -> None:
    if not s.segments:
        raise ParameterError("simulation settings need at least one segment")
    try:
        dt.date.fromisoformat(str(s.as_of))
    except ValueError as exc:
        raise ParameterError(f"as_of must be a date YYYY-MM-DD, got {s.as_of!r}") from exc
    for name, lo in (("weeks", 1), ("future_weeks", 0)):
        v = getattr(s, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ParameterError(f"{name} must be an integer >= {lo}, got {v!r}")
    if not (math.isfinite(s.owner_sd) and s.owner_sd >= 0):
        raise ParameterError(f"owner_sd must be >= 0, got {s.owner_sd!r}")
    edges = tuple(s.band_edges_weeks)
    if (not edges or edges[0] != 0 or any(not isinstance(e, int) for e in edges)
            or any(b <= a for a, b in zip(edges, edges[1:], strict=False))):
        raise ParameterError("band_edges_weeks must be increasing whole weeks starting at 0, "
                             f"got {list(edges)}")
    for name in ("stale_progress", "stale_setback", "stale_reengage"):
        mult = tuple(getattr(s, name))
        if len(mult) != len(edges) or any(not (m >= 0 and math.isfinite(m)) for m in mult):
            raise ParameterError(f"{name} needs one multiplier >= 0 per age band "
                                 f"({len(edges)} bands {list(edges)}), got {list(mult)}")
    if s.drift_shape not in DRIFT_SHAPES:
        raise ParameterError(f"drift_shape must be one of {list(DRIFT_SHAPES)}, "
                             f"got {s.drift_shape!r}")
    for name in ("drift_arrivals_start", "drift_progress_start"):
        if not getattr(s, name) > 0:
            raise ParameterError(f"{name} must be > 0, got {getattr(s, name)!r}")
    if not 0 < s.drift_step_fraction < 1:
        raise ParameterError(f"drift_step_fraction must be in (0, 1), "
                             f"got {s.drift_step_fraction!r}")
    for name, spec in s.segments.items():
        _validate_segment(name, spec)
    _validate_teams(s)


def _validate_segment(name: str, spec: SegmentSpec) -> None:
    try:
        funnel = spec.funnel(name)  # checks distinct stage names
    except FunnelDefinitionError as exc:
        raise ParameterError(f"segments.{name}: {exc.detail}") from exc
    for key, value in spec.rates.items():
        a, b = _split_move(name, key)
        for stage in (a, b):
            if stage not in funnel.states:
                raise ParameterError(f"segment '{name}', rate '{key}': unknown stage "
                                     f"'{stage}'; stages are {list(funnel.states)}")
        transition_kind(funnel, a, b)
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise ParameterError(f"segment '{name}', rate '{key}' must be >= 0, got {value!r}")
    r = spec.rate_matrix(name)
    stuck = [st for i, st in enumerate(funnel.stages) if r[i].sum() <= 0]
    if stuck:
        raise ParameterError(f"segment '{name}': open stage(s) {stuck} have no way out")
    if not spec.arrivals_per_week > 0:
        raise ParameterError(f"segment '{name}': arrivals_per_week must be > 0")
    bad_entry = sorted(set(spec.entry) - set(funnel.stages))
    if bad_entry or any(v < 0 for v in spec.entry.values()) or (
            spec.entry and sum(spec.entry.values()) <= 0):
        raise ParameterError(f"segment '{name}': entry must give shares >= 0 (not all 0) of "
                             f"open stages {list(funnel.stages)}, got {spec.entry}")
    if not (spec.amount_median > 0 and spec.amount_sigma >= 0):
        raise ParameterError(f"segment '{name}': amount_median must be > 0 and "
                             "amount_sigma >= 0")
    if any(v < 0 for v in spec.sources.values()) or (
            spec.sources and sum(spec.sources.values()) <= 0):
        raise ParameterError(f"segment '{name}': sources must have shares >= 0, not all 0")


def _validate_teams(s: SimulationSettings) -> None:
    seen: dict[str, str] = {}
    for team, spec in s.teams.items():
        if not spec.owners:
            raise ParameterError(f"team '{team}' has no owners")
        for o in spec.owners:
            if o in seen:
                raise ParameterError(f"owner '{o}' is in teams '{seen[o]}' and '{team}'")
            seen[o] = team
        unknown = sorted(set(spec.segments) - set(s.segments))
        if unknown:
            raise ParameterError(f"team '{team}' sells to unknown segment(s) {unknown}; "
                                 f"segments are {sorted(s.segments)}")
    for seg in s.segments:
        if not s.owners_of(seg):
            raise ParameterError(f"no team sells to segment '{seg}'")


def _split_move(segment: str, key: str) -> tuple[str, str]:
    parts = key.split("->")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise ParameterError(f"segment '{segment}': rate keys look like 'Lead->Demo', "
                             f"got {key!r}")
    return parts[0].strip(), parts[1].strip()


def _segment_dict(s: SegmentSpec) -> dict[str, Any]:
    return {"stages": list(s.stages), "won": s.won, "lost": s.lost,
            "arrivals_per_week": float(s.arrivals_per_week),
            "amount_median": float(s.amount_median), "amount_sigma": float(s.amount_sigma),
            "entry": {k: float(v) for k, v in s.entry.items()},
            "sources": {k: float(v) for k, v in s.sources.items()},
            "rates": {k: float(v) for k, v in s.rates.items()}}


def _mapping(v: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise ParameterError(f"setting '{where}' must be a table, got {type(v).__name__}")
    return v


def _segment_from(name: str, doc: Any) -> SegmentSpec:
    if isinstance(doc, SegmentSpec):
        return doc
    doc = _mapping(doc, f"segments.{name}")
    fields = [f.name for f in dataclasses.fields(SegmentSpec)]
    unknown = sorted(set(doc) - set(fields))
    if unknown:
        raise ParameterError(f"segments.{name}: unknown key(s) {unknown}; expected some of "
                             f"{sorted(fields)}")
    missing = [k for k in ("stages", "rates", "arrivals_per_week") if k not in doc]
    if missing:
        raise ParameterError(f"segments.{name}: missing {missing}")
    kw = dict(doc)
    kw["stages"] = tuple(str(x) for x in kw["stages"])
    for key in ("rates", "entry", "sources"):
        if key in kw:
            kw[key] = {str(k): _number(f"segments.{name}.{key}.{k}", v)
                       for k, v in _mapping(kw[key], f"segments.{name}.{key}").items()}
    for key in ("arrivals_per_week", "amount_median", "amount_sigma"):
        if key in kw:
            kw[key] = _number(f"segments.{name}.{key}", kw[key])
    return SegmentSpec(**kw)


def _team_from(name: str, doc: Any) -> TeamSpec:
    if isinstance(doc, TeamSpec):
        return doc
    doc = _mapping(doc, f"teams.{name}")
    unknown = sorted(set(doc) - {"owners", "segments"})
    if unknown or "owners" not in doc:
        raise ParameterError(f"teams.{name} needs 'owners' (and optionally 'segments'), "
                             f"got keys {sorted(doc)}")
    return TeamSpec(tuple(str(o) for o in doc["owners"]),
                    tuple(str(s) for s in doc.get("segments", ())))


def _number(where: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ParameterError(f"setting '{where}' must be a number, got {v!r}")
    return float(v)


def _scalar_setting(name: str, v: Any, default: Any) -> Any:
    if isinstance(v, dt.date):
        v = v.isoformat()
    if isinstance(default, bool):
        if not isinstance(v, bool):
            raise ParameterError(f"setting '{name}' must be true or false, got {v!r}")
        return v
    if isinstance(default, int):
        if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float)
                                                                and v.is_integer())):
            raise ParameterError(f"setting '{name}' must be a whole number, got {v!r}")
        return int(v)
    if isinstance(default, float):
        return _number(name, v)
    if isinstance(default, tuple):
        if not isinstance(v, list | tuple):
            raise ParameterError(f"setting '{name}' must be a list, got {v!r}")
        kind = int if name == "band_edges_weeks" else float
        out = []
        for x in v:
            if kind is int:
                out.append(_scalar_setting(name, x, 0))
            else:
                out.append(_number(name, x))
        return tuple(out)
    if isinstance(default, str):
        if not isinstance(v, str):
            raise ParameterError(f"setting '{name}' must be a string, got {v!r}")
        return v
    return v


def _parse_override(item: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ParameterError(f"--set expects KEY=VALUE, got {item!r}")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    return key.strip(), value


def _set_path(doc: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node: Any = doc
    for i, p in enumerate(parts[:-1]):
        if not isinstance(node, dict) or p not in node:
            where = ".".join(parts[: i + 1])
            choices = sorted(node) if isinstance(node, dict) else []
            raise ParameterError(f"unknown setting '{where}' in override '{key}'; "
                                 f"expected one of {choices}")
        node = node[p]
    if not isinstance(node, dict):
        raise ParameterError(f"override '{key}': '{'.'.join(parts[:-1])}' is not a table")
    if len(parts) > 1 and parts[-1] not in node and parts[-2] not in (
            "rates", "entry", "sources"):
        raise ParameterError(f"unknown setting '{key}'; expected one of {sorted(node)}")
    node[parts[-1]] = value


def _antiderivative(s: SimulationSettings, t: np.ndarray, which: str) -> np.ndarray:
    """``F(t) = integral of the drift multiplier from 0 to t`` (t in weeks, t >= 0)."""
    start = s.drift_start(which)
    if not s.drift or start == 1.0:
        return t.astype(float)
    T = float(s.weeks)
    if s.drift_shape == "linear":
        u = np.clip(t, 0.0, T)
        ramp = start * u + (1.0 - start) * u**2 / (2.0 * T)
        return ramp + np.maximum(t - T, 0.0)
    c = s.drift_step_fraction * T
    return start * np.minimum(t, c) + np.maximum(t - c, 0.0)
