"""Every benchmark script in tests/benchmarks/ runs at its ``--smoke`` size and prints its table.

The benchmarks are run by hand, so an API change that breaks one goes unnoticed until someone
measures; here each runs end to end in a fresh process (as by hand) at tiny sizes. The figures mean
nothing at these sizes: only that the script gets through and prints the lines it exists for.
"""
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent / "benchmarks"
# a script -> lines its output must contain (its table's header or summary)
EXPECTED = {
    "bench_evaluations.py": ["retrieval 600 x 16", "speed-up", "knn 200 queries x 2000 x 16 references", "agreement: top-1"],
    "bench_margin_losses.py": ["cosface", "arcface", "sphereface", "subcenter_arcface", "ratio"],
    "bench_miners.py": ["pml/ours", "distance_weighted", "memory bank 2000 x 16", "search: faiss"],
    "bench_mining.py": ["miner call", "training step, memory bank", "mining share of the memory-bank step"],
    "bench_scale.py": ["Part A, throughput", "2 processes x 1 thread", "Part B, memory per rank", "partial_fc / full per rank", "W=2:"],
    "bench_search.py": ["faiss exact fp32 (prebuilt index, search)", "evaluations.knn (index build + search)", "knn_reduced bf16"],
    "bench_synthfaces.py": ["synthfaces: 40 images of 32x32", "rendering ="],
    "bench_train.py": ["triplet: method", "arcface: method", "mlcompare trainer, fp32", "our fp32 overhead"],
}


def test_every_benchmark_script_is_smoke_tested():
    assert sorted(p.name for p in BENCHMARKS.glob("bench_*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_benchmark_runs_at_smoke_size(script):
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--smoke"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{script} --smoke failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    missing = [line for line in EXPECTED[script] if line not in done.stdout]
    assert not missing, f"{script} --smoke printed no {missing}:\n{done.stdout[-3000:]}"
