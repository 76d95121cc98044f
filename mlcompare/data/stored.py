"""Images decoded from disk when they are used, for training sets larger than memory.

``--workers N`` (``[data] workers``) keeps an image folder's or RecordIO file's training images on
disk as :class:`StoredImages`; the trainer then decodes each step's batch in N DataLoader worker
processes (pinned memory on CUDA) while the previous step runs. Test sets are decoded into memory
once: every model embeds all of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

import numpy as np
import torch
from tqdm import tqdm

PROGRESS_FROM = 5000  # images: smaller sets decode in seconds, without a bar


class ImageReader(Protocol):
    """Random access to encoded images; picklable, so that worker processes can read too."""

    def image(self, key: int, size: int) -> torch.Tensor:
        """Image ``key`` as uint8 ``[3, size, size]`` RGB."""


@dataclass(frozen=True, eq=False)
class StoredImages:
    """Images ``keys`` of ``reader`` at ``size`` x ``size``, indexed like a uint8 ``[N, 3, size, size]``
    tensor: ``images[i]``, ``images[a:b]`` and ``images[index_tensor]`` decode and return tensors;
    :meth:`take` selects without decoding."""

    reader: ImageReader
    keys: np.ndarray
    size: int
    dtype = torch.uint8

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.keys), 3, self.size, self.size)

    def dim(self) -> int:
        return 4

    def __len__(self) -> int:
        return len(self.keys)

    def take(self, index: torch.Tensor | np.ndarray) -> "StoredImages":
        return StoredImages(self.reader, self.keys[np.asarray(index)], self.size)

    def __getitem__(self, index: int | slice | torch.Tensor | np.ndarray) -> torch.Tensor:
        if isinstance(index, (int, np.integer)):
            return self.reader.image(int(self.keys[index]), self.size)
        keys = self.keys[index] if isinstance(index, slice) else self.keys[np.asarray(index)]
        if len(keys) == 0:
            return torch.empty((0, 3, self.size, self.size), dtype=torch.uint8)
        return torch.stack([self.reader.image(int(k), self.size) for k in keys])

    def decode_all(self, *, desc: str, progress: bool = True) -> torch.Tensor:
        """Every image, decoded into one tensor (with a progress bar for large sets)."""
        out = torch.empty(self.shape, dtype=torch.uint8)
        for i in tqdm(range(len(self)), desc=desc, unit="img", disable=not progress or len(self) < PROGRESS_FROM,
                      leave=False):
            out[i] = self[i]
        return out


class _Decoded(torch.utils.data.Dataset):
    def __init__(self, images: StoredImages) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        return i, self.images[i]


class _Batches:
    """The trainer's batch index for each step ``start .. stop - 1``, computed in the main process."""

    def __init__(self, batch_of_step: Callable[[int], torch.Tensor], start: int, stop: int) -> None:
        self.batch_of_step, self.start, self.stop = batch_of_step, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[list[int]]:
        return (self.batch_of_step(step).tolist() for step in range(self.start, self.stop))


def loaded_batches(images: torch.Tensor | StoredImages, batch_of_step: Callable[[int], torch.Tensor], start: int,
                   stop: int, *, workers: int = 0, pin_memory: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(index, images[index])`` with ``index = batch_of_step(step)`` for each step ``start .. stop - 1``.

    In-memory images are indexed directly. :class:`StoredImages` are decoded by ``workers``
    DataLoader processes (in this process with 0), a few steps ahead, into pinned memory
    with ``pin_memory``, so that a GPU step does not wait for the disk or the JPEG decoder.
    """
    if isinstance(images, torch.Tensor):
        return ((index, images[index]) for index in map(batch_of_step, range(start, stop)))
    loader = torch.utils.data.DataLoader(
        _Decoded(images), batch_sampler=_Batches(batch_of_step, start, stop), num_workers=workers,
        pin_memory=pin_memory, prefetch_factor=4 if workers else None)
    return iter(loader)
