"""Are the people a model is tested on among those it trained on?

One mechanism for every pairing of a training set with something it is tested on (a ``--test-data``
set, the identities held out of the training data, a benchmark's images): two people are the same
when they share an image (the same file, also through a symlink or a folder given twice, or a
byte-identical copy of it) or, where both sides name real people (CFP's
``list_name.txt``, LFW's folder names, ``imagefolder:PATH,names=true``), the same name (compared
case-blind, ``_`` as a space). A generated or numbered set (synthfaces, digits, RecordIO classes,
ORL's ``s1``) has no names to compare.
"""
from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass

from mlcompare.data.facedata import FaceData


def normalise(name: str) -> str:
    """``"Aaron_Eckhart "`` -> ``"aaron eckhart"``: LFW spells names with ``_``, CFP with spaces."""
    return " ".join(name.replace("_", " ").split()).casefold()


@dataclass(frozen=True)
class Overlap:
    """Training identities (indices) found in the other set, and by what."""

    identities: frozenset[int]
    by_file: int  # identities sharing an image file
    by_name: int  # identities sharing a name (and no file)
    example: str  # one shared person, for the message

    def __bool__(self) -> bool:
        return bool(self.identities)

    def describe(self, total: int) -> str:
        how = " and ".join(part for part in (f"{self.by_file} by shared image files" if self.by_file else "",
                                             f"{self.by_name} by name" if self.by_name else "") if part)
        return f"{len(self.identities)} of its people are in the training set ({how}; e.g. '{self.example}')"


def overlap(train: FaceData, *, files: list[str] | None, people: list[str] | None, named: bool) -> Overlap:
    """The training identities of ``train`` that the other set's images (``files``, resolved paths)
    or people (``people``, compared only when both sides are ``named``) also show."""
    by_file: set[int] = set()
    if train.files is not None and files:
        label_of = dict(zip(train.files, train.labels.tolist()))
        by_file = {label_of[f] for f in files if f in label_of}
        ours, theirs = contents(train.files, files)
        label_of_content = {ours[f]: label for f, label in label_of.items() if f in ours}
        by_file |= {label_of_content[key] for key in theirs.values() if key in label_of_content}
    by_name: set[int] = set()
    if train.named and named and people:
        theirs = {normalise(p) for p in people}
        by_name = {i for i, name in enumerate(train.identities) if normalise(name) in theirs} - by_file
    shared = by_file | by_name
    example = train.identities[min(shared)] if shared else ""
    return Overlap(frozenset(shared), len(by_file), len(by_name), example)


def shared_names(train: FaceData, people: list[str] | None) -> int:
    """How many of ``people`` (distinct, normalised) are also training identity names: what a
    cross-dataset run reports."""
    if not people:
        return 0
    ours = {normalise(n) for n in train.identities}
    return len({normalise(p) for p in people} & ours)


def contents(files: list[str], others: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """The SHA-256 of every file in ``files`` and ``others`` whose byte size some file on the other
    side also has (a copy has the same size): only those can be byte-identical copies, so a large
    folder is not read whole to find none."""
    sizes = {f: os.path.getsize(f) for f in {*files, *others}}
    common = {sizes[f] for f in files} & {sizes[f] for f in others}
    return ({f: _digest(f) for f in files if sizes[f] in common},
            {f: _digest(f) for f in others if sizes[f] in common})


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def duplicate_identities(data: FaceData) -> list[tuple[str, str]]:
    """Pairs of identities of ``data`` that share an image (the same file or a byte-identical copy):
    a folder copied or linked under a second name is one person counted twice."""
    if data.files is None:
        return []
    by_size: dict[int, list[int]] = defaultdict(list)
    for i, f in enumerate(data.files):
        by_size[os.path.getsize(f)].append(i)
    owners: dict[str, set[int]] = defaultdict(set)
    labels = data.labels.tolist()
    for same_size in by_size.values():
        if len(same_size) > 1:
            for i in same_size:
                owners[_digest(data.files[i])].add(labels[i])
    pairs = {tuple(sorted(ids))[:2] for ids in owners.values() if len(ids) > 1}
    return sorted((data.identities[a], data.identities[b]) for a, b in pairs)
