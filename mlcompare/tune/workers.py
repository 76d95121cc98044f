"""``mlcompare tune --jobs N``: N - 1 more worker processes on this machine, beside the one that started them.

Each runs ``join`` (:func:`mlcompare.tune.tuning.join`, passed in) on the same study (spawned: a fresh interpreter, so that no
torch thread pool or CUDA context is inherited). The cores are shared out: every worker, the
starting one included, runs ``cores // N`` torch threads, so that N workers do not oversubscribe
the machine. One job leaves the thread count alone (exactly today's single-process run).
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import warnings
from pathlib import Path
from typing import Callable, Iterator

import torch

from mlcompare.config.comparison import ComparisonConfig
from mlcompare.errors import UserError


def threads_per_worker(jobs: int) -> int:
    """``cores // jobs``, at least one (the cores this process may run on).

    >>> threads_per_worker(10 ** 6)
    1
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // jobs)


Join = Callable[..., int]  # tuning.join: (config, run_dir, *, device, storage, study, worker, best_dir) -> trials run


def _worker(join: Join, config: ComparisonConfig, url: str, study: str, device: str, worker: str, threads: int,
            best_dir: Path | None) -> None:
    torch.set_num_threads(threads)
    try:
        join(config, None, device=device, storage=url, study=study, worker=worker, best_dir=best_dir)
    except UserError as err:
        print(f"mlcompare: worker {worker}: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


@contextlib.contextmanager
def local_workers(jobs: int, join: Join, config: ComparisonConfig, url: str, study: str, *, device: str,
                  best_dir: Path | None) -> Iterator[None]:
    """Workers ``w1 .. w{jobs-1}``, each running ``join``, while the block (worker ``w0``'s own trials)
    runs; on leaving, wait for them, each finished once every method's budget is spent. ``join`` is
    pickled by name for the spawned interpreters: a module-level function."""
    if jobs == 1:
        yield
        return
    threads = threads_per_worker(jobs)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    spawn = multiprocessing.get_context("spawn")
    procs = [spawn.Process(target=_worker, args=(join, config, url, study, device, f"w{i}", threads, best_dir),
                           name=f"mlcompare-tune-w{i}") for i in range(1, jobs)]
    for p in procs:
        p.start()
    finished = False
    try:
        yield
        finished = True
    finally:
        for p in procs:
            if not finished:  # this worker failed or was interrupted: the others stop too (their trials are rerun)
                p.terminate()
            p.join()
        torch.set_num_threads(before)
    failed = [f"{p.name} (exit {p.exitcode})" for p in procs if p.exitcode]
    if failed:
        warnings.warn(f"local worker(s) {', '.join(failed)} stopped early; their trials were run again by the "
                      "others", stacklevel=2)
