"""Bad input to what one does with a trained model and a finished run (embed, export, eval, data
preview, report) and to the data a run reads: exit 2 and one line, or one warning, and the files
on disk as they were (or only the ones the command is there to write)."""
import io
import json
import os
import shutil
import torch
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlcompare.cli import main
from mlcompare.files import outputs
from tests.cli.test_bad_input import error_line
from tests.cli.test_checkpoint_safety import WritesAFile
from tests.cli.test_run_directory_safety import files_under
from tests.conftest import TINY


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- embed, export, preview

def test_embed_refuses_to_overwrite_without_force(tiny_run, tmp_path, capsys):
    out = tmp_path / "emb.npy"
    (tmp_path / "emb.csv").write_text("someone else's table\n")  # only the CSV beside it exists: still refused
    before = snapshot(tmp_path)
    args = ["embed", "--checkpoint", str(tiny_run / "softmax"), "--data", "digits", "--out", str(out), "--no-progress"]
    assert main(args) == 2
    line = error_line(capsys)
    assert f"{tmp_path / 'emb.csv'} already exist; pass --force" in line
    assert snapshot(tmp_path) == before
    assert main([*args, "--force"]) == 0
    assert np.load(out).shape == (1797, 16) and (tmp_path / "emb.csv").read_text().startswith("row,path,identity,label")


@pytest.fixture
def read_only(tmp_path, monkeypatch) -> Path:
    """A folder nobody may write into (root ignores the mode bits, so access() is told so too)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.geteuid() == 0:
        real = os.access
        monkeypatch.setattr(outputs.os, "access",
                            lambda p, mode: False if Path(p) == locked and mode & os.W_OK else real(p, mode))
    yield locked
    locked.chmod(0o700)


def test_export_into_a_read_only_folder_is_refused_before_the_export(tiny_run, read_only, capsys, monkeypatch):
    from mlcompare.use import export

    monkeypatch.setattr(export, "export_onnx", lambda *a, **k: pytest.fail("the export ran"))
    assert main(["export", "--checkpoint", str(tiny_run / "softmax"), "--onnx", str(read_only / "m.onnx")]) == 2
    assert f"cannot write the file '{read_only / 'm.onnx'}': '{read_only}' is not writable" in error_line(capsys)
    assert list(read_only.iterdir()) == []


def test_export_onto_a_folder_is_refused(tiny_run, tmp_path, capsys):
    target = tmp_path / "m.onnx"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    assert main(["export", "--checkpoint", str(tiny_run / "softmax"), "--onnx", str(target)]) == 2
    assert f"--onnx {target}: '{target}' is a folder; give a file path" in error_line(capsys)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


def test_data_preview_into_a_read_only_folder_is_one_line(read_only, capsys):
    assert main(["data", "preview", "digits", "--out", str(read_only / "sheet.png")]) == 2
    assert f"'{read_only}' is not writable; choose another --out" in error_line(capsys)
    assert list(read_only.iterdir()) == []


# ----------------------------------------------------------------------------- eval inputs

@pytest.mark.parametrize("content, expected", [
    (b"row,quality\n0,0.5\n1\n", "line 3 has fewer fields than the header (row,quality)"),
    (b"row,quality\n0,\xff\xfe\n", "not a UTF-8 CSV"),
])
def test_eval_erc_csv_short_row_or_not_utf8_is_one_line(tiny_run, tmp_path, capsys, content, expected):
    csv = tmp_path / "q.csv"
    csv.write_bytes(content)
    assert main(["eval", "--checkpoint", str(tiny_run / "softmax"), "--data", "digits", "--erc", str(csv)]) == 2
    assert f"--erc {csv}: {expected}" in error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.csv"]


def _png(side: tuple[int, int] = (16, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", side, (120, 60, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_eval_pairs_naming_a_folder_outside_root_is_refused(tiny_run, tmp_path, capsys):
    root = tmp_path / "root"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        (root / name / f"{name}_0001.jpg").write_bytes(_png())
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "outside_0001.jpg").write_bytes(_png())
    (tmp_path / "outside_0002.jpg").write_bytes(_png())  # where root/../outside/../outside_0002.jpg lands
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1 1\n../outside 1 2\na 1 b 1\n")
    assert main(["eval", "--checkpoint", str(tiny_run / "softmax"), "--pairs", str(pairs), "--root", str(root)]) == 2
    assert f"{pairs}:2: name '../outside' is not a folder inside root" in error_line(capsys)


# ----------------------------------------------------------------------------- report and run inputs

def test_report_on_object_array_labels_runs_nothing_and_is_one_line(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    marker = tmp_path / "marker"
    np.save(run / "test_labels_sample.npy", np.array([WritesAFile(marker), 1], dtype=object), allow_pickle=True)
    before = snapshot(run)
    assert main(["report", str(run), "--force"]) == 2
    assert f"'{run / 'test_labels_sample.npy'}' cannot be read as an array of labels" in error_line(capsys)
    assert not marker.exists() and snapshot(run) == before


def test_a_pickled_pretrained_file_is_the_clean_checkpoint_line(tmp_path, capsys):
    marker = tmp_path / "marker"
    torch.save({"conv.weight": WritesAFile(marker)}, tmp_path / "evil.pt")
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY.replace("embedding_dim = 16", f"embedding_dim = 16\npretrained = {json.dumps(str(tmp_path / 'evil.pt'))}"))
    before = files_under(tmp_path)
    assert main(["run", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    line = error_line(capsys)
    assert line.startswith(f"mlcompare: error: backbone.pretrained: '{tmp_path / 'evil.pt'}' names '")
    assert "not loading it (it could run code): give a local state dict" in line and "weights_only" not in line
    assert not marker.exists() and files_under(tmp_path) == before


def test_raw_html_in_a_method_name_is_escaped_in_report_md(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY.replace('name = "softmax"', 'name = "<img src=x onerror=alert(1)>"'))
    assert main(["run", str(cfg), "--out", str(tmp_path / "run"), "--no-progress", "--steps", "2"]) == 0
    md = (tmp_path / "run" / "report.md").read_text()
    assert "<img" not in md
    assert "| &lt;img src=x onerror=alert(1)&gt; |" in md
    assert "&lt;img src=x onerror=alert(1)&gt;" in (tmp_path / "run" / "report.html").read_text()


def test_images_far_below_size_are_one_warning_with_the_count_and_the_smallest(tmp_path, capsys):
    folder = tmp_path / "faces"
    sides = {"a": [(1, 1), (1, 1), (40, 40)], "b": [(2, 3), (64, 64)], "c": [(15, 90), (64, 64)]}
    for person, images in sides.items():
        (folder / person).mkdir(parents=True)
        for i, side in enumerate(images):
            (folder / person / f"{i}.png").write_bytes(_png(side))
    with pytest.warns(UserWarning) as caught:
        assert main(["data", "preview", f"imagefolder:{folder}", "--size", "64", "--out", str(tmp_path / "s.png")]) == 0
    small = [str(w.message) for w in caught if "far smaller" in str(w.message)]
    # under 64 / 4 = 16 px on the shorter side: 1x1 twice, 2x3, 15x90 (not 40x40)
    assert small == [f"imagefolder:{folder}: 4 of 7 images are far smaller than size = 64 px (shorter side under 16 px; "
                     "the smallest 1x1): upscaled, they hold little to learn; check the folder, or lower data.size"]
