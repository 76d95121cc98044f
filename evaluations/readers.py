"""Readers for the benchmark formats: insightface verification ``.bin``, LFW
``pairs.txt``, and an identities CSV. Each refuses malformed input with one line
naming the file (and line)."""

from __future__ import annotations

import csv
import io
import os
import pickle
from typing import Any

import numpy as np

# What a verification .bin may reference by name: containers, bytes (protocol-2
# pickles from Python 3 spell bytes as _codecs.encode(str, "latin1")) and numpy
# arrays (some converters store issame as a bool array). Anything else, such as
# os.system smuggled in through __reduce__, is refused before it is looked up.
_ALLOWED_GLOBALS = {
    ("builtins", "list"),
    ("builtins", "tuple"),
    ("builtins", "bytes"),
    ("builtins", "bytearray"),
    ("builtins", "bool"),
    ("__builtin__", "list"),
    ("__builtin__", "tuple"),
    ("__builtin__", "bytearray"),
    ("__builtin__", "bool"),
    ("_codecs", "encode"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a verification .bin may only hold bytes, lists, tuples and bools"
            )
        return super().find_class(module, name)


def _decode_images(path: str, bins: list) -> np.ndarray:
    from PIL import Image

    images = None
    for i, blob in enumerate(bins):
        try:
            with Image.open(io.BytesIO(bytes(blob))) as im:
                rgb = np.asarray(im.convert("RGB"))
        except Exception as exc:  # Pillow raises several types for corrupt data
            raise ValueError(f"{path}: image {i} is not a decodable image ({type(exc).__name__}: {exc})") from None
        if images is None:
            images = np.empty((len(bins),) + rgb.shape, dtype=np.uint8)
        elif rgb.shape != images.shape[1:]:
            raise ValueError(f"{path}: image {i} is {rgb.shape[1]}x{rgb.shape[0]} but image 0 is {images.shape[2]}x{images.shape[1]}; all images must share one size")
        images[i] = rgb
    return images


def read_bin(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read an insightface verification file (lfw.bin, cfp_fp.bin, agedb_30.bin, ...).

    The file is a pickle of ``(bins, issame)``: ``bins`` a list of 2P encoded
    images (JPEG/PNG bytes), pairs being (bins[2i], bins[2i+1]); ``issame`` P bools.
    It is unpickled WITHOUT running code from the file: only lists, tuples,
    bytes, bools and numpy bool arrays may be built; anything else raises.

    Returns:
        ``(images, issame)``: uint8 [2P, H, W, 3] RGB, and bool [P].
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            obj = _RestrictedUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except Exception as exc:  # any unpickling failure is the file's fault: one line
        raise ValueError(f"{path}: not a safe insightface .bin pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise ValueError(f"{path}: expected a pickled (bins, issame) pair, got {type(obj).__name__}")
    bins, issame = obj
    if not isinstance(bins, (list, tuple)) or not all(isinstance(b, (bytes, bytearray)) for b in bins):
        raise ValueError(f"{path}: the first element must be a list of encoded image bytes")
    if isinstance(issame, np.ndarray):
        if issame.dtype != np.bool_ or issame.ndim != 1:
            raise ValueError(f"{path}: issame must be a 1-D bool array, got dtype {issame.dtype} and shape {issame.shape}")
        same = issame.copy()
    elif isinstance(issame, (list, tuple)) and all(isinstance(v, (bool, np.bool_)) for v in issame):
        same = np.array(issame, dtype=bool)
    else:
        raise ValueError(f"{path}: the second element must be a list of bools (issame)")
    if len(bins) != 2 * len(same) or len(same) == 0:
        raise ValueError(f"{path}: {len(bins)} images for {len(same)} pairs; a .bin needs exactly 2 images per pair and at least one pair")
    return _decode_images(path, list(bins)), same


def read_lfw_pairs(
    pairs_txt: str | os.PathLike, root: str | os.PathLike, *, check_files: bool = True
) -> tuple[list[str], list[str], np.ndarray]:
    """Read LFW's ``pairs.txt`` (or ``pairsDevTest.txt``) over an LFW-style folder.

    Format: a header ``"<folds> <n>"`` (or ``"<n>"`` for one fold), then per fold n
    matched lines ``name i j`` followed by n mismatched lines ``name1 i name2 j``
    (tab or space separated). Image i of a person is ``root/name/name_%04d.jpg``.
    The pairs keep the file's order, so that the contiguous 10-fold split of
    :func:`evaluations.verification` is LFW's View 2 folds.

    Returns:
        ``(paths_a, paths_b, same)``: two lists of P paths and bool [P].
    """
    pairs_txt, root = os.fspath(pairs_txt), os.fspath(root)
    try:
        with open(pairs_txt, encoding="utf-8") as f:
            lines = [line.split() for line in f]
    except FileNotFoundError:
        raise ValueError(f"{pairs_txt}: no such file") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{pairs_txt}: not a text file ({exc})") from None
    while lines and not lines[-1]:
        lines.pop()
    if not lines or not 1 <= len(lines[0]) <= 2 or not all(t.isdigit() for t in lines[0]):
        raise ValueError(f"{pairs_txt}:1: expected a header '<folds> <pairs per fold>' (or '<pairs>'), got {' '.join(lines[0]) if lines else 'an empty file'!r}")
    folds, per_fold = (1, int(lines[0][0])) if len(lines[0]) == 1 else (int(lines[0][0]), int(lines[0][1]))
    expected = 1 + folds * 2 * per_fold
    if len(lines) != expected:
        raise ValueError(f"{pairs_txt}: the header promises {folds} folds x {2 * per_fold} pairs = {expected - 1} lines but the file has {len(lines) - 1}")

    def image(name: str, number: str, lineno: int) -> str:
        # a name is one folder of root: '../x' or '/x' would read images outside it
        if name in (".", "..") or os.sep in name or (os.altsep and os.altsep in name):
            raise ValueError(f"{pairs_txt}:{lineno}: name {name!r} is not a folder inside root; a pairs file names "
                             "a person's folder, never a path")
        if not number.isdigit() or int(number) < 1:
            raise ValueError(f"{pairs_txt}:{lineno}: image number {number!r} must be a positive integer")
        p = os.path.join(root, name, f"{name}_{int(number):04d}.jpg")
        if check_files and not os.path.isfile(p):
            raise ValueError(f"{pairs_txt}:{lineno}: image {p} does not exist (is root={root!r} the LFW image folder?)")
        return p

    paths_a, paths_b, same = [], [], []
    for i, tokens in enumerate(lines[1:]):
        lineno = i + 2
        matched = (i % (2 * per_fold)) < per_fold
        if matched and len(tokens) == 3:
            paths_a.append(image(tokens[0], tokens[1], lineno))
            paths_b.append(image(tokens[0], tokens[2], lineno))
        elif not matched and len(tokens) == 4:
            paths_a.append(image(tokens[0], tokens[1], lineno))
            paths_b.append(image(tokens[2], tokens[3], lineno))
        else:
            want = "a matched pair 'name i j'" if matched else "a mismatched pair 'name1 i name2 j'"
            raise ValueError(f"{pairs_txt}:{lineno}: expected {want}, got {' '.join(tokens)!r}")
        same.append(matched)
    return paths_a, paths_b, np.array(same, dtype=bool)


def read_identities_csv(path: str | os.PathLike, *, root: str | os.PathLike | None = None) -> tuple[list[str], list[str]]:
    """Read a ``path,identity`` CSV (the header line ``path,identity`` is required).

    Relative image paths are joined to ``root`` (default: the CSV's folder).

    Returns:
        ``(paths, identities)``: two lists of strings, in file order.
    """
    path = os.fspath(path)
    base = os.fspath(root) if root is not None else os.path.dirname(os.path.abspath(path))
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path}: not a readable CSV ({exc})") from None
    if not rows or [c.strip() for c in rows[0]] != ["path", "identity"]:
        raise ValueError(f"{path}:1: the header must be 'path,identity', got {','.join(rows[0]) if rows else 'an empty file'!r}")
    paths, identities = [], []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise ValueError(f"{path}:{lineno}: expected 'path,identity' with both fields non-empty, got {','.join(row)!r}")
        paths.append(os.path.join(base, row[0].strip()))
        identities.append(row[1].strip())
    if not paths:
        raise ValueError(f"{path}: no rows after the header; the CSV lists no images")
    return paths, identities


CFP_PROTOCOLS = ("FF", "FP")


def read_cfp(root: str | os.PathLike, protocol: str) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Read CFP's official verification protocol (Sengupta et al., WACV 2016) from its folder.

    ``root`` holds ``Protocol/`` and ``Data/Images/``. ``Protocol/Pair_list_F.txt`` and
    ``Pair_list_P.txt`` number the frontal and profile images (``"<n> ../Data/Images/<id>/frontal/01.jpg"``,
    relative to ``Protocol/``); ``Protocol/Split/<protocol>/01..10/same.txt`` and ``diff.txt`` hold
    one pair per line, ``"a,b"``: for ``FF`` both indices into the frontal list, for ``FP`` ``a``
    frontal and ``b`` profile. The ten splits are identity-disjoint.

    Returns:
        ``(paths_a, paths_b, same, split)``: the pairs split by split (01 first), each split's
        genuine pairs then its impostor pairs, so that :func:`evaluations.verification` with
        ``folds=10`` is the paper's protocol (each split's threshold chosen on the other nine);
        ``same`` bool [P], ``split`` int [P] in 1..10.
    """
    if protocol not in CFP_PROTOCOLS:
        raise ValueError(f"CFP protocol must be one of {', '.join(CFP_PROTOCOLS)}, got {protocol!r}")
    base = os.path.join(os.fspath(root), "Protocol")
    lists = {kind: _cfp_list(os.path.join(base, f"Pair_list_{kind}.txt"), base) for kind in "FP"}
    first, second = lists["F"], lists[protocol[1]]
    splits_dir = os.path.join(base, "Split", protocol)
    try:
        names = sorted(n for n in os.listdir(splits_dir) if n.isdigit())
    except FileNotFoundError:
        raise ValueError(f"{splits_dir}: no such folder (is {os.fspath(root)!r} CFP's folder, holding Protocol/ and Data/?)") from None
    if not names:
        raise ValueError(f"{splits_dir}: holds no numbered split folders (01 .. 10)")
    paths_a: list[str] = []
    paths_b: list[str] = []
    same: list[bool] = []
    split: list[int] = []
    for name in names:
        for kind, genuine in (("same", True), ("diff", False)):
            path = os.path.join(splits_dir, name, f"{kind}.txt")
            for lineno, (a, b) in enumerate(_cfp_pairs(path), start=1):
                for index, table, which in ((a, first, "first"), (b, second, "second")):
                    if index not in table:
                        raise ValueError(f"{path}:{lineno}: the {which} index {index} is not in Pair_list_"
                                         f"{'F' if table is first else protocol[1]}.txt")
                paths_a.append(first[a])
                paths_b.append(second[b])
                same.append(genuine)
                split.append(int(name))
    return paths_a, paths_b, np.array(same, dtype=bool), np.array(split, dtype=np.int64)


def _cfp_list(path: str, base: str) -> dict[int, str]:
    """A CFP pair list: image number -> path (resolved against ``base``, as the lists are relative)."""
    table: dict[int, str] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                tokens = line.split()
                if not tokens:
                    continue
                if len(tokens) != 2 or not tokens[0].isdigit():
                    raise ValueError(f"{path}:{lineno}: expected '<number> <image path>', got {line.strip()!r}")
                image = os.path.normpath(os.path.join(base, tokens[1]))
                if not os.path.isfile(image):
                    raise ValueError(f"{path}:{lineno}: image {image} does not exist")
                table[int(tokens[0])] = image
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file (is the folder CFP's, holding Protocol/ and Data/?)") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a text file ({exc})") from None
    return table


def _cfp_pairs(path: str) -> list[tuple[int, int]]:
    """One split's ``same.txt`` or ``diff.txt``: ``"a,b"`` per line."""
    pairs = []
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                a, sep, b = line.strip().partition(",")
                if not sep or not a.strip().isdigit() or not b.strip().isdigit():
                    raise ValueError(f"{path}:{lineno}: expected 'a,b' (two image numbers), got {line.strip()!r}")
                pairs.append((int(a), int(b)))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a text file ({exc})") from None
    return pairs
