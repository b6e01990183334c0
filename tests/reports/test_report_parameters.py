"""Notebook parameters: documented == declared, typed conversion, errors before any kernel."""

from __future__ import annotations

import ast
import json

import nbformat
import pytest

from funnel_lab.cli import main
from funnel_lab.errors import ParameterError
from funnel_lab.reports import PARAMETERS, coerce_value, inspect_parameters, resolve_parameters
from funnel_lab.reports.parameters import (
    NOTEBOOK_DIR,
    parse_cli_parameters,
    read_params_file,
)

NOTEBOOKS = sorted(PARAMETERS)


def _parameters_cell(name: str) -> str:
    nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{name}: expected one cell tagged 'parameters'"
    return cells[0].source


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_parameters_cell_agrees_with_the_documented_parameters(name):
    declared = inspect_parameters(NOTEBOOK_DIR / f"{name}.ipynb")
    documented = PARAMETERS[name]
    assert list(declared) == list(documented)
    for key, doc in documented.items():
        assert declared[key].type == doc.type, key
        assert ast.literal_eval(declared[key].default) == doc.default, key


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_assignment_of_the_parameters_cell_is_seen_by_papermill(name):
    # papermill skips annotations it cannot parse (``x: str | None = None``): such a parameter
    # would escape every check, so the cell's assignments must all be inspected ones.
    tree = ast.parse(_parameters_cell(name))
    assigned = [n.target.id for n in tree.body if isinstance(n, ast.AnnAssign)]
    plain = [n for n in tree.body if isinstance(n, ast.Assign)]
    assert not plain, f"{name}: parameters without a type annotation"
    assert assigned == list(inspect_parameters(NOTEBOOK_DIR / f"{name}.ipynb"))


@pytest.mark.parametrize(("value", "type_name", "expected"), [
    ("200", "int", 200), ("0.75", "float", 0.75), ("3", "float", 3.0), ("yes", "bool", True),
    ("False", "bool", False), ("SMB", "str", "SMB"), ("none", "Optional[str]", None),
    ("2026-06-30", "Optional[str]", "2026-06-30"), ("12", "Optional[int]", 12),
    ("", "Optional[float]", None),
])
def test_command_line_text_is_converted_to_the_annotated_type(value, type_name, expected):
    got = coerce_value("p", value, type_name, from_text=True)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(("value", "type_name"), [
    ("abc", "int"), ("1.5", "int"), ("maybe", "bool"), ("x", "float"), ("none", "int"),
])
def test_wrong_text_says_what_was_expected_and_what_came(value, type_name):
    with pytest.raises(ParameterError, match=rf"expected {type_name}, got str '{value}'"):
        coerce_value("p", value, type_name, from_text=True, notebook="nb")


@pytest.mark.parametrize(("value", "type_name", "ok"), [
    (3, "float", True), (3, "int", True), (True, "int", False), (1, "bool", False),
    (None, "Optional[str]", True), (None, "str", False), ("3", "int", False),
    (2.5, "int", False), ("a", "str", True),
])
def test_file_values_must_already_have_the_type(value, type_name, ok):
    if ok:
        coerce_value("p", value, type_name, from_text=False)
    else:
        with pytest.raises(ParameterError, match="expected"):
            coerce_value("p", value, type_name, from_text=False)


def test_resolve_routes_each_parameter_to_the_notebooks_that_declare_it():
    paths = {n: NOTEBOOK_DIR / f"{n}.ipynb" for n in NOTEBOOKS}
    got = resolve_parameters(paths, {"horizon_weeks": "8", "draws": "50"},
                             {"pooled": False, "draws": 10})
    assert got["pipeline_forecast"] == {"horizon_weeks": 8, "draws": 50}
    assert got["funnel_health"] == {"pooled": False, "draws": 50}  # -p overrides the file


def test_unknown_name_lists_the_valid_names_sorted():
    paths = {"funnel_health": NOTEBOOK_DIR / "funnel_health.ipynb"}
    with pytest.raises(ParameterError) as info:
        resolve_parameters(paths, {"horizon": "8"})
    msg = str(info.value)
    assert "unknown parameter 'horizon'" in msg
    names = msg.split("valid names: ")[1].split(", ")
    assert names == sorted(PARAMETERS["funnel_health"])


def test_cli_pairs_and_params_files(tmp_path):
    assert parse_cli_parameters(["a=1", "b="]) == {"a": "1", "b": ""}
    with pytest.raises(ParameterError, match="key=value"):
        parse_cli_parameters(["draws"])
    (tmp_path / "p.yaml").write_text("draws: 50\npooled: false\nas_of: null\n")
    assert read_params_file(tmp_path / "p.yaml") == {"draws": 50, "pooled": False, "as_of": None}
    (tmp_path / "p.json").write_text(json.dumps({"lead_inflow": 1.5}))
    assert read_params_file(tmp_path / "p.json") == {"lead_inflow": 1.5}
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ParameterError, match="mapping"):
        read_params_file(tmp_path / "list.yaml")
    with pytest.raises(ParameterError, match="does not exist"):
        read_params_file(tmp_path / "missing.yaml")


@pytest.fixture
def no_kernel(monkeypatch):
    """Fail the test if anything tries to run a notebook."""
    import papermill

    def refuse(*args, **kwargs):
        raise AssertionError("a notebook was executed although the parameters were wrong")

    monkeypatch.setattr(papermill, "execute_notebook", refuse)


@pytest.mark.parametrize(("argv", "message"), [
    (["-p", "nope=1"], "unknown parameter 'nope'"),
    (["-p", "draws=abc"], "parameter 'draws': expected int, got str 'abc'"),
    (["-p", "pooled=perhaps"], "expected bool"),
    (["funnel_healthy"], "no report notebook named 'funnel_healthy'"),
    (["-p", "data=no/such/folder"], "data folder 'no/such/folder' not found"),
])
def test_cli_parameter_errors_exit_2_before_any_kernel(argv, message, no_kernel, tmp_path,
                                                       capsys):
    code = main(["report", *argv, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_params_file_type_error_exits_2(no_kernel, tmp_path, capsys):
    (tmp_path / "p.yaml").write_text("horizon_weeks: 8.5\n")
    code = main(["report", "pipeline_forecast", "--params", str(tmp_path / "p.yaml"),
                 "--out", str(tmp_path / "out")])
    assert code == 2
    assert "expected int, got float 8.5" in capsys.readouterr().err
