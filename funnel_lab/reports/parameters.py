"""Notebook parameters: what each report takes, and the checks made before any kernel starts.

Each notebook in ``notebooks/`` has a cell tagged ``parameters`` in which every parameter is
annotated with its type (``draws: int = 1000``, ``as_of: Optional[str] = None``).
:data:`PARAMETERS` documents the same names, types and defaults (a test keeps the two in step).
Values given on the command line (``-p key=value``, always text) are converted to the annotated
type; values from a ``--params`` YAML or JSON file must already have it (an int is accepted where
a float is expected). Anything else is a :class:`~funnel_lab.errors.ParameterError` that says
which notebook, which parameter, what was expected and what arrived.

Dependency rule: papermill, nbformat and yaml; never imports the model or the forecast.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from funnel_lab.errors import ParameterError

__all__ = [
    "NOTEBOOKS",
    "NOTEBOOK_DIR",
    "PARAMETERS",
    "NotebookParameter",
    "coerce_value",
    "inspect_parameters",
    "notebook_path",
    "parse_cli_parameters",
    "read_params_file",
    "resolve_parameters",
]

log = logging.getLogger(__name__)

#: Where the report notebooks live (the repository's ``notebooks/`` folder).
NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"


@dataclass(frozen=True)
class NotebookParameter:
    """One parameter of a notebook: its name, type (as annotated), default and meaning."""

    name: str
    type: str
    default: Any
    help: str = ""


def _p(name: str, type_: str, default: Any, help_: str) -> tuple[str, NotebookParameter]:
    return name, NotebookParameter(name, type_, default, help_)


_COMMON = [
    _p("data", "str", "data/demo",
       "CRM folder; a relative path is taken from the working directory, else the repository"),
    _p("as_of", "Optional[str]", None, "snapshot moment (a date means its end); None: last event"),
    _p("draws", "int", 1000, "posterior draws"),
    _p("random_seed", "int", 0, "seed: the same seed gives the same report"),
]

#: Titles of the reports, in the order the index lists them.
NOTEBOOKS: dict[str, str] = {
    "funnel_health": "Funnel health",
    "pipeline_forecast": "Pipeline forecast",
}

#: The documented parameters of every report notebook, by notebook name.
PARAMETERS: dict[str, dict[str, NotebookParameter]] = {
    "funnel_health": dict([
        *_COMMON,
        _p("ci_prob", "float", 0.9, "probability of the intervals"),
        _p("stale_ratio", "float", 2.0,
           "a deal is stale when its days in stage exceed this multiple of the typical visit"),
        _p("pooled", "bool", True, "fit the pooled (PyMC) model per owner; slower"),
        _p("pooled_draws", "int", 1000, "draws per chain of the pooled model (4 chains)"),
    ]),
    "pipeline_forecast": dict([
        *_COMMON,
        _p("horizon_weeks", "int", 13, "weeks forecast"),
        _p("segment", "Optional[str]", None, "one segment only; None: every segment"),
        _p("lead_inflow", "float", 1.0, "multiplier of the expected lead inflow"),
        _p("top_deals", "int", 15, "open deals listed by their chance of a win within 4 weeks"),
        _p("scenarios", "bool", True, "precompute the lead-inflow scenarios of the explorer"),
    ]),
}

_OPTIONAL = re.compile(
    r"^(?:(?:typing\.)?Optional\[\s*(\w+)\s*\]|(\w+)\s*\|\s*None|None\s*\|\s*(\w+))$")
_BASE_TYPES = {"int", "float", "str", "bool"}
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}
_NONE = {"none", "null", ""}


def notebook_path(name: str, notebook_dir: Path | None = None) -> Path:
    """The notebook file of report ``name`` (``funnel_health`` or ``funnel_health.ipynb``)."""
    folder = notebook_dir or NOTEBOOK_DIR
    stem = name[:-6] if name.endswith(".ipynb") else name
    path = folder / f"{stem}.ipynb"
    if not path.exists():
        known = sorted(p.stem for p in folder.glob("*.ipynb"))
        raise ParameterError(f"no report notebook named '{stem}' in {folder}; known: {known}")
    return path


def inspect_parameters(path: Path | str) -> dict[str, NotebookParameter]:
    """The parameters cell of a notebook, read with :func:`papermill.inspect_notebook`.

    Raises ParameterError when the notebook has no ``parameters`` cell or a parameter has no
    type annotation (its type could not be checked).
    """
    import papermill

    path = Path(path)
    found = papermill.inspect_notebook(str(path))
    if not found:
        raise ParameterError(f"notebook {path.name} has no cell tagged 'parameters'")
    out = {}
    for name, info in found.items():
        type_name = str(info["inferred_type_name"])
        if type_name == "None":
            raise ParameterError(
                f"notebook {path.name}: parameter '{name}' has no type annotation; write e.g. "
                f"'{name}: int = ...' so values can be checked")
        out[name] = NotebookParameter(name, type_name, info["default"], info.get("help", ""))
    return out


def _split_type(type_name: str) -> tuple[str, bool]:
    """``"Optional[int]"`` -> ``("int", True)``; ``"float"`` -> ``("float", False)``."""
    m = _OPTIONAL.match(type_name.strip())
    if m:
        base = next(g for g in m.groups() if g)
        return base, True
    return type_name, False


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def coerce_value(name: str, value: Any, type_name: str, *, from_text: bool,
                 notebook: str = "") -> Any:
    """Convert ``value`` to the annotated type ``type_name`` or raise ParameterError.

    Parameters
    ----------
    name, notebook : str
        Used in the message.
    value : object
        The value given.
    type_name : str
        The annotation, e.g. ``"int"``, ``"float"``, ``"bool"``, ``"str"``, ``"Optional[str]"``.
    from_text : bool
        True for command-line values (always text, converted), False for values from a
        YAML/JSON file (already typed; an int passes for a float).

    Examples
    --------
    >>> coerce_value("draws", "200", "int", from_text=True)
    200
    >>> coerce_value("as_of", "none", "Optional[str]", from_text=True) is None
    True
    >>> coerce_value("draws", "many", "int", from_text=True)
    Traceback (most recent call last):
    ...
    funnel_lab.errors.ParameterError: parameter 'draws': expected int, got str 'many'
    """
    base, optional = _split_type(type_name)
    where = f"{notebook}: " if notebook else ""
    fail = ParameterError(
        f"{where}parameter '{name}': expected {type_name}, got {_describe(value)}")
    if base not in _BASE_TYPES:
        raise ParameterError(f"{where}parameter '{name}' has type {type_name}, which reports "
                             f"cannot check; use one of {sorted(_BASE_TYPES)} or Optional[...]")
    if value is None:
        if optional:
            return None
        raise fail
    if from_text:
        if not isinstance(value, str):
            raise fail
        text = value.strip()
        if optional and text.lower() in _NONE:
            return None
        try:
            if base == "int":
                return int(text)
            if base == "float":
                return float(text)
        except ValueError:
            raise fail from None
        if base == "bool":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise fail
        return value
    if base == "bool":
        if isinstance(value, bool):
            return value
        raise fail
    if base == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise fail
    if base == "float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise fail
    if isinstance(value, str):
        return value
    raise fail


def parse_cli_parameters(pairs: Sequence[str]) -> dict[str, str]:
    """``["draws=200", "as_of=2024-06-30"]`` -> ``{"draws": "200", "as_of": "2024-06-30"}``.

    Examples
    --------
    >>> parse_cli_parameters(["draws=200", "segment=A=B"])
    {'draws': '200', 'segment': 'A=B'}
    """
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"-p expects key=value, got {pair!r}")
        out[key.strip()] = value
    return out


def read_params_file(path: Path | str) -> dict[str, Any]:
    """Parameters from a YAML or JSON file holding one mapping of name to value."""
    path = Path(path)
    if not path.exists():
        raise ParameterError(f"--params file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            doc = json.loads(text)
        else:
            import yaml

            doc = yaml.safe_load(text)
    except Exception as exc:  # the parser's own message says where
        raise ParameterError(f"--params file {path} could not be read: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ParameterError(f"--params file {path} must hold a mapping of name: value, "
                             f"got {type(doc).__name__}")
    return {str(k): v for k, v in doc.items()}


def resolve_parameters(notebooks: Mapping[str, Path], cli: Mapping[str, str] | None = None,
                       file_values: Mapping[str, Any] | None = None,
                       ) -> dict[str, dict[str, Any]]:
    """Check and convert parameters for each notebook, before anything runs.

    A parameter is passed to every notebook that declares it; a name that no selected notebook
    declares is an error listing the valid names. Command-line values override file values.

    Parameters
    ----------
    notebooks : mapping
        Report name to notebook path.
    cli : mapping, optional
        ``-p`` values (text).
    file_values : mapping, optional
        ``--params`` file values (typed).

    Returns
    -------
    dict
        Report name to the parameters it receives (only those given, converted).
    """
    cli = dict(cli or {})
    file_values = dict(file_values or {})
    declared = {name: inspect_parameters(path) for name, path in notebooks.items()}
    valid = sorted({p for params in declared.values() for p in params})
    for key in sorted({*cli, *file_values}):
        if key not in valid:
            which = ", ".join(sorted(declared))
            raise ParameterError(f"unknown parameter '{key}' for {which}; valid names: "
                                 f"{', '.join(valid)}")
    out: dict[str, dict[str, Any]] = {}
    for name, params in declared.items():
        given: dict[str, Any] = {}
        for key, value in file_values.items():
            if key in params:
                given[key] = coerce_value(key, value, params[key].type, from_text=False,
                                          notebook=name)
        for key, value in cli.items():
            if key in params:
                given[key] = coerce_value(key, value, params[key].type, from_text=True,
                                          notebook=name)
        out[name] = given
    return out
