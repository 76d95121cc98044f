"""Score a trained model on a user's benchmark, without training: ``mlcompare eval``."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import evaluations
from mlcompare import data as datasets
from mlcompare.backbones import ResNetFace, build_backbone, embed
from mlcompare.files.checkpoints import load_checkpoint
from mlcompare.run import benchmarks
from mlcompare.config.comparison import BackboneConfig, BenchmarkConfig
from mlcompare.data.framing import Framing
from mlcompare.data.imagefolder import read_image
from mlcompare.data.protocol import VerificationPairs
from mlcompare.use.embed import embed_data
from mlcompare.errors import UserError
from mlcompare.run.pairs import PairSet, all_pairs_of, listed_pairs
from mlcompare.run.rundir import checkpoint_path
from mlcompare.run.scoring import TestProtocol, score, verify


def load_model(run_dir: Path, method: str, *, seed: int = 0, fold: int = 0) -> tuple[torch.nn.Module, int]:
    """The backbone of ``method`` (seed ``seed``; cross-validation fold ``fold``, 0 for a run without
    folds) from a run directory, and its input size.

    The backbone is the one config.json's ``backbone`` section names (``resnet-face`` for runs written
    before backbones had names), at the method's own embedding size where it set one.

    The checkpoint is read with :func:`~mlcompare.files.checkpoints.load_checkpoint` (no code in it runs);
    a run directory whose config.json and checkpoint do not fit together is a one-line
    :class:`~mlcompare.errors.UserError`, as is a missing or unreadable config.json.
    """
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise UserError(f"'{run_dir}' holds no config.json: not a run directory")
    checkpoint = checkpoint_path(run_dir, method, seed, fold)
    if not checkpoint.exists():
        stems = sorted({p.stem.rsplit("-s", 1)[0] for p in (run_dir / "checkpoints").glob("*.pt")})
        folds = sorted({int(m.rsplit("-f", 1)[1]) for m in stems if m.rsplit("-f", 1)[-1].isdigit()})
        methods = sorted({m.rsplit("-f", 1)[0] for m in stems}) if folds else stems
        hint = f"; a cross-validated run: give --fold, one of {', '.join(map(str, folds))}" if folds and not fold else ""
        raise UserError(f"no checkpoint for method '{method}' seed {seed}{f' fold {fold}' if fold else ''} in {run_dir}; "
                        f"methods there: {', '.join(methods) or 'none'}{hint}")
    try:
        config = json.loads(config_path.read_text())
        b, size = config["backbone"], config["data"]["size"]
        fields = {f.name for f in dataclasses.fields(BackboneConfig)}
        # The checkpoint holds the weights: a pretrained file named in the config is not read again.
        backbone = BackboneConfig(**{k: v for k, v in b.items() if k in fields} | {"pretrained": ""})
        dims = [m.get("embedding_dim", 0) for m in config.get("methods", []) if m.get("name") == method]
        model = build_backbone(backbone, image_size=size, embedding_dim=(dims[0] if dims else 0) or backbone.embedding_dim)
    except (ValueError, KeyError, TypeError) as err:  # JSONDecodeError is a ValueError; so are ResNetFace's size checks
        raise UserError(f"{config_path} is not the config.json of an mlcompare run ({type(err).__name__}: {err}); "
                        "give the run directory that `mlcompare run` wrote") from err
    state = load_checkpoint(checkpoint, map_location="cpu")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:  # load_state_dict lists every mismatched key on its own line
        raise UserError(f"checkpoint {checkpoint} does not fit the backbone in {config_path} "
                        f"({str(err).strip().splitlines()[0]}); was the config.json edited or copied from another run?") from err
    return model, size


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
