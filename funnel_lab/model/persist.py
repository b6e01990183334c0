"""Saving and loading a :class:`~funnel_lab.model.posterior.Posterior` (netCDF via xarray).

Layout of the file (h5netcdf engine): the root group holds the attributes ``as_of``,
``method``, ``fingerprint``, ``settings`` (JSON), ``diagnostics`` (JSON), ``segments`` (JSON
list of names) and ``format_version``; each segment is a group ``segment_<k>`` with the draws
as variables (``rates`` (draw, group, band, from_state, to_state), ``arrivals``,
``entry_probs``, ``amount_mu``, ``amount_sigma``, ``group_share``, ``source_arrivals``) and
the funnel, groups, band edges and group_by as coordinates and attributes.

Loading checks the file against what it will be used with: another ``as_of``, other data
(fingerprint) or other segments/funnels raise :class:`~funnel_lab.errors.PosteriorMismatchError`
naming the mismatch.

Dependency rule: numpy, pandas, xarray (h5netcdf); funnel_lab.crm and funnel_lab.errors.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from funnel_lab.crm.eventlog import CRM
from funnel_lab.crm.funnel import Funnel
from funnel_lab.errors import DataError, MissingFileError, PosteriorMismatchError
from funnel_lab.model.posterior import Posterior, SegmentPosterior

__all__ = ["FORMAT_VERSION", "load_posterior", "save_posterior"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_ENGINE = "h5netcdf"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    return str(obj)


def _segment_dataset(sp: SegmentPosterior) -> xr.Dataset:
    f = sp.funnel
    coords = {
        "draw": np.arange(sp.n_draws),
        "group": list(sp.groups),
        "band": list(sp.band_edges),
        "from_state": list(f.states),
        "to_state": list(f.states),
        "open_stage": list(f.stages),
        "source": list(sp.sources),
    }
    ds = xr.Dataset(
        {
            "rates": (("draw", "group", "band", "from_state", "to_state"), sp.rates),
            "arrivals": (("draw",), sp.arrivals),
            "entry_probs": (("draw", "open_stage"), sp.entry_probs),
            "amount_mu": (("draw",), sp.amount_mu),
            "amount_sigma": (("draw",), sp.amount_sigma),
            "group_share": (("draw", "group"), sp.group_share),
            "source_arrivals": (("draw", "source"), sp.source_arrivals),
        },
        coords=coords,
    )
    ds.attrs = {
        "segment": f.segment,
        "won": f.won,
        "lost": f.lost,
        "cold_after_days": json.dumps(f.cold_after_days),
        "group_by": json.dumps(sp.group_by),
    }
    return ds


def save_posterior(posterior: Posterior, path: str | Path) -> Path:
    """Write ``posterior`` to a netCDF file (overwritten if it exists).

    Examples
    --------
    >>> save_posterior(post, "posterior.nc")             # doctest: +SKIP
    PosixPath('posterior.nc')
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = sorted(posterior.segments)
    root = xr.Dataset(attrs={
        "format_version": FORMAT_VERSION,
        "as_of": pd.Timestamp(posterior.as_of).isoformat(),
        "method": posterior.method,
        "fingerprint": posterior.fingerprint,
        "settings": json.dumps(posterior.settings, default=_json_default),
        "diagnostics": json.dumps(posterior.diagnostics, default=_json_default),
        "segments": json.dumps(names),
    })
    root.to_netcdf(path, mode="w", engine=_ENGINE)
    for k, seg in enumerate(names):
        _segment_dataset(posterior.segments[seg]).to_netcdf(
            path, mode="a", group=f"segment_{k}", engine=_ENGINE)
    log.info("saved the posterior (%s segments, %s draws) to %s", len(names),
             posterior.n_draws, path)
    return path


def _read(path: Path) -> Posterior:
    with xr.open_dataset(path, engine=_ENGINE) as root:
        attrs = dict(root.attrs)
    if int(attrs.get("format_version", -1)) != FORMAT_VERSION:
        raise DataError(f"not a funnel_lab posterior of format {FORMAT_VERSION} "
                        f"(format_version={attrs.get('format_version')!r})", path=str(path))
    segments: dict[str, SegmentPosterior] = {}
    for k, seg in enumerate(json.loads(attrs["segments"])):
        with xr.open_dataset(path, group=f"segment_{k}", engine=_ENGINE) as ds:
            ds = ds.load()
        funnel = Funnel(seg, tuple(str(s) for s in ds["open_stage"].values),
                        won=ds.attrs["won"], lost=ds.attrs["lost"],
                        cold_after_days=json.loads(ds.attrs["cold_after_days"]))
        segments[seg] = SegmentPosterior(
            funnel=funnel,
            rates=ds["rates"].values,
            arrivals=ds["arrivals"].values,
            entry_probs=ds["entry_probs"].values,
            amount_mu=ds["amount_mu"].values,
            amount_sigma=ds["amount_sigma"].values,
            groups=tuple(str(g) for g in ds["group"].values),
            group_by=json.loads(ds.attrs["group_by"]),
            band_edges=tuple(int(b) for b in ds["band"].values),
            group_share=ds["group_share"].values,
            sources=tuple(str(s) for s in ds["source"].values),
            source_arrivals=ds["source_arrivals"].values,
        )
    return Posterior(
        as_of=pd.Timestamp(attrs["as_of"]),
        method=str(attrs["method"]),
        segments=segments,
        fingerprint=str(attrs["fingerprint"]),
        settings=json.loads(attrs["settings"]),
        diagnostics=json.loads(attrs["diagnostics"]),
    )


def load_posterior(
    path: str | Path,
    crm: CRM | None = None,
    as_of: Any = None,
) -> Posterior:
    """Read a saved posterior, checking it against the data and ``as_of`` it will be used with.

    Parameters
    ----------
    path : str or Path
    crm : CRM, optional
        When given, its ``as_of``, fingerprint and funnels must match the saved ones.
    as_of : None, str, date or Timestamp, optional
        When given (a date means the end of that day), it must equal the saved ``as_of``.

    Raises
    ------
    PosteriorMismatchError
        Naming what differs (``as_of``, data fingerprint, segments or funnel stages).

    Examples
    --------
    >>> post = load_posterior("posterior.nc", crm=crm)    # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        raise MissingFileError("saved posterior not found", path=str(path))
    try:
        post = _read(path)
    except (OSError, KeyError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"cannot read a saved posterior ({type(exc).__name__}: {exc})",
                        path=str(path)) from exc

    if as_of is not None:
        from funnel_lab.crm.read import parse_as_of

        wanted = parse_as_of(as_of)
        if wanted != post.as_of:
            raise PosteriorMismatchError(
                f"as_of mismatch: the posterior was fitted at as_of {post.as_of}, "
                f"not {wanted}; fit again for this as_of", path=str(path))
    if crm is not None:
        _check_crm(post, crm, path)
    return post


def _check_crm(post: Posterior, crm: CRM, path: Path) -> None:
    if pd.Timestamp(crm.as_of) != post.as_of:
        raise PosteriorMismatchError(
            f"as_of mismatch: the posterior was fitted at as_of {post.as_of}, the data is at "
            f"{crm.as_of}", path=str(path))
    if sorted(crm.funnels) != sorted(post.segments):
        raise PosteriorMismatchError(
            f"segment mismatch: the posterior has segments {sorted(post.segments)}, the data "
            f"{sorted(crm.funnels)}", path=str(path))
    for seg, f in crm.funnels.items():
        if f.states != post.segments[seg].funnel.states:
            raise PosteriorMismatchError(
                f"funnel mismatch in segment '{seg}': the posterior has stages "
                f"{list(post.segments[seg].funnel.states)}, the data {list(f.states)}",
                path=str(path))
    fingerprint = crm.fingerprint()
    if fingerprint != post.fingerprint:
        raise PosteriorMismatchError(
            f"data mismatch: the posterior was fitted on data with fingerprint "
            f"{post.fingerprint}, this data has {fingerprint} (same as_of, other deals or "
            "events)", path=str(path))
