"""The one check of a part's keyword parameters (losses, margins, scale schedules, pml adapters).

A part's parameters are its constructor's keywords, read from the constructor (never restated); an
unknown one is a one-line ``ValueError`` naming it and the valid ones. (``miners`` keeps its own copy:
that package imports nothing from mlcompare.)
"""
from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence


def keywords(cls: type, reserved: Iterable[str] = ()) -> list[str]:
    """The keywords of ``cls``'s constructor in their order, without ``self`` and ``reserved``."""
    skip = {"self", *reserved}
    return [p for p in inspect.signature(cls.__init__).parameters if p not in skip]


def check_known(owner: str, given: Iterable[str], valid: Sequence[str]) -> None:
    """``ValueError``: "``owner`` has no parameter 'x'; valid parameters: ..." for the first unknown key."""
    for key in given:
        if key not in valid:
            raise ValueError(f"{owner} has no parameter '{key}'; valid parameters: {', '.join(valid) or 'none'}")
