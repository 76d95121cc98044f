"""provenance.json: the facts a run records equal what this process reports, git may be absent, a
resumed run adds up its sessions, and the report's setup section shows them."""
import json
import os
import platform
import shutil
import subprocess
import time
from datetime import datetime
from importlib import metadata
from pathlib import Path

import faiss
import numpy
import optuna
import pytest
import torch

import mlcompare
from mlcompare import data as datasets
from mlcompare.cli import main
from mlcompare.report import text as report_text
from mlcompare.run import provenance

ROOT = Path(mlcompare.__file__).resolve().parents[1]


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_a_run_records_what_this_process_reports(tiny, tmp_path):
    out = tmp_path / "run"
    argv = ["run", str(tiny), "--out", str(out), "--no-progress", "--steps", "3"]
    before = time.time()
    assert main(argv) == 0
    elapsed = time.time() - before
    facts = json.loads((out / "provenance.json").read_text())
    assert facts["mlcompare"] == mlcompare.__version__
    assert facts["python"] == platform.python_version()
    assert facts["torch"] == torch.__version__ and facts["numpy"] == numpy.__version__
    assert facts["faiss"] == faiss.__version__
    assert facts["faiss_build"] == ("gpu" if hasattr(faiss, "StandardGpuResources") else "cpu")
    assert facts["optuna"] == optuna.__version__
    assert facts["pytorch_metric_learning"] == metadata.version("pytorch-metric-learning")
    assert facts["threads"] == torch.get_num_threads() and facts["cpus"] == os.cpu_count()
    assert facts["device"] == "cpu" and facts["command"] == "mlcompare " + " ".join(argv)
    assert facts["data"] == {"train": "digits", "test": ""}
    if shutil.which("git") and (ROOT / ".git").exists():  # a checkout (a fresh clone is one)
        assert facts["git_commit"] == git("rev-parse", "HEAD")
        assert facts["git_dirty"] == ("yes" if git("status", "--porcelain", "--untracked-files=no") else "no")
    started, finished = (datetime.fromisoformat(facts[k]) for k in ("started", "finished"))
    assert before - 1 <= started.timestamp() <= finished.timestamp() <= before + elapsed + 1
    assert 0 < facts["wall_seconds"] <= elapsed
    md = (out / "report.md").read_text()
    assert f"torch {torch.__version__}, numpy {numpy.__version__}" in md
    assert f"command `mlcompare {' '.join(argv)}`" in md
    if facts["git_commit"] != "unknown":
        assert f"at commit {facts['git_commit'][:12]}" in md


def test_without_git_the_commit_is_unknown_and_nothing_fails(monkeypatch):
    monkeypatch.setenv("PATH", "")  # no git binary to be found
    assert provenance.git_state() == ("unknown", "unknown")
    facts = provenance.collect({"train": "digits", "test": ""}, device="cpu", command="mlcompare run quick")
    assert facts["git_commit"] == "unknown" and "commit unknown" in report_text.provenance_lines(facts)[0]


def test_a_folder_outside_a_git_checkout_is_not_credited_with_a_commit(tmp_path):
    assert provenance.git_state(tmp_path) == ("unknown", "unknown")


def test_synthfaces_is_recorded_with_every_knob_and_the_record_loads_the_same_data():
    spec = "synthfaces:identities=3,images_per_identity=2,difficulty=0.5,blur=2"
    facts = provenance.collect({"train": spec, "test": ""}, device="cpu", command="mlcompare run x")
    recorded = facts["data"]["train"]
    knobs = datasets.parse_options(recorded.partition(":")[2])
    assert set(knobs) == {"identities", "images_per_identity", "difficulty", "lookalike_share", "longtail_exponent",
                          "label_noise", "pose", "rotation", "misalignment", "expression", "lighting", "occlusion",
                          "clutter", "blur", "noise"}
    assert knobs["pose"] == 0.5 and knobs["blur"] == 2 and knobs["lookalike_share"] == 0.5  # given, difficulty, default
    a, b = datasets.load(spec, size=16), datasets.load(recorded, size=16)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


def test_a_resumed_run_adds_up_its_sessions():
    first = {"git_commit": "a" * 40, "wall_seconds": 100.0, "started": "2026-01-01T10:00:00+00:00", "finished": "f1"}
    second = provenance.resumed({"git_commit": "b" * 40, "wall_seconds": None, "started": "2026-01-01T11:00:00+00:00",
                                 "finished": ""}, first, last_saved=None)
    assert provenance.total_wall_seconds(second) is None  # this session has not finished
    # the second session is killed; its last result was saved 20.5 s after it started
    saved = datetime.fromisoformat("2026-01-01T11:00:20.5+00:00").timestamp()
    third = provenance.resumed({"git_commit": "b" * 40, "wall_seconds": 0.5}, json.loads(json.dumps(second)),
                               last_saved=saved)
    assert [s["started"][11:19] for s in third["earlier"]] == ["10:00:00", "11:00:00"]
    assert third["earlier"][1]["finished"].startswith("interrupted, last result saved")
    assert provenance.total_wall_seconds(third) == 100.0 + 20.5 + 0.5
    third["started"], third["finished"] = "2026-01-01T12:00:00+00:00", "2026-01-01T12:00:01+00:00"
    line = report_text.provenance_lines(third)[0]
    assert "121 s wall time over 3 sessions (--resume) made by different commits" in line
    assert "started 2026-01-01T10:00:00+00:00, finished 2026-01-01T12:00:01+00:00" in line  # first start, last end


def test_an_interrupted_sessions_work_ends_at_its_newest_saved_file(tmp_path):
    # A tune saves trials for hours before results.csv gets a row: the newest file counts, whatever it is,
    # but not the provenance or the lock, which the next session writes.
    assert provenance.last_saved(tmp_path / "missing") is None and provenance.last_saved(tmp_path) is None
    for name, when in (("results.csv", 1000.0), ("tuning/trials.csv", 5000.0), ("curves/a-s0.npz", 3000.0),
                       ("provenance.json", 9000.0), (".lock", 9500.0)):
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_text("x")
        os.utime(path, (when, when))
    assert provenance.last_saved(tmp_path) == 5000.0


def test_a_run_from_before_provenance_reports_none_and_a_damaged_one_is_refused(tmp_path):
    assert provenance.read(tmp_path) is None and report_text.provenance_lines(None) == []
    (tmp_path / "provenance.json").write_text("{not json")
    with pytest.raises(mlcompare.errors.UserError, match="provenance.json' is not valid JSON"):
        provenance.read(tmp_path)


def test_resume_keeps_the_first_sessions_facts(tiny, tmp_path):
    out = tmp_path / "run"
    assert main(["run", str(tiny), "--out", str(out), "--no-progress", "--steps", "3"]) == 0
    first = json.loads((out / "provenance.json").read_text())
    assert main(["run", str(tiny), "--out", str(out), "--no-progress", "--steps", "3", "--resume"]) == 0
    both = json.loads((out / "provenance.json").read_text())
    assert both["earlier"] == [first] and both["command"].endswith("--resume")
    assert provenance.total_wall_seconds(both) == pytest.approx(first["wall_seconds"] + both["wall_seconds"])
