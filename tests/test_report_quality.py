"""report_quality: the quality sections from saved curves, checked on constructed runs; absent for runs without ground truth."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

import evaluations
from mlcompare.report import quality as report_quality
from mlcompare.run import comparison_tests, quality_stats
from mlcompare.run.saved import RunInputs


def _curves(seed: int, *, norm_tracks_quality: bool) -> dict[str, np.ndarray]:
    """40 identities x 6 images: degraded images drift from their identity's centre; the norm
    either falls with degradation (norm = 2 - degradation) or is unrelated to it."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(40), 6)
    degradation = rng.random(240)
    centres = rng.normal(size=(40, 16))
    directions = centres[labels] + 3.0 * degradation[:, None] * rng.normal(size=(240, 16))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    norms = 2.0 - degradation if norm_tracks_quality else 1.0 + rng.random(240)
    return {"feature_norms": norms, "test_degradation": degradation, "test_labels": labels,
            "test_embeddings": (directions * norms[:, None]).astype(np.float32)}


def _inputs(curves: dict) -> RunInputs:
    results = pd.DataFrame([{"method": m, "seed": s, "status": "ok"} for m, s in curves])
    return RunInputs(config={"data": {"quality": True}}, results=results, history=pd.DataFrame(), curves=curves, labels=None)


def test_runs_without_ground_truth_get_no_section(tmp_path):
    curves = {("softmax", 0): {"fpr": np.zeros(2), "feature_norms": np.ones(3)}}
    assert report_quality.sections(_inputs(curves), tmp_path, {}) == []


def test_sections_report_rho_and_auc_erc_per_method(tmp_path, monkeypatch):
    monkeypatch.setattr(report_quality, "BOOTSTRAP", 3)
    monkeypatch.setattr(quality_stats, "BOOTSTRAP", 3)  # the resamples of the band computed for this run
    curves = {(m, s): _curves(s, norm_tracks_quality=(m == "tracks")) for m in ("tracks", "blind") for s in (0, 1)}
    inputs = _inputs(curves)
    tests = {"quality": comparison_tests.quality(*quality_stats.by_replicate(inputs))}  # as the run saves them
    main, paired, drift, qmag = report_quality.sections(inputs, tmp_path, tests)
    rows = {row[0]: row for row in main.rows}
    rho = [scipy_stats.spearmanr(curves[("tracks", s)]["feature_norms"], curves[("tracks", s)]["test_degradation"]).statistic
           for s in (0, 1)]
    assert rows["tracks"][1] == f"{np.mean(rho):.3f} ± {np.std(rho):.3f}" and np.mean(rho) == pytest.approx(-1.0)
    # With norm = 2 - degradation, rejecting by norm IS rejecting by the oracle: equal AUC-ERC columns.
    norm_col, oracle_col = main.header.index("AUC-ERC norm @0.001"), main.header.index("oracle @0.001")
    assert rows["tracks"][norm_col] == rows["tracks"][oracle_col]
    c = curves[("tracks", 0)]
    pairs = evaluations.all_pairs(c["test_embeddings"], c["test_labels"])
    q = -c["test_degradation"]
    direct = evaluations.erc(pairs["scores"], pairs["same"], q[pairs["index_a"]], q[pairs["index_b"]], fmr=1e-3)
    assert report_quality._per_seed(c, bootstrap=0)[("oracle", 1e-3)]["auc"] == pytest.approx(direct["auc"])
    assert [row[:2] for row in paired.rows] == [["tracks", "blind"]]
    assert [row[0] for row in drift.rows] == ["tracks", "blind"]
    # QMagFace: fitted on the calibration half's pairs, FNMR on the other half's, as evaluations computes it
    labels = c["test_labels"]
    in_a = np.isin(labels, np.random.default_rng(0).permutation(np.unique(labels))[:20])
    a, b = pairs["index_a"], pairs["index_b"]
    fit_half, test_half = in_a[a] & in_a[b], ~in_a[a] & ~in_a[b]
    norms = c["feature_norms"]
    fit = evaluations.fit_qmagface(pairs["scores"][fit_half], pairs["same"][fit_half], norms[a][fit_half], norms[b][fit_half])
    got = report_quality._per_seed(c, bootstrap=0)["qmagface"]
    assert (got["alpha"], got["beta"]) == pytest.approx((fit["alpha"], fit["beta"]))
    corrected = evaluations.qmagface_scores(pairs["scores"], norms[a], norms[b], alpha=fit["alpha"], beta=fit["beta"])[test_half]
    t = evaluations.calibrate_threshold(corrected, pairs["same"][test_half], 1e-3)
    assert got["corrected"] == evaluations.operating_point(corrected, pairs["same"][test_half], t)["fnmr"]
    assert [row[0] for row in qmag.rows] == ["tracks", "blind"] and qmag.header[3:5] == ["FNMR plain", "FNMR QMagFace"]
    assert len(main.figures) == 2 and all(path.exists() for _, _, path in main.figures)
    md = "\n".join(main.markdown(tmp_path))
    assert "rho(norm, degradation)" in md and "erc_0.001.png" in md
