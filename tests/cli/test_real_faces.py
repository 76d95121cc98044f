"""Real faces through the command line: nested folders, benchmarks, leakage refusals, a tiny CFP
cross-validation run, and `data stats`."""
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mlcompare.cli import main
from tests.conftest import TINY


def error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if line.strip() and not line.startswith("warning:") and "%|" not in line]  # a data-reading progress bar
    assert len(err) == 1, err
    assert err[0].startswith("mlcompare: error: ")
    return err[0]


def faces(root, people, *, nested=False, per=4, seed=0):
    """An image folder of ``people``: each a random pattern plus noise, per sub-folder ``a``/``b`` when nested."""
    rng = np.random.default_rng(seed)
    for i, person in enumerate(people):
        base = rng.integers(0, 255, (24, 20, 3))
        for j in range(per):
            folder = root / person / ("ab"[j % 2] if nested else "")
            folder.mkdir(parents=True, exist_ok=True)
            img = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"{j}.png")
    return root


def test_nested_option_reads_sub_folders_and_records_them(tmp_path, capsys):
    faces(tmp_path / "set", ["ann", "bob", "cy"], nested=True)
    assert main(["data", "stats", f"imagefolder:{tmp_path / 'set'},nested=true"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("3 identities, 12 images")
    assert out[1] == "images per identity: min 4, median 4, max 4"
    assert "widths 20 to 20" in out[2]
    assert out[3] == "sub-folders: a 6 images, b 6 images"
    assert main(["data", "stats", f"imagefolder:{tmp_path / 'set'}"]) == 2  # the default is unchanged: no images
    assert "nested=true" in capsys.readouterr().err


def test_test_data_of_the_same_people_is_refused_and_nothing_is_written(tmp_path, capsys):
    faces(tmp_path / "set", [f"p{i}" for i in range(12)])
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    out = tmp_path / "run"
    spec = f"imagefolder:{tmp_path / 'set'}"
    code = main(["run", str(cfg), "--out", str(out), "--no-progress", "--data", spec, "--test-data", spec])
    assert code == 2 and "is the training data itself" in error_line(capsys) and not out.exists()
    # the same folder through a symlink: the same files
    (tmp_path / "link").symlink_to(tmp_path / "set")
    code = main(["run", str(cfg), "--out", str(out), "--no-progress", "--data", spec,
                 "--test-data", f"imagefolder:{tmp_path / 'link'}"])
    line = error_line(capsys)
    assert code == 2 and "12 of its people are in the training set (12 by shared image files" in line
    assert not out.exists()


def bench(cfp) -> str:
    """TINY on CFP's images (the centre square of each photo)."""
    return TINY.replace('train = "digits"', f'train = "cfp:{cfp}"').replace("size = 16", "size = 16\nkeep_aspect = true")


def test_a_benchmark_showing_training_people_is_refused_before_anything_is_written(tmp_path, capsys, cfp):
    cfg = tmp_path / "c.toml"
    cfg.write_text(bench(cfp) + f'[[benchmarks]]\nkind = "cfp"\npath = "{cfp}"\nprotocol = "FP"\n')
    out = tmp_path / "run"
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["run", str(cfg), "--out", str(out), "--no-progress", "--steps", "2"]) == 2
    line = error_line(capsys)
    assert "benchmark cfp_fp:" in line and "of its people are in the training set" in line and "overlap_ok" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_names_shared_with_a_benchmark_are_refused_across_data_sets(tmp_path, capsys, cfp):
    # A training folder (names=true) holding one CFP person under LFW's spelling, and 11 others.
    names = (cfp / "Data" / "list_name.txt").read_text().splitlines()
    faces(tmp_path / "lfw", [names[2].replace(" ", "_")] + [f"Someone_{i}" for i in range(11)])
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY.replace('train = "digits"', f'train = "imagefolder:{tmp_path / "lfw"},names=true"')
                   + f'[[benchmarks]]\nkind = "cfp"\npath = "{cfp}"\nprotocol = "FF"\n')
    out = tmp_path / "run"
    # a separate test set, so that every person of the folder is a training person
    assert main(["run", str(cfg), "--out", str(out), "--no-progress", "--steps", "2",
                 "--test-data", "synthfaces:identities=8,images_per_identity=4"]) == 2
    line = error_line(capsys)
    assert "1 of its people are in the training set (1 by name" in line and names[2].replace(" ", "_") in line
    assert not out.exists()


def test_a_tiny_cfp_cross_validation_run_end_to_end(tmp_path, capsys, cfp):
    cfg = tmp_path / "c.toml"
    cfg.write_text(bench(cfp) + f"""
[[benchmarks]]
kind = "cfp"
path = "{cfp}"
protocol = "FF"
[[benchmarks]]
kind = "cfp"
path = "{cfp}"
protocol = "FP"
[crossval]
benchmark = "cfp_fp"
folds = [2]
""")
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--no-progress", "--steps", "4"]) == 0
    results = pd.read_csv(out / "results.csv")
    assert sorted(results.method) == ["raw pixels", "softmax", "triplet-bh"] and set(results.fold) == {2}
    for name in ("cfp_ff", "cfp_fp"):
        assert results[f"{name}.accuracy"].between(0, 1).all() and results[f"{name}.auc"].between(0, 1).all()
    saved = json.loads((out / "config.json").read_text())
    assert saved["folds"] == [{"fold": 2, "train_identities": 450, "test_identities": 50}]
    assert saved["benchmark_sets"][1]["pairs"] == 700  # split 2 only
    assert (out / "checkpoints" / "softmax-f2-s0.pt").exists()
    report = (out / "report.md").read_text()
    assert "## Benchmarks" in report and "| cfp_ff accuracy (%) |" in report.replace(" | cfp_fp accuracy (%) |", " |")
    # eval scores fold 2's model as the run did, and refuses it without the fold
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out / "softmax"), "--fold", "2", "--cfp", str(cfp), "--cfp-protocol",
                 "FF", "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    row = results[results.method == "softmax"].iloc[0]
    assert scored["accuracy"] == pytest.approx(row["cfp_ff.accuracy"]) and scored["auc"] == pytest.approx(row["cfp_ff.auc"])
    assert main(["eval", "--checkpoint", str(out / "softmax"), "--cfp", str(cfp)]) == 2
    assert "--fold" in error_line(capsys)


def test_data_stats_on_cfp(cfp, capsys):
    assert main(["data", "stats", f"cfp:{cfp}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("500 identities, 7000 images")
    assert out[1] == "images per identity: min 14, median 14, max 14"
    assert out[3] == "sub-folders: frontal 5000 images, profile 2000 images"


def test_a_run_on_other_data_says_so_in_its_report(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--no-progress", "--steps", "2",
                 "--data", "synthfaces:identities=12,images_per_identity=4"]) == 0
    report = (out / "report.md").read_text()
    assert "[This run: trained on synthfaces:identities=12,images_per_identity=4, not the comparison's own digits.]" in report


def test_byte_identical_copies_are_the_same_person(tmp_path, capsys):
    import shutil

    # a separate test set holding a byte-identical copy of a training identity (another folder, another name)
    faces(tmp_path / "train", [f"p{i}" for i in range(12)])
    faces(tmp_path / "test", [f"q{i}" for i in range(5)], seed=1)
    shutil.copytree(tmp_path / "train" / "p3", tmp_path / "test" / "copy-of-p3")
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    out = tmp_path / "run"
    code = main(["run", str(cfg), "--out", str(out), "--no-progress", "--data", f"imagefolder:{tmp_path / 'train'}",
                 "--test-data", f"imagefolder:{tmp_path / 'test'}"])
    line = error_line(capsys)
    assert code == 2 and "1 of its people are in the training set (1 by shared image files; e.g. 'p3')" in line
    assert not out.exists()


def test_an_identity_folder_copied_under_another_name_is_refused_across_the_split_and_warned_within(tmp_path, capsys):
    import os

    # six people, each also linked under a second name: the held-out split puts some pairs on both sides
    faces(tmp_path / "set", [f"p{i}" for i in range(6)])
    for i in range(6):
        os.symlink(tmp_path / "set" / f"p{i}", tmp_path / "set" / f"z{i}")
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--no-progress", "--data", f"imagefolder:{tmp_path / 'set'}"]) == 2
    line = error_line(capsys)
    assert "held-out test identities share images with training identities" in line and "remove the copies" in line
    assert not out.exists()
    # all of them in training (a separate test set): one warning with the count, and the run goes on
    faces(tmp_path / "other", [f"q{i}" for i in range(5)], seed=1)
    with pytest.warns(UserWarning, match=r"6 pair\(s\) of training identities share images \(e.g. 'p0' and 'z0'\)"):
        assert main(["run", str(cfg), "--out", str(out), "--no-progress", "--steps", "2",
                     "--data", f"imagefolder:{tmp_path / 'set'}", "--test-data", f"imagefolder:{tmp_path / 'other'}"]) == 0


def lfw_layout(root, people=6, per=4, folds=10):
    """An LFW-style folder (root/NAME/NAME_0001.jpg) and a pairs.txt of ``folds`` folds, each one
    matched and one mismatched pair."""
    rng = np.random.default_rng(3)
    names = [f"Person_{i}" for i in range(people)]
    for i, name in enumerate(names):
        base = rng.integers(0, 255, (20, 20, 3))
        (root / name).mkdir(parents=True)
        for j in range(per):
            img = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{name}_{j + 1:04d}.jpg")
    lines = [f"{folds} 1"]
    for f in range(folds):
        a, b = names[f % people], names[(f + 1) % people]
        lines += [f"{a} 1 {2 + f % 3}", f"{a} {1 + f % per} {b} {1 + (f + 1) % per}"]
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root / "pairs.txt"


def bin_file(path, pairs=20):
    """An insightface .bin: a pickle of (encoded images, issame)."""
    import io
    import pickle

    rng = np.random.default_rng(4)
    bins, same = [], []
    for i in range(pairs):
        base = rng.integers(0, 255, (24, 24, 3))
        other = base if i % 2 == 0 else rng.integers(0, 255, (24, 24, 3))
        for img in (base, other):
            buf = io.BytesIO()
            Image.fromarray(np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)).save(buf, "PNG")
            bins.append(buf.getvalue())
        same.append(i % 2 == 0)
    path.write_bytes(pickle.dumps((bins, same), protocol=2))
    return path


def test_lfw_and_bin_benchmarks_are_scored_as_eval_scores_them(tmp_path, capsys):
    pairs = lfw_layout(tmp_path / "lfw")
    binary = bin_file(tmp_path / "agedb_30.bin")
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY + f"""
[[benchmarks]]
kind = "lfw"
path = "{pairs}"
root = "{tmp_path / 'lfw'}"
[[benchmarks]]
kind = "bin"
path = "{binary}"
""")
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--no-progress", "--steps", "4"]) == 0
    results = pd.read_csv(out / "results.csv")
    row = results[results.method == "softmax"].iloc[0]
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out / "softmax"), "--pairs", str(pairs), "--root", str(tmp_path / "lfw"),
                 "--json"]) == 0
    lfw = json.loads(capsys.readouterr().out)
    assert row["lfw.accuracy"] == pytest.approx(lfw["accuracy"]) and row["lfw.auc"] == pytest.approx(lfw["auc"])
    assert main(["eval", "--checkpoint", str(out / "softmax"), "--bin", str(binary), "--json"]) == 0
    agedb = json.loads(capsys.readouterr().out)
    assert row["agedb_30.accuracy"] == pytest.approx(agedb["accuracy"]) and row["agedb_30.eer"] == pytest.approx(agedb["eer"])
    report = (out / "report.md").read_text()
    assert "| Method | Family | lfw accuracy (%) | agedb_30 accuracy (%) |" in report


def test_every_fold_and_seed_is_one_replicate_in_results_and_history():
    from mlcompare.run.saved import replicates

    results = pd.DataFrame({"method": ["a", "a", "a", "a", "raw pixels", "raw pixels"], "fold": [1, 1, 2, 2, 1, 2],
                            "seed": [0, 1, 0, 1, 0, 0]})
    history = pd.DataFrame({"method": ["a"] * 4, "fold": [2, 2, 1, 1], "seed": [1, 0, 1, 0], "step": [0, 0, 0, 0]})
    got = replicates(results)
    assert got.seed.tolist() == [0, 1, 2, 3, 0, 2] and got.train_seed.tolist() == [0, 1, 0, 1, 0, 0]
    assert replicates(history, numbered_by=results).seed.tolist() == [3, 2, 1, 0]
    plain = results.drop(columns="fold")
    assert replicates(plain) is plain
