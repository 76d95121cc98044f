"""The contract every data source meets: images and identity labels, in memory."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from mlcompare.data.stored import StoredImages


@dataclass
class FaceData:
    """Images of identities.

    Attributes:
        images: uint8 tensor ``[N, 3, H, W]`` (RGB; grey sources are repeated to 3 channels), or
            :class:`StoredImages` indexed alike, decoded from disk when used.
        labels: int64 tensor ``[N]``, identity index in ``0 .. len(identities) - 1``.
        identities: a name for each identity index.
        noisy: bool tensor ``[N]``, True where a source gave the image a wrong identity on
            purpose (synthetic label noise); None when the source has no such notion.
        source: the spec the data came from, for reports.
        quality: ground-truth image quality, where the source knows it (synthfaces): a dict of
            float32 CPU tensors ``[N]``, one per nuisance strength in [0, 1] and ``"degradation"``
            (their combination, 0 = pristine, 1 = worst); None for sources without ground truth
            (real photographs: nobody knows their true quality).
        files: the file each image was read from (resolved), where the source has files (image
            folders): what a leakage check compares across training and test sets; else None.
        subfolders: each image's folder below its identity folder (CFP's ``frontal`` / ``profile``),
            ``""`` for an image directly in it; None unless a nested image folder was read.
        named: True when ``identities`` are people's names (CFP's list, LFW's folders), which a
            leakage check compares with a benchmark's names; False for labels such as ``s1``.
    """

    images: torch.Tensor | StoredImages
    labels: torch.Tensor
    identities: list[str]
    source: str
    noisy: torch.Tensor | None = None
    quality: dict[str, torch.Tensor] | None = None
    files: list[str] | None = None
    subfolders: list[str] | None = None
    named: bool = False

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 [N, 3, H, W], got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must be [N] = [{self.images.shape[0]}], got {tuple(self.labels.shape)}")
        for name, values in (self.quality or {}).items():
            if values.shape != self.labels.shape:
                raise ValueError(f"quality[{name!r}] must be [N] = [{self.images.shape[0]}], got {tuple(values.shape)}")
        for name in ("files", "subfolders"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.labels):
                raise ValueError(f"{name} must have one entry per image ({len(self.labels)}), got {len(values)}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_identities(self) -> int:
        return len(self.identities)

    def subset(self, index: torch.Tensor, relabel: bool = True) -> "FaceData":
        """The images at ``index``; with ``relabel`` the identities left are renumbered 0..C-1."""
        labels = self.labels[index]
        identities = self.identities
        if relabel:
            kept, labels = torch.unique(labels, return_inverse=True)
            identities = [self.identities[i] for i in kept.tolist()]
        noisy = None if self.noisy is None else self.noisy[index]
        quality = None if self.quality is None else {name: values[index] for name, values in self.quality.items()}
        images = self.images.take(index) if isinstance(self.images, StoredImages) else self.images[index]
        return dataclasses.replace(self, images=images, labels=labels, identities=identities, noisy=noisy,
                                   quality=quality, files=pick(self.files, index),
                                   subfolders=pick(self.subfolders, index))

    def to(self, device: torch.device | str) -> "FaceData":
        """The same data with in-memory images on ``device`` (labels stay on the CPU)."""
        if not isinstance(self.images, torch.Tensor) or self.images.device == torch.device(device):
            return self
        return dataclasses.replace(self, images=self.images.to(device))

    def in_memory(self, *, progress: bool = True) -> "FaceData":
        """The same data with every image decoded into memory (itself when they already are)."""
        if isinstance(self.images, torch.Tensor):
            return self
        images = self.images.decode_all(desc=f"reading {self.source}", progress=progress)
        return dataclasses.replace(self, images=images)


def pick(values: list[str] | None, index: torch.Tensor | list[int]) -> list[str] | None:
    """The entries of a per-image list at ``index`` (positions, or a bool mask); None stays None."""
    if values is None:
        return None
    index = torch.as_tensor(index)
    positions = torch.nonzero(index).squeeze(1) if index.dtype == torch.bool else index.reshape(-1)
    return [values[i] for i in positions.tolist()]
