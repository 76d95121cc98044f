"""``mlcompare embed``: the embedding of every image of a data spec, from a trained run's model.

Written as ``FILE.npy`` (float32 ``[N, D]``) + ``FILE.csv`` (row, path, identity, label: row ``i``
of the CSV is row ``i`` of the array), or as one ``FILE.parquet`` (the same columns and an
``embedding`` list column; needs pyarrow, ``pip install mlcompare[parquet]``). Images are embedded
in batches, as in training's evaluation (:func:`mlcompare.backbones.embed`: eval mode, the run's
precision), with a progress bar.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mlcompare import data as datasets
from mlcompare.backbones import embed
from mlcompare.data.facedata import FaceData
from mlcompare.data.imagefolder import ImageFiles
from mlcompare.data.stored import StoredImages
from mlcompare.errors import UserError
from mlcompare.files.outputs import check_new_files
from mlcompare.use.model import load_model

FORMATS = (".npy", ".parquet")


@dataclass
class Embedded:
    """Embeddings ``[N, D]`` (float32, CPU) and, per row, the image's path (or ``SPEC#i`` for
    generated data), identity name and label."""

    embeddings: torch.Tensor
    paths: list[str]
    identities: list[str]
    labels: np.ndarray
    degradation: np.ndarray | None = None  # ground-truth quality, where the data knows it (synthfaces)


def run_precision(run_dir: Path) -> str:
    """The precision the run trained at (config.json's ``train.precision``; fp32 for older runs)."""
    return json.loads((run_dir / "config.json").read_text())["train"].get("precision", "fp32")


def load_every_image(spec: str, size: int) -> FaceData:
    """``spec`` with its images left on disk where it is a folder or RecordIO; an image folder keeps
    identities with a single image (training's loader drops them: here every image is wanted)."""
    from mlcompare.data import imagefolder

    name, _, rest = spec.partition(":")
    if name == "imagefolder" and rest:
        return imagefolder.load(rest, size=size, stream=True)
    return datasets.load(spec, size=size, stream=True)


def image_keys(data: FaceData, spec: str) -> list[str]:
    """Each image's path where it is a file, else ``SPEC#i``."""
    images = data.images
    if isinstance(images, StoredImages) and isinstance(images.reader, ImageFiles):
        return [str(images.reader.paths[int(k)]) for k in images.keys]
    return [f"{spec}#{i}" for i in range(len(data))]


def embed_spec(model: torch.nn.Module, size: int, spec: str, *, device: torch.device, precision: str = "fp32",
               batch_size: int = 256, normalize: bool = False, progress: bool = True) -> Embedded:
    """Every image of ``spec`` embedded by ``model`` (``normalize``: rows scaled to unit L2 norm)."""
    return embed_data(model, load_every_image(spec, size), spec, device=device, precision=precision,
                      batch_size=batch_size, normalize=normalize, progress=progress)


def embed_data(model: torch.nn.Module, data: FaceData, spec: str, *, device: torch.device, precision: str = "fp32",
               batch_size: int = 256, normalize: bool = False, progress: bool = True) -> Embedded:
    """Every image of ``data`` (loaded from ``spec``) embedded in batches, decoded batch by batch
    where the images are on disk."""
    model.to(device, memory_format=torch.channels_last)
    chunks = []
    for start in tqdm(range(0, len(data), batch_size), desc="embedding", unit="batch", disable=not progress,
                      file=sys.stderr, dynamic_ncols=True):
        chunks.append(embed(model, data.images[start:start + batch_size], device=device, batch_size=batch_size,
                            precision=precision))
    embeddings = torch.cat(chunks)
    if normalize:
        embeddings = F.normalize(embeddings, dim=1)
    labels = data.labels.cpu().numpy()
    degradation = None if data.quality is None else data.quality["degradation"].cpu().numpy()
    return Embedded(embeddings, image_keys(data, spec), [data.identities[i] for i in labels], labels, degradation)


def write(result: Embedded, out: Path) -> list[Path]:
    """``out`` as ``.npy`` (+ the ``.csv`` beside it) or ``.parquet``; the files written."""
    table = pd.DataFrame({"row": np.arange(len(result.paths)), "path": result.paths, "identity": result.identities,
                          "label": result.labels})
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, result.embeddings.numpy().astype(np.float32))
        table.to_csv(out.with_suffix(".csv"), index=False)
        return [out, out.with_suffix(".csv")]
    try:
        import pyarrow  # noqa: F401
    except ImportError as err:
        raise UserError(f"--out {out}: parquet needs pyarrow ({err}): pip install mlcompare[parquet], "
                        "or write FILE.npy (+ a CSV)") from err
    table["embedding"] = list(result.embeddings.numpy().astype(np.float32))
    table.to_parquet(out, index=False)
    return [out]


def main(checkpoint: Path, spec: str, out: Path, *, seed: int, device: torch.device, normalize: bool,
         batch_size: int, progress: bool = True, force: bool = False) -> list[Path]:
    """``mlcompare embed``: the files written (existing ones replaced only with ``force``)."""
    if out.suffix not in FORMATS:
        raise UserError(f"--out {out}: give FILE.npy (with a CSV of paths and identities beside it) or FILE.parquet")
    check_new_files([out, out.with_suffix(".csv")] if out.suffix == ".npy" else [out], option="--out", force=force)
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    model, size = load_model(checkpoint.parent, checkpoint.name, seed=seed)
    result = embed_spec(model, size, spec, device=device, precision=run_precision(checkpoint.parent),
                        batch_size=batch_size, normalize=normalize, progress=progress)
    return write(result, out)
