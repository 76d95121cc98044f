"""``--set KEY=VALUE``: any key by its dotted path, typed and checked exactly like the file."""
import json

import pytest

from mlcompare.cli import main
from mlcompare.config import comparison as config
from mlcompare.errors import UserError


def test_every_type_through_the_config_function():
    base = config.load("batch-size")
    cfg = config.load("batch-size", sets=["train.p=8", "train.lr=1e-3", "data.size=64", "seeds=2", "train.flip=false",
                                          "backbone.widths=[8,16,32]", "data.train=digits", "description=a b=c",
                                          "train.weight_decay=0"])
    assert cfg.train.p == 8 and isinstance(cfg.train.p, int)
    assert cfg.train.lr == 1e-3 and cfg.data.size == 64 and cfg.seeds == 2 and cfg.train.flip is False
    assert cfg.backbone.widths == [8, 16, 32] and cfg.backbone.blocks == base.backbone.blocks
    assert cfg.data.train == "digits" and cfg.description == "a b=c"  # only the first '=' splits
    assert cfg.train.weight_decay == 0.0 and isinstance(cfg.train.weight_decay, float)
    assert cfg.methods == base.methods and cfg.train.steps == base.train.steps  # the rest as in the file


def test_a_quoted_string_and_a_string_field_given_digits():
    cfg = config.load("quick", sets=['data.train="digits"', "question=2024", "name=n1"])
    assert (cfg.data.train, cfg.question, cfg.name) == ("digits", "2024", "n1")


def test_methods_and_sweep_by_name():
    cfg = config.load("batch-size", sets=["methods.arcface.params.m=0.3", "sweep.values=[4,8]",
                                          "methods.triplet-batch-hard.miner_params={}", "methods.arcface.label_noise=0.1"])
    assert [m.name for m in cfg.methods] == ["arcface-p4", "triplet-batch-hard-p4", "arcface-p8", "triplet-batch-hard-p8"]
    assert cfg.methods[0].params == {"s": 64.0, "m": 0.3} and cfg.methods[0].label_noise == 0.1
    assert cfg.methods[1].params == {"margin": 0.2} and cfg.methods[1].label_noise == 0.0
    cfg = config.load("margins", sets=["methods.sphereface.params.lambda_gamma=0.5", "sweep=p"])
    assert cfg.sweep == "p" and [m.name for m in cfg.methods][-1] == "circle"  # a string sweep: no rows added
    assert cfg.methods[2].params == {"m": 4, "lambda_gamma": 0.5}


@pytest.mark.parametrize("item, message", [
    ("train.step=3", r"^--set train\.step: unknown key 'train\.step'; valid keys: name, description, .*train\.steps, .*"
                     r"methods\.NAME\.params\.PARAM"),
    ("trian.steps=3", r"^--set trian\.steps: unknown key 'trian\.steps'; valid keys: "),
    ("train=3", r"^--set train: unknown key 'train'; valid keys: "),
    ("extends=quick", r"^--set extends: unknown key 'extends'"),
    ("methods.arcface.bogus=1", r"^--set methods\.arcface\.bogus: unknown key"),
    ("methods.softmax.p=4", r"^--set methods\.softmax\.p: no method 'softmax' in .*batch-size\.toml; methods: arcface, triplet-batch-hard$"),
    ("train.p", r"^--set 'train\.p': expected KEY=VALUE, e\.g\. --set train\.p=8"),
    ("train.p=0", r"batch-size\.toml \(with --set train\.p=0\): train\.p must be >= 1 \(identities per batch\), got 0$"),
    ("train.steps=ten", r"train\.steps must be an integer, got 'ten'$"),
    ("backbone.widths=[8,16]", r"backbone\.widths \[8, 16\] and backbone\.blocks \[1, 1, 1\] must have the same length"),
    ("methods.arcface.p=4", r"method 'arcface' sets p, which the sweep varies"),
])
def test_bad_sets(item, message):
    with pytest.raises(UserError, match=message):
        config.load("batch-size", sets=[item])


def test_bad_set_through_the_cli_one_line_nothing_created(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "quick", "--out", str(out), "--set", "train.lr=nan"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mlcompare: error: {config.named()['quick']} (with --set train.lr=nan): train.lr must be finite and > 0, got nan"]
    assert main(["run", "quick", "--out", str(out), "--set", "train.lrr=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mlcompare: error: --set train.lrr: unknown key 'train.lrr'; valid keys: ")
    assert not out.exists()


def test_sets_reach_the_run_and_options_win_over_them(tiny, tmp_path):
    out = tmp_path / "run"
    assert main(["run", str(tiny), "--out", str(out), "--no-progress", "--set", "train.steps=3", "--set", "train.lr=5e-4",
                 "--set", "data.test_fraction=0.5", "--set", "backbone.widths=[4,8]", "--set", "seeds=3",
                 "--set", "methods.triplet-bh.params.margin=0.3", "--set", "description=renamed", "--seeds", "1"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["steps"] == 3 and saved["train"]["lr"] == 5e-4 and saved["data"]["test_fraction"] == 0.5
    assert saved["backbone"]["widths"] == [4, 8] and saved["description"] == "renamed"
    assert saved["seeds"] == 1  # --seeds after --set
    assert [m["params"] for m in saved["methods"]] == [{}, {"margin": 0.3}]


def test_help_shows_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    assert "--set KEY=VALUE" in text and "mlcompare run quick --set train.p=8" in text


def test_a_method_name_with_dots(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('description = "d"\nmethods = [{ name = "cos-m0.1", loss = "cosface", params = { m = 0.1 } },'
                    ' { name = "cos", loss = "cosface" }]\n')
    cfg = config.load(str(path), sets=["methods.cos-m0.1.params.m=0.2", "methods.cos.params.s=16"])
    assert [m.params for m in cfg.methods] == [{"s": 30.0, "m": 0.2}, {"s": 16, "m": 0.35}]
