"""``mlcompare data stats SPEC``: what a source holds, before anything trains on it."""
from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from PIL import Image

from mlcompare.data.facedata import FaceData


def file_sizes(files: list[str]) -> np.ndarray:
    """``[N, 2]`` width and height of each image file, from its header (nothing is decoded)."""
    sizes = np.empty((len(files), 2), dtype=np.int64)
    for i, path in enumerate(files):
        with Image.open(path) as img:
            sizes[i] = img.size
    return sizes


def describe(data: FaceData) -> list[str]:
    """Lines: identities and images; images per identity (min / median / max); image sizes (the
    files' own, where the source has files, else the size the images were made at); the
    sub-folder kinds of a nested folder with their image counts."""
    counts = torch.bincount(data.labels, minlength=data.num_identities).numpy()
    lines = [f"{data.source}: {data.num_identities} identities, {len(data)} images",
             f"images per identity: min {counts.min()}, median {np.median(counts):g}, max {counts.max()}"]
    if data.files is not None:
        sizes = file_sizes(data.files)
        area = sizes.prod(axis=1)
        order = np.argsort(area, kind="stable")
        small, middle, large = sizes[order[0]], sizes[order[len(order) // 2]], sizes[order[-1]]
        lines.append(f"image sizes (width x height, by area): smallest {small[0]} x {small[1]}, median {middle[0]} x "
                     f"{middle[1]}, largest {large[0]} x {large[1]}; widths {sizes[:, 0].min()} to {sizes[:, 0].max()}")
    else:
        lines.append(f"image size: {data.images.shape[-1]} x {data.images.shape[-2]} (generated at the size asked for)")
    if data.subfolders is not None:
        kinds = Counter(data.subfolders)
        lines.append("sub-folders: " + ", ".join(f"{kind or '(identity folder itself)'} {n} images"
                                                  for kind, n in sorted(kinds.items())))
    return lines
