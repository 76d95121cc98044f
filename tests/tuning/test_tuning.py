"""`mlcompare tune`: MLRC's protocol on our open-set split, end to end on tiny data and piece by piece."""
import json
import math
from datetime import datetime

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from mlcompare import losses
from mlcompare.backbones import ResNetFace, embed
from mlcompare.cli import main
from mlcompare.config import comparison as config
from mlcompare.config.search_space import Dim
from mlcompare.report import tuning as report_tuning
from mlcompare.run import comparison_tests, runner
from mlcompare.tune import tuning
from tests.conftest import TINY

# digits: 10 identities, 6 to train on; 2 folds of 3; p = 2 so that a fold's 3 identities can train.
TUNE = TINY.replace("p = 4", "p = 2").replace("[[methods]]", "[tuning]\ntrials = 2\nfolds = 2\n[[methods]]", 1)
STEPS = ["--steps", "3", "--no-progress"]


def _stable(path):
    """trials.csv without its timings (what must repeat exactly)."""
    return pd.read_csv(path / "tuning" / "trials.csv").drop(columns=["seconds"])


def test_folds_are_identity_disjoint_and_cover_every_identity_once():
    folds = tuning.identity_folds(11, 4, seed=3)
    flat = torch.cat(folds)
    assert sorted(flat.tolist()) == list(range(11)) and [len(f) for f in folds] == [3, 3, 3, 2]
    assert [f.tolist() for f in tuning.identity_folds(11, 4, seed=3)] == [f.tolist() for f in folds]  # seeded
    assert [f.tolist() for f in tuning.identity_folds(11, 4, seed=4)] != [f.tolist() for f in folds]


def test_fold_data_holds_out_whole_identities(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(TUNE)
    cfg = config.load(str(path))
    train_set, _, _ = runner.prepare_data(cfg)
    folds = tuning.make_folds(train_set, cfg)
    names = [set(f.validation.identities) for f in folds]
    assert set.union(*names) == set(train_set.identities) and sum(len(n) for n in names) == train_set.num_identities
    for fold, held in zip(folds, names):
        assert not held & set(fold.train.identities)  # no validation identity is trained on
        assert len(fold.train) + len(fold.validation) == len(train_set)


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory):
    """One tiny tune run, recording every image batch embedded and in which phase."""
    root = tmp_path_factory.mktemp("tune")
    (root / "t.toml").write_text(TUNE)
    seen = {"tuning": [], "final": []}
    phase = {"now": "tuning"}
    sentinel = 7  # every test image is set to this value: an embedded batch holding one touched the test set
    mp = pytest.MonkeyPatch()
    original_prepare, original_final, original_embed = runner.prepare_data, runner.train_entries, runner.embed

    def prepare(cfg, device=torch.device("cpu"), **kwargs):
        train_set, test_set, protocol = original_prepare(cfg, device, **kwargs)
        test_set.images = torch.full_like(test_set.images, sentinel)
        return train_set, test_set, protocol

    def final(*args, **kwargs):
        phase["now"] = "final"
        return original_final(*args, **kwargs)

    def spy(model, images, **kwargs):
        seen[phase["now"]].append(bool((images.flatten(1) == sentinel).all(dim=1).any()))
        return original_embed(model, images, **kwargs)

    mp.setattr(runner, "prepare_data", prepare)
    mp.setattr(runner, "train_entries", final)
    mp.setattr(runner, "embed", spy)
    try:
        assert main(["tune", str(root / "t.toml"), "--out", str(root / "a"), *STEPS]) == 0
    finally:
        mp.undo()
    return root, seen


def test_the_test_set_is_never_embedded_while_tuning(tuned_run):
    _, seen = tuned_run
    assert seen["tuning"] and not any(seen["tuning"])
    assert any(seen["final"])  # the spy does see test images: the final phase scores on them


def test_every_method_gets_the_same_trials_and_its_own_setting_first(tuned_run):
    root, _ = tuned_run
    trials = pd.read_csv(root / "a" / "tuning" / "trials.csv")
    assert trials.groupby("method").trial.apply(list).to_dict() == {"softmax": [0, 1], "triplet-bh": [0, 1]}
    first = trials[(trials.method == "triplet-bh") & (trials.trial == 0)].iloc[0]
    assert '"margin": 0.2' in first.params and '"lr": 0.001' in first.params  # the comparison's own setting
    assert (trials.state == "complete").all()
    assert all(math.isclose(r.mean, (r.fold_0 + r.fold_1) / 2) for r in trials.itertuples())
    results = pd.read_csv(root / "a" / "results.csv")
    assert set(results.setting.dropna()) == {"default", "tuned"}
    assert set(results.method) == {"raw pixels", "softmax", "softmax-tuned", "triplet-bh", "triplet-bh-tuned"}
    assert (root / "a" / "tuning" / "study.db").exists()
    report = (root / "a" / "report.md").read_text()
    assert "## Tuning" in report and "## Tuned against tuned" in report


def test_tuned_against_tuned_ranks_the_tuned_rows_and_pairs_them_with_the_best(tuned_run):
    root, _ = tuned_run
    results = pd.read_csv(root / "a" / "results.csv")
    section = report_tuning.ranking(root / "a", results, comparison_tests.load(root / "a"))  # saved by the run
    tuned = results[results.setting == "tuned"].groupby("method").map_at_r.mean().sort_values(ascending=False)
    assert [row[0] for row in section.rows] == [m.removesuffix("-tuned") for m in tuned.index]
    assert section.rows[0][3] == "best"
    # one seed here: no paired test to make, and the table says so
    assert [row[3] for row in section.rows[1:]] == [f"{tuned[m] - tuned.iloc[0]:+.3f} (1 seed: no test)" for m in tuned.index[1:]]
    best_pair = max((m for m in tuned.index if m.startswith("triplet")), key=tuned.get)
    assert f"pair: {best_pair.removesuffix('-tuned')} ({tuned[best_pair]:.3f})" in section.paragraphs[0]
    assert report_tuning.ranking(root / "a", results.drop(columns="setting"), {}) is None


def test_the_same_seed_gives_the_same_trials(tuned_run, tmp_path):
    root, _ = tuned_run
    assert main(["tune", str(root / "t.toml"), "--out", str(tmp_path / "b"), *STEPS]) == 0
    pd.testing.assert_frame_equal(_stable(tmp_path / "b"), _stable(root / "a"))


def test_an_interrupted_study_resumed_equals_an_uninterrupted_one(tuned_run, tmp_path, monkeypatch):
    root, _ = tuned_run
    calls = {"n": 0}
    original = runner.train_and_score

    def interrupt_in_the_second_trial(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # trial 1 of the first method, its second fold
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(runner, "train_and_score", interrupt_in_the_second_trial)
    assert main(["tune", str(root / "t.toml"), "--out", str(tmp_path / "c"), *STEPS]) == 130
    assert len(pd.read_csv(tmp_path / "c" / "tuning" / "trials.csv")) == 1  # trial 0 was recorded
    saved = max(p.stat().st_mtime for p in (tmp_path / "c").rglob("*") if p.is_file() and p.name != "provenance.json")
    monkeypatch.setattr(runner, "train_and_score", original)
    assert main(["tune", str(root / "t.toml"), "--out", str(tmp_path / "c"), *STEPS, "--resume"]) == 0
    pd.testing.assert_frame_equal(_stable(tmp_path / "c"), _stable(root / "a"))
    # the interrupted session counts until its last saved trial (not only until results.csv's raw-pixel row)
    first = json.loads((tmp_path / "c" / "provenance.json").read_text())["earlier"][0]
    began = datetime.fromisoformat(first["started"]).timestamp()
    assert first["finished"].startswith("interrupted, last result saved")
    assert first["wall_seconds"] == pytest.approx(saved - began, abs=0.15)


def test_a_failing_trial_is_recorded_and_the_search_goes_on(tmp_path):
    # A learning rate of 1e30 diverges every trial of that method (a value the loss rejects is refused
    # before the run starts: tests/cli/test_tune_bad_input.py); the other method is tuned.
    path = tmp_path / "t.toml"
    path.write_text(TUNE + '[[methods]]\nname = "cosface"\nloss = "cosface"\nsearch = { lr = 1e30 }\n')
    assert main(["tune", str(path), "--out", str(tmp_path / "run"), *STEPS]) == 0
    trials = pd.read_csv(tmp_path / "run" / "tuning" / "trials.csv")
    cos = trials[trials.method == "cosface"]
    assert len(cos) == 2 and (cos.state == "failed").all()
    assert cos.message.str.contains("lower the learning rate").all()
    assert (trials[trials.method == "softmax"].state == "complete").all()
    results = pd.read_csv(tmp_path / "run" / "results.csv")
    assert "cosface" in set(results.method) and "cosface-tuned" not in set(results.method)


def test_the_ensemble_embedding_is_the_concatenation_of_normalised_fold_embeddings():
    torch.manual_seed(0)
    models = [ResNetFace(image_size=16, widths=(8,), blocks=(1,), embedding_dim=4) for _ in range(3)]
    images = torch.randint(0, 255, (5, 3, 16, 16), dtype=torch.uint8)
    got = tuning.ensemble_embeddings(models, images, device=torch.device("cpu"))
    parts = []
    for m in models:
        e = embed(m, images, device=torch.device("cpu"))
        parts.append(e / e.norm(dim=1, keepdim=True))
    assert got.shape == (5, 12) and torch.allclose(got, torch.cat(parts, dim=1), atol=1e-6)


@pytest.mark.parametrize("name", sorted(losses.REGISTRY))
def test_every_registered_losss_space_samples_valid_losses(name):
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = losses.REGISTRY[name].search_space
    for _ in range(4):
        trial = study.ask()
        params = {k: dim.suggest(trial, k) for k, dim in space.items()}
        loss = losses.get(name, num_classes=6, embedding_dim=8, class_counts=torch.tensor([2, 2, 2, 5, 5, 5]), **params)
        assert torch.isfinite(loss(torch.randn(12, 8), torch.arange(6).repeat(2)))
        study.tell(trial, 0.0)
    for dim in space.values():  # the ends of each range build too
        assert isinstance(dim, Dim)


def test_search_overrides_narrow_fix_add_and_reject_unknown_names(tmp_path):
    from dataclasses import replace

    cfg = config.load("quick")
    arc = next(m for m in cfg.methods if m.name == "arcface")
    space = tuning.method_space(cfg, arc, has_head=True)
    assert set(space.dims) == {"lr", "weight_decay", "loss_lr", "s", "m"} and space.defaults["m"] == 0.5
    assert space.dims["lr"].low <= cfg.train.lr <= space.dims["lr"].high  # the comparison's own value is inside
    narrowed = tuning.method_space(cfg, replace(arc, search={"m": [0.3, 0.6], "s": 32.0, "easy_margin": False}),
                                   has_head=True)
    assert narrowed.dims["m"] == Dim(0.3, 0.6) and narrowed.fixed == {"s": 32.0, "easy_margin": False}
    sub = replace(arc, name="sub", loss="subcenter_arcface", params={},
                  search={"drop_start": {"low": 0.2, "high": 0.8}})
    added = tuning.method_space(cfg, sub, has_head=True)
    assert added.dims["drop_start"] == Dim(0.2, 0.8) and added.defaults["drop_start"] == 0.5
    with pytest.raises(Exception, match="search.margin is not a parameter of loss 'arcface'"):
        tuning.method_space(cfg, replace(arc, search={"margin": [0.1, 0.2]}), has_head=True)
    with pytest.raises(Exception, match="loss 'triplet' has no parameters of its own"):
        tri = next(m for m in cfg.methods if m.loss == "triplet")
        tuning.method_space(cfg, replace(tri, search={"loss_lr": [1e-3, 1e-2]}), has_head=False)
