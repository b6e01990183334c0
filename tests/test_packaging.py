"""pyproject.toml and environment.yml declare the same packages; the public API names exist."""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: conda-forge names that differ from the PyPI names.
CONDA_TO_PYPI = {"python-duckdb": "duckdb"}


def _split(requirement: str) -> tuple[str, str]:
    """'pandas>=3.0' -> ('pandas', '>=3.0'), names normalised as PyPI does."""
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(\[[^\]]*\])?\s*(.*?)\s*", requirement)
    assert m, f"cannot parse requirement {requirement!r}"
    return re.sub(r"[-_.]+", "-", m.group(1)).lower(), m.group(3).replace(" ", "")


def _pyproject() -> tuple[dict[str, str], dict[str, str], str]:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project = doc["project"]
    runtime = dict(_split(r) for r in project["dependencies"])
    dev = dict(_split(r) for r in project["optional-dependencies"]["dev"])
    return runtime, dev, project["requires-python"]


def _environment() -> dict[str, str]:
    """The conda dependency list of environment.yml (a flat list of 'name spec' strings)."""
    deps, inside = {}, False
    for line in (ROOT / "environment.yml").read_text(encoding="utf-8").splitlines():
        if re.match(r"^dependencies\s*:", line):
            inside = True
            continue
        if inside and re.match(r"^\S", line):  # the next top-level key ends the list
            break
        m = re.match(r"^\s+-\s+([^#\s][^#]*?)\s*(#.*)?$", line)
        if inside and m and not m.group(1).endswith(":"):  # skip a nested "pip:" list
            name, spec = _split(m.group(1))
            deps[CONDA_TO_PYPI.get(name, name)] = spec
    return deps


def test_environment_and_pyproject_agree():
    runtime, dev, python = _pyproject()
    env = _environment()
    assert env.pop("python") == python, "environment.yml and requires-python disagree"
    wanted = {**runtime, **dev}
    assert sorted(set(wanted) - set(env)) == [], "in pyproject.toml, not in environment.yml"
    assert sorted(set(env) - set(wanted)) == [], "in environment.yml, not in pyproject.toml"
    differ = {k: (wanted[k], env[k]) for k in wanted if wanted[k] != env[k]}
    assert differ == {}, f"version specifiers differ (pyproject, conda): {differ}"


def test_python_is_at_least_312():
    _, _, python = _pyproject()
    assert python.replace(" ", "") == ">=3.12"


def test_dev_extra_has_the_test_tools():
    _, dev, _ = _pyproject()
    assert {"pytest", "ruff"} <= set(dev)


def test_parser_reads_what_it_is_given():
    assert _split("vl-convert-python>=1.6") == ("vl-convert-python", ">=1.6")
    assert _split("h5netcdf >= 1.3") == ("h5netcdf", ">=1.3")
    assert _split("Foo_Bar[extra]>=2") == ("foo-bar", ">=2")


PUBLIC_MODULES = ["funnel_lab", "funnel_lab.errors", "funnel_lab.markov", "funnel_lab.crm",
                  "funnel_lab.simulate", "funnel_lab.model", "funnel_lab.forecast",
                  "funnel_lab.charts", "funnel_lab.reports"]


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_all_names_exist(module):
    mod = importlib.import_module(module)
    names = mod.__all__
    assert len(names) == len(set(names)), f"{module}.__all__ repeats a name"
    missing = [n for n in names if not hasattr(mod, n)]
    assert missing == [], f"{module}.__all__ names missing attributes: {missing}"


def test_console_script_points_at_main():
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    target = doc["project"]["scripts"]["funnel-lab"]
    module, func = target.split(":")
    assert callable(getattr(importlib.import_module(module), func))
