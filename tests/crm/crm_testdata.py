"""A small valid CRM folder for the crm tests, and ways to spoil it one file at a time.

Line numbers in the tests refer to these texts: the header is line 1, D1 is line 2, ...
"""

from __future__ import annotations

from pathlib import Path

DEALS = """\
deal_id,segment,owner,team,amount,created_at
D1,SMB,Ann,East,100,2025-01-01
D2,SMB,Bob,East,200,2025-01-02
D3,ENT,Cid,West,5000,2025-01-03
D4,ENT,Cid,West,,2025-01-04
D5,ENT,Dee,West,300,2025-01-05
"""

EVENTS = """\
deal_id,stage,entered_at
D1,Lead,2025-01-01
D1,Demo,2025-01-05
D1,Won,2025-01-20
D2,Lead,2025-01-02
D2,Lost,2025-01-10
D3,Qualify,2025-01-03
D3,Proposal,2025-01-08
D4,Qualify,2025-01-04
D5,Qualify,2025-01-05
D5,Lost,2025-01-12
"""

FUNNEL = """\
[SMB]
stages = ["Lead", "Demo"]

[ENT]
stages = ["Qualify", "Proposal", "Negotiation"]
won = "Won"
lost = "Lost"
"""


def write_crm(folder: Path, deals: str | bytes = DEALS, events: str | bytes = EVENTS,
              funnel: str | None = FUNNEL) -> Path:
    """Write a CRM folder; ``funnel=None`` leaves funnel.toml out (funnels are inferred)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("deals.csv", deals), ("events.csv", events)):
        if isinstance(text, bytes):
            (folder / name).write_bytes(text)
        else:
            (folder / name).write_text(text, encoding="utf-8")
    if funnel is not None:
        (folder / "funnel.toml").write_text(funnel, encoding="utf-8")
    return folder


def replace_line(text: str, line: int, new: str) -> str:
    """``text`` with its 1-based ``line`` replaced by ``new``."""
    lines = text.splitlines()
    lines[line - 1] = new
    return "\n".join(lines) + "\n"


def add_lines(text: str, *new: str) -> str:
    return text + "".join(f"{n}\n" for n in new)
