"""Score a trained model on a user's benchmark, without training: ``mlcompare eval``."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import evaluations
from mlcompare import data as datasets
from mlcompare.backbones import ResNetFace, embed
from mlcompare.config.comparison import BenchmarkConfig
from mlcompare.data.framing import Framing
from mlcompare.data.imagefolder import read_image
from mlcompare.data.protocol import VerificationPairs
from mlcompare.errors import UserError
from mlcompare.run import benchmarks
from mlcompare.run import pairs as pair_stats
from mlcompare.run.pairs import PairSet, all_pairs_of, listed_pairs
from mlcompare.run.runner import resolve_device
from mlcompare.run.scoring import TestProtocol, score, verify
from mlcompare.use.embed import embed_data
from mlcompare.use.model import load_model


def _verification_of(emb: torch.Tensor, same: np.ndarray) -> dict[str, Any]:
    """Embeddings ``[2P, D]`` in pair order (a0, b0, a1, b1, ...), scored as every comparison is
    (:func:`mlcompare.run.scoring.verify`), in LFW's 10 folds, TAR at FAR 1e-1 to 1e-4."""
    n = len(emb)
    pairs = VerificationPairs(torch.arange(0, n, 2), torch.arange(1, n, 2), torch.as_tensor(same, dtype=torch.bool), 10)
    ver, _ = verify(emb, pairs, far=(1e-1, 1e-2, 1e-3, 1e-4))
    return {k: ver[k] for k in ("accuracy", "accuracy_std", "auc", "eer", "n_genuine", "n_impostor")} | {
        f"tar_far_{far:g}": value for far, value in ver["tar_at_far"].items()}


def on_data(model: ResNetFace, size: int, spec: str, device: torch.device, *,
            pairs: int = 6000) -> tuple[dict[str, Any], Callable[[], PairSet]]:
    """All identities of ``spec`` as a test set, with the same protocol as a comparison; and a function
    giving every pair of its images, for the operating-point and quality options (computed only when
    one is asked for: millions of pairs)."""
    # as a comparison's test set (identities of one image dropped), files left on disk for their paths
    got = embed_data(model, datasets.load(spec, size=size, stream=True), spec, device=device, progress=False)
    labels = torch.from_numpy(got.labels)
    metrics, _ = score(got.embeddings, TestProtocol.build(labels, pairs=pairs))
    return metrics, lambda: all_pairs_of(got.embeddings.numpy(), got.labels, got.paths, got.degradation)


def on_bin(model: ResNetFace, size: int, path: Path,
           device: torch.device) -> tuple[dict[str, Any], Callable[[], PairSet]]:
    """An insightface verification ``.bin`` (lfw.bin, cfp_fp.bin, agedb_30.bin, ...)."""
    try:
        images, same = evaluations.read_bin(path)
    except ValueError as err:  # the readers' ValueErrors all describe the file (each names it and the problem)
        raise UserError(f"--bin {err}") from err
    x = benchmarks.bin_images(images, size)
    emb = embed(model, x, device=device)
    return _verification_of(emb, same), lambda: listed_pairs(emb.numpy(), same, [f"#{i}" for i in range(len(x))])


def on_pairs(model: ResNetFace, size: int, pairs_txt: Path, root: Path,
             device: torch.device) -> tuple[dict[str, Any], Callable[[], PairSet]]:
    """LFW's ``pairs.txt`` over an LFW-style folder."""
    try:
        paths_a, paths_b, same = evaluations.read_lfw_pairs(pairs_txt, root)
    except ValueError as err:  # as in on_bin: a bad pairs.txt or root
        raise UserError(f"--pairs {err}") from err
    order = [p for pair in zip(paths_a, paths_b) for p in pair]
    images = torch.from_numpy(np.stack([read_image(Path(p), size) for p in order]))
    emb = embed(model, images, device=device)
    return _verification_of(emb, same), lambda: listed_pairs(emb.numpy(), same, [str(p) for p in order])


def run_framing(run_dir: Path) -> Framing:
    """The crop and resize a run's images had (config.json's ``data``; runs before framing: none)."""
    d = json.loads((run_dir / "config.json").read_text()).get("data", {})
    return Framing(crop=d.get("crop", 0.0), box=tuple(d.get("crop_box", [])) or None, keep_aspect=d.get("keep_aspect", False))


def on_cfp(model: torch.nn.Module, size: int, root: Path, protocol: str, device: torch.device, *,
           run_dir: Path, fold: int = 0) -> tuple[dict[str, Any], Callable[[], PairSet]]:
    """CFP's official protocol (``FF`` or ``FP``): its ten splits as the ten folds, each split's
    threshold chosen on the other nine (:mod:`mlcompare.run.benchmarks`), the images framed as the run's were.

    A model that trained on CFP itself (the run's data is ``cfp:`` of this folder) knows most of its
    people: fold k's model of a cross-validated run is scored on split k only, as the run scored it
    (thresholds within the split); any other is refused."""
    bench = benchmarks.load(BenchmarkConfig(kind="cfp", path=str(root), protocol=protocol, name=f"cfp_{protocol.lower()}"),
                            size=size, framing=run_framing(run_dir))
    trained_on = json.loads((run_dir / "config.json").read_text()).get("data", {}).get("train", "")
    if trained_on.startswith("cfp:") and Path(trained_on.removeprefix("cfp:")).resolve() == root.resolve():
        if not fold:
            raise UserError(f"--cfp {root}: the model trained on CFP's own people ({trained_on}); score a "
                            "cross-validated run's model with --fold K (its held-out split), or a model trained elsewhere")
        bench = bench.split_only(fold)
    emb = embed(model, bench.decoded().images, device=device)
    if bench.inner_threshold:
        order = benchmarks.inner_folds(bench.same)
        a, b, same = bench.a[order], bench.b[order], bench.same[order]
    else:
        a, b, same = bench.a, bench.b, bench.same
    images = torch.stack([a, b], dim=1).reshape(-1)  # pair order a0, b0, a1, b1, ...
    pair_emb = emb[images]
    return _verification_of(pair_emb, same), lambda: listed_pairs(
        pair_emb.numpy(), same, [bench.files[i] for i in images.tolist()])


@dataclass(frozen=True)
class Source:
    """The pairs ``mlcompare eval`` scores: one of ``data`` (a data spec), ``bin`` (an insightface .bin),
    ``cfp`` (CFP's root, with ``cfp_protocol``) or ``pairs`` (LFW's pairs.txt, with ``root``)."""

    data: str | None = None
    bin: Path | None = None
    cfp: Path | None = None
    cfp_protocol: str = "FP"
    pairs: Path | None = None
    root: Path | None = None


def evaluate(checkpoint: Path, source: Source, device: str = "auto", *, seed: int = 0, fold: int = 0,
             fmr: list[float] | None = None, threshold: float | None = None, erc: str | None = None,
             qmagface: bool = False) -> tuple[dict[str, Any], dict[str, Any], PairSet | None]:
    """``mlcompare eval``: the model at ``checkpoint`` (RUN_DIR/METHOD) scored on ``source``, and what the
    deployment's questions ask of its pairs (``fmr``: operating points at these false match rates;
    ``threshold``; ``erc``: reject curves by this quality; ``qmagface``); returns the scores, those
    answers (keys ``operating_points``, ``at_threshold``, ``erc`` + ``erc_quality``, ``qmagface``) and the
    pairs (None when no question needs them)."""
    for rate in fmr or ():
        if not 0 < rate <= 1:
            raise UserError(f"--fmr {rate:g}: a false match rate is in (0, 1]")
    device = resolve_device(device)
    model, size = load_model(checkpoint.parent, checkpoint.name, seed=seed, fold=fold)
    if source.data:
        scores, pairs_of = on_data(model, size, source.data, device)
    elif source.bin:
        scores, pairs_of = on_bin(model, size, source.bin, device)
    elif source.cfp:
        scores, pairs_of = on_cfp(model, size, source.cfp, source.cfp_protocol, device, run_dir=checkpoint.parent, fold=fold)
    else:
        if source.root is None:
            raise UserError("--pairs needs --root, the folder its names refer to")
        scores, pairs_of = on_pairs(model, size, source.pairs, source.root, device)
    extra: dict[str, Any] = {}
    fmrs = fmr or [1e-2, 1e-3]
    pairs = pairs_of() if fmr or threshold is not None or erc or qmagface else None
    if fmr:
        extra["operating_points"] = pair_stats.operating_points(pairs, fmr)
    if threshold is not None:
        extra["at_threshold"] = pair_stats.at_threshold(pairs, threshold)
    if erc:
        extra["erc"] = pair_stats.reject_curves(pairs, pair_stats.image_quality(pairs, erc), fmrs)
        extra["erc_quality"] = erc
    if qmagface:
        extra["qmagface"] = pair_stats.qmagface(pairs, fmrs)
    return scores, extra, pairs


def pair_lines(extra: dict[str, Any], n_pairs: int, n_genuine: int) -> list[str]:
    """The operating-point, ERC and QMagFace results of :func:`evaluate` as aligned lines."""
    lines = [f"pairs            {n_pairs:,} ({n_genuine:,} genuine, {n_pairs - n_genuine:,} impostor)"]
    for p in extra.get("operating_points", []):
        lines.append(f"at FMR {p['target_fmr']:<8g}  threshold {p['threshold']:.4f}  FMR {p['fmr']:.2e}  FNMR {p['fnmr']:.4f}")
    if "at_threshold" in extra:
        p = extra["at_threshold"]
        lines.append(f"threshold {p['threshold']:.4f}   FMR {p['fmr']:.2e}  FNMR {p['fnmr']:.4f}")
    for c in extra.get("erc", []):
        steps = "  ".join(f"{r:.0%}: {f:.4f}" for r, f in zip(c["reject"], c["fnmr"]))
        lines.append(f"ERC at FMR {c['fmr']:g} ({extra['erc_quality']}): FNMR after rejecting {steps}")
        lines.append(f"    AUC-ERC {c['auc']:.4f} (random rejection {c['auc_random']:.4f}; lower is better)")
    if "qmagface" in extra:
        q = extra["qmagface"]
        lines.append(f"QMagFace fitted on {q['fit_pairs']:,} pairs: alpha {q['alpha']:.4g}, beta {q['beta']:.4g}; "
                     f"on the other {q['test_pairs']:,}:")
        for r in q["rows"]:
            lines.append(f"    FNMR at FMR {r['fmr']:g}: {r['fnmr_plain']:.4f} plain, {r['fnmr_qmagface']:.4f} QMagFace")
    return lines
