"""``mlcompare doctor`` and ``--version``: the versions printed are the ones imported."""
from __future__ import annotations

import faiss
import pytest
import torch

import mlcompare
from mlcompare import doctor
from mlcompare.cli import main


def test_doctor_prints_versions_build_and_gpus(capsys) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    build = "gpu" if hasattr(faiss, "StandardGpuResources") else "cpu"
    assert f"torch     {torch.__version__}" in out
    assert f"faiss     {faiss.__version__} ({build} build)" in out
    assert f"faiss GPUs: {faiss.get_num_gpus() if build == 'gpu' else 0}" in out
    assert f"torch GPUs: {torch.cuda.device_count() if torch.cuda.is_available() else 0}" in out
    if torch.version.cuda is None:
        assert "CUDA none: CPU-only build" in out


def test_version_flag(capsys) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"mlcompare {mlcompare.__version__} (torch {torch.__version__}")
    assert f"faiss {faiss.__version__}" in out and out.count("\n") == 0


def test_no_command_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "a command is required" in capsys.readouterr().err


def fake(**changes) -> dict[str, object]:
    base = {"mlcompare": "0.1.0", "torch": "2.x", "torch_cuda": "12.4", "torch_gpus": 1, "torch_gpu_name": "H100",
            "bf16_on_gpu": True, "faiss": "1.15.1", "faiss_build": "gpu", "faiss_gpus": 1,
            "faiss_distributions": {"faiss-gpu": "1.15.1"}}
    return base | changes


def test_advice_for_mixed_or_mismatched_builds() -> None:
    assert doctor.advice(fake()) == []
    both = doctor.advice(fake(faiss_distributions={"faiss-cpu": "1.15.1", "faiss-gpu": "1.15.1"}))
    assert len(both) == 1 and "pip uninstall -y faiss-cpu faiss-gpu" in both[0]
    cpu_on_gpu_machine = doctor.advice(fake(faiss_build="cpu", faiss_gpus=0, faiss_distributions={"faiss-cpu": "1.15.1"}))
    assert len(cpu_on_gpu_machine) == 1 and "pip install -e .[gpu]" in cpu_on_gpu_machine[0]
    blind = doctor.advice(fake(faiss_gpus=0))
    assert len(blind) == 1 and "sees no GPU" in blind[0]
    cpu_only = fake(torch_cuda=None, torch_gpus=0, torch_gpu_name=None, bf16_on_gpu=False, faiss_build="cpu",
                    faiss_gpus=0, faiss_distributions={"faiss-cpu": "1.15.1"})
    assert doctor.advice(cpu_only) == []
    assert "torch GPUs: 0" in doctor.lines(cpu_only)


def test_installed_faiss_distribution_is_found() -> None:
    found = doctor.installed_faiss_distributions()
    assert found, "pip metadata should name the package that installed faiss"
    assert faiss.__version__ in found.values()
