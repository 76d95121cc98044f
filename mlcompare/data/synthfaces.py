"""``synthfaces``: rendered face identities, many and alike, with the nuisances of real face crops.

Nothing is downloaded. Each identity is a vector of 41 continuous face parameters (outline and jaw,
skin tone, hair colour/length/volume/hairline/fringe/parting/baldness, eye size/spacing/shape/height/tilt, iris
colour, brows, nose, mouth and lips, ears, glasses, beard, a mole, clothes; see
``synthfaces_render.FACE_PARAMS``). Identities come in families of ``FAMILY_SIZE`` consecutive
indices; a family is a look-alike family with probability ``lookalike_share``, and then its members'
parameters are drawn near a shared parent (``FAMILY_SPREAD`` per parameter, on a unit scale where
unrelated identities differ by about 0.4), as relatives are. Each image renders its identity under
nuisances: yaw (features slide, one half squashed), roll, scale and shift (aligner errors),
expression (smile, open mouth, closed eyes, raised brows), light direction, brightness and colour
temperature, occlusion (sunglasses, a face mask, a random patch), background clutter and clothes,
blur and noise. ``difficulty`` scales them all; each can be set alone.

Ground truth: every image's realised nuisance strengths (what the renderer drew it with, each in
[0, 1]) and their mean, ``degradation``, come with the images in ``FaceData.quality``
(``synthfaces_render.realised_strengths`` and ``degradation``).

Determinism: every random number is a hash of ``(seed, stream, identity, image index, variable)``
(``synthfaces_random``), so the same seed gives the same tensors and image ``k`` of identity ``j``
is the same whatever ``identities`` and ``images_per_identity`` are (on one device; float rounding
may differ by a grey level between CPU and GPU).

Order: images are grouped by identity (``0, 0, ..., 1, 1, ...``), image index ``k`` ascending; the
true identity of every image (before label noise) is therefore
``torch.arange(C).repeat_interleave(image_counts(...))``.
"""
from __future__ import annotations

import inspect
from concurrent.futures import ThreadPoolExecutor

import torch

from mlcompare.data import synthfaces_random as rng
from mlcompare.data.facedata import FaceData
from mlcompare.data.synthfaces_render import FACE_PARAMS
from mlcompare.data.synthfaces_render import NUISANCES
from mlcompare.data.synthfaces_render import SHOT_VARS
from mlcompare.data.synthfaces_render import Strengths
from mlcompare.data.synthfaces_render import degradation
from mlcompare.data.synthfaces_render import realised_strengths
from mlcompare.data.synthfaces_render import render
from mlcompare.errors import UserError

FAMILY_SIZE = 4
FAMILY_SPREAD = 0.07
NOISE_TEXTURES = 64
PIXELS_PER_CHUNK = 1 << 19  # ~2 MB per float plane: the working set of a layer stays in cache

_STREAM_FAMILY, _STREAM_PARENT, _STREAM_IDENTITY, _STREAM_SIBLING, _STREAM_SHOT, _STREAM_LABEL = range(6)

KNOBS = ("identities", "images_per_identity", "difficulty", "lookalike_share", "longtail_exponent", "label_noise",
         "device", *NUISANCES)
"""The keyword options a spec may set (``synthfaces:KEY=VALUE,...``), besides ``size`` and ``seed``."""

DEFAULTS = {
    "identities": 500, "images_per_identity": 20, "difficulty": 1.0, "lookalike_share": 0.5,
    "longtail_exponent": 0.0, "label_noise": 0.0,
}


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserError(f"synthfaces: {name}={value!r} is invalid; give an integer in [{low}, {high}]")
    return value


def _check_float(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise UserError(f"synthfaces: {name}={value!r} is invalid; give a number in [{low}, {high}]")
    return float(value)


def _reflect(u: torch.Tensor) -> torch.Tensor:
    """Fold any real onto [0, 1] by reflection at the ends (no pile-up at 0 or 1 as clamping gives)."""
    u = torch.remainder(u, 2.0)
    return 1.0 - (u - 1.0).abs()


def families(identities: int, *, seed: int = 0, lookalike_share: float = 0.5) -> torch.Tensor:
    """Family of each identity: int64 ``[identities]``.

    Identities ``j`` with the same non-negative value are look-alikes (parameters drawn near a
    shared parent); ``-1`` marks an identity with no look-alike. Family ``f`` holds identities
    ``FAMILY_SIZE * f .. FAMILY_SIZE * f + FAMILY_SIZE - 1``, so the answer for ``j`` does not
    depend on ``identities``.
    """
    _check_int("identities", identities, 1, 10_000_000)
    _check_float("lookalike_share", lookalike_share, 0.0, 1.0)
    family = torch.arange(identities, dtype=torch.int64) // FAMILY_SIZE
    alike = rng.uniform(rng.keys(seed, _STREAM_FAMILY, family), 1)[:, 0] < lookalike_share
    return torch.where(alike, family, torch.full_like(family, -1))


def identity_parameters(identities: int, *, seed: int = 0, lookalike_share: float = 0.5) -> torch.Tensor:
    """Face parameters of each identity: float64 ``[identities, len(FACE_PARAMS)]`` in [0, 1]."""
    family = families(identities, seed=seed, lookalike_share=lookalike_share)
    index = torch.arange(identities, dtype=torch.int64)
    own = rng.uniform(rng.keys(seed, _STREAM_IDENTITY, index), len(FACE_PARAMS))
    parent = rng.uniform(rng.keys(seed, _STREAM_PARENT, index // FAMILY_SIZE), len(FACE_PARAMS))
    sibling = _reflect(parent + FAMILY_SPREAD * rng.normal(rng.keys(seed, _STREAM_SIBLING, index), len(FACE_PARAMS)))
    return torch.where((family >= 0).unsqueeze(1), sibling, own)


def image_counts(identities: int, images_per_identity: int, longtail_exponent: float = 0.0) -> torch.Tensor:
    """Images of each identity: ``max(2, round(images_per_identity * (j + 1) ** -longtail_exponent))``.

    A power law over the identity index (Zipf-like for exponent 1); never fewer than 2 so every
    identity can give a gallery image and a probe. Exponent 0 gives ``images_per_identity`` each.
    """
    rank = torch.arange(1, identities + 1, dtype=torch.float64)
    counts = torch.round(images_per_identity * rank.pow(-longtail_exponent)).long()
    return counts.clamp(min=min(2, images_per_identity))


def load(
    *,
    size: int = 64,
    seed: int = 0,
    identities: int = 500,
    images_per_identity: int = 20,
    difficulty: float = 1.0,
    lookalike_share: float = 0.5,
    longtail_exponent: float = 0.0,
    label_noise: float = 0.0,
    device: str = "cpu",
    pose: float | None = None,
    rotation: float | None = None,
    misalignment: float | None = None,
    expression: float | None = None,
    lighting: float | None = None,
    occlusion: float | None = None,
    clutter: float | None = None,
    blur: float | None = None,
    noise: float | None = None,
) -> FaceData:
    """Render the data set; the images stay on the ``device`` that rendered them (``mlcompare run``
    renders on the training device, so that a GPU never waits for a host-to-device copy).

    Args:
        size: image side in pixels, 16..256 (meant for 32..112).
        seed: 0..2**32-1; the same seed gives identical tensors.
        identities: number of identities, 2..1,000,000.
        images_per_identity: images of the first identity (of each when ``longtail_exponent`` is 0), 1..10,000.
        difficulty: scales every nuisance together, 0 (none: all images of an identity identical) .. 3; 1 is the default.
        lookalike_share: expected share of identities in look-alike families, 0..1.
        longtail_exponent: images per identity fall as ``(j + 1) ** -exponent`` (see ``image_counts``), 0..3.
        label_noise: expected share of images labelled with a wrong identity, 0..0.9; ``FaceData.noisy`` marks them.
        device: where to render ("cpu", "cuda", "cuda:1", ...).
        pose, rotation, misalignment, expression, lighting, occlusion, clutter, blur, noise:
            the strength of one nuisance, 0..3, overriding ``difficulty`` for it (None: ``difficulty``).

    Returns:
        FaceData with uint8 images ``[N, 3, size, size]``, labels ``[N]`` (identity order; see the
        module docstring), identity names ``synth00000``.., ``noisy`` ``[N]`` and ``quality``: each
        image's realised nuisance strengths in [0, 1] (``synthfaces_render.realised_strengths``:
        the amounts the renderer drew with) and ``"degradation"``, their mean
        (``synthfaces_render.degradation``).
    """
    _check_int("size", size, 16, 256)
    _check_int("seed", seed, 0, 2**32 - 1)
    _check_int("identities", identities, 2, 1_000_000)
    _check_int("images_per_identity", images_per_identity, 1, 10_000)
    difficulty = _check_float("difficulty", difficulty, 0.0, 3.0)
    lookalike_share = _check_float("lookalike_share", lookalike_share, 0.0, 1.0)
    longtail_exponent = _check_float("longtail_exponent", longtail_exponent, 0.0, 3.0)
    label_noise = _check_float("label_noise", label_noise, 0.0, 0.9)
    if not isinstance(device, str):
        raise UserError(f"synthfaces: device={device!r} is invalid; give a torch device name such as cpu or cuda")
    given = dict(pose=pose, rotation=rotation, misalignment=misalignment, expression=expression, lighting=lighting,
                 occlusion=occlusion, clutter=clutter, blur=blur, noise=noise)
    strengths = Strengths(**{name: difficulty if given[name] is None else _check_float(name, given[name], 0.0, 3.0)
                             for name in NUISANCES})
    try:
        target = torch.device(device)
        torch.empty(0, device=target)
    except (RuntimeError, ValueError, AssertionError) as err:  # a CPU-only torch asserts on "cuda"
        raise UserError(f"synthfaces: device={device!r} is not usable here ({err.__class__.__name__}); give cpu or an available cuda device") from err

    counts = image_counts(identities, images_per_identity, longtail_exponent)
    labels = torch.arange(identities).repeat_interleave(counts)
    starts = torch.cumsum(counts, 0) - counts
    image_index = torch.arange(len(labels)) - starts.repeat_interleave(counts)

    face_u = identity_parameters(identities, seed=seed, lookalike_share=lookalike_share)
    shot_u = rng.uniform(rng.keys(seed, _STREAM_SHOT, labels, image_index), len(SHOT_VARS))
    generator = torch.Generator().manual_seed(seed)
    noise_bank = torch.randn(NOISE_TEXTURES, 3, size, size, generator=generator).to(target)

    chunk = max(8, PIXELS_PER_CHUNK // (size * size))
    images = torch.empty(len(labels), 3, size, size, dtype=torch.uint8, device=target)

    def render_chunk(start: int) -> None:
        stop = min(start + chunk, len(labels))
        ids = labels[start:stop]
        face = {name: face_u[ids, i].to(target, torch.float32) for i, name in enumerate(FACE_PARAMS)}
        shot = {name: shot_u[start:stop, i].to(target, torch.float32) for i, name in enumerate(SHOT_VARS)}
        with torch.no_grad():
            images[start:stop] = render(face, shot, strengths, size, noise_bank)

    starts = range(0, len(labels), chunk)
    if target.type == "cpu" and torch.get_num_threads() > 1 and len(starts) > 1:
        # Chunks in parallel threads, one intra-op thread each: rendering is hundreds of small ops
        # per chunk, and with intra-op threads every op ends in a barrier that stalls whenever
        # another process holds a core (measured 5x slower on a busy 2-core machine). Output does
        # not depend on how images are chunked, so this changes speed only.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                list(pool.map(render_chunk, starts))
        finally:
            torch.set_num_threads(threads)
    else:
        for start in starts:
            render_chunk(start)

    flips = rng.uniform(rng.keys(seed, _STREAM_LABEL, labels, image_index), 2)
    noisy = flips[:, 0] < label_noise
    wrong = (labels + 1 + torch.floor(flips[:, 1] * (identities - 1)).long()) % identities
    given_labels = torch.where(noisy, wrong, labels)

    knobs = dict(seed=seed, identities=identities, images_per_identity=images_per_identity, difficulty=difficulty,
                 lookalike_share=lookalike_share, longtail_exponent=longtail_exponent, label_noise=label_noise)
    shown = [f"{k}={v}" for k, v in knobs.items() if k == "seed" or DEFAULTS.get(k) != v]
    shown += [f"{k}={v}" for k, v in given.items() if v is not None]
    names = [f"synth{j:05d}" for j in range(identities)]
    realised = realised_strengths({name: shot_u[:, i].to(torch.float32) for i, name in enumerate(SHOT_VARS)}, strengths)
    quality = {name: value.contiguous() for name, value in realised.items()}
    quality["degradation"] = degradation(realised)
    return FaceData(images, given_labels, names, "synthfaces:" + ",".join(shown), noisy, quality)


def resolved_knobs(**options: object) -> dict[str, object]:
    """Every knob (but ``device``: where to render, not what) as :func:`load` uses it with ``options``:
    the defaults filled in from its signature, and each nuisance's strength made explicit (``difficulty``
    unless given), so that a run records its data in full. Unknown options are returned as given
    (:func:`load` refuses them).

    >>> resolved_knobs(identities=9, difficulty=0.5, blur=2.0)["pose"], resolved_knobs()["blur"]
    (0.5, 1.0)
    """
    defaults = inspect.signature(load).parameters
    knobs = {name: options.get(name, defaults[name].default) for name in KNOBS if name != "device"}
    for name in NUISANCES:
        if knobs[name] is None:
            knobs[name] = knobs["difficulty"]
    return knobs | {k: v for k, v in options.items() if k not in knobs and k != "device"}


__all__ = ["load", "resolved_knobs", "families", "identity_parameters", "image_counts", "FAMILY_SIZE", "NUISANCES", "KNOBS"]
