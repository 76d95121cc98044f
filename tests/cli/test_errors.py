"""How ``main()`` ends: a UserError is one line and exit 2; anything else is our bug, shown with
its traceback, a line asking to report it and exit 1; warnings are one line while it runs."""
import warnings

import pytest

import mlcompare
from mlcompare import cli
from mlcompare.config import comparison as config
from mlcompare.errors import UserError


def test_user_error_is_not_a_value_error():
    # A ValueError from our code or a library must never pass for the user's mistake.
    assert not issubclass(UserError, ValueError)


@pytest.mark.parametrize("exc", [ValueError("an internal shape check"), RuntimeError("an internal failure"),
                                 FileNotFoundError("an internal path"), KeyError("an internal key")])
def test_a_bug_keeps_its_traceback_and_says_it_is_a_bug(exc, monkeypatch, capsys):
    def broken():
        raise exc

    monkeypatch.setattr(config, "named", broken)
    assert cli.main(["list"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and f"{type(exc).__name__}: " in err
    assert "in broken" in err  # the frame that raised is shown
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"mlcompare: this is a bug in mlcompare {mlcompare.__version__}") and "report it" in last
    assert "mlcompare: error:" not in err


def test_a_bug_is_re_raised_with_mlcompare_debug(monkeypatch):
    def broken():
        raise RuntimeError("an internal failure")

    monkeypatch.setattr(config, "named", broken)
    monkeypatch.setenv("MLCOMPARE_DEBUG", "1")
    with pytest.raises(RuntimeError, match="an internal failure"):
        cli.main(["list"])


@pytest.mark.parametrize("message, shown", [
    ("--thing must be >= 1, got 0", "--thing must be >= 1, got 0"),
    ("a message that spans\ntwo lines", "a message that spans two lines"),
])
def test_a_user_error_is_exactly_one_line_and_exit_2(message, shown, monkeypatch, capsys):
    def bad_input():
        raise UserError(message)

    monkeypatch.setattr(config, "named", bad_input)
    assert cli.main(["list"]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"mlcompare: error: {shown}"]


def test_keyboard_interrupt_is_one_line_and_130(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(config, "named", interrupted)
    assert cli.main(["list"]) == 130
    assert capsys.readouterr().err.splitlines() == ["mlcompare: interrupted; continue with --resume"]


@pytest.mark.parametrize("ending", ["done", "user error", "bug"])
def test_main_formats_warnings_as_one_line_and_restores_formatwarning(ending, monkeypatch, capsys):
    shown = []

    def warn_then_end():
        shown.append(warnings.formatwarning("something to know", UserWarning, "file.py", 1))
        if ending == "user error":
            raise UserError("bad input")
        if ending == "bug":
            raise RuntimeError("an internal failure")
        return []

    before = warnings.formatwarning
    monkeypatch.setattr(config, "named", warn_then_end)
    cli.main(["list"])
    assert shown == ["warning: something to know\n"]  # while main() runs
    assert warnings.formatwarning is before  # and not after
