"""Score a trained model on a user's benchmark, without training: ``mlcompare eval``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import evaluations
from mlcompare import data as datasets
from mlcompare.backbones import ResNetFace
from mlcompare.data.imagefolder import read_image
from mlcompare.errors import UserError
from mlcompare.rundir import checkpoint_path
from mlcompare.scoring import TestProtocol, score
from mlcompare.trainer import embed


def load_model(run_dir: Path, method: str, *, seed: int = 0) -> tuple[ResNetFace, int]:
    """The backbone of ``method`` (seed ``seed``) from a run directory, and its input size."""
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise UserError(f"'{run_dir}' holds no config.json: not a run directory")
    config = json.loads(config_path.read_text())
    checkpoint = checkpoint_path(run_dir, method, seed)
    if not checkpoint.exists():
        methods = sorted({p.stem.rsplit("-s", 1)[0] for p in (run_dir / "checkpoints").glob("*.pt")})
        raise UserError(f"no checkpoint for method '{method}' seed {seed} in {run_dir}; methods there: {', '.join(methods) or 'none'}")
    b, size = config["backbone"], config["data"]["size"]
    model = ResNetFace(image_size=size, widths=tuple(b["widths"]), blocks=tuple(b["blocks"]),
                       embedding_dim=b["embedding_dim"], dropout=b["dropout"])
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["model"])
    return model, size


def _verification_of(model: ResNetFace, images: torch.Tensor, same: np.ndarray, device: torch.device) -> dict[str, Any]:
    """Images ``[2P, 3, H, W]`` in pair order (a0, b0, a1, b1, ...)."""
    emb = embed(model, images, device=device)
    ver = evaluations.verification(evaluations.pair_scores(emb[0::2], emb[1::2]), same)
    return {k: ver[k] for k in ("accuracy", "accuracy_std", "auc", "eer", "n_genuine", "n_impostor")} | {
        f"tar_far_{far:g}": value for far, value in ver["tar_at_far"].items()}


def on_data(model: ResNetFace, size: int, spec: str, device: torch.device, *, pairs: int = 6000) -> dict[str, Any]:
    """All identities of ``spec`` as a test set, with the same protocol as a comparison."""
    test = datasets.load(spec, size=size)
    metrics, _ = score(embed(model, test.images, device=device), TestProtocol.build(test.labels, pairs=pairs))
    return metrics


def on_bin(model: ResNetFace, size: int, path: Path, device: torch.device) -> dict[str, Any]:
    """An insightface verification ``.bin`` (lfw.bin, cfp_fp.bin, agedb_30.bin, ...)."""
    images, same = evaluations.read_bin(path)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).round().clamp(0, 255).to(torch.uint8)
    return _verification_of(model, x, same, device)


def on_pairs(model: ResNetFace, size: int, pairs_txt: Path, root: Path, device: torch.device) -> dict[str, Any]:
    """LFW's ``pairs.txt`` over an LFW-style folder."""
    paths_a, paths_b, same = evaluations.read_lfw_pairs(pairs_txt, root)
    order = [p for pair in zip(paths_a, paths_b) for p in pair]
    images = torch.from_numpy(np.stack([read_image(Path(p), size) for p in order]))
    return _verification_of(model, images, same, device)
