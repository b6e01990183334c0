"""The validated CRM: deals, the event log, funnel definitions, ``as_of`` and the report.

This is the object every later step receives. Its invariants (checked by the reader in
:mod:`funnel_lab.crm.read`):

* ``deals``: one row per deal, columns ``deal_id`` (str), ``segment``, ``owner``, ``team``
  (str), ``amount`` (float, NaN when missing), ``created_at`` (datetime64), optionally
  ``source`` (str). Only deals created at or before ``as_of``.
* ``events``: one row per stage entry, columns ``deal_id``, ``stage``, ``entered_at``,
  ``imputed`` (bool: True for rows the reader added, such as a first stage at ``created_at``
  or a gone-cold Lost). Sorted by ``deal_id``, then time, then funnel order for ties. Only
  events at or before ``as_of``. Every deal has at least one event; every stage belongs to
  the deal's segment's funnel.
* ``funnels``: ``{segment: Funnel}``, one for every segment in ``deals``.
* ``report``: what was repaired, assumed or left out, with counts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from funnel_lab.crm.funnel import Funnel

__all__ = ["CRM", "ValidationReport"]

DEAL_COLUMNS = ("deal_id", "segment", "owner", "team", "amount", "created_at")
EVENT_COLUMNS = ("deal_id", "stage", "entered_at")


@dataclass
class ValidationReport:
    """What reading the CRM repaired, assumed or left out.

    ``counts`` maps a short key (``"duplicate_event_rows"``, ``"events_after_as_of"``,
    ``"missing_amount"``, ``"deals_without_events"``, ``"gone_cold"``, ...) to a number of rows
    or deals; ``notes`` are sentences for people (the inferred stage order, tie rules, ...);
    ``problems`` are findings that make the data unusable (empty when it is fine).
    """

    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, key: str, n: int, note: str | None = None) -> None:
        """Count ``n`` more of ``key`` (zero counts are kept, so the report lists every check)."""
        self.counts[key] = self.counts.get(key, 0) + int(n)
        if note and n:
            self.notes.append(note)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "counts": dict(self.counts), "notes": list(self.notes),
                "problems": list(self.problems)}


@dataclass
class CRM:
    """A validated CRM at a moment ``as_of`` (see the module docstring for the invariants)."""

    deals: pd.DataFrame
    events: pd.DataFrame
    funnels: dict[str, Funnel]
    as_of: pd.Timestamp
    report: ValidationReport = field(default_factory=ValidationReport)
    source: str | None = None

    @property
    def segments(self) -> list[str]:
        return sorted(self.funnels)

    def fingerprint(self) -> str:
        """A short hash of the data as seen at ``as_of`` (deals, events, funnels).

        Used to tie a saved posterior or a cached fit to the data it was fitted on.
        """
        h = hashlib.sha256()
        h.update(str(self.as_of).encode())
        for seg in sorted(self.funnels):
            h.update(repr(self.funnels[seg]).encode())
        for frame in (self.deals, self.events):
            h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        return h.hexdigest()[:16]

    def current_stage(self) -> pd.DataFrame:
        """Per deal: its stage at ``as_of``, when it entered it, and its deal attributes.

        Returns one row per deal with ``stage``, ``entered_at`` and ``age_days`` (time in
        that stage at ``as_of``) joined to the deal columns.
        """
        out = self._current_stage_fast()
        if out is None:
            last = self.events.groupby("deal_id", sort=False).tail(1)[["deal_id", "stage",
                                                                        "entered_at"]]
            out = self.deals.merge(last, on="deal_id", how="left", validate="one_to_one")
        out["age_days"] = (self.as_of - out["entered_at"]) / pd.Timedelta(days=1)
        return out

    def _current_stage_fast(self) -> pd.DataFrame | None:
        """The left merge of :meth:`current_stage` by position, or None to use the merge.

        Handles the usual case (deal ids unique, every deal has an event, no clashing column
        names) with integer positions; anything else goes through the merge, which keeps its
        errors and its missing-value rules.
        """
        deals, events = self.deals, self.events
        if any(c in deals.columns for c in ("stage", "entered_at")) or not len(events):
            return None
        # one factorize of both id columns (fast on arrow strings), then integer positions
        n_deals = len(deals)
        codes, ids = pd.factorize(pd.concat([deals["deal_id"], events["deal_id"]],
                                            ignore_index=True))
        deal_code, event_code = codes[:n_deals], codes[n_deals:]
        if (deal_code < 0).any() or np.bincount(deal_code, minlength=len(ids)).max() > 1:
            return None  # missing or repeated deal ids: the merge decides
        last = np.full(len(ids), -1, dtype=np.int64)
        np.maximum.at(last, event_code, np.arange(len(event_code)))  # each deal's last row
        at = last[deal_code]
        if (at < 0).any():
            return None  # a deal without events: NaN stage, the merge's rules
        out = deals.reset_index(drop=True)
        out = out.assign(stage=events["stage"].take(at).reset_index(drop=True),
                         entered_at=events["entered_at"].take(at).reset_index(drop=True))
        return out

    def open_deals(self) -> pd.DataFrame:
        """The deals sitting in an open stage at ``as_of`` (see :meth:`current_stage`)."""
        cur = self.current_stage()
        seg, seg_names = pd.factorize(cur["segment"])
        if (seg >= 0).all() and set(seg_names) <= set(self.funnels):
            stage, stage_names = pd.factorize(cur["stage"])
            # (segment, stage) -> open; the extra last column is a missing stage (code -1)
            table = np.zeros((len(seg_names), len(stage_names) + 1), dtype=bool)
            for k, name in enumerate(seg_names):
                table[k, :-1] = [self.funnels[name].is_open(st) for st in stage_names]
            is_open = table[seg, stage]
        else:  # a segment without a funnel: the KeyError of the plain loop
            is_open = [self.funnels[s].is_open(st) for s, st in zip(cur["segment"],
                                                                  cur["stage"], strict=True)]
        return cur.loc[is_open].reset_index(drop=True)
