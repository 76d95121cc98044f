"""``mlcompare eval``: a trained model scored on a .bin, a pairs.txt and a data spec, without training."""
import io
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import evaluations
from mlcompare.backbones import embed
from mlcompare.cli import main
from mlcompare.data import load
from mlcompare.use.model import load_model


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def digit_pairs():
    """16 px digit images as RGB arrays in pair order, and whether each pair is the same digit."""
    digits = load("digits", size=16)
    g = torch.Generator().manual_seed(0)
    a = torch.randint(len(digits), (60,), generator=g)
    b = torch.randint(len(digits), (60,), generator=g)
    order = torch.stack([a, b], 1).flatten()
    images = digits.images[order].permute(0, 2, 3, 1).numpy()
    return images, (digits.labels[a] == digits.labels[b]).numpy()


def expected_accuracy(run, images, same):
    model, size = load_model(run, "softmax")
    emb = embed(model, torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), device=torch.device("cpu"))
    return evaluations.verification(evaluations.pair_scores(emb[0::2], emb[1::2]), same)["accuracy"]


def test_eval_on_an_insightface_bin(tiny_run, digit_pairs, tmp_path, capsys):
    images, same = digit_pairs
    path = tmp_path / "digits.bin"
    path.write_bytes(pickle.dumps(([_png(im) for im in images], list(map(bool, same))), protocol=4))
    assert main(["eval", "--checkpoint", str(tiny_run / "softmax"), "--bin", str(path)]) == 0
    printed = dict(line.split(maxsplit=1) for line in capsys.readouterr().out.splitlines())
    assert float(printed["accuracy"]) == pytest.approx(expected_accuracy(tiny_run, images, same), abs=1e-4)
    assert int(printed["n_genuine"]) == int(same.sum())


def test_eval_on_lfw_pairs(tiny_run, digit_pairs, tmp_path, capsys):
    images, same = digit_pairs
    # LFW layout: root/name/name_%04d.jpg; PNG bytes under a .jpg name are read by content.
    for i in range(0, 120, 2):
        for j, name in ((i, f"p{i}"), (i + 1, f"p{i + 1}")):
            (tmp_path / name).mkdir()
            (tmp_path / name / f"{name}_0001.jpg").write_bytes(_png(images[j]))
    matched = [i for i in range(60) if same[i]]
    mismatched = [i for i in range(60) if not same[i]]
    # pairs.txt matched lines name one person twice: use a second image of the same person
    for i in matched:
        (tmp_path / f"p{2 * i}" / f"p{2 * i}_0002.jpg").write_bytes(_png(images[2 * i + 1]))
    n = min(len(matched), len(mismatched))
    lines = [f"1 {n}"] + [f"p{2 * i} 1 2" for i in matched[:n]] + [f"p{2 * i} 1 p{2 * i + 1} 1" for i in mismatched[:n]]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    keep = matched[:n] + mismatched[:n]
    sub_images = np.stack([images[k] for i in keep for k in (2 * i, 2 * i + 1)])
    assert main(["eval", "--checkpoint", str(tiny_run / "softmax"), "--pairs", str(tmp_path / "pairs.txt"),
                 "--root", str(tmp_path), "--json"]) == 0
    import json
    scores = json.loads(capsys.readouterr().out)
    assert scores["accuracy"] == pytest.approx(expected_accuracy(tiny_run, sub_images, same[keep]), abs=1e-4)


def test_eval_on_a_data_spec_and_errors(tiny_run, capsys):
    assert main(["eval", "--checkpoint", str(tiny_run / "triplet-bh"), "--data", "digits"]) == 0
    out = capsys.readouterr().out
    assert "rank_1" in out and "map_at_r" in out
    assert main(["eval", "--checkpoint", str(tiny_run / "nope"), "--data", "digits"]) == 2
    assert "no checkpoint for method 'nope' seed 0" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tiny_run / "softmax"), "--pairs", "x.txt"]) == 2
    assert "--pairs needs --root" in capsys.readouterr().err
