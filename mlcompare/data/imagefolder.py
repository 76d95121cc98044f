"""``imagefolder:PATH``: one sub-folder per identity; every file Pillow recognises is an image.

The layout is ``PATH/<identity>/<image>``: identities are the immediate sub-folders of PATH, their
images the files directly inside them. Nested layouts (``alphabet/character/``) are not flattened;
PATH must be the level whose sub-folders are the identities. Whatever the layout rule leaves out is
skipped with one warning per kind, never silently, since a wrong layout otherwise shows up only as
a smaller data set: files at the root, folders nested in an identity, files Pillow does not
recognise, and identity folders left with no image. Hidden names (``.DS_Store``,
``.ipynb_checkpoints``) are skipped without a word: tools put them there, not the user.

``imagefolder:PATH,nested=true`` reads instead every image anywhere below an identity folder
(CFP's ``<id>/frontal/01.jpg``, ``<id>/profile/01.jpg``), and records each image's folder below its
identity (``frontal``) in :attr:`FaceData.subfolders`, so that a protocol or ``data stats`` can use it.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from mlcompare.data.facedata import FaceData
from mlcompare.data.framing import Framing
from mlcompare.data.stored import StoredImages
from mlcompare.errors import UserError

# Pillow's 16-bit grey modes, and "I" (32-bit), which is how some PNG and TIFF readers hand 16-bit grey over.
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})

# Believed without opening the file: the formats face sets ship in. Not all of Pillow's registered
# suffixes, which include stubs it cannot decode (.h5, .grib) and video (.mpg); those are probed.
TRUSTED_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".pgm", ".ppm", ".pbm", ".bmp", ".webp", ".tif", ".tiff"})


def _unreadable(path: Path, err: OSError) -> UserError:
    return UserError(f"cannot read image {path}: {err.__class__.__name__}; remove or replace the file")


def is_image(path: Path) -> bool:
    """Whether Pillow recognises ``path`` as an image.

    A suffix in :data:`TRUSTED_SUFFIXES` is believed without opening the file, so that a folder of
    a million JPEGs is listed without a million opens; a file whose suffix claims an image but is
    broken then fails, named, when read. Any other file (no suffix, Yale's ``subject01.happy``) is identified by its
    header: ``Image.open`` reads only that, nothing is decoded.
    """
    if path.suffix.lower() in TRUSTED_SUFFIXES:
        return True
    try:
        with Image.open(path):
            return True
    except UnidentifiedImageError:
        return False
    except OSError as err:
        raise _unreadable(path, err) from err


def to_rgb(img: Image.Image) -> Image.Image:
    """``img`` as 8-bit RGB; grey is repeated to three channels.

    16-bit grey is scaled by 1/257 (65535 -> 255, rounded): Pillow's own ``convert`` clips it at
    255, which turns almost every pixel white. 16-bit RGB PNGs need nothing here: Pillow already
    opens them as 8-bit ``RGB``, keeping the high byte.
    """
    if img.mode in SIXTEEN_BIT_MODES:
        wide = np.asarray(img).astype(np.int64).clip(0, 65535)
        # 257 is odd, so v / 257 is never exactly half-way and rounding has no ties to break.
        img = Image.fromarray(np.rint(wide / 257).astype(np.uint8))
    return img.convert("RGB")


def read_image(path: Path, size: int, framing: Framing = Framing()) -> np.ndarray:
    """One image as uint8 ``[3, size, size]``: converted by :func:`to_rgb`, cropped and resized
    (bilinear) as ``framing`` says (by default squashed to the square)."""
    return _read_sized(path, size, framing)[0]


def _read_sized(path: Path, size: int, framing: Framing = Framing()) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`read_image` and the image's own (width, height)."""
    try:
        with Image.open(path) as img:
            own = img.size
            img = framing.apply(to_rgb(img), size)
            return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)), own
    except (UnidentifiedImageError, OSError) as err:
        raise _unreadable(path, err) from err
    except ValueError as err:  # a crop box beyond this image
        raise UserError(f"{path}: {err}; choose a crop_box inside every image, or crop = F (a fraction)") from err


class ImageFiles:
    """Image files by position, read with Pillow (the :class:`~mlcompare.data.stored.ImageReader` of a folder);
    ``sizes`` holds the own (width, height) of each image read so far."""

    def __init__(self, paths: list[Path], framing: Framing = Framing()) -> None:
        self.paths = paths
        self.framing = framing
        self.sizes: dict[int, tuple[int, int]] = {}

    def image(self, key: int, size: int) -> torch.Tensor:
        array, self.sizes[key] = _read_sized(self.paths[key], size, self.framing)
        return torch.from_numpy(array)


TOO_SMALL = 4  # an image whose shorter side is under size / 4 is upscaled four times or more: blur, not a face


def _warn_small(source: str, sizes: dict[int, tuple[int, int]], size: int) -> None:
    """One warning with the count of images far smaller than ``size`` and the smallest of them."""
    small = [wh for wh in sizes.values() if min(wh) * TOO_SMALL < size]
    if small:
        w, h = min(small, key=lambda wh: (min(wh), max(wh)))
        warnings.warn(f"{source}: {len(small)} of {len(sizes)} images are far smaller than size = {size} px (shorter "
                      f"side under {size / TOO_SMALL:g} px; the smallest {w}x{h}): upscaled, they hold little to learn; "
                      "check the folder, or lower data.size", stacklevel=3)


def _visible(folder: Path) -> list[Path]:
    """``folder``'s entries, sorted, without dot-names: those are tools' (``.DS_Store``), skipped silently."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _warn_skipped(source: str, paths: list[Path], what: str) -> None:
    """One warning for a whole kind of skipped entry: ``what`` with ``{n}`` for the count, then an example."""
    if paths:  # stacklevel 3: point at load's caller, as drop_singletons does
        warnings.warn(f"{source}: {what.format(n=len(paths))}, e.g. {paths[0]}", stacklevel=3)


def _files_below(folder: Path) -> list[Path]:
    """Every visible file below ``folder``, at any depth, in sorted order (folders are walked)."""
    found: list[Path] = []
    for entry in _visible(folder):
        found += _files_below(entry) if entry.is_dir() else [entry]
    return found


def _subfolder(file: Path, identity: Path) -> str:
    """``file``'s folder below its identity folder (``frontal``), ``""`` directly in it."""
    below = file.parent.relative_to(identity).as_posix()
    return "" if below == "." else below


def load(path: str, *, size: int, stream: bool = False, nested: bool = False, framing: Framing = Framing(),
         progress: bool = True) -> FaceData:
    """Read ``path/<identity>/<image>``; identities are the sub-folder names, sorted.

    With ``nested`` every image below an identity folder is read, its sub-folder recorded in
    :attr:`FaceData.subfolders`. With ``stream`` the images stay on disk (:class:`StoredImages`,
    decoded when used); ``progress``: a progress bar while a large folder is decoded. ``framing``
    crops and resizes each image.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UserError(f"image folder '{path}' does not exist; give a folder with one sub-folder per identity")
    at_root: list[Path] = []
    deeper: list[Path] = []
    non_images: list[Path] = []
    empty: list[Path] = []
    identities: list[str] = []
    files: list[Path] = []
    labels: list[int] = []
    for entry in _visible(root):
        if not entry.is_dir():
            at_root.append(entry)
            continue
        found: list[Path] = []
        for f in (_files_below(entry) if nested else _visible(entry)):
            if f.is_dir():
                deeper.append(f)
            elif is_image(f):
                found.append(f)
            else:
                non_images.append(f)
        if not found:
            empty.append(entry)
            continue
        labels += [len(identities)] * len(found)
        identities.append(entry.name)
        files += found
    source = f"imagefolder:{path}"
    _warn_skipped(source, at_root, "skipped {n} file(s) at the root (images are read from PATH/<identity>/)")
    _warn_skipped(source, deeper, "skipped {n} folder(s) nested in identity folders (not flattened: "
                                  "identities are PATH's immediate sub-folders; imagefolder:PATH,nested=true reads them)")
    _warn_skipped(source, non_images, "skipped {n} file(s) that Pillow does not recognise as images")
    _warn_skipped(source, empty, "dropped {n} identity folder(s) with no readable images")
    if not files:
        hint = (f"; its sub-folders hold folders such as {deeper[0]}: point PATH at the level whose sub-folders are "
                "the identities, or read every image below each identity with imagefolder:PATH,nested=true") if deeper else ""
        raise UserError(f"image folder '{path}' holds no images in sub-folders; expected PATH/<identity>/<image>{hint}")
    if nested:
        source += ",nested=true"
    reader = ImageFiles(files, framing)
    images = StoredImages(reader, np.arange(len(files)), size)
    if not stream:  # a streamed set is not decoded here: its sizes are not known, so not checked
        images = images.decode_all(desc=f"reading {path}", progress=progress)
        _warn_small(source, reader.sizes, size)
    subfolders = [_subfolder(f, root / identities[label]) for f, label in zip(files, labels)] if nested else None
    return FaceData(images, torch.tensor(labels), identities, source, files=[str(f.resolve()) for f in files],
                    subfolders=subfolders)


def drop_singletons(data: FaceData) -> FaceData:
    """Identities with one image can be neither a positive nor a probe: drop them, with a count."""
    counts = torch.bincount(data.labels, minlength=data.num_identities)
    single = int((counts == 1).sum())
    if single == 0:
        return data
    warnings.warn(f"{data.source}: dropped {single} identities with a single image", stacklevel=2)
    return data.subset(torch.nonzero(counts[data.labels] > 1).squeeze(1))
