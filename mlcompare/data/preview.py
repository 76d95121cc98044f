"""See a data set: a contact sheet (rows identities, columns images) and an image-folder export."""
from __future__ import annotations

import csv
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mlcompare.data.facedata import FaceData
from mlcompare.errors import UserError
from mlcompare.files.outputs import check_new_files

MIN_CELL = 96  # small images are enlarged (nearest neighbour: pixels stay honest) to at least this
GAP = 2
SORT_KEYS = ("degradation",)


def _no_quality(data: FaceData, what: str) -> UserError:
    return UserError(f"{data.source} has no ground-truth image quality (only synthfaces renders it); {what}")


def contact_sheet(data: FaceData, out_png: str | Path, *, identities: int = 8, images: int = 8,
                  sort: str | None = None) -> Path:
    """Write a PNG grid: one row per identity (the first ``identities`` with images), ``images`` columns.

    Rows are labelled by the given labels; a cell with a noisy label gets a red frame. Cells are
    enlarged by an integer factor to at least ``MIN_CELL`` pixels. With ``sort="degradation"``
    each row runs from the identity's least to its most degraded image (``images`` of them,
    evenly spaced in that order, the first and the last included); sources without ground-truth
    quality refuse it. Returns the path written.
    """
    if identities < 1 or images < 1:
        raise UserError(f"contact sheet needs identities >= 1 and images >= 1, got {identities} and {images}")
    if sort is not None and sort not in SORT_KEYS:
        raise UserError(f"sort={sort!r} is not a sort key; use one of {list(SORT_KEYS)}")
    if sort is not None and data.quality is None:
        raise _no_quality(data, "drop --sort")
    out = Path(out_png)
    check_new_files([out], option="--out", force=True)  # a sheet is replaced, as before; a folder never
    size = data.images.shape[-1]
    factor = max(1, -(-MIN_CELL // size))
    cell = size * factor
    present = torch.unique(data.labels)[:identities].tolist()
    sheet = np.full((len(present) * (cell + GAP) + GAP, images * (cell + GAP) + GAP, 3), 255, dtype=np.uint8)
    for row, label in enumerate(present):
        index = torch.nonzero(data.labels == label).squeeze(1)
        if sort is not None:
            index = index[torch.argsort(data.quality[sort][index], stable=True)]
            index = index[torch.linspace(0, len(index) - 1, min(images, len(index))).round().long()]
        index = index[:images]
        for col, i in enumerate(index.tolist()):
            tile = data.images[i].permute(1, 2, 0).numpy().repeat(factor, 0).repeat(factor, 1)
            if data.noisy is not None and bool(data.noisy[i]):
                tile = tile.copy()
                tile[:factor, :], tile[-factor:, :], tile[:, :factor], tile[:, -factor:] = (255, 0, 0), (255, 0, 0), (255, 0, 0), (255, 0, 0)
            top, left = GAP + row * (cell + GAP), GAP + col * (cell + GAP)
            sheet[top:top + cell, left:left + cell] = tile
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(out)
    return out


def _folder_name(name: str, label: int) -> str:
    """An identity name safe as a folder name (path separators and odd characters replaced)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return safe or f"identity{label:06d}"


def quality_csv_path(out_dir: str | Path) -> Path:
    """Where an export's ground-truth quality goes: ``<out_dir>.quality.csv``, beside the folder
    (not inside it, where reading the export back would skip it with a warning)."""
    out = Path(out_dir)
    return out.with_name(out.name + ".quality.csv")


def write_quality_csv(data: FaceData, paths: list[str], out_csv: Path) -> Path:
    """One row per image: its exported path, identity, then every ``data.quality`` column."""
    if data.quality is None:
        raise _no_quality(data, "there is no quality CSV to write")
    columns = list(data.quality)
    values = torch.stack([data.quality[c].float().cpu() for c in columns], 1).tolist()
    with open(out_csv, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "identity", *columns])
        for path, label, row in zip(paths, data.labels.tolist(), values):
            writer.writerow([path, data.identities[label], *(f"{v:.6f}" for v in row)])
    return out_csv


def export_imagefolder(data: FaceData, out_dir: str | Path, *, force: bool = False) -> Path:
    """Write ``out_dir/<identity>/<index>.png`` for every image, grouped by its (given) label.

    Where the source knows each image's quality (synthfaces), ``<out_dir>.quality.csv`` beside
    the folder lists it (path relative to ``out_dir``, identity, nuisance strengths,
    degradation); any other source writes none (and a stale CSV of an earlier export is removed).

    Refuses an existing non-empty ``out_dir`` unless ``force`` (which replaces it). The folder is
    written beside the target under a temporary name and renamed into place, so a crash never
    leaves a half-written export under the final name. Returns ``out_dir``.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"export target {out} is a file; give a folder path")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(f"export folder {out} exists and is not empty; pass force (--force) to replace it or pick another path")
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        names: dict[int, str] = {}
        used: set[str] = set()
        for label in torch.unique(data.labels).tolist():
            name = _folder_name(data.identities[label], label)
            if name in used:  # two names that sanitise alike must not merge identities
                name = f"{name}_{label}"
            used.add(name)
            names[label] = name
            (temp / name).mkdir()
        paths = []
        for i, label in enumerate(data.labels.tolist()):
            pixels = data.images[i].permute(1, 2, 0).numpy()
            Image.fromarray(np.ascontiguousarray(pixels)).save(temp / names[label] / f"{i:07d}.png")
            paths.append(f"{names[label]}/{i:07d}.png")
        csv_path = quality_csv_path(out)
        if data.quality is not None:
            write_quality_csv(data, paths, csv_path)
        elif csv_path.exists():
            csv_path.unlink()
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(temp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temp, out)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return out
