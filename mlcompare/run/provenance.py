"""What made a run: the code, the libraries, the machine, the command, the time and the data in full.

Written by rank 0 as ``RUN_DIR/provenance.json`` when the run directory is created (``finished`` empty)
and again when the run completes; the report's setup section shows it (:func:`lines`), so that two
reports of the same configuration that disagree say which code, libraries and machine made each. A
resumed run keeps the facts of its earlier sessions under ``earlier``; its total wall time adds them up.

Nothing here may fail a run: a fact that cannot be found (no git, no ``/proc/cpuinfo``, a library not
installed) is recorded as ``"unknown"`` or ``"not installed"``.
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import time
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import mlcompare
from mlcompare.errors import UserError
from mlcompare.run import runlock

FILE = "provenance.json"
UNKNOWN = "unknown"
# the libraries whose versions change results, by pip distribution name (faiss comes from `doctor`,
# which also tells its cpu/gpu build apart)
DISTRIBUTIONS = {"numpy": "numpy", "optuna": "optuna", "pytorch_metric_learning": "pytorch-metric-learning"}


def git_state(root: Path | None = None) -> tuple[str, str]:
    """``(commit, dirty)`` of the checkout holding mlcompare: the full hash and ``"yes"``/``"no"`` (tracked
    files differ from the commit); ``("unknown", "unknown")`` without git or outside a checkout of it
    (an installed package inside some other repository is not that repository's code)."""
    root = (root or Path(mlcompare.__file__).resolve().parents[1]).resolve()

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root:
            return UNKNOWN, UNKNOWN
        return git("rev-parse", "HEAD"), "yes" if git("status", "--porcelain", "--untracked-files=no") else "no"
    except (OSError, subprocess.SubprocessError):  # no git binary, not a repository, a hung git
        return UNKNOWN, UNKNOWN


def cpu_model() -> str:
    """The CPU's model name (Linux: ``/proc/cpuinfo``; elsewhere what ``platform`` knows), or "unknown"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or UNKNOWN


def versions() -> dict[str, str]:
    """mlcompare, Python and every library that shapes results (faiss with its build)."""
    from mlcompare import doctor

    facts = doctor.facts()
    found = {"mlcompare": mlcompare.__version__, "python": platform.python_version(), "torch": str(facts["torch"]),
             "faiss": str(facts["faiss"] or "not installed"), "faiss_build": str(facts["faiss_build"] or UNKNOWN)}
    for key, dist in DISTRIBUTIONS.items():
        try:
            found[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[key] = "not installed"
    return found


def command_line(argv: list[str] | None) -> str:
    """The command as typed: ``mlcompare`` and its arguments (``argv``; None: this process's own)."""
    import sys

    return shlex.join(["mlcompare", *argv]) if argv is not None else shlex.join(sys.argv)


def collect(data: dict[str, str], *, device: str, command: str) -> dict[str, Any]:
    """This process's facts at the start of a run: ``data`` the run's data specs (``{"train": ..., "test":
    ...}``), recorded with every knob resolved (:func:`mlcompare.data.resolved_spec`)."""
    import torch

    from mlcompare.data import resolved_spec

    commit, dirty = git_state()
    facts = {"git_commit": commit, "git_dirty": dirty, **versions(), "cpu": cpu_model(), "cpus": os.cpu_count() or 0,
             "threads": torch.get_num_threads(), "device": device, "command": command,
             "data": {role: resolved_spec(spec) if spec else "" for role, spec in data.items()},
             "started": _now(), "finished": "", "wall_seconds": None}
    if device.startswith("cuda"):
        facts["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return facts


def finished(record: dict[str, Any], *, started: float) -> dict[str, Any]:
    """``record`` completed: end time and this session's wall time (from ``time.monotonic()`` ``started``)."""
    return record | {"finished": _now(), "wall_seconds": round(time.monotonic() - started, 1)}


def total_wall_seconds(record: dict[str, Any]) -> float | None:
    """This and every earlier session's wall time (None while a session has not finished)."""
    walls = [s.get("wall_seconds") for s in [record, *record.get("earlier", [])]]
    return None if any(w is None for w in walls) else float(sum(walls))


def write(run: Path, record: dict[str, Any]) -> None:
    from mlcompare.run.rundir import write_text_atomic

    write_text_atomic(run / FILE, json.dumps(record, indent=2))


def read(run: Path) -> dict[str, Any] | None:
    """``run``'s provenance.json, or None when the run predates it; a damaged one is a :class:`UserError`."""
    path = run / FILE
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"'{path}' is not valid JSON ({err}): restore it from the run, or delete it to report "
                        "without provenance") from None
    if not isinstance(record, dict):
        raise UserError(f"'{path}' holds a {type(record).__name__}, not a run's provenance: restore it or delete it")
    return record


def resumed(record: dict[str, Any], previous: dict[str, Any] | None, *, last_saved: float | None) -> dict[str, Any]:
    """This session's ``record`` with the sessions of a resumed run's ``previous`` provenance kept. An
    interrupted session (no end recorded) counts until ``last_saved``, the time (``time.time()``) its
    last result was saved: what it did after that was lost, and is done again by this session."""
    if previous is None:
        return record
    earlier = [*previous.pop("earlier", []), previous]
    if previous.get("wall_seconds") is None:
        begun = datetime.fromisoformat(previous["started"]).timestamp() if previous.get("started") else None
        saved = last_saved if last_saved is not None and begun is not None else begun
        previous["finished"] = "interrupted" + (f", last result saved {_now(saved)}" if saved is not None else "")
        previous["wall_seconds"] = round(max(0.0, saved - begun), 1) if saved is not None else 0.0
    return record | {"earlier": earlier}


def last_saved(run: Path) -> float | None:
    """When ``run``'s newest output was saved (``time.time()``): results, curves, checkpoints, a tune's
    trials. Where an interrupted session's kept work ends; a tune saves trials, not results.csv rows,
    for hours. None for an empty or missing folder. Call it before this session writes anything."""
    times = [p.stat().st_mtime for p in run.rglob("*") if p.is_file() and p.name not in (FILE, runlock.NAME)]
    return max(times, default=None)


def _now(timestamp: float | None = None) -> str:
    when = datetime.now() if timestamp is None else datetime.fromtimestamp(timestamp)
    return when.astimezone().isoformat(timespec="seconds")
