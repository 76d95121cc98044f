"""The command line end to end on tiny data, and its one-line errors."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mlcompare import losses
from mlcompare.cli import main
from mlcompare.losses.base import Loss


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("mlcompare: error: ")
    return err[0]


def test_tiny_comparison_end_to_end(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(tiny), "--out", str(out), "--no-progress"]) == 0
    for name in ("config.json", "results.csv", "history.csv", "report.md", "report.html", "figures/roc.png",
                 "figures/cmc.png", "figures/loss.png", "figures/angles.png", "figures/stats.png", "figures/embeddings.png",
                 "figures/cost.png", "checkpoints/softmax-s0.pt"):
        assert (out / name).exists(), name
    results = pd.read_csv(out / "results.csv")
    assert results.method.tolist() == ["raw pixels", "softmax", "triplet-bh"]
    assert (results.status == "ok").all()
    for col in ("accuracy", "auc", "rank_1", "rank_5", "map_at_r", "precision_at_1"):
        assert results[col].between(0, 1).all(), col
    assert (results.rank_5 >= results.rank_1).all()
    assert (results[results.method != "raw pixels"].images_per_s > 0).all()
    curves = np.load(out / "curves" / "softmax-s0.npz")
    assert curves["theta_target_hist"].sum() == 1000  # one target angle per sampled training image
    assert curves["theta_other_hist"].sum() == 1000 * 5  # and one per other training identity (6 in all)
    assert "theta_target_hist" not in np.load(out / "curves" / "triplet-bh-s0.npz").files
    history = pd.read_csv(out / "history.csv")
    assert sorted(history[history.method == "softmax"].step.tolist()) == [0, 3, 6, 9, 11]
    assert "active_fraction" in history.columns
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and not re.search(r"src=['\"](?!data:)", html)  # self-contained
    md = (out / "report.md").read_text()
    assert "| softmax |" in md and "![ROC](figures/roc.png)" in md
    # an existing run is never overwritten without --force, and nothing in it changes
    before = (out / "results.csv").read_bytes()
    capsys.readouterr()
    assert main(["run", str(tiny), "--out", str(out), "--no-progress"]) == 2
    assert "already exists; use --resume to continue it or --force to replace it" in one_error_line(capsys)
    assert (out / "results.csv").read_bytes() == before
    # re-render without training, into another folder
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.html").exists() and (tmp_path / "rep" / "figures" / "roc.png").exists()
    # resume on a finished run trains nothing again and keeps the numbers
    assert main(["run", str(tiny), "--out", str(out), "--no-progress", "--resume"]) == 0
    assert pd.read_csv(out / "results.csv").equals(results)


def test_same_seed_same_results_through_the_cli(tiny, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["run", str(tiny), "--out", str(a), "--no-progress", "--steps", "4"]) == 0
    assert main(["run", str(tiny), "--out", str(b), "--no-progress", "--steps", "4"]) == 0
    cols = ["accuracy", "auc", "eer", "rank_1", "map_at_r"]
    assert pd.read_csv(a / "results.csv")[cols].equals(pd.read_csv(b / "results.csv")[cols])


class NanLoss(Loss):
    family = "pair"

    def __init__(self, *, num_classes: int, embedding_dim: int, miner=None) -> None:  # a pair loss takes a miner
        super().__init__()

    def forward(self, embeddings, labels):
        return embeddings.sum() * float("nan")


def test_nan_loss_marks_method_failed_and_others_go_on(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(losses.REGISTRY, "nan_loss", NanLoss)
    tiny.write_text(tiny.read_text() + '[[methods]]\nname = "broken"\nloss = "nan_loss"\n')
    out = tmp_path / "run"
    assert main(["run", str(tiny), "--out", str(out), "--no-progress", "--steps", "4"]) == 0
    results = pd.read_csv(out / "results.csv").set_index("method")
    assert results.loc["broken", "status"] == "failed"
    assert "loss became nan" in results.loc["broken", "message"]
    assert (results.drop("broken").status == "ok").all()
    assert "broken (seed 0) failed: loss became nan" in capsys.readouterr().err
    assert "Failed: broken" in (out / "report.md").read_text()


def test_force_replaces_a_run(tiny, tmp_path):
    out = tmp_path / "run"
    assert main(["run", str(tiny), "--out", str(out), "--no-progress", "--steps", "2"]) == 0
    (out / "marker").write_text("old")
    assert main(["run", str(tiny), "--out", str(out), "--no-progress", "--steps", "3", "--force"]) == 0
    assert not (out / "marker").exists() and not (tmp_path / "run.partial").exists()
    assert pd.read_csv(out / "results.csv").steps.max() == 3


@pytest.mark.parametrize("args, message", [
    (["run", "nope"], "unknown comparison 'nope'; valid: "),
    (["run", "quick", "--data", "imagefolder:/no/such/folder"], "image folder '/no/such/folder' does not exist"),
    (["run", "quick", "--data", "nonsense"], "unknown data source 'nonsense'"),
    (["run", "quick", "--steps", "0"], "--steps must be >= 1"),
    (["report", "/no/such/run"], "holds no results.csv"),
])
def test_bad_input_gives_one_line(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("results.csv"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where no GPU exists")
def test_gpu_requested_without_one(tiny, tmp_path, capsys):
    assert main(["run", str(tiny), "--out", str(tmp_path / "r"), "--device", "cuda"]) == 2
    assert "torch sees no CUDA GPU here; use --device cpu" in one_error_line(capsys)
    assert not (tmp_path / "r").exists()


def test_console_entry_points():
    out = subprocess.run([sys.executable, "-m", "mlcompare", "list"], capture_output=True, text=True, check=True).stdout
    assert re.search(r"^quick\s+\S", out, re.M)


def test_data_preview_and_export_through_the_cli(tmp_path, capsys):
    from PIL import Image

    sheet = tmp_path / "grid.png"
    assert main(["data", "preview", "synthfaces:identities=6,images_per_identity=3", "--out", str(sheet),
                 "--size", "32", "--identities", "4", "--images", "3"]) == 0
    width, height = Image.open(sheet).size
    assert height > width  # 4 rows of identities, 3 columns of images
    out = tmp_path / "folder"
    assert main(["data", "export", "digits", "--out", str(out), "--size", "8"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [str(d) for d in range(10)]
    assert sum(1 for _ in out.rglob("*.png")) == 1797
    capsys.readouterr()
    assert main(["data", "export", "digits", "--out", str(out), "--size", "8"]) == 2
    assert "force" in one_error_line(capsys)
