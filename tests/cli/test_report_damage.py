"""`mlcompare report` on a damaged run directory: one error line naming what is missing, and the
previous report left exactly as it was; a good run re-renders over its own report."""
import json
import shutil

import pytest

from mlcompare.cli import main
from mlcompare.report import render

REPORT_FILES = ("report.md", "report.html")


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("mlcompare: error: ")
    return err[0]


@pytest.fixture
def run(tiny_run, tmp_path):
    """A private copy of the finished tiny run, with its report."""
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    return copy


def snapshot(folder):
    """Every file of the report in ``folder``, by relative path: bytes."""
    files = [folder / name for name in REPORT_FILES] + sorted((folder / "figures").glob("*"))
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in files}


def truncate_mid_row(run):
    text = (run / "results.csv").read_text()
    (run / "results.csv").write_text(text[: len(text) // 2])


def keep_first_row(run):
    lines = (run / "results.csv").read_text().splitlines(keepends=True)
    (run / "results.csv").write_text("".join(lines[:2]))  # header + raw pixels: whole rows, nothing else


def header_only(run):
    lines = (run / "results.csv").read_text().splitlines(keepends=True)
    (run / "results.csv").write_text(lines[0])


def drop_accuracy_column(run):
    lines = (run / "results.csv").read_text().splitlines(keepends=True)
    (run / "results.csv").write_text("".join(line.replace("accuracy,", "acc,", 1) for line in lines[:1]) + "".join(lines[1:]))


def binary_garbage(run):
    (run / "results.csv").write_bytes(bytes(range(256)) * 4 + b"\n")


def remove_config(run):
    (run / "config.json").unlink()


def config_without(key):
    def damage(run):
        config = json.loads((run / "config.json").read_text())
        del config[key]
        (run / "config.json").write_text(json.dumps(config))
    return damage


def remove_curves_folder(run):
    shutil.rmtree(run / "curves")


def remove_one_curves_file(run):
    (run / "curves" / "triplet-bh-s0.npz").unlink()


def truncate_curves_file(run):
    path = run / "curves" / "softmax-s0.npz"
    path.write_bytes(path.read_bytes()[:100])


def remove_labels(run):
    (run / "test_labels_sample.npy").unlink()


@pytest.mark.parametrize("damage, message", [
    (truncate_mid_row, "results.csv' ends in the middle of a row (truncated)"),
    (keep_first_row, "results.csv' lacks 2 method x seed row(s) of config.json (softmax seed 0, triplet-bh seed 0)"),
    (header_only, "results.csv' holds no rows"),
    (drop_accuracy_column, "results.csv' lacks the column(s) accuracy"),
    (binary_garbage, "results.csv' is not a readable CSV"),
    (remove_config, "holds no config.json"),
    (config_without("train_identities"), "config.json' lacks train_identities"),
    (config_without("train"), "config.json' lacks the table 'train'"),
    (remove_curves_folder, "curves/raw-pixels-s0.npz' is missing"),
    (remove_one_curves_file, "curves/triplet-bh-s0.npz' is missing (the ROC, CMC and significance of triplet-bh seed 0"),
    (truncate_curves_file, "curves/softmax-s0.npz' cannot be read"),
    (remove_labels, "test_labels_sample.npy' is missing"),
])
def test_damaged_run_says_what_is_missing_and_keeps_the_report(run, damage, message, capsys):
    before = snapshot(run)
    damage(run)
    capsys.readouterr()
    assert main(["report", str(run)]) == 2
    assert message in one_error_line(capsys)
    assert snapshot(run) == before
    assert [p.name for p in run.iterdir() if p.name.startswith(".report-")] == []  # no staging left behind


@pytest.mark.parametrize("damage", [truncate_mid_row, remove_config, remove_one_curves_file])
def test_damaged_run_never_replaces_a_report_elsewhere_even_with_force(run, tmp_path, damage, capsys):
    out = tmp_path / "published"
    assert main(["report", str(run), "--out", str(out)]) == 0
    before = snapshot(out) | {"results.csv": (out / "results.csv").read_bytes()}
    damage(run)
    capsys.readouterr()
    assert main(["report", str(run), "--out", str(out), "--force"]) == 2
    one_error_line(capsys)
    assert snapshot(out) | {"results.csv": (out / "results.csv").read_bytes()} == before


def test_unfinished_run_renders_with_force_or_where_no_report_exists(run, tmp_path, capsys):
    keep_first_row(run)
    fresh = tmp_path / "fresh"
    assert main(["report", str(run), "--out", str(fresh)]) == 0  # nothing to replace: the partial report is fine
    assert "| raw pixels |" in (fresh / "report.md").read_text()
    assert "| softmax |" not in (fresh / "report.md").read_text()
    assert main(["report", str(run), "--force"]) == 0
    assert "| softmax |" not in (run / "report.md").read_text()


def test_good_run_rerenders_over_its_own_report_and_replaces_figures_whole(run, capsys):
    before = snapshot(run)
    (run / "figures" / "sweep.png").write_bytes(b"a figure an earlier report had")
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == str(run / "report.md")
    assert snapshot(run) == before  # same run, same report; the stale figure is gone
    assert [p.name for p in run.iterdir() if p.name.startswith(".report-")] == []


def test_crash_mid_render_leaves_the_old_report(run, monkeypatch):
    (run / "figures" / "roc.png").write_bytes(b"the old report's ROC")
    before = snapshot(run)

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(render, "_html", crash)  # every figure and report.md are drawn by then
    with pytest.raises(RuntimeError, match="disk full"):
        render.render(run)
    assert snapshot(run) == before
    assert [p.name for p in run.iterdir() if p.name.startswith(".report-")] == []
