"""``mlcompare embed`` and ``mlcompare export`` on a finished tiny run (also trained with --tensorboard)."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from mlcompare import data as datasets
from mlcompare.backbones import embed, to_input
from mlcompare.cli import main
from mlcompare.use.model import load_model

ONE_METHOD = """
description = "tiny run for embed and export"
[data]
train = "digits"
test_fraction = 0.4
size = 16
verification_pairs = 200
[backbone]
widths = [8, 16]
blocks = [1, 1]
embedding_dim = 16
[train]
steps = 4
p = 4
k = 4
warmup_steps = 1
log_every = 2
checkpoint_every = 4
[[methods]]
loss = "softmax"
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed")
    (root / "c.toml").write_text(ONE_METHOD)
    assert main(["run", str(root / "c.toml"), "--out", str(root / "run"), "--no-progress", "--tensorboard"]) == 0
    return root / "run"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """An image folder with one identity of a single image (training drops those; embed keeps them)."""
    root = tmp_path_factory.mktemp("folder")
    digits = datasets.load("digits", size=16)
    for i, (image, label) in enumerate(zip(digits.images[:9], digits.labels[:9])):
        person = root / ("solo" if i == 8 else f"d{int(label)}")
        person.mkdir(exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(person / f"{i}.png")
    return root


def test_embed_writes_what_the_backbone_embeds(run, folder, tmp_path, capsys):
    out = tmp_path / "e.npy"
    assert main(["embed", "--checkpoint", str(run / "softmax"), "--data", f"imagefolder:{folder}", "--out", str(out),
                 "--no-progress"]) == 0
    got, table = np.load(out), pd.read_csv(tmp_path / "e.csv")
    assert len(got) == len(table) == 9 and "solo" in set(table.identity)
    model, size = load_model(run, "softmax")
    images = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1) for p in table.path])
    want = embed(model, images, device=torch.device("cpu"))
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)
    assert [p.split("/")[-2] for p in table.path] == list(table.identity)


def test_embed_normalised_to_parquet(run, tmp_path):
    pytest.importorskip("pyarrow", reason="pyarrow is not installed: parquet output needs mlcompare[parquet]")
    out = tmp_path / "e.parquet"
    assert main(["embed", "--checkpoint", str(run / "softmax"), "--data", "digits", "--out", str(out), "--normalize",
                 "--no-progress"]) == 0
    table = pd.read_parquet(out)
    digits = datasets.load("digits", size=16)
    model, _ = load_model(run, "softmax")
    want = torch.nn.functional.normalize(embed(model, digits.images, device=torch.device("cpu")), dim=1)
    got = np.stack(table.embedding.to_numpy())
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5) and list(table.label) == digits.labels.tolist()


def test_embed_refuses_an_unknown_format(run, tmp_path, capsys):
    assert main(["embed", "--checkpoint", str(run / "softmax"), "--data", "digits", "--out", str(tmp_path / "e.txt")]) == 2
    assert "give FILE.npy" in capsys.readouterr().err


def test_export_matches_torch_at_any_batch_size(run, tmp_path, capsys):
    onnx = pytest.importorskip("onnx", reason="onnx is not installed: export needs mlcompare[onnx]")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: export needs mlcompare[onnx]")
    pytest.importorskip("onnxscript", reason="onnxscript is not installed: export needs mlcompare[onnx]")
    out = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", str(run / "softmax"), "--onnx", str(out)]) == 0
    assert "max abs diff" in capsys.readouterr().out
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["mlcompare.input_size"] == "16" and "127.5" in meta["mlcompare.normalisation"]
    model, size = load_model(run, "softmax")
    images = datasets.load("digits", size=16).images[:5]  # a batch size the export never saw
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": to_input(images).numpy()})[0]
    want = model.eval()(to_input(images)).detach().numpy()
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_the_run_recorded_its_backbone_cost_and_tensorboard_logs(run):
    config = json.loads((run / "config.json").read_text())
    assert config["backbone_cost"]["parameters"] == sum(p.numel() for p in load_model(run, "softmax")[0].parameters())
    assert "parameters" in (run / "report.md").read_text()
    assert list((run / "tensorboard" / "softmax-s0").glob("events.out.tfevents.*"))
