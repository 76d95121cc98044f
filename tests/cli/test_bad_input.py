"""Bad input never costs a run: each case as a user meets it on the command line, with the exit code,
the one-line message and the state of the run directory afterwards. Grows with every new case."""
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from mlcompare.cli import main
from tests.conftest import TINY


def error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("warning:")]
    assert len(err) == 1, err
    assert err[0].startswith("mlcompare: error: ")
    return err[0]


def test_too_few_identities_for_p_names_the_fix_and_creates_nothing(tmp_path, capsys):
    # The case: quick (p=16) on a 15-person set: 11 training identities after the split.
    out = tmp_path / "run"
    code = main(["run", "quick", "--out", str(out), "--no-progress", "--steps", "2",
                 "--data", "synthfaces:identities=15,images_per_identity=4"])
    assert code == 2
    line = error_line(capsys)
    assert "p=16 identities per batch but the training set has 11" in line and "--set train.p=5" in line
    assert not out.exists()


@pytest.mark.parametrize("params, expected", [
    ("{ s = 64.0, m = 3.0 }", "method 'arcface': m"),
    ("{ s = 64.0, margin = 0.5 }", "method 'arcface': loss 'arcface' has no parameter 'margin'; valid parameters: s, m"),
])
def test_a_bad_loss_parameter_of_a_later_method_is_found_before_anything_trains(tmp_path, capsys, params, expected):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY + f'[[methods]]\nname = "arcface"\nloss = "arcface"\nparams = {params}\n')
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 2
    assert expected in error_line(capsys)
    assert not out.exists()


def test_a_bad_miner_parameter_is_found_before_anything_trains(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY + '[[methods]]\nname = "bank"\nloss = "triplet"\nminer = "memory_bank"\n'
                          'miner_params = { size = 0 }\n')
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 2
    assert "method 'bank': size" in error_line(capsys)
    assert not out.exists()


def test_out_naming_a_file_is_refused_with_force_and_the_file_is_untouched(tiny, tmp_path, capsys):
    user_file = tmp_path / "notes.txt"
    user_file.write_text("mine")
    assert main(["run", str(tiny), "--out", str(user_file), "--no-progress", "--force"]) == 2
    assert "is a file, not a run directory" in error_line(capsys)
    assert user_file.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "tiny.toml"]


def test_force_never_replaces_a_folder_that_is_not_a_run(tiny, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"x")
    assert main(["run", str(tiny), "--out", str(folder), "--no-progress", "--force"]) == 2
    assert "holds no config.json" in error_line(capsys)
    assert [p.name for p in folder.iterdir()] == ["a.jpg"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders: nothing to refuse")
def test_out_in_a_read_only_folder_is_refused_before_the_data_loads(tiny, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(["run", str(tiny), "--out", str(locked / "run"), "--no-progress"]) == 2
        assert "is not writable" in error_line(capsys)
    finally:
        locked.chmod(0o700)


def test_resume_with_other_settings_is_refused_and_the_saved_config_kept(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(tiny), "--out", str(out), "--no-progress", "--steps", "4"]) == 0
    saved = (out / "config.json").read_bytes()
    capsys.readouterr()
    assert main(["run", str(tiny), "--out", str(out), "--no-progress", "--steps", "6", "--resume"]) == 2
    line = error_line(capsys)
    assert "differ from the saved run" in line and "train.steps: 4 -> 6" in line
    assert (out / "config.json").read_bytes() == saved


def test_a_diverging_method_fails_alone_and_the_report_lists_it(tmp_path, capsys):
    # s = 1e38 overflows the logits to inf at the first step: that method diverges, the others go on.
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY + '[[methods]]\nname = "arcface-huge-s"\nloss = "arcface"\nparams = { s = 1e38 }\n'
                          '[[methods]]\nname = "triplet-after"\nloss = "triplet"\nminer = "batch_hard"\n')
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    results = pd.read_csv(out / "results.csv").set_index("method")
    assert results.loc["arcface-huge-s", "status"] == "failed"
    assert "loss became" in results.loc["arcface-huge-s", "message"]
    assert (results.drop(index="arcface-huge-s").status == "ok").all()
    report = (out / "report.md").read_text()
    assert "Failed: arcface-huge-s" in report and "failed: loss became" in report


def test_a_test_set_too_small_for_recall_at_8_still_scores(tmp_path, capsys):
    # 8 identities x 4 images, a quarter held out: 2 test identities, 8 test images (issue 19's case)
    root = tmp_path / "faces"
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for person in range(8):
        (root / f"p{person}").mkdir(parents=True)
        base = torch.randint(0, 255, (16, 16, 3), generator=g)
        for shot in range(4):
            noisy = (base + torch.randint(-20, 20, (16, 16, 3), generator=g)).clamp(0, 255).to(torch.uint8)
            Image.fromarray(noisy.numpy()).save(root / f"p{person}" / f"{shot}.png")
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY.replace('train = "digits"', f'train = "imagefolder:{root}"').replace("test_fraction = 0.4", "test_fraction = 0.25")
                   .replace("verification_pairs = 400", "verification_pairs = 20"))
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--no-progress", "--steps", "3", "--set", "train.p=2"]) == 0
    results = pd.read_csv(out / "results.csv")
    assert (results.status == "ok").all() and results.map_at_r.notna().all() and results.rank_1.notna().all()
