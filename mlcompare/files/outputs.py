"""Checks on a file or folder a command is about to write, made before any work starts.

One place for "can this be written, and would it replace something": the run directory, ``embed
--out``, ``export --onnx`` and ``data preview --out`` all ask here, so a read-only folder or an
existing file is one line at the start rather than a traceback (or a silent overwrite) at the end.
"""
from __future__ import annotations

import os
from pathlib import Path

from mlcompare.errors import UserError


def check_writable(path: Path, *, what: str, option: str) -> None:
    """``path`` (which may not exist yet) can be created: its nearest existing folder is writable."""
    parent = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {what} '{path}': '{parent}' is not writable; choose another {option}")


def check_new_files(paths: list[Path], *, option: str, force: bool) -> None:
    """Each of ``paths`` is a file to write: none is a folder, none exists unless ``force``, and their
    folder is writable."""
    for path in paths:
        if path.is_dir():
            raise UserError(f"{option} {paths[0]}: '{path}' is a folder; give a file path (nothing was written)")
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise UserError(f"{option} {paths[0]}: {' and '.join(existing)} already exist; pass --force to replace "
                        "them, or give another path (nothing was written)")
    check_writable(paths[0], what="the file", option=option)
