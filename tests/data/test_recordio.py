"""RecordIO: bytes written by hand to dmlc's framing, round trips, multi-part records, corrupt files."""
from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest
import torch

from mlcompare.data.recordio import (MAGIC, IRHeader, RecordIO, frame, load, pack, read_index, unpack, write_records,
                                     write_recordio)
from mlcompare.errors import UserError

M = struct.pack("<I", 0xCED7230A)


def _lrec(cflag: int, length: int) -> bytes:
    return struct.pack("<I", cflag << 29 | length)


def _images(n: int, size: int = 8, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (3, size, size), dtype=np.uint8) for _ in range(n)]


def test_frame_matches_the_format_written_by_hand():
    assert MAGIC == 0xCED7230A
    # no magic inside: one part, cflag 0, padded to 4 bytes
    assert frame(b"abcde") == M + _lrec(0, 5) + b"abcde" + b"\0\0\0"
    assert frame(b"abcd") == M + _lrec(0, 4) + b"abcd"
    assert frame(b"") == M + _lrec(0, 0)
    # a magic at an aligned offset splits the record there and is dropped: parts 1, (2...), 3
    assert frame(b"abcd" + M + b"xy") == M + _lrec(1, 4) + b"abcd" + M + _lrec(3, 2) + b"xy\0\0"
    assert frame(M + b"abcd" + M) == M + _lrec(1, 0) + M + _lrec(2, 4) + b"abcd" + M + _lrec(3, 0)
    assert frame(M + M) == M + _lrec(1, 0) + M + _lrec(2, 0) + M + _lrec(3, 0)
    # an unaligned magic is left in place (dmlc checks aligned words only)
    assert frame(b"ab" + M + b"cd") == M + _lrec(0, 8) + b"ab" + M + b"cd"


def test_irheader_pack_unpack_by_hand():
    body = pack(IRHeader(0, 7.0, 3, 0), b"IMG")
    assert body == struct.pack("<IfQQ", 0, 7.0, 3, 0) + b"IMG" and len(body) == 24 + 3
    assert unpack(body) == (IRHeader(0, 7.0, 3, 0), b"IMG")
    body = pack(IRHeader(2, (5.0, 9.5), 1, 2), b"xy")
    assert body == struct.pack("<IfQQ", 2, 0.0, 1, 2) + struct.pack("<2f", 5.0, 9.5) + b"xy"
    header, payload = unpack(body)
    assert header == IRHeader(2, (5.0, 9.5), 1, 2) and payload == b"xy" and header.class_label == 5


@pytest.mark.parametrize("body", [b"", b"a", b"abcd", M, b"abcd" + M + b"xy", M + b"abcd" + M, M + M + M + b"tail!",
                                  b"ab" + M + b"cd", bytes(range(256)) * 3 + M + b"z" * 5])
def test_read_back_any_body(tmp_path, body):
    bodies = [(10, b"first"), (7, body), (3, b"after" + M)]
    write_records(tmp_path / "x.rec", tmp_path / "x.idx", bodies)
    reader = RecordIO(tmp_path / "x")
    assert [reader.read_body(k) for k, _ in bodies] == [b for _, b in bodies]
    assert reader.image_keys == [10, 7, 3]  # no header record 0: every key, in .idx order


def test_round_trip_png_labels_and_header_record(tmp_path):
    images = _images(7)
    labels = [4, 4, 9, 9, 9, 2, 11]
    write_recordio(tmp_path, images, labels)
    idx = read_index(tmp_path / "train.idx")
    assert list(idx) == list(range(0, 7 + 1 + 4))  # header, 7 images, 4 identities
    reader = RecordIO(tmp_path)
    assert len(reader) == 7 and reader.image_keys == list(range(1, 8)) and reader.identity_keys == [8, 9, 10, 11]
    assert reader.header0.label == (8.0, 12.0)
    for key, (img, lab) in enumerate(zip(images, labels), 1):
        header, _ = reader.read(key)
        assert header.flag == 0 and header.label == float(lab) and header.id == key
        assert torch.equal(reader.image(key, 8), torch.from_numpy(img))
    # identity records hold the key range [first, end) of their images
    assert [reader.read(k)[0].label for k in reader.identity_keys] == [(1.0, 3.0), (3.0, 6.0), (6.0, 7.0), (7.0, 8.0)]
    data = load(str(tmp_path), size=8)
    assert data.identities == ["2", "4", "9", "11"]
    assert data.labels.tolist() == [1, 1, 2, 2, 2, 0, 3] and data.labels.dtype == torch.int64
    assert torch.equal(data.images, torch.from_numpy(np.stack(images))) and data.source == f"recordio:{tmp_path}"


def test_resize_grey_and_jpeg(tmp_path):
    grey = [np.full((1, 6, 6), 200, dtype=np.uint8), np.zeros((3, 6, 6), dtype=np.uint8)]
    write_recordio(tmp_path, grey, [0, 1], image_format="jpeg", quality=100)
    reader = RecordIO(tmp_path / "train.rec")
    img = reader.image(1, 4)
    assert img.shape == (3, 4, 4) and img.dtype == torch.uint8
    assert (img.int() - 200).abs().max() <= 2  # JPEG of a flat grey, repeated to RGB
    assert load(str(tmp_path), size=5).images.shape == (2, 3, 5, 5)


def test_float_array_labels(tmp_path):
    labels = [[3.0, 0.25], [3.0, 0.5], [8.0, 1.0]]
    write_recordio(tmp_path, _images(3), labels)
    reader = RecordIO(tmp_path)
    header, _ = reader.read(2)
    assert header.flag == 2 and header.label == (3.0, 0.5) and reader.label(2) == 3
    assert load(str(tmp_path), size=8).labels.tolist() == [0, 0, 1]


def test_multi_part_image_record(tmp_path):
    """A header whose id2 holds the magic twice (bytes 16..24, aligned): the record splits in 3 parts."""
    write_recordio(tmp_path / "src", _images(1), [1])
    _, png = RecordIO(tmp_path / "src").read(1)
    body = pack(IRHeader(0, 1.0, 1, MAGIC | MAGIC << 32), png)
    assert body[16:20] == M and body[20:24] == M
    write_records(tmp_path / "t.rec", tmp_path / "t.idx", [(1, body)])
    raw = (tmp_path / "t.rec").read_bytes()
    assert raw[:8] == M + _lrec(1, 16) and raw[24:32] == M + _lrec(2, 0) and raw[32:36] == M
    assert struct.unpack("<I", raw[36:40])[0] >> 29 == 3
    reader = RecordIO(tmp_path / "t.rec")
    got, payload = reader.read(1)
    assert got.id2 == MAGIC | MAGIC << 32 and payload == png
    assert torch.equal(reader.image(1, 8), torch.from_numpy(_images(1)[0]))


def test_pickles_for_worker_processes(tmp_path):
    write_recordio(tmp_path, _images(2), [0, 1])
    reader = RecordIO(tmp_path)
    reader.read(1)
    clone = pickle.loads(pickle.dumps(reader))
    assert clone._file is None and torch.equal(clone.image(2, 8), reader.image(2, 8))


def _one_line(err: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(err.value)
    return str(err.value)


def test_truncated_file_names_file_and_offset(tmp_path):
    write_recordio(tmp_path, _images(3), [0, 1, 2])
    rec = tmp_path / "train.rec"
    offsets = read_index(tmp_path / "train.idx")
    data = rec.read_bytes()
    rec.write_bytes(data[:offsets[3] + 40])  # record 3 cut inside its image
    reader = RecordIO(tmp_path)
    assert reader.image(2, 8).shape == (3, 8, 8)  # records before the cut still read
    with pytest.raises(UserError, match=f"truncated record at byte offset {offsets[3]}") as err:
        reader.read(3)
    assert str(rec) in _one_line(err)
    rec.write_bytes(data[:offsets[3] + 5])  # cut inside the 8-byte frame header
    with pytest.raises(UserError, match=f"truncated record at byte offset {offsets[3]}: 5 of the 8"):
        RecordIO(tmp_path).read(3)


def test_bad_magic_names_file_and_offset(tmp_path):
    write_recordio(tmp_path, _images(2), [0, 1])
    rec = tmp_path / "train.rec"
    offsets = read_index(tmp_path / "train.idx")
    data = bytearray(rec.read_bytes())
    data[offsets[2]] ^= 0xFF
    rec.write_bytes(bytes(data))
    with pytest.raises(UserError, match=f"corrupt record at byte offset {offsets[2]}: magic 0x") as err:
        RecordIO(tmp_path).read(2)
    assert str(rec) in _one_line(err)
    # an .idx offset pointing into the middle of a record
    (tmp_path / "train.idx").write_text(f"0\t{offsets[0]}\n1\t{offsets[1] + 4}\n2\t{offsets[2]}\n")
    with pytest.raises(UserError, match=f"byte offset {offsets[1] + 4}"):
        RecordIO(tmp_path).read(1)


def test_bad_continuation_and_bad_image(tmp_path):
    (tmp_path / "a.rec").write_bytes(M + _lrec(3, 4) + b"abcd")
    (tmp_path / "a.idx").write_text("5\t0\n")
    with pytest.raises(UserError, match="byte offset 0: continuation flag 3 starts a record"):
        RecordIO(tmp_path / "a").read_body(5)
    (tmp_path / "b.rec").write_bytes(M + _lrec(1, 4) + b"abcd" + M + _lrec(0, 0))
    (tmp_path / "b.idx").write_text("5\t0\n")
    with pytest.raises(UserError, match="byte offset 12: continuation flag 0 continues a record"):
        RecordIO(tmp_path / "b").read_body(5)
    write_records(tmp_path / "c.rec", tmp_path / "c.idx", [(1, pack(IRHeader(0, 1.0, 1, 0), b"not an image"))])
    with pytest.raises(UserError, match="key 1 .*byte offset 0.*cannot be decoded") as err:
        RecordIO(tmp_path / "c").image(1, 8)
    _one_line(err)
    write_records(tmp_path / "d.rec", tmp_path / "d.idx", [(1, b"short")])
    with pytest.raises(UserError, match="shorter than the 24-byte IRHeader"):
        RecordIO(tmp_path / "d").read(1)


def test_bad_inputs(tmp_path):
    with pytest.raises(UserError, match="train.rec not found"):
        RecordIO(tmp_path)
    (tmp_path / "x.rec").write_bytes(b"")
    (tmp_path / "x.idx").write_text("0\tzero\n")
    with pytest.raises(UserError, match=r"x.idx:1: expected 'key<TAB>offset'"):
        RecordIO(tmp_path / "x.rec")
    with pytest.raises(UserError, match="labels must be grouped by class"):
        write_recordio(tmp_path / "y", _images(3), [0, 1, 0])
    with pytest.raises(UserError, match="images must be uint8"):
        write_recordio(tmp_path / "y", [np.zeros((3, 4, 4), dtype=np.float32)], [0])


def test_labels_come_from_identity_records_reading_one_header_per_identity(tmp_path):
    labels = [4, 4, 9, 9, 9, 2, 11]
    write_recordio(tmp_path, _images(7), labels)
    reader = RecordIO(tmp_path)
    reads = []
    original = reader.read
    reader.read = lambda key: (reads.append(key), original(key))[1]
    assert reader.labels() == labels
    # 4 identity records + the first image of each of the 4 identities, not all 7 images
    assert sorted(reads) == sorted([8, 9, 10, 11, 1, 3, 6, 7])


def test_labels_without_identity_records_read_every_header(tmp_path):
    bodies = [(k, pack(IRHeader(0, float(c), k, 0), b"")) for k, c in enumerate([5, 5, 1], 1)]
    write_records(tmp_path / "train.rec", tmp_path / "train.idx", bodies)
    assert RecordIO(tmp_path).labels() == [5, 5, 1]
