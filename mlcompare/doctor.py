"""``mlcompare doctor``: which torch, CUDA and faiss this environment runs, and what sees a GPU.

faiss-cpu and faiss-gpu both install the import module ``faiss``; the last one installed wins
and ``pip list`` may show both. The build actually imported is told apart by what it exposes:
a GPU build has ``faiss.StandardGpuResources``.
"""
from __future__ import annotations

from importlib import metadata

import mlcompare

# pip distributions that provide the ``faiss`` module (PyPI and conda-forge names).
FAISS_DISTRIBUTIONS = ("faiss-cpu", "faiss-gpu", "faiss-gpu-cu11", "faiss-gpu-cu12", "faiss-gpu-cu12-cuvs",
                       "faiss-cuda", "faiss")


def installed_faiss_distributions() -> dict[str, str]:
    """``{distribution: version}`` of every installed package that provides ``faiss``."""
    found = {}
    for name in FAISS_DISTRIBUTIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def facts() -> dict[str, object]:
    """Versions and devices, as plain values (strings, ints, bools; None where absent)."""
    import torch

    info: dict[str, object] = {
        "mlcompare": mlcompare.__version__,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,  # None on a CPU-only torch build
        "torch_gpus": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "torch_gpu_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "bf16_on_gpu": bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()),
        "faiss_distributions": installed_faiss_distributions(),
    }
    try:
        import faiss
    except ImportError as err:
        info.update(faiss=None, faiss_error=str(err), faiss_build=None, faiss_gpus=0)
        return info
    gpu_build = hasattr(faiss, "StandardGpuResources")
    info.update(faiss=faiss.__version__, faiss_build="gpu" if gpu_build else "cpu",
                faiss_gpus=faiss.get_num_gpus() if gpu_build else 0)
    return info


def advice(info: dict[str, object]) -> list[str]:
    """What to do about a mismatch, one line each (empty when all is consistent)."""
    notes = []
    dists = info["faiss_distributions"]
    if info["faiss"] is None:
        notes.append("faiss does not import: pip install faiss-cpu (or, on a CUDA machine, pip install -e .[gpu])")
    if "faiss-cpu" in dists and any(d.startswith(("faiss-gpu", "faiss-cuda")) for d in dists):
        notes.append("both faiss-cpu and faiss-gpu are installed and overwrite each other's 'faiss' module: "
                     "pip uninstall -y faiss-cpu faiss-gpu, then install the one you want")
    if info["torch_gpus"] and info["faiss_build"] == "cpu":
        notes.append("torch sees a GPU but faiss is the CPU build: pip uninstall -y faiss-cpu && pip install -e .[gpu] "
                     "for GPU search and mining")
    if info["faiss_build"] == "gpu" and not info["faiss_gpus"]:
        notes.append("faiss is the GPU build but sees no GPU (driver, CUDA_VISIBLE_DEVICES?); searches run on the CPU")
    return notes


def lines(info: dict[str, object] | None = None) -> list[str]:
    """The report printed by ``mlcompare doctor``."""
    info = facts() if info is None else info
    dists = info["faiss_distributions"]
    gpu_name = f" ({info['torch_gpu_name']})" if info["torch_gpu_name"] else ""
    out = [
        f"mlcompare {info['mlcompare']}",
        f"torch     {info['torch']} (CUDA {info['torch_cuda'] or 'none: CPU-only build'})",
        f"torch GPUs: {info['torch_gpus']}{gpu_name}" + (", bf16 supported" if info["bf16_on_gpu"] else ""),
        f"faiss     {info['faiss'] or 'not importable'}" + (f" ({info['faiss_build']} build)" if info["faiss_build"] else ""),
        f"faiss GPUs: {info['faiss_gpus']}",
        "faiss packages: " + (", ".join(f"{k} {v}" for k, v in dists.items()) or "none found by pip metadata"),
    ]
    return out + [f"note: {note}" for note in advice(info)]
