"""The runner saves the quality section's inputs on synthfaces, and the report draws the section from them."""
from __future__ import annotations

import numpy as np

from mlcompare import data as datasets
from mlcompare.cli import main
from mlcompare.report import quality as report_quality
from mlcompare.run.rundir import curves_path

SYNTH = """
description = "tiny synthfaces quality check"
[data]
train = "synthfaces:identities=24,images_per_identity=4"
test_fraction = 0.5
size = 16
verification_pairs = 100
quality = true
[backbone]
widths = [8, 16]
blocks = [1, 1]
embedding_dim = 16
[train]
steps = 3
p = 4
k = 4
warmup_steps = 1
log_every = 1
checkpoint_every = 3
[[methods]]
name = "magface"
loss = "magface"
"""


def test_synthfaces_run_saves_norms_and_degradation_and_reports_quality(tmp_path, monkeypatch):
    monkeypatch.setattr(report_quality, "BOOTSTRAP", 2)
    (tmp_path / "q.toml").write_text(SYNTH)
    run = tmp_path / "run"
    assert main(["run", str(tmp_path / "q.toml"), "--out", str(run), "--no-progress"]) == 0
    with np.load(curves_path(run, "magface", 0)) as npz:
        c = {k: npz[k] for k in npz.files}
    np.testing.assert_allclose(c["feature_norms"], np.linalg.norm(c["test_embeddings"], axis=1), rtol=1e-5)
    _, test = datasets.load_split("synthfaces:identities=24,images_per_identity=4", size=16, seed=0, test_fraction=0.5)
    np.testing.assert_array_equal(c["test_degradation"], test.quality["degradation"].numpy())
    np.testing.assert_array_equal(c["test_labels"], test.labels.numpy())
    report = (run / "report.md").read_text()
    assert "## Quality: does the feature norm measure image quality?" in report and "erc_0.001.png" in report
    assert "Quality: calibrated-threshold drift" in (run / "report.html").read_text()
    with np.load(curves_path(run, "raw pixels", 0)) as npz:
        assert "test_degradation" not in npz.files  # the baseline has no feature norm to test

