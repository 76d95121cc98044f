"""Are the people a model is tested on among those it trained on?

One mechanism for every pairing of a training set with something it is tested on (a ``--test-data``
set, a benchmark's images): two people are the same when they share an image file (the same file,
also through a symlink or a folder given twice) or, where both sides name real people (CFP's
``list_name.txt``, LFW's folder names, ``imagefolder:PATH,names=true``), the same name (compared
case-blind, ``_`` as a space). A generated or numbered set (synthfaces, digits, RecordIO classes,
ORL's ``s1``) has no names to compare.
"""
from __future__ import annotations

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
