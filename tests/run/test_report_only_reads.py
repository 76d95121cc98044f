"""Run computes, report renders: a finished run saves the quality statistics (stats/quality.json) and the
tests between methods (stats/tests.json), and
`mlcompare report` on it trains, embeds and scores nothing (every such function replaced by one that raises)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import evaluations
from mlcompare import backbones
from mlcompare.cli import main
from mlcompare.report import quality as report_quality
from mlcompare.run import comparison_tests, pairs, quality_stats, runner, scoring, stats
from mlcompare.run.rundir import curves_path
from mlcompare.train import trainer
from tests.test_runner_quality import SYNTH

# what rendering must never call: training, embedding, pair scoring, and the quality statistics
FORBIDDEN = [(trainer, "train"), (runner, "train"), (runner, "train_and_score"), (runner, "embed"),
             (backbones, "embed"), (backbones.running, "embed"), (scoring, "score"), (scoring, "verify"),
             (evaluations, "pair_scores"), (evaluations, "all_pairs"), (evaluations, "erc"), (evaluations, "erc_random"),
             (pairs, "qmagface_on_halves"), (quality_stats, "per_seed"), (quality_stats, "compute"),
             (report_quality, "_per_seed"), (comparison_tests, "compute"), (stats, "versus_best"),
             (stats, "paired_difference"), (stats, "paired_t")]


@pytest.fixture(scope="module")
def quality_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    (root / "q.toml").write_text(SYNTH.replace("steps = 3", "steps = 2") + '[[methods]]\nname = "softmax"\nloss = "softmax"\n')
    assert main(["run", str(root / "q.toml"), "--out", str(root / "run"), "--no-progress", "--seeds", "2"]) == 0
    return root / "run"


def test_the_run_saves_the_statistics_the_report_draws(quality_run):
    saved = quality_stats.load(quality_run)
    assert sorted(saved) == [(m, s, 0) for m in ("magface", "softmax") for s in (0, 1)]
    with np.load(curves_path(quality_run, "softmax", 1)) as npz:
        direct = quality_stats.per_seed({k: npz[k] for k in npz.files}, bootstrap=0)  # seed 1: no bootstrap band
    assert json.loads(json.dumps(quality_stats._encode(direct))) == json.loads(json.dumps(quality_stats._encode(saved[("softmax", 1, 0)])))
    assert saved[("softmax", 1, 0)]["spearman"] == pytest.approx(direct["spearman"])
    assert "fnmr_low" in saved[("softmax", 0, 0)][("norm", 1e-3)]  # the first seed carries the bootstrap band


def test_report_on_a_finished_run_computes_nothing(quality_run, tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("mlcompare report must only read the run directory")

    for module, name in FORBIDDEN:
        monkeypatch.setattr(module, name, forbidden)
    assert main(["report", str(quality_run), "--out", str(tmp_path / "rep")]) == 0
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "## Quality: does the feature norm measure image quality?" in text
    assert (tmp_path / "rep" / quality_stats.PATH).is_file()  # the report folder renders again, reading it
    assert (tmp_path / "rep" / comparison_tests.PATH).is_file()
    assert main(["report", str(tmp_path / "rep")]) == 0


def test_a_run_without_saved_statistics_is_computed_at_render_time_alike(quality_run, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(quality_run, old)
    (old / quality_stats.PATH).unlink()  # as written before the run saved them
    (old / comparison_tests.PATH).unlink()
    assert main(["report", str(old), "--out", str(tmp_path / "a")]) == 0
    assert main(["report", str(quality_run), "--out", str(tmp_path / "b")]) == 0
    section = lambda p: p.read_text().split("## Quality", 1)[1]  # noqa: E731
    assert section(tmp_path / "a" / "report.md") == section(tmp_path / "b" / "report.md")
    assert (tmp_path / "a" / "report.md").read_text() == (tmp_path / "b" / "report.md").read_text()
