"""``cfp:DIR``: CFP, Celebrities in Frontal-Profile (Sengupta et al., WACV 2016), in its official layout.

``DIR/Data/Images/<id>/frontal/01.jpg .. 10.jpg`` and ``profile/01.jpg .. 04.jpg`` for 500 people,
whose names are the lines of ``DIR/Data/list_name.txt`` (line N names folder N). Read as a nested
image folder (:mod:`mlcompare.data.imagefolder`): each image's pose (``frontal`` / ``profile``) is in
:attr:`FaceData.subfolders`, and the identities are the people's names, so that a leakage check can
compare them with another benchmark's names. The verification protocol (``DIR/Protocol``) is read
by :func:`evaluations.read_cfp`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from mlcompare.data import imagefolder
from mlcompare.data.facedata import FaceData
from mlcompare.data.framing import Framing
from mlcompare.errors import UserError


def names(root: Path) -> dict[str, str]:
    """Folder name (``001``) -> the person's name, from ``Data/list_name.txt``."""
    path = root / "Data" / "list_name.txt"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{path} does not exist: is '{root}' CFP's folder (holding Data/ and Protocol/)?") from None
    return {f"{i:03d}": line.strip() for i, line in enumerate(lines, start=1) if line.strip()}


def load(path: str, *, size: int, stream: bool = False, framing: Framing = Framing(),
         progress: bool = True) -> FaceData:
    """CFP's images, one identity per person (named), frontal and profile views of each."""
    root = Path(path).expanduser()
    images = root / "Data" / "Images"
    if not images.is_dir():
        raise UserError(f"{images} does not exist: is '{path}' CFP's folder (holding Data/Images and Protocol/)?")
    named = names(root)
    data = imagefolder.load(str(images), size=size, stream=stream, nested=True, framing=framing, progress=progress)
    missing = [folder for folder in data.identities if folder not in named]
    if missing:
        raise UserError(f"{root / 'Data' / 'list_name.txt'} names no person for folder {missing[0]} "
                        f"({len(missing)} folders unnamed); is the list complete?")
    return dataclasses.replace(data, identities=[named[folder] for folder in data.identities], source=f"cfp:{path}",
                               named=True)
