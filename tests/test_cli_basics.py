"""The command line's exit-status contract for argument errors (CONTRACTS.md)."""

from funnel_lab.cli import main


def test_bad_argument_exits_2_with_one_line(capsys):
    status = main(["fit", "--method", "bogus"])
    err = capsys.readouterr().err
    assert status == 2
    assert "invalid choice: 'bogus'" in err and "conjugate" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2


def test_unknown_command_exits_2(capsys):
    assert main(["frobnicate"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "validate" in capsys.readouterr().out


def test_failed_notebook_exits_1_and_bad_input_exits_2(monkeypatch, capsys, tmp_path):
    """A notebook failing while it renders is not the user's input: exit 1, not 2."""
    import funnel_lab.reports as reports
    from funnel_lab.errors import DataError, ReportError

    def failing(args):
        raise ReportError("report 'x' failed in cell 3 of x.ipynb: boom", notebook="x", cell=3)

    monkeypatch.setattr(reports, "run_report_command", failing)
    assert main(["report", "--all", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "cell 3 of x.ipynb" in err and "Traceback" not in err

    def bad_input(args):
        raise DataError("expected a number", path="deals.csv", line=4, column="amount")

    monkeypatch.setattr(reports, "run_report_command", bad_input)
    assert main(["report", "--all", "--out", str(tmp_path)]) == 2
    assert "deals.csv, line 4, column 'amount'" in capsys.readouterr().err
