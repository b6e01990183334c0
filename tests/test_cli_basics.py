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
