"""Method names as file names: the one slug every path derived from a method uses.

A comparison file is something people send each other, so a method name is untrusted input: it
reaches the disk only through :func:`slug`, which keeps letters, digits, ``-`` and ``_`` and turns
anything else (``/``, ``..``, a drive letter, ``<``) into ``-``; a slug holds no path separator, so a
checkpoint, curves file or TensorBoard folder can never resolve outside the run directory.
Two names with the same slug (``a/b`` and ``a-b``) would share those files, one silently replacing
the other, so :func:`check_distinct` refuses them when the config is read, before anything is written.
"""
from __future__ import annotations

from collections.abc import Iterable

from mlcompare.errors import UserError

RAW_PIXELS = "raw pixels"  # the untrained baseline's row in every run: its files are named like a method's


def slug(name: str) -> str:
    """``name`` as one safe path component.

    >>> slug("../../etc/x"), slug("cosface-m0.1"), slug("a/b")
    ('------etc-x', 'cosface-m0-1', 'a-b')
    """
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def check_distinct(rows: Iterable[tuple[str, str]], where: str) -> None:
    """A one-line :class:`UserError` naming the first two of ``rows`` (a row's name, and how to call it
    in the message) that would share files (their slugs are equal), or an empty name."""
    seen: dict[str, str] = {}
    for name, label in rows:
        if not name.strip():
            raise UserError(f"{where}: a method name is empty; give each [[methods]] a name")
        if slug(name) in seen:
            raise UserError(f"{where}: {seen[slug(name)]} and {label} would write the same files "
                            f"(both are '{slug(name)}' on disk); rename one")
        seen[slug(name)] = label
