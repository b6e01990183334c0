"""Funnel definitions: per segment, the ordered open stages, the won stage and the lost stage."""

from __future__ import annotations

from dataclasses import dataclass

from funnel_lab.errors import FunnelDefinitionError

__all__ = ["Funnel"]


@dataclass(frozen=True)
class Funnel:
    """The stages of one segment.

    Parameters
    ----------
    segment : str
        The segment this funnel belongs to.
    stages : tuple of str
        The open stages, in funnel order (earliest first).
    won, lost : str
        The absorbing win stage and the lost stage (which deals may leave by re-engagement).
    cold_after_days : float, optional
        Gone-cold rule: an open deal with no event for this many days is treated as lost.

    Examples
    --------
    >>> f = Funnel("SMB", ("Lead", "Demo", "Proposal"))
    >>> f.states
    ('Lead', 'Demo', 'Proposal', 'Won', 'Lost')
    >>> f.order("Demo"), f.order("Won")
    (1, 3)
    """

    segment: str
    stages: tuple[str, ...]
    won: str = "Won"
    lost: str = "Lost"
    cold_after_days: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        if not self.stages:
            raise FunnelDefinitionError(f"segment '{self.segment}' has no open stages")
        names = list(self.states)
        dupes = sorted({s for s in names if names.count(s) > 1})
        if dupes:
            raise FunnelDefinitionError(
                f"segment '{self.segment}': stage names must be distinct, repeated: {dupes}"
            )
        if self.cold_after_days is not None and not self.cold_after_days > 0:
            raise FunnelDefinitionError(
                f"segment '{self.segment}': cold_after_days must be > 0, "
                f"got {self.cold_after_days!r}"
            )

    @property
    def states(self) -> tuple[str, ...]:
        """Open stages, then won, then lost: the order of every matrix in the package."""
        return (*self.stages, self.won, self.lost)

    @property
    def n_open(self) -> int:
        return len(self.stages)

    def order(self, stage: str) -> int:
        """Position of ``stage`` in :attr:`states` (used to order same-time ties)."""
        return self.states.index(stage)

    def is_open(self, stage: str) -> bool:
        return stage in self.stages
