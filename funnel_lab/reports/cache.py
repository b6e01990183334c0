"""Fitted posteriors cached on disk, so that rendering a report again does not refit.

A fit is identified by the data's fingerprint (which covers ``as_of``), the method and every
setting, the seed included: the same key gives the same posterior, digit for digit, because fits
are deterministic given their seed. Fits seeded with a ``numpy.random.Generator`` (whose state
cannot be part of a key) are not cached.

The cache lives in ``$FUNNEL_LAB_CACHE`` when set, else in ``.cache/funnel_lab/`` of the
repository. Files are pickles written by this package for this package; delete the folder to
clear it.

Dependency rule: calls :func:`funnel_lab.model.fit`; never imports charts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["cache_dir", "cached_fit", "fit_key"]

log = logging.getLogger(__name__)

#: Bump when the pickled Posterior changes shape, so that old files are not read back.
CACHE_VERSION = 1


def cache_dir() -> Path:
    """The cache folder: ``$FUNNEL_LAB_CACHE`` or ``<repository>/.cache/funnel_lab``."""
    env = os.environ.get("FUNNEL_LAB_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / ".cache" / "funnel_lab"


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "to_dict"):
        return _canonical(value.to_dict())
    return repr(value)


def fit_key(crm: Any, settings: dict[str, Any]) -> str:
    """The cache key of ``fit(crm, **settings)``: data fingerprint, ``as_of`` and settings.

    Examples
    --------
    >>> class C:  # a stand-in with what the key needs
    ...     as_of = "2025-01-31"
    ...     def fingerprint(self): return "abc"
    >>> fit_key(C(), {"draws": 10}) == fit_key(C(), {"draws": 10})
    True
    >>> fit_key(C(), {"draws": 10}) == fit_key(C(), {"draws": 20})
    False
    """
    from funnel_lab import __version__

    doc = {"version": [CACHE_VERSION, __version__], "fingerprint": crm.fingerprint(),
           "as_of": str(crm.as_of), "settings": _canonical(settings)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:24]


def cached_fit(crm: Any, *, use_cache: bool = True, **settings: Any) -> Any:
    """:func:`funnel_lab.model.fit` with an on-disk cache (see the module docstring).

    Parameters
    ----------
    crm : CRM
        The validated CRM.
    use_cache : bool
        False fits and leaves the cache alone.
    **settings
        Passed to :func:`funnel_lab.model.fit` (``method``, ``by``, ``draws``,
        ``random_seed``, ...). Age bands and recency default to ``"auto"``, as on the command
        line, so a report shows the same model as ``funnel-lab fit``.

    Returns
    -------
    Posterior

    Examples
    --------
    >>> post = cached_fit(crm, draws=500, random_seed=0)   # doctest: +SKIP
    """
    from funnel_lab.model import fit

    settings.setdefault("band_edges", "auto")
    settings.setdefault("half_life_weeks", "auto")
    seed = settings.get("random_seed")
    if not use_cache or isinstance(seed, np.random.Generator):
        if use_cache:
            log.info("fit not cached: random_seed is a Generator, whose state is not a key")
        return fit(crm, **settings)

    path = cache_dir() / f"fit-{fit_key(crm, settings)}.pkl"
    if path.exists():
        try:
            with path.open("rb") as fh:
                posterior = pickle.load(fh)
            log.info("fit read from cache %s", path)
            return posterior
        except Exception as exc:  # a damaged or stale file: refit and overwrite it
            log.warning("cache file %s could not be read (%s); refitting", path, exc)

    posterior = fit(crm, **settings)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written beside, then renamed: a crash never leaves half a file under the key.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    except OSError as exc:  # a read-only cache folder must not stop a report
        log.warning("could not write the fit cache in %s: %s", path.parent, exc)
        return posterior
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(posterior, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        log.info("fit cached in %s", path)
    except Exception as exc:  # an unpicklable diagnostic or a full disk must not stop a report
        Path(tmp).unlink(missing_ok=True)
        log.warning("could not write the fit cache %s: %s", path, exc)
    return posterior
