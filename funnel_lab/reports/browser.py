"""Headless chromium, network off: the DOM of a page after its scripts ran, and screenshots.

Used to check that a rendered report draws every chart with no network and no kernel. The
flags are those of STACK.md; every request off the machine is sent to a closed local port, so a
page that still needed a CDN would show it.

Dependency rule: standard library only.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from funnel_lab.errors import ReportError

__all__ = ["dump_dom", "find_chromium", "screenshot"]

log = logging.getLogger(__name__)

_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
    # Network off: every host resolves nowhere and every request goes to a closed port.
    "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
]


def find_chromium() -> str | None:
    """Path of Debian's chromium (or ``$FUNNEL_LAB_CHROMIUM``), or None when absent."""
    env = os.environ.get("FUNNEL_LAB_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(args: list[str], page: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    exe = find_chromium()
    if exe is None:
        raise ReportError("chromium is not installed (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="funnel-lab-chromium-") as profile:
        cmd = [exe, *_FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()]
        log.info("running %s", " ".join(cmd))
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def dump_dom(page: Path | str, budget_ms: int = 15000, timeout: float = 120.0) -> str:
    """The page's DOM after its scripts ran for ``budget_ms`` of virtual time.

    Examples
    --------
    >>> if find_chromium():  # doctest: +SKIP
    ...     "<svg" in dump_dom("reports/funnel_health.html")
    True
    """
    proc = _run([f"--virtual-time-budget={budget_ms}", "--dump-dom"], Path(page), timeout)
    if proc.returncode != 0 or "<html" not in proc.stdout:
        raise ReportError(f"chromium failed on {page} (exit {proc.returncode}): "
                          f"{proc.stderr.strip()[-500:]}")
    return proc.stdout


def screenshot(page: Path | str, out: Path | str, width: int = 1280, height: int = 4000,
               budget_ms: int = 15000, timeout: float = 120.0) -> Path:
    """Save a PNG screenshot of ``page`` (``width`` x ``height`` pixels) to ``out``."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = _run([f"--virtual-time-budget={budget_ms}", f"--screenshot={out}",
                 f"--window-size={width},{height}", "--hide-scrollbars"], Path(page), timeout)
    if not out.exists():
        raise ReportError(f"chromium wrote no screenshot of {page} (exit {proc.returncode}): "
                          f"{proc.stderr.strip()[-500:]}")
    return out
