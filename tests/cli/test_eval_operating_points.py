"""``mlcompare eval --fmr / --threshold / --erc / --qmagface``: the numbers equal evaluations' own on the same pairs."""
import json

import numpy as np
import pytest
import torch

import evaluations
from mlcompare.backbones import embed
from mlcompare.cli import main
from mlcompare.data import load
from mlcompare.use.model import load_model

SPEC = "synthfaces:identities=24,images_per_identity=6"


@pytest.fixture(scope="module")
def every_pair(tiny_run):
    """What eval must compute from: raw embeddings of every image of SPEC and all their pairs."""
    model, size = load_model(tiny_run, "softmax")
    data = load(SPEC, size=size)
    emb = embed(model, data.images, device=torch.device("cpu")).numpy()
    pairs = evaluations.all_pairs(emb, data.labels.numpy())
    return emb, pairs, data.quality["degradation"].numpy()


def _eval_json(tiny_run, capsys, *options):
    assert main(["eval", "--checkpoint", str(tiny_run / "softmax"), "--data", SPEC, "--json", *options]) == 0
    return json.loads(capsys.readouterr().out)


def test_fmr_and_threshold_are_calibrated_on_every_pair(tiny_run, every_pair, capsys):
    _, pairs, _ = every_pair
    out = _eval_json(tiny_run, capsys, "--fmr", "1e-2", "1e-3", "--threshold", "0.5")
    s, y = pairs["scores"], pairs["same"]
    for point, fmr in zip(out["operating_points"], (1e-2, 1e-3)):
        t = evaluations.calibrate_threshold(s, y, fmr)
        assert point["threshold"] == pytest.approx(t, abs=1e-5)
        assert point["fnmr"] == pytest.approx(evaluations.operating_point(s, y, t)["fnmr"], abs=2 / y.sum())
        assert point["n_impostor"] == int((~y).sum()) and point["fmr"] <= fmr
    assert out["at_threshold"]["fmr"] == pytest.approx(evaluations.operating_point(s, y, 0.5)["fmr"], abs=1e-4)


def test_erc_by_norm_and_by_ground_truth(tiny_run, every_pair, capsys):
    emb, pairs, degradation = every_pair
    s, y, a, b = pairs["scores"], pairs["same"], pairs["index_a"], pairs["index_b"]
    reject = (0.0, 0.05, 0.1, 0.2, 0.3)
    norms = np.linalg.norm(emb, axis=1)
    out = _eval_json(tiny_run, capsys, "--erc", "norm", "--fmr", "1e-2")
    want = evaluations.erc(s, y, norms[a], norms[b], fmr=1e-2, reject=reject)
    np.testing.assert_allclose(out["erc"][0]["fnmr"], want["fnmr"], atol=2 / y.sum())
    truth = _eval_json(tiny_run, capsys, "--erc", "truth", "--fmr", "1e-2")
    oracle = evaluations.erc(s, y, -degradation[a], -degradation[b], fmr=1e-2, reject=reject)
    np.testing.assert_allclose(truth["erc"][0]["fnmr"], oracle["fnmr"], atol=2 / y.sum())


def test_erc_from_a_csv_by_row_equals_the_same_quality_given_otherwise(tiny_run, every_pair, capsys, tmp_path):
    emb, _, _ = every_pair
    csv = tmp_path / "q.csv"
    csv.write_text("row,quality\n" + "".join(f"{i},{v}\n" for i, v in enumerate(np.linalg.norm(emb, axis=1))))
    by_csv = _eval_json(tiny_run, capsys, "--erc", str(csv))
    by_norm = _eval_json(tiny_run, capsys, "--erc", "norm")
    for c, n in zip(by_csv["erc"], by_norm["erc"]):
        np.testing.assert_allclose(c["fnmr"], n["fnmr"])
    csv.write_text("row,quality\n0,1.0\n")
    assert main(["eval", "--checkpoint", str(tiny_run / "softmax"), "--data", SPEC, "--erc", str(csv)]) == 2
    assert "no quality for 143 of 144 images, e.g. #1" in capsys.readouterr().err


def test_qmagface_is_fitted_on_one_half_of_the_identities(tiny_run, every_pair, capsys):
    emb, pairs, _ = every_pair
    out = _eval_json(tiny_run, capsys, "--qmagface", "--fmr", "1e-2")["qmagface"]
    labels = load(SPEC, size=16).labels.numpy()
    in_a = np.isin(labels, np.random.default_rng(0).permutation(np.unique(labels))[:12])
    a, b = pairs["index_a"], pairs["index_b"]
    fit_half = in_a[a] & in_a[b]
    norms = np.linalg.norm(emb, axis=1)
    fit = evaluations.fit_qmagface(pairs["scores"][fit_half], pairs["same"][fit_half], norms[a][fit_half], norms[b][fit_half])
    assert (out["alpha"], out["beta"]) == pytest.approx((fit["alpha"], fit["beta"]), rel=1e-3, abs=1e-6)
    assert out["fit_pairs"] == int(fit_half.sum()) and out["test_pairs"] == int((~in_a[a] & ~in_a[b]).sum())


def test_ground_truth_is_refused_where_the_data_has_none(tiny_run, capsys):
    assert main(["eval", "--checkpoint", str(tiny_run / "softmax"), "--data", "digits", "--erc", "truth"]) == 2
    assert "no ground-truth quality" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tiny_run / "softmax"), "--data", "digits", "--fmr", "2"]) == 2
    assert "--fmr 2: a false match rate is in (0, 1]" in capsys.readouterr().err


def test_lines_printed_without_json(tiny_run, capsys):
    assert main(["eval", "--checkpoint", str(tiny_run / "softmax"), "--data", SPEC, "--fmr", "1e-2",
                 "--erc", "norm", "--qmagface"]) == 0
    out = capsys.readouterr().out
    assert "at FMR 0.01" in out and "AUC-ERC" in out and "QMagFace fitted on" in out


def test_plain_eval_computes_no_all_pairs(tiny_run, capsys, monkeypatch):
    """Every pair of a set is millions of scores: only the options that need them pay for them."""
    def refuse(*args, **kwargs):
        raise AssertionError("all_pairs computed without --fmr/--threshold/--erc/--qmagface")

    monkeypatch.setattr(evaluations, "all_pairs", refuse)
    assert main(["eval", "--checkpoint", str(tiny_run / "softmax"), "--data", SPEC]) == 0
    assert "accuracy" in capsys.readouterr().out
