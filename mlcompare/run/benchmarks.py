"""Verification benchmarks with their own official pairs, scored beside a comparison's held-out identities.

A ``[[benchmarks]]`` entry names one: ``cfp`` (CFP's FF or FP protocol, its ten identity-disjoint
splits), ``lfw`` (``pairs.txt`` over an image folder, ten folds) or ``bin`` (insightface's
``lfw.bin`` / ``cfp_fp.bin`` / ``agedb_30.bin``, ten folds). Each is loaded once (its images framed
as the comparison's), and every model is scored on it as papers do: 10-fold accuracy with each
fold's threshold chosen on the other nine, AUC, EER and TAR at FAR 1e-2 / 1e-3 where the impostor
pairs allow. ``results.csv`` gets the columns ``NAME.accuracy``, ``NAME.auc``, ...

Under cross-validation on a benchmark's splits (:meth:`Benchmark.split_only`) the model of fold k
was trained on the people of the other splits, so their pairs cannot choose its threshold without
bias: the threshold is chosen within split k, by ten inner folds of its own pairs (each with as many
genuine as impostor pairs), all of people the model never trained on.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import evaluations
from mlcompare.config.comparison import BenchmarkConfig
from mlcompare.data.facedata import pick
from mlcompare.data.framing import Framing
from mlcompare.data.imagefolder import ImageFiles
from mlcompare.data.stored import StoredImages
from mlcompare.errors import UserError

METRICS = ("accuracy", "accuracy_std", "auc", "eer", "tar_far_1e-2", "tar_far_1e-3")
FOLDS = 10  # LFW's, CFP's and the .bin files' ten folds


@dataclass(frozen=True)
class Benchmark:
    """A benchmark's distinct images and its pairs (indices into them), in protocol order.

    ``split``: each pair's split (CFP's 1..10) where the benchmark has identity-disjoint splits,
    else None (ten contiguous folds). ``files`` and ``people``: each image's file and person, where
    the format names them (not a .bin), for the leakage check."""

    name: str
    description: str
    images: torch.Tensor | StoredImages  # files stay on disk until :meth:`decoded` (after the leakage check)
    a: torch.Tensor
    b: torch.Tensor
    same: np.ndarray
    split: np.ndarray | None = None
    files: list[str] | None = None
    people: list[str] | None = None
    overlap_ok: bool = False
    inner_threshold: bool = False  # thresholds chosen within the pairs (cross-validation), not across splits

    def score(self, embeddings: torch.Tensor) -> dict[str, float]:
        """The results.csv columns of this benchmark for ``embeddings`` of :attr:`images`."""
        emb = embeddings.float()
        scores = evaluations.pair_scores(emb[self.a], emb[self.b])
        order = inner_folds(self.same) if self.inner_threshold else np.arange(len(self.same))
        ver = evaluations.verification(scores[order], self.same[order], folds=FOLDS, far=(1e-2, 1e-3))
        values = {"accuracy": ver["accuracy"], "accuracy_std": ver["accuracy_std"], "auc": ver["auc"],
                  "eer": ver["eer"], "tar_far_1e-2": ver["tar_at_far"][1e-2], "tar_far_1e-3": ver["tar_at_far"][1e-3]}
        return {f"{self.name}.{k}": float("nan") if v is None else float(v) for k, v in values.items()}

    def decoded(self) -> "Benchmark":
        """The same benchmark with its images in memory."""
        if isinstance(self.images, torch.Tensor):
            return self
        return dataclasses.replace(self, images=self.images.decode_all(desc=f"reading {self.name}", progress=False))

    def splits(self) -> list[int]:
        return [] if self.split is None else sorted(set(self.split.tolist()))

    def split_only(self, k: int) -> "Benchmark":
        """Split ``k``'s pairs and images, thresholds chosen within them (see the module docstring)."""
        if self.split is None:
            raise UserError(f"benchmark {self.name} has no identity-disjoint splits to cross-validate on "
                            "(only cfp benchmarks have them)")
        if k not in self.splits():
            raise UserError(f"crossval.folds names split {k}, but benchmark {self.name} has splits {self.splits()}")
        keep = np.nonzero(self.split == k)[0]
        used, inverse = torch.unique(torch.cat([self.a[keep], self.b[keep]]), return_inverse=True)
        rows = used.tolist()
        images = self.images.take(used.numpy()) if isinstance(self.images, StoredImages) else self.images[used]
        return dataclasses.replace(
            self, images=images, a=inverse[:len(keep)], b=inverse[len(keep):], same=self.same[keep],
            split=self.split[keep], files=pick(self.files, rows), people=pick(self.people, rows), inner_threshold=True,
            description=f"{self.description}, split {k} only (threshold chosen within it)")


def inner_folds(same: np.ndarray, folds: int = FOLDS) -> np.ndarray:
    """An order of the pairs in which ``folds`` contiguous blocks each hold an equal share of the
    genuine and of the impostor pairs (block i: the i-th tenth of each, in their given order).

    >>> inner_folds(np.array([True, True, False, False]), folds=2).tolist()
    [0, 2, 1, 3]
    """
    genuine, impostor = np.nonzero(same)[0], np.nonzero(~same)[0]
    return np.concatenate([np.concatenate([g, i]) for g, i in
                           zip(np.array_split(genuine, folds), np.array_split(impostor, folds))])


def load(config: BenchmarkConfig, *, size: int, framing: Framing = Framing()) -> Benchmark:
    """Read the benchmark ``config`` names, its images framed and resized to ``size`` (image files are
    decoded by :meth:`Benchmark.decoded`, once the run knows it will use them)."""
    try:
        if config.kind == "cfp":
            paths_a, paths_b, same, split = evaluations.read_cfp(config.path, config.protocol)
            description = f"CFP {config.protocol} ({_cfp_name(config.protocol)}), official splits"
        elif config.kind == "lfw":
            paths_a, paths_b, same = evaluations.read_lfw_pairs(config.path, config.root)
            split, description = None, f"LFW pairs ({Path(config.path).name}), 10 folds"
        else:
            return _load_bin(config, size=size)
    except ValueError as err:  # the readers' one-line messages name the file and the problem
        raise UserError(f"benchmark {config.name}: {err}") from err
    files = sorted(set(paths_a) | set(paths_b))
    index = {path: i for i, path in enumerate(files)}
    images = StoredImages(ImageFiles([Path(p) for p in files], framing), np.arange(len(files)), size)
    people = _people(files, config)
    return Benchmark(config.name, description, images, torch.tensor([index[p] for p in paths_a]),
                     torch.tensor([index[p] for p in paths_b]), same, split,
                     [str(Path(p).resolve()) for p in files], people, config.overlap_ok)


def _cfp_name(protocol: str) -> str:
    return {"FF": "frontal-frontal", "FP": "frontal-profile"}[protocol]


def _people(files: list[str], config: BenchmarkConfig) -> list[str]:
    """The person each image shows: LFW's folder name; for CFP the name of its folder
    (``Data/Images/<id>/<pose>/<nn>.jpg``) in ``Data/list_name.txt``."""
    if config.kind == "lfw":
        return [Path(p).parent.name for p in files]
    from mlcompare.data import cfp

    names = cfp.names(Path(config.path))
    return [names.get(Path(p).parent.parent.name, Path(p).parent.parent.name) for p in files]


def bin_images(images: np.ndarray, size: int) -> torch.Tensor:
    """A .bin's uint8 ``[N, H, W, 3]`` images as uint8 ``[N, 3, size, size]``: they are aligned
    crops already, so only resized (bilinear), never framed again."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


def _load_bin(config: BenchmarkConfig, *, size: int) -> Benchmark:
    """An insightface .bin, its pairs (2i, 2i + 1) in file order."""
    images, same = evaluations.read_bin(config.path)
    n = len(same)
    return Benchmark(config.name, f"{Path(config.path).name} (insightface .bin), 10 folds", bin_images(images, size),
                     torch.arange(0, 2 * n, 2), torch.arange(1, 2 * n, 2), same, None, None, None, config.overlap_ok)


def describe(benchmarks: list[Benchmark]) -> list[dict[str, Any]]:
    """What config.json records of each benchmark."""
    return [{"name": b.name, "description": b.description, "pairs": len(b.same), "images": len(b.images)}
            for b in benchmarks]
