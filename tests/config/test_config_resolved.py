"""The shipped comparisons, rewritten on extends and [sweep], resolve to what the hand-written files did.

``resolved_before.json`` is ``ComparisonConfig.to_dict()`` of every shipped comparison, loaded with
the code and files of the commit before the rewrite (``cd <old checkout> && python -c ...``); it is
data, not recomputed here, so a change in either the files or the resolution shows up.
"""
import dataclasses
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import miners
from mlcompare import losses
from mlcompare.config import comparison as config
from mlcompare.run.runner import params_text

BEFORE = json.loads((Path(__file__).parent / "resolved_before.json").read_text())
# The one deliberate difference: margins' CosFace margin sweep is now declared ([sweep] key =
# "params.m"), so its resolved ``sweep`` names the swept key (the report plots only MethodConfig
# columns, so it draws no sweep figure for it, as before).
DELIBERATE = {"margins": {"sweep": ("", "params.m")},
              "quick": {"description": (
                  "Five losses (softmax, CosFace, ArcFace, contrastive, batch-hard triplet) + raw pixels on synthfaces; "
                  "under 5 minutes on 2 CPU cores",
                  "Five losses (softmax, CosFace, ArcFace, contrastive, batch-hard triplet) + raw pixels on synthfaces, "
                  "3 seeds; about 5 minutes on 2 CPU cores")},
              "metric-vs-classification": {"description": (
                  "The central question: the best-configured metric-learning and margin-softmax methods, same backbone, "
                  "batches and budget, 3 seeds",
                  "The central question: the best-configured metric-learning and margin-softmax methods, same backbone, "
                  "batches and budget, 5 seeds")}}
# Every comparison whose README finding compares methods runs at least 3 seeds (_base.toml), five where
# the finding rests on a difference under 0.01
SEEDS = {"metric-vs-classification": 5}
# Keys added since, at defaults that reproduce the old behaviour (loss_lr 0: the loss's parameters at lr;
# the [tuning] section is read by `mlcompare tune` only, [report] by the report; a method's train_identities 0: all of them;
# epochs 0: the budget is train.steps).
# Framing and augmentation (real photographs): no crop, squashed to the square, no random crop or jitter.
ADDED = {"train": {"loss_lr": 0.0, "epochs": 0.0, "random_crop": [], "color_jitter": 0.0},
         "backbone": {"name": "resnet-face", "pretrained": ""},
         "data": {"quality": False, "crop": 0.0, "crop_box": [], "keep_aspect": False}}
ADDED_SECTIONS = {"tuning": dataclasses.asdict(config.TuningConfig()),
                  "logging": dataclasses.asdict(config.LoggingConfig()),
                  "report": dataclasses.asdict(config.ReportConfig()),  # [report] is read by the report only
                  "crossval": {"benchmark": "", "folds": []}, "benchmarks": []}
ADDED_METHOD_KEYS = {"train_identities": 0, "search": {}, "family": "", "train": {}}  # family: only for pml: losses
# Comparisons shipped since (nothing to compare them with)
ADDED_COMPARISONS = {"mlrc", "modern-margins", "quality", "tuned", "identities", "cfp", "quick-cfp", "fidelity",
                     "fidelity-halving"}


def test_the_same_comparisons_are_shipped():
    assert sorted(config.named()) == sorted(set(BEFORE) | ADDED_COMPARISONS)


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_resolves_as_before(name):
    new = json.loads(json.dumps(config.load(name).to_dict()))  # JSON, as config.json holds it
    old = json.loads(json.dumps(BEFORE[name]))
    for key, (was, now) in DELIBERATE.get(name, {}).items():
        assert old[key] == was and new[key] == now
        old[key] = new[key]
    assert old["seeds"] in (1, 3) and new["seeds"] == SEEDS.get(name, 3)
    old["seeds"] = new["seeds"]
    # the one calibration: synthfaces renders at difficulty 3 in every shipped comparison, so that quick
    # ranks its methods as real faces (CFP) do
    if old["data"]["train"].startswith("synthfaces"):
        assert new["data"]["train"] == old["data"]["train"] + ",difficulty=3"
        old["data"]["train"] = new["data"]["train"]
    for section, keys in ADDED.items():
        for key, default in keys.items():
            assert new[section].pop(key) == default
    for section, default in ADDED_SECTIONS.items():
        assert new.pop(section) == default
    for method in new["methods"]:
        for key, default in ADDED_METHOD_KEYS.items():
            assert method.pop(key) == default
    assert [m["name"] for m in new["methods"]] == [m["name"] for m in old["methods"]]  # order too
    assert new == old
    # types as well as values (4 is not 4.0 in config.json), and the params' order (the report's text)
    assert json.dumps(new) == json.dumps(old)


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_report_params_text_unchanged(name):
    new = config.load(name).methods
    old = [config.MethodConfig(**m) for m in BEFORE[name]["methods"]]
    assert [params_text(m) for m in new] == [params_text(m) for m in old]


def test_shown_params_of_every_loss_and_miner_have_real_defaults():
    for name, cls in losses.REGISTRY.items():  # a loss's defaults: its constructor's (Partial FC adds margin and s)
        for param in cls.shown_params:
            assert param in losses.defaults(name), (name, param)
    for name, cls in miners.REGISTRY.items():
        signature = inspect.signature(cls.__init__).parameters
        for param in cls.shown_params:
            assert signature[param].default is not inspect.Parameter.empty, (name, param)


def test_a_method_that_states_nothing_gets_the_shown_defaults(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('description = "d"\nmethods = [{ loss = "arcface" }, { loss = "cosface", params = { m = 0.2 } },'
                    ' { loss = "triplet", miner = "semihard", miner_params = { selection = "facenet" } }]\n')
    arc, cos, tri = config.load(str(path)).methods
    assert (arc.name, arc.params) == ("arcface", {"s": 64.0, "m": 0.5})  # ArcFace's constructor defaults
    assert list(cos.params.items()) == [("s", 30.0), ("m", 0.2)]
    assert tri.params == {"margin": 0.2} and tri.miner_params == {"margin": 0.2, "selection": "facenet"}


def test_no_shipped_file_restates_a_default():
    """No value in a shipped file equals the value it would get anyway: its base's, or the default."""
    import tomllib

    for path in sorted(config.COMPARISONS.glob("*.toml")):
        raw = tomllib.loads(path.read_text())
        base = config._read(config.COMPARISONS / f"{raw['extends']}.toml") if "extends" in raw else {}
        for section, cls in config.SECTIONS.items():
            defaults = dataclasses.asdict(cls()) | base.get(section, {})
            for key, value in raw.get(section, {}).items():
                assert value != defaults[key], f"{path.name}: {section}.{key} = {value!r} is what it gets anyway"
        for top, default in (("seeds", 1), ("question", ""), ("sweep", "")):
            assert raw.get(top, object()) != base.get(top, default), f"{path.name}: {top} is what it gets anyway"
        for method in raw.get("methods", []):
            loss_cls = losses.REGISTRY.get(method["loss"]) or losses.pml.loss_class(method["loss"].removeprefix("pml:"))
            for params, cls in (("params", loss_cls),
                                ("miner_params", miners.REGISTRY.get(method.get("miner", ""), None))):
                signature = inspect.signature(cls.__init__).parameters if cls else {}
                for key, value in method.get(params, {}).items():
                    assert value != signature[key].default, f"{path.name}: {method} restates {key}"
            assert method.get("name") != method["loss"], f"{path.name}: name = loss is the default"


def test_bases_are_not_listed():
    assert all(not name.startswith("_") for name in config.named())
    assert (config.COMPARISONS / "_base.toml").is_file()
    out = subprocess.run([sys.executable, "-m", "mlcompare", "list"], capture_output=True, text=True, check=True).stdout
    assert not re.search(r"^_", out, re.M) and re.search(r"^batch-size\s", out, re.M)
    with pytest.raises(config.UserError, match="unknown comparison '_base'"):
        config.load("_base")


def test_no_block_repeated_across_files():
    """The shared sections live in _base.toml only: no [data]/[backbone]/[train] value is stated twice."""
    import tomllib

    seen: dict[tuple[str, str, str], str] = {}
    for path in sorted(config.COMPARISONS.glob("*.toml")):
        raw = tomllib.loads(path.read_text())
        for section in config.SECTIONS:
            for key, value in raw.get(section, {}).items():
                where = seen.setdefault((section, key, repr(value)), path.name)
                assert where == path.name, f"{section}.{key} = {value!r} in both {where} and {path.name}"
