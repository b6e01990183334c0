"""Render report notebooks: check parameters, run with papermill, write offline HTML and an index.

Steps of :func:`render_reports`: pick the notebooks -> check every parameter against every
notebook's parameters cell (no kernel has started yet) -> run each notebook with papermill,
saving the executed notebook -> write one self-contained HTML page per notebook -> write
``index.html``. A failing cell leaves the partial notebook on disk and raises
:class:`~funnel_lab.errors.ReportError` naming the notebook and the cell.

Dependency rule: papermill, nbformat and :mod:`funnel_lab.reports.html`; never imports the
model (the notebooks do).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from funnel_lab.errors import ParameterError, ReportError
from funnel_lab.reports.html import ReportPage, notebook_to_html, write_index
from funnel_lab.reports.parameters import (
    NOTEBOOK_DIR,
    NOTEBOOKS,
    inspect_parameters,
    notebook_path,
    parse_cli_parameters,
    read_params_file,
    resolve_parameters,
)
from funnel_lab.reports.widgets import REPORT_ENV

__all__ = ["REPO_ROOT", "render_notebook", "render_reports", "resolve_data_path",
           "run_report_command"]

log = logging.getLogger(__name__)

#: Seconds one cell may run before the report fails naming it (a hung kernel must not hang
#: ``make report``); the pooled fit is the slowest cell.
CELL_TIMEOUT = 900

#: The repository: relative ``data`` paths that do not exist from the working directory are
#: taken from here, so the notebooks run from any working directory.
REPO_ROOT = Path(__file__).resolve().parents[2]


def resolve_data_path(data: str | Path) -> Path:
    """The CRM folder ``data``: absolute, else from the working directory, else the repository.

    Examples
    --------
    >>> resolve_data_path("data/demo") == REPO_ROOT / "data" / "demo"   # doctest: +SKIP
    True
    """
    path = Path(data).expanduser()
    if path.is_absolute():
        return path
    for base in (Path.cwd(), REPO_ROOT):
        if (base / path).exists():
            return (base / path).resolve()
    raise ParameterError(f"data folder {str(data)!r} not found from the working directory "
                         f"({Path.cwd()}) nor from the repository ({REPO_ROOT})")


def _select(names: Sequence[str], all_: bool, notebook_dir: Path) -> dict[str, Path]:
    if all_ or not names:
        known = [n for n in NOTEBOOKS if (notebook_dir / f"{n}.ipynb").exists()]
        extra = sorted(p.stem for p in notebook_dir.glob("*.ipynb") if p.stem not in NOTEBOOKS)
        names = [*known, *extra]
        if not names:
            raise ParameterError(f"no report notebooks in {notebook_dir}")
    out = {}
    for name in names:
        path = notebook_path(name, notebook_dir)
        out[path.stem] = path
    return out


def _first_line(source: str) -> str:
    line = next((ln.strip() for ln in source.splitlines() if ln.strip()), "")
    return line if len(line) <= 80 else line[:77] + "..."


def _source_cell_index(executed: Path, fallback: int) -> int:
    """0-based index in the source notebook of the cell that failed.

    papermill adds cells (injected parameters, error banners) to the executed notebook; they
    are skipped so the index points at the cell the author wrote.
    """
    import nbformat

    added = {"injected-parameters", "papermill-error-cell-tag"}
    try:
        nb = nbformat.read(executed, as_version=4)
    except Exception:  # no partial notebook: the executed index is the best we have
        return fallback
    own = [c for c in nb.cells if not added & set(c.metadata.get("tags", []))]
    for i, cell in enumerate(own):
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return i
    return fallback


def _effective(source: Path, given: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter the notebook ran with: its defaults, overridden by the given values."""
    import ast

    out: dict[str, Any] = {}
    for name, param in inspect_parameters(source).items():
        try:
            out[name] = ast.literal_eval(param.default)
        except (ValueError, SyntaxError):  # a default that is an expression: show its text
            out[name] = param.default
    out.update(given)
    return out


def render_notebook(name: str, source: Path, parameters: Mapping[str, Any], out_dir: Path,
                    progress: bool = True) -> ReportPage:
    """Run one notebook with papermill and write ``<name>.ipynb`` and ``<name>.html``.

    Parameters
    ----------
    name : str
        Report name (file stem).
    source : Path
        The notebook to run.
    parameters : mapping
        Checked parameters (see :func:`funnel_lab.reports.parameters.resolve_parameters`).
    out_dir : Path
        Where the executed notebook and the page go.
    progress : bool
        Show papermill's per-cell progress bar on stderr.

    Returns
    -------
    ReportPage
    """
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out_dir.mkdir(parents=True, exist_ok=True)
    out_nb = out_dir / f"{name}.ipynb"
    t0 = time.perf_counter()
    previous = os.environ.get(REPORT_ENV)
    os.environ[REPORT_ENV] = "1"  # the kernel inherits it: live widgets step aside
    try:
        papermill.execute_notebook(
            str(source), str(out_nb), parameters=dict(parameters), kernel_name="python3",
            cwd=str(source.parent), progress_bar=progress, log_output=False,
            execution_timeout=CELL_TIMEOUT,
        )
    except PapermillExecutionError as exc:
        cell = _source_cell_index(out_nb, exc.cell_index)
        raise ReportError(
            f"report '{name}' failed in cell {cell} of {source.name} (In [{exc.exec_count}]: "
            f"{_first_line(exc.source)!r}): {exc.ename}: {exc.evalue}; the partial notebook "
            f"is saved in {out_nb}",
            notebook=name, cell=cell, output_path=str(out_nb),
        ) from None
    except Exception as exc:  # the kernel died or could not start: still name the notebook
        raise ReportError(
            f"report '{name}' could not run ({type(exc).__name__}: {exc}); "
            f"see {out_nb} if it was written", notebook=name, output_path=str(out_nb),
        ) from exc
    finally:
        if previous is None:
            os.environ.pop(REPORT_ENV, None)
        else:
            os.environ[REPORT_ENV] = previous
    seconds = time.perf_counter() - t0

    nb = nbformat.read(out_nb, as_version=4)
    title = NOTEBOOKS.get(name, name.replace("_", " ").capitalize())
    page, n_charts = notebook_to_html(nb, title, _effective(source, parameters), seconds)
    html_path = out_dir / f"{name}.html"
    html_path.write_text(page, encoding="utf-8")
    log.info("report %s: %.1f s, %d charts -> %s", name, seconds, n_charts, html_path)
    return ReportPage(name=name, title=title, html_path=html_path.name,
                      notebook_path=out_nb.name, seconds=seconds, parameters=dict(parameters),
                      charts=n_charts)


def render_reports(names: Sequence[str] = (), out: Path | str = "reports", *,
                   all_: bool = False, cli_parameters: Sequence[str] = (),
                   params_file: Path | str | None = None, notebook_dir: Path | None = None,
                   progress: bool = True, stream: TextIO | None = None) -> list[ReportPage]:
    """Check parameters, then render the notebooks into ``out`` with an ``index.html``.

    Parameters
    ----------
    names : sequence of str
        Report names; empty (or ``all_``) renders every notebook.
    out : path
        Output folder.
    cli_parameters : sequence of str
        ``key=value`` texts (``-p``), converted to each parameter's annotated type.
    params_file : path, optional
        YAML or JSON mapping of parameters; ``-p`` values override it.
    notebook_dir : Path, optional
        Where the notebooks are (default: the repository's ``notebooks/``).
    stream : text stream, optional
        Where one line per notebook (progress and time) is written; default stderr.

    Returns
    -------
    list of ReportPage

    Examples
    --------
    >>> pages = render_reports(["funnel_health"], "/tmp/r", cli_parameters=["draws=200"])
    ... # doctest: +SKIP
    """
    stream = stream if stream is not None else sys.stderr
    notebook_dir = notebook_dir or NOTEBOOK_DIR
    out = Path(out)

    # Everything below is checked before any kernel starts.
    selected = _select(names, all_, notebook_dir)
    cli = parse_cli_parameters(cli_parameters)
    if "data" in cli and cli["data"].strip():
        cli["data"] = str(resolve_data_path(cli["data"]))
    file_values = read_params_file(params_file) if params_file is not None else {}
    if isinstance(file_values.get("data"), str):
        file_values["data"] = str(resolve_data_path(file_values["data"]))
    checked = resolve_parameters(selected, cli, file_values)

    pages: list[ReportPage] = []
    try:
        for i, (name, source) in enumerate(selected.items(), start=1):
            stream.write(f"[{i}/{len(selected)}] rendering {name} ...\n")
            stream.flush()
            page = render_notebook(name, source, checked[name], out, progress=progress)
            pages.append(page)
            stream.write(f"[{i}/{len(selected)}] {name}: {page.seconds:.1f} s, "
                         f"{page.charts} charts -> {out / page.html_path}\n")
            stream.flush()
    finally:
        if pages:
            write_index(pages, out / "index.html",
                        generated=dt.datetime.now().strftime("%Y-%m-%d %H:%M"))
    return pages


def run_report_command(args: argparse.Namespace) -> int:
    """``funnel-lab report [NAME ...] [--all] [-p key=value ...] [--params FILE] --out DIR``."""
    t0 = time.perf_counter()
    pages = render_reports(args.names, args.out, all_=args.all, cli_parameters=args.params,
                           params_file=args.params_file)
    sys.stderr.write(f"{len(pages)} report(s) in {time.perf_counter() - t0:.1f} s; open "
                     f"{Path(args.out) / 'index.html'}\n")
    return 0
