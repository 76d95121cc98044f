"""``mlcompare export``: a trained run's backbone as an ONNX model, checked against torch.

The ONNX model takes ``input``: float32 ``[batch, 3, H, W]`` RGB scaled as ``pixel / 127.5 - 1``
(:func:`mlcompare.backbones.to_input`) and returns ``embedding``: float32 ``[batch, D]``, not
normalised (L2-normalise it before a cosine comparison); the batch axis is dynamic. That contract
is written into the model's metadata (``metadata_props``). After writing, the file is run with
onnxruntime on a batch of real images and compared with the torch model in float32: the export
fails when the largest difference exceeds :data:`RELATIVE_TOLERANCE` of the largest embedding
value. Needs onnx, onnxscript and onnxruntime: ``pip install mlcompare[onnx]``.
"""
from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mlcompare.backbones import to_input
from mlcompare.errors import UserError
from mlcompare.files.outputs import check_new_files
from mlcompare.use.embed import load_every_image
from mlcompare.use.model import load_model

RELATIVE_TOLERANCE = 1e-4
OPSET = 18
INSTALL = "pip install mlcompare[onnx]"


@dataclass
class ExportCheck:
    """The self-check: images compared, the largest absolute difference and its ratio to the largest
    absolute embedding value."""

    images: int
    max_abs_diff: float
    relative: float


def _import_onnx():  # noqa: ANN202 - (onnx, onnxruntime), or a one-line UserError
    try:
        import onnx
        import onnxruntime
        import onnxscript  # noqa: F401  torch's ONNX exporter writes the graph with it
    except ImportError as err:
        raise UserError(f"export to ONNX needs onnx, onnxscript and onnxruntime ({err}): {INSTALL}") from err
    return onnx, onnxruntime


def metadata(*, size: int, embedding_dim: int, backbone: str, method: str) -> dict[str, str]:
    """What a consumer of the ONNX file needs to feed it and read it (all values strings, as ONNX stores them)."""
    return {"mlcompare.input": f"float32 [batch, 3, {size}, {size}] RGB", "mlcompare.input_size": str(size),
            "mlcompare.normalisation": "pixel / 127.5 - 1 (uint8 0..255 -> -1..1)",
            "mlcompare.output": f"float32 [batch, {embedding_dim}] embedding, not L2-normalised",
            "mlcompare.embedding_dim": str(embedding_dim), "mlcompare.backbone": backbone, "mlcompare.method": method}


def export_onnx(model: torch.nn.Module, out: Path, *, size: int, check_images: torch.Tensor,
                meta: dict[str, str]) -> ExportCheck:
    """Write ``model`` (eval mode, float32, CPU) to ``out`` with a dynamic batch axis and ``meta`` in its
    metadata; run it with onnxruntime on ``check_images`` (uint8 ``[B, 3, size, size]``) against torch.

    Raises :class:`UserError` when the difference is above :data:`RELATIVE_TOLERANCE` (relative)."""
    onnx, onnxruntime = _import_onnx()
    model = model.to("cpu", memory_format=torch.contiguous_format).float().eval()
    example = torch.zeros(2, 3, size, size)
    out.parent.mkdir(parents=True, exist_ok=True)
    # The exporter logs a warning per torchvision operator it could register and cannot here: not ours.
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # torch's own exporter calls an API torch deprecated: nothing a user can act on
            warnings.filterwarnings("ignore", message=r".*treespec, LeafSpec", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r".*treespec, LeafSpec", category=DeprecationWarning)
            torch.onnx.export(model, (example,), str(out), input_names=["input"], output_names=["embedding"],
                              dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=OPSET, dynamo=True,
                              verbose=False)
    finally:
        registration.setLevel(level)
    proto = onnx.load(str(out))
    onnx.helper.set_model_props(proto, meta)
    onnx.save(proto, str(out))
    x = to_input(check_images)
    with torch.no_grad():
        want = model(x).numpy()
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(["embedding"], {"input": x.numpy()})[0]
    diff = float(np.abs(got - want).max())
    check = ExportCheck(len(x), diff, diff / max(float(np.abs(want).max()), 1e-12))
    if check.relative > RELATIVE_TOLERANCE:
        raise UserError(f"{out}: onnxruntime's embeddings differ from torch's by up to {diff:.3g} "
                        f"({check.relative:.3g} of the largest value > {RELATIVE_TOLERANCE:g}); the ONNX file is not faithful")
    return check


def main(checkpoint: Path, out: Path, *, seed: int, check_data: str | None, check_images: int = 32) -> ExportCheck:
    """``mlcompare export``: checked on ``check_images`` images of ``check_data`` (default: the run's test
    data, or its training data when it held out identities)."""
    if out.suffix != ".onnx":
        raise UserError(f"--onnx {out}: give a FILE.onnx")
    check_new_files([out], option="--onnx", force=True)  # an .onnx file is replaced, as before; a folder never
    _import_onnx()  # before any work
    run_dir, method = checkpoint.parent, checkpoint.name
    model, size = load_model(run_dir, method, seed=seed)
    config = json.loads((run_dir / "config.json").read_text())
    spec = check_data or config["data"]["test"] or config["data"]["train"]
    data = load_every_image(spec, size)
    images = data.images[0:min(check_images, len(data))]
    with torch.no_grad():
        dim = model.eval()(to_input(images[:2])).shape[1]
    meta = metadata(size=size, embedding_dim=dim, backbone=config["backbone"].get("name", "resnet-face"), method=method)
    return export_onnx(model, out, size=size, check_images=images, meta=meta)
