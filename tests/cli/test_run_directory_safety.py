"""A run writes only inside its run directory, whatever its method names say, and never shares it:
untrusted method names (a comparison file someone sent), names that would share files, and two
runs into one ``--out`` at once. Each case through the CLI: exit code, the one line, the files."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from mlcompare.cli import main
from mlcompare.run import runlock
from tests.cli.test_bad_input import error_line
from tests.conftest import TINY

REPO = Path(__file__).resolve().parents[2]


def files_under(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


def method(name: str, loss: str = "softmax") -> str:
    return f'[[methods]]\nname = {json.dumps(name)}\nloss = "{loss}"\n'


def tiny_with(methods: str) -> str:
    return TINY.split("[[methods]]")[0] + methods


def test_method_names_that_are_paths_write_nothing_outside_the_run(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    work = tmp_path / "work"
    work.mkdir()
    cfg = work / "c.toml"
    cfg.write_text(tiny_with(method("../../../escape") + method(str(tmp_path / "abs"), "cosface")))
    outside = files_under(tmp_path)
    out = work / "run"
    assert main(["run", str(cfg), "--out", str(out), "--no-progress", "--steps", "3", "--tensorboard"]) == 0
    new = files_under(tmp_path) - outside
    assert new and all(p.parts[:2] == ("work", "run") for p in new), sorted(new - {p for p in new if p.parts[:2] == ("work", "run")})
    # every derived path is the name's slug: one component inside its folder of the run
    slugs = {"---------escape-s0", str(tmp_path / "abs").replace("/", "-") + "-s0"}  # tmp_path: letters, digits, -_/
    assert {p.name for p in (out / "tensorboard").iterdir()} == slugs
    assert {p.stem for p in (out / "checkpoints").glob("*.pt")} == slugs
    assert {p.stem for p in (out / "curves").glob("*.npz")} >= slugs
    rows = pd.read_csv(out / "results.csv")
    assert set(rows.method) == {"raw pixels", "../../../escape", str(tmp_path / "abs")}


@pytest.mark.parametrize("names, pair", [(["a/b", "a-b"], ("method 'a/b'", "method 'a-b'")),
                                         (["x.1", "x-1"], ("method 'x.1'", "method 'x-1'")),
                                         (["raw-pixels"], ("the baseline 'raw pixels'", "method 'raw-pixels'"))])
def test_names_that_would_share_files_are_refused_naming_both(tmp_path, capsys, names, pair):
    cfg = tmp_path / "c.toml"
    cfg.write_text(tiny_with("".join(method(n, loss) for n, loss in zip(names, ["softmax", "cosface"]))))
    before = files_under(tmp_path)
    assert main(["run", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert f"{pair[0]} and {pair[1]} would write the same files" in error_line(capsys)
    assert files_under(tmp_path) == before


def test_an_empty_method_name_is_refused(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(tiny_with(method(" ")))
    assert main(["run", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert "a method name is empty" in error_line(capsys)
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- one run per directory

def _cli(*args: str) -> subprocess.Popen:
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "mlcompare", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_two_runs_into_one_out_at_once_one_refuses_naming_the_holder_the_other_completes(tiny, tmp_path):
    other = tmp_path / "other.toml"
    other.write_text(TINY.replace("steps = 12", "steps = 10"))
    out = tmp_path / "run"
    procs = [_cli("run", str(cfg), "--out", str(out), "--no-progress", "--steps", "40") for cfg in (tiny, other)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, _, err in results if code == 2)
    lines = [line for line in loser.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and "is in use by another run (pid " in lines[0], loser
    # the winner's run is complete and intact: every row, every checkpoint, its report, no lock left
    rows = pd.read_csv(out / "results.csv")
    assert sorted(rows.method) == ["raw pixels", "softmax", "triplet-bh"] and (rows.status == "ok").all()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["softmax-s0.pt", "triplet-bh-s0.pt"]
    assert (out / "report.md").is_file() and not (out / runlock.NAME).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.toml", "run", "tiny.toml"]


def test_a_stale_lock_of_a_killed_run_is_taken_over(tiny_run, tmp_path, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = tiny_run / runlock.NAME
    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": "here", "started": "earlier"}))
    try:
        assert runlock.holder(tiny_run) is None  # nobody holds it: stale
        assert main(["run", str(tiny_run.parent / "tiny.toml"), "--out", str(tiny_run), "--resume", "--no-progress",
                     "--steps", "6"]) == 0
        assert not lock.exists()  # taken over, and released at the end
    finally:
        lock.unlink(missing_ok=True)


def test_a_run_started_on_a_held_directory_refuses_before_loading_data(tiny_run, tmp_path, capsys):
    held = runlock.RunLock(tiny_run)  # a run in progress (this process holds the lock)
    try:
        before = {p: p.stat().st_mtime_ns for p in tiny_run.rglob("*")}
        for extra in (["--resume"], ["--force"]):
            assert main(["run", str(tiny_run.parent / "tiny.toml"), "--out", str(tiny_run), "--no-progress",
                         "--steps", "6", *extra]) == 2
            assert f"is in use by another run (pid {os.getpid()} on " in error_line(capsys)
        # report into the run directory while it runs: refused, nothing written
        assert main(["report", str(tiny_run)]) == 2
        assert "is still going" in error_line(capsys)
        assert {p: p.stat().st_mtime_ns for p in tiny_run.rglob("*")} == before
        # report elsewhere: written, with a warning that the run is unfinished
        with pytest.warns(UserWarning, match="is still going .* only its rows so far"):
            assert main(["report", str(tiny_run), "--out", str(tmp_path / "rep")]) == 0
        assert (tmp_path / "rep" / "report.md").is_file()
    finally:
        held.release()
    assert not (tiny_run / runlock.NAME).exists()


def test_a_refusal_in_the_moment_before_the_holder_writes_its_name_still_names_it(tmp_path):
    # The holder takes the flock, then writes who it is: a second run refused in between used to
    # read an empty file and say "unreadable" (seen once in CI). The refusal waits for the name.
    import fcntl
    import threading

    run = tmp_path / "run"
    run.mkdir()
    fd = os.open(run / runlock.NAME, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held, nothing written yet
    writer = threading.Timer(0.3, lambda: os.write(fd, json.dumps(
        {"pid": 4242, "host": "elsewhere", "started": "now"}).encode()))
    writer.start()
    try:
        with pytest.raises(runlock.UserError, match=r"in use by another run \(pid 4242 on elsewhere, started now\)"):
            runlock.RunLock(run)
    finally:
        writer.join()
        os.close(fd)


def test_a_lock_file_that_never_says_who_holds_it_is_called_unreadable(tmp_path):
    import fcntl

    run = tmp_path / "run"
    run.mkdir()
    fd = os.open(run / runlock.NAME, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with pytest.raises(runlock.UserError, match="a process whose lock file is unreadable"):
            runlock.RunLock(run)
    finally:
        os.close(fd)
