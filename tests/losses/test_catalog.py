"""`mlcompare losses`: one line per registered loss and tested pml: class; `mlcompare losses NAME`: its docstring."""
import inspect

from mlcompare import cli, losses
from mlcompare.losses import pml


def test_every_loss_is_listed_once_with_its_family_and_defaults(capsys):
    assert cli.main(["losses"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines]
    assert names == sorted(losses.REGISTRY) + [pml.PREFIX + n for n in sorted(pml.KNOWN)]
    by_name = dict(zip(names, lines))
    assert by_name["adaface"].split()[1] == "classification" and "Kim, Jain & Liu 2022" in by_name["adaface"]
    assert "s=64.0, m=0.4, h=0.333, t_alpha=0.01" in by_name["adaface"]
    assert by_name["pml:ProxyAnchorLoss"].split()[1] == "proxy" and "margin=0.1, alpha=32" in by_name["pml:ProxyAnchorLoss"]


def test_one_loss_prints_its_docstring(capsys):
    assert cli.main(["losses", "curricularface"]) == 0
    assert inspect.getdoc(losses.REGISTRY["curricularface"]) in capsys.readouterr().out
    assert cli.main(["losses", "pml:ArcFaceLoss"]) == 0
    assert "DEGREES" in capsys.readouterr().out


def test_an_unknown_loss_is_a_one_line_error(capsys):
    assert cli.main(["losses", "arcfase"]) == 2
    err = capsys.readouterr().err
    assert "unknown loss 'arcfase'" in err and err.count("\n") == 1
