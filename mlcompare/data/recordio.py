"""``recordio:DIR``: insightface's ``train.rec`` / ``train.idx`` (MS1M, Glint360K, WebFace), read without mxnet.

The format (dmlc-core ``recordio.h``/``recordio.cc``, mxnet ``recordio.py``), little-endian:

- A record is framed as ``magic (u32 0xced7230a) | lrec (u32) | data | zero padding to 4 bytes``,
  where ``lrec = cflag << 29 | length``. A payload that holds the magic number at a 4-byte
  aligned offset is split there (the magic itself dropped): cflag 0 = whole record, 1 = first
  part, 2 = middle part, 3 = last part; the reader joins the parts, putting the magic back
  between them, so no part ever contains an aligned magic and a reader can resynchronise.
- The record's payload starts with an ``IRHeader``, struct ``<IfQQ`` (24 bytes): ``flag``,
  ``label`` (float32), ``id``, ``id2``. When ``flag > 0`` the label is instead an array of
  ``flag`` float32 values following the header. The rest is the encoded image (JPEG or PNG).
- ``train.idx`` is text, one ``key<TAB>byte offset`` line per record.
- insightface's files start with a header record 0 (``flag > 0``) whose label ``(a, b)`` says:
  images are keys ``1 .. a-1``, identity records ``a .. b-1`` (each with the label
  ``(first, end)`` of its image keys). Without that record every key is an image.
  insightface's ``MXFaceDataset`` takes an image's class as ``label`` or ``label[0]``.
"""
from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from mlcompare.data.facedata import FaceData
from mlcompare.data.framing import Framing
from mlcompare.data.stored import StoredImages
from mlcompare.errors import UserError

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
LENGTH_BITS = 29
MAX_LENGTH = (1 << LENGTH_BITS) - 1
IR_FORMAT = "<IfQQ"
IR_SIZE = struct.calcsize(IR_FORMAT)  # 24


@dataclass(frozen=True)
class IRHeader:
    """mxnet's image-record header. ``label`` is a float, or a tuple of floats when ``flag > 0``."""

    flag: int
    label: float | tuple[float, ...]
    id: int
    id2: int

    @property
    def class_label(self) -> int:
        """The image's class as insightface reads it: ``label``, or ``label[0]`` for an array."""
        return int(self.label[0] if isinstance(self.label, tuple) else self.label)


def pack(header: IRHeader, payload: bytes) -> bytes:
    """``IRHeader`` + payload as one record body (mxnet's ``recordio.pack``)."""
    if isinstance(header.label, tuple):
        label = np.asarray(header.label, dtype="<f4")
        return struct.pack(IR_FORMAT, label.size, 0.0, header.id, header.id2) + label.tobytes() + payload
    return struct.pack(IR_FORMAT, 0, header.label, header.id, header.id2) + payload


def unpack(body: bytes, *, where: str = "record") -> tuple[IRHeader, bytes]:
    """Record body -> ``(IRHeader, payload)``; ``where`` names the record in errors."""
    if len(body) < IR_SIZE:
        raise UserError(f"{where}: {len(body)} bytes, shorter than the {IR_SIZE}-byte IRHeader; the record is corrupt")
    flag, label, id_, id2 = struct.unpack_from(IR_FORMAT, body)
    if flag == 0:
        return IRHeader(flag, float(label), id_, id2), body[IR_SIZE:]
    end = IR_SIZE + 4 * flag
    if len(body) < end:
        raise UserError(f"{where}: IRHeader flag {flag} asks for {flag} float labels, past the record's end; corrupt")
    labels = tuple(float(v) for v in np.frombuffer(body, dtype="<f4", count=flag, offset=IR_SIZE))
    return IRHeader(flag, labels, id_, id2), body[end:]


def frame(body: bytes) -> bytes:
    """One record body framed as dmlc's ``RecordIOWriter::WriteRecord`` does (split at aligned magics)."""
    if len(body) > MAX_LENGTH:
        raise UserError(f"a RecordIO record holds at most {MAX_LENGTH} bytes, got {len(body)}")
    out = bytearray()
    start = 0
    for i in range(0, len(body) - 3, 4):
        if body[i:i + 4] == MAGIC_BYTES:
            out += struct.pack("<II", MAGIC, (1 if start == 0 else 2) << LENGTH_BITS | (i - start)) + body[start:i]
            start = i + 4
    rest = len(body) - start
    out += struct.pack("<II", MAGIC, (3 if start else 0) << LENGTH_BITS | rest) + body[start:]
    out += bytes(-len(body) % 4)  # the parts before are multiples of 4; only the tail needs padding
    return bytes(out)


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``DIR`` (holding train.rec/.idx), a prefix ``DIR/train`` or ``DIR/train.rec`` -> (.rec, .idx)."""
    p = Path(path).expanduser()
    if p.is_dir():
        rec, idx = p / "train.rec", p / "train.idx"
    elif p.suffix in (".rec", ".idx"):
        rec, idx = p.with_suffix(".rec"), p.with_suffix(".idx")
    else:
        rec, idx = p.with_name(p.name + ".rec"), p.with_name(p.name + ".idx")
    for file in (rec, idx):
        if not file.is_file():
            raise UserError(f"RecordIO file {file} not found; give a folder holding train.rec and train.idx, "
                            "or the path prefix of a .rec/.idx pair")
    return rec, idx


def read_index(idx: Path) -> dict[int, int]:
    """``train.idx`` -> ``{key: byte offset}`` in file order."""
    offsets: dict[int, int] = {}
    with open(idx, encoding="ascii", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            try:
                key, offset = int(parts[0]), int(parts[1])
            except (IndexError, ValueError):
                raise UserError(f"{idx}:{number}: expected 'key<TAB>offset', got {line.strip()[:40]!r}") from None
            if offset < 0:
                raise UserError(f"{idx}:{number}: negative offset {offset}")
            offsets[key] = offset
    return offsets


class RecordIO:
    """Random access to an indexed RecordIO pair, picklable for DataLoader workers.

    ``RecordIO(path)``: ``path`` is a folder holding ``train.rec`` and ``train.idx``, a prefix
    ``DIR/name`` of ``name.rec``/``name.idx``, or the ``.rec`` path. The file is opened lazily in
    each process (a worker re-opens its own handle after fork or spawn).
    ``len()`` and ``image_keys``: the image records (insightface's rule for header record 0, see
    the module docstring); ``read(key)`` any record; ``image(key, size)`` a decoded RGB image.
    """

    def __init__(self, path: str | os.PathLike, framing: Framing = Framing()) -> None:
        self.path = str(path)
        self.framing = framing
        self.rec_path, self.idx_path = _paths(path)
        self.offsets = read_index(self.idx_path)
        self.file_size = self.rec_path.stat().st_size
        self._file = None
        self._pid = -1
        self.header0: IRHeader | None = None
        self.identity_keys: list[int] = []
        first = self.read(0)[0] if 0 in self.offsets else None
        if first is not None and first.flag > 0:
            if first.flag < 2:
                raise UserError(f"{self.rec_path}: header record 0 has {first.flag} label value, expected (images end, "
                                "identities end)")
            self.header0 = first
            image_end, identity_end = int(first.label[0]), int(first.label[1])
            self.image_keys = list(range(1, image_end))
            self.identity_keys = list(range(image_end, identity_end))
            missing = [k for k in (1, image_end - 1) if k not in self.offsets]
            if image_end > 1 and missing:
                raise UserError(f"{self.idx_path}: header record 0 announces image keys 1..{image_end - 1} but key "
                                f"{missing[0]} is not in the index; the .idx does not belong to this .rec")
        else:
            self.image_keys = list(self.offsets)

    def __len__(self) -> int:
        return len(self.image_keys)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"], state["_pid"] = None, -1
        return state

    def _handle(self):
        if self._file is None or self._pid != os.getpid():
            self._file = open(self.rec_path, "rb")
            self._pid = os.getpid()
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def read_body(self, key: int) -> bytes:
        """The record body stored under ``key`` (parts joined), without parsing the IRHeader."""
        if key not in self.offsets:
            raise KeyError(f"key {key} is not in {self.idx_path}")
        return self.read_at(self.offsets[key])

    def read_at(self, offset: int) -> bytes:
        """The record body starting at byte ``offset`` of the .rec file."""
        f = self._handle()
        body = bytearray()
        pos, part = offset, 0
        while True:
            f.seek(pos)
            head = f.read(8)
            if len(head) < 8:
                raise UserError(f"{self.rec_path}: truncated record at byte offset {pos}: {len(head)} of the 8 header "
                                f"bytes before the end of the file ({self.file_size} bytes)")
            magic, lrec = struct.unpack("<II", head)
            if magic != MAGIC:
                raise UserError(f"{self.rec_path}: corrupt record at byte offset {pos}: magic 0x{magic:08x}, expected "
                                f"0x{MAGIC:08x} (a damaged file or an .idx that does not belong to it)")
            cflag, length = lrec >> LENGTH_BITS, lrec & MAX_LENGTH
            if pos + 8 + length > self.file_size:
                raise UserError(f"{self.rec_path}: truncated record at byte offset {pos}: {length} bytes announced, "
                                f"{self.file_size - pos - 8} left in the file")
            if (part == 0) != (cflag in (0, 1)):
                raise UserError(f"{self.rec_path}: corrupt record at byte offset {pos}: continuation flag {cflag} "
                                f"{'starts' if part == 0 else 'continues'} a record")
            body += f.read(length)
            if cflag in (0, 3):
                return bytes(body)
            body += MAGIC_BYTES  # the writer split the payload at this magic number and dropped it
            pos += 8 + length + (-length % 4)
            part += 1

    def read(self, key: int) -> tuple[IRHeader, bytes]:
        """``(IRHeader, encoded image bytes)`` of the record ``key``."""
        return unpack(self.read_body(key), where=f"{self.rec_path} key {key} (byte offset {self.offsets.get(key)})")

    def image(self, key: int, size: int) -> torch.Tensor:
        """The image of record ``key`` as uint8 ``[3, size, size]`` RGB, framed (crop, bilinear resize when needed)."""
        _, payload = self.read(key)
        try:
            with Image.open(io.BytesIO(payload)) as img:
                img = img.convert("RGB")
                if img.size != (size, size) or not self.framing.is_default:
                    img = self.framing.apply(img, size)
                array = np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
        except (UnidentifiedImageError, OSError) as err:
            raise UserError(f"{self.rec_path} key {key} (byte offset {self.offsets[key]}): the image cannot be decoded "
                            f"({err.__class__.__name__}); the record is corrupt") from err
        return torch.from_numpy(np.ascontiguousarray(array))

    def label(self, key: int) -> int:
        """The class of record ``key`` (``label`` or ``label[0]``), without decoding the image."""
        return self.read(key)[0].class_label

    def labels(self) -> list[int]:
        """The class of every image key, in ``image_keys`` order.

        With identity records (insightface's layout) each gives the key range ``[first, end)`` of
        one identity's images, so only one image header per identity is read, not every record
        of a multi-gigabyte file; without them, or when the ranges do not tile the image keys,
        every image record's header is read.
        """
        ranges = []
        for key in self.identity_keys:
            first, end = (int(v) for v in self.read(key)[0].label[:2])
            ranges.append((first, end))
        if ranges and sorted(ranges) == ranges and ranges[0][0] == 1 and ranges[-1][1] == len(self.image_keys) + 1 \
                and all(a[1] == b[0] and a[0] < a[1] for a, b in zip(ranges, ranges[1:])):
            return [c for first, end in ranges for c in [self.label(first)] * (end - first)]
        return [self.label(k) for k in self.image_keys]


def load(path: str, *, size: int, stream: bool = False, framing: Framing = Framing(),
         progress: bool = True) -> FaceData:
    """The images of the RecordIO pair at ``path``, classes renumbered ``0..C-1``.

    Identity names are the original class numbers as text. Without ``stream`` every image is
    decoded into memory; MS1M-scale files do not fit there (5.8M images x 3 x 112 x 112 bytes =
    219 GB): with ``stream`` they stay on disk (:class:`StoredImages`, decoded when used).
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise UserError(f"size must be a positive integer (pixels), got {size!r}")
    reader = RecordIO(path, framing)
    if len(reader) == 0:
        raise UserError(f"{reader.rec_path} holds no image records")
    try:
        raw = torch.tensor(reader.labels(), dtype=torch.int64)
        images = StoredImages(reader, np.asarray(reader.image_keys, dtype=np.int64), size)
        if not stream:
            images = images.decode_all(desc=f"reading {reader.rec_path}", progress=progress)
    finally:
        reader.close()
    classes, labels = torch.unique(raw, sorted=True, return_inverse=True)
    return FaceData(images, labels, [str(c) for c in classes.tolist()], f"recordio:{path}")


def _encode(image: np.ndarray | torch.Tensor, image_format: str, quality: int) -> bytes:
    array = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[0] not in (1, 3):
        raise UserError(f"images must be uint8 [3, H, W] (or [1, H, W]), got {array.dtype} {tuple(array.shape)}")
    hwc = array.transpose(1, 2, 0)
    img = Image.fromarray(hwc[:, :, 0] if hwc.shape[2] == 1 else hwc)
    buffer = io.BytesIO()
    img.save(buffer, format=image_format, **({"quality": quality} if image_format == "JPEG" else {}))
    return buffer.getvalue()


def write_records(rec_path: str | os.PathLike, idx_path: str | os.PathLike, bodies: Sequence[tuple[int, bytes]]) -> None:
    """Write ``(key, record body)`` pairs as a .rec and its .idx (``key<TAB>offset`` lines)."""
    with open(rec_path, "wb") as rec, open(idx_path, "w", encoding="ascii") as idx:
        for key, body in bodies:
            idx.write(f"{key}\t{rec.tell()}\n")
            rec.write(frame(body))


def write_recordio(directory: str | os.PathLike, images: Sequence[np.ndarray | torch.Tensor],
                   labels: Sequence[float | Sequence[float]], *, image_format: str = "png",
                   quality: int = 95) -> Path:
    """Write ``DIR/train.rec`` and ``DIR/train.idx`` in insightface's layout; returns ``DIR``.

    ``images``: uint8 ``[3, H, W]`` arrays or tensors; ``labels``: a class number per image, or a
    sequence of floats (written in the float-array form, ``flag = len``, class = first value).
    Images of one class must be consecutive (insightface's files are grouped so that each
    identity record holds a key range). Keys: 0 header, ``1..N`` images, ``N+1..N+C`` identities.
    ``image_format``: ``"png"`` (lossless) or ``"jpeg"`` (with ``quality``).
    """
    fmt = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG"}.get(str(image_format).lower())
    if fmt is None:
        raise UserError(f"image_format must be 'png' or 'jpeg', got {image_format!r}")
    if len(images) != len(labels):
        raise UserError(f"images and labels must have the same length, got {len(images)} and {len(labels)}")
    headers = [IRHeader(len(lab), tuple(float(v) for v in lab), k, 0) if isinstance(lab, (list, tuple, np.ndarray))
               else IRHeader(0, float(lab), k, 0) for k, lab in enumerate(labels, 1)]
    classes = [h.class_label for h in headers]
    ranges: list[tuple[int, int, int]] = []  # (class, first key, end key)
    for key, cls in enumerate(classes, 1):
        if ranges and ranges[-1][0] == cls:
            ranges[-1] = (cls, ranges[-1][1], key + 1)
        elif any(r[0] == cls for r in ranges):
            raise UserError(f"labels must be grouped by class (class {cls} appears again at image {key - 1}); "
                            "sort the images by label first")
        else:
            ranges.append((cls, key, key + 1))
    n = len(images)
    bodies = [(0, pack(IRHeader(2, (float(n + 1), float(n + 1 + len(ranges))), 0, 0), b""))]
    bodies += [(k, pack(h, _encode(img, fmt, quality))) for k, (h, img) in enumerate(zip(headers, images), 1)]
    bodies += [(n + 1 + i, pack(IRHeader(2, (float(a), float(b)), n + 1 + i, 0), b"")) for i, (_, a, b) in enumerate(ranges)]
    out = Path(directory).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    write_records(out / "train.rec", out / "train.idx", bodies)
    return out
