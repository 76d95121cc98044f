"""``imagefolder:PATH``: one sub-folder per identity, images read with Pillow."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from mlcompare.data.facedata import FaceData
from mlcompare.data.stored import StoredImages
from mlcompare.errors import UserError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".bmp", ".webp", ".tif", ".tiff"}


def read_image(path: Path, size: int) -> np.ndarray:
    """One image as uint8 ``[3, size, size]``: grey repeated to RGB, resized (bilinear)."""
    try:
        with Image.open(path) as img:
            img = img.convert("RGB").resize((size, size), Image.BILINEAR)
            return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"cannot read image {path}: {err.__class__.__name__}; remove or replace the file") from err


class ImageFiles:
    """Image files by position, read with Pillow (the :class:`~mlcompare.data.stored.ImageReader` of a folder)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def image(self, key: int, size: int) -> torch.Tensor:
        return torch.from_numpy(read_image(self.paths[key], size))


def load(path: str, *, size: int, stream: bool = False) -> FaceData:
    """Read ``path/<identity>/<image>``; identities are the sub-folder names, sorted.

    With ``stream`` the images stay on disk (:class:`StoredImages`, decoded when used).
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UserError(f"image folder '{path}' does not exist; give a folder with one sub-folder per identity")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    identities: list[str] = []
    files: list[Path] = []
    labels: list[int] = []
    for folder in folders:
        found = sorted(f for f in folder.iterdir() if f.suffix.lower() in EXTENSIONS)
        if not found:
            continue
        labels += [len(identities)] * len(found)
        identities.append(folder.name)
        files += found
    if not files:
        raise UserError(f"image folder '{path}' holds no images in sub-folders; expected PATH/<identity>/<image>.png|jpg|pgm")
    images = StoredImages(ImageFiles(files), np.arange(len(files)), size)
    return FaceData(images if stream else images.decode_all(desc=f"reading {path}"), torch.tensor(labels),
                    identities, f"imagefolder:{path}")


def drop_singletons(data: FaceData) -> FaceData:
    """Identities with one image can be neither a positive nor a probe: drop them, with a count."""
    counts = torch.bincount(data.labels, minlength=data.num_identities)
    single = int((counts == 1).sum())
    if single == 0:
        return data
    warnings.warn(f"{data.source}: dropped {single} identities with a single image", stacklevel=2)
    return data.subset(torch.nonzero(counts[data.labels] > 1).squeeze(1))
