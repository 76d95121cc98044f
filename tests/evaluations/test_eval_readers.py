"""Readers: insightface .bin (round trip, malicious pickle), LFW pairs.txt, identities CSV."""

import io
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from evaluations import read_bin, read_identities_csv, read_lfw_pairs


def encoded(rgb, fmt):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("protocol", [2, 4])
def test_bin_round_trip_in_insightface_format(tmp_path, protocol):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(4, 12, 10, 3), dtype=np.uint8)
    bins = [encoded(im, "PNG") for im in images]
    issame = [True, False]
    path = tmp_path / "lfw.bin"
    path.write_bytes(pickle.dumps((bins, issame), protocol=protocol))
    got, same = read_bin(path)
    assert got.dtype == np.uint8 and got.shape == (4, 12, 10, 3)
    np.testing.assert_array_equal(got, images)  # PNG is lossless
    assert same.dtype == np.bool_ and same.tolist() == issame


def test_bin_with_jpeg_and_numpy_issame(tmp_path):
    img = np.full((8, 8, 3), 128, dtype=np.uint8)
    path = tmp_path / "agedb_30.bin"
    path.write_bytes(pickle.dumps(([encoded(img, "JPEG")] * 2, np.array([True])), protocol=4))
    got, same = read_bin(path)
    assert got.shape == (2, 8, 8, 3) and abs(int(got[0, 0, 0, 0]) - 128) <= 2
    assert same.tolist() == [True]


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_bin_refuses_a_pickle_that_runs_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(([b"x", b"y"], [Exploit()]), protocol=4))
    with pytest.raises(ValueError, match=r"^[^\n]*evil\.bin: not a safe insightface \.bin pickle[^\n]*refusing to load (posix|nt)\.system[^\n]*$"):
        read_bin(path)
    assert not (tmp_path / "pwned.txt").exists()


def test_bin_refuses_arbitrary_objects_and_bad_structure(tmp_path):
    path = tmp_path / "bad.bin"
    path.write_bytes(pickle.dumps(([b"x", b"y"], {"a": 1}, object)))
    with pytest.raises(ValueError, match="refusing to load builtins.object"):
        read_bin(path)
    path.write_bytes(pickle.dumps(([b"x", b"y", b"z"], [True])))
    with pytest.raises(ValueError, match="3 images for 1 pairs"):
        read_bin(path)
    path.write_bytes(pickle.dumps(([b"not an image", b"x"], [True])))
    with pytest.raises(ValueError, match="image 0 is not a decodable image"):
        read_bin(path)
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.bin: not a safe"):
        read_bin(path)


def make_lfw(tmp_path, names_counts):
    for name, count in names_counts.items():
        (tmp_path / name).mkdir()
        for i in range(1, count + 1):
            (tmp_path / name / f"{name}_{i:04d}.jpg").write_bytes(b"")


def test_lfw_pairs(tmp_path):
    make_lfw(tmp_path, {"Ann_A": 2, "Bob_B": 1, "Cy_C": 3})
    txt = tmp_path / "pairs.txt"
    txt.write_text("2\t1\nAnn_A\t1\t2\nAnn_A\t1\tBob_B\t1\nCy_C\t1\t3\nCy_C\t2\tAnn_A\t2\n")
    a, b, same = read_lfw_pairs(txt, tmp_path)
    assert same.tolist() == [True, False, True, False]
    assert a[0] == os.path.join(str(tmp_path), "Ann_A", "Ann_A_0001.jpg")
    assert b[1] == os.path.join(str(tmp_path), "Bob_B", "Bob_B_0001.jpg")
    assert b[2].endswith("Cy_C_0003.jpg")


@pytest.mark.parametrize(
    "text,message",
    [
        ("1 1\nAnn_A 1 2\n", r"promises 1 folds x 2 pairs = 2 lines but the file has 1"),
        ("1 1\nAnn_A 1 Bob_B 1\nAnn_A 1 Bob_B 1\n", r"pairs.txt:2: expected a matched pair"),
        ("1 1\nAnn_A 1 2\nAnn_A 1 x\n", r"pairs.txt:3: expected a mismatched pair"),
        ("1 1\nAnn_A 1 7\nAnn_A 1 Bob_B 1\n", r"pairs.txt:2: image .*Ann_A_0007.jpg does not exist"),
        ("folds\n", r"pairs.txt:1: expected a header"),
    ],
)
def test_lfw_pairs_malformed(tmp_path, text, message):
    make_lfw(tmp_path, {"Ann_A": 2, "Bob_B": 1})
    txt = tmp_path / "pairs.txt"
    txt.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_lfw_pairs(txt, tmp_path)


def test_identities_csv(tmp_path):
    csv_path = tmp_path / "ids.csv"
    csv_path.write_text("path,identity\na/1.jpg,alice\nb/2.jpg,bob\n")
    paths, ids = read_identities_csv(csv_path)
    assert paths == [os.path.join(str(tmp_path), "a/1.jpg"), os.path.join(str(tmp_path), "b/2.jpg")]
    assert ids == ["alice", "bob"]
    csv_path.write_text("path,identity\na/1.jpg\n")
    with pytest.raises(ValueError, match=r"ids.csv:2: expected 'path,identity'"):
        read_identities_csv(csv_path)
    csv_path.write_text("file,label\n")
    with pytest.raises(ValueError, match=r"ids.csv:1: the header must be"):
        read_identities_csv(csv_path)
