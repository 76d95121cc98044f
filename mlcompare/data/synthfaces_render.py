"""The synthfaces renderer: soft-edged shapes composited in torch, a whole batch at a time.

Coordinates: ``x`` left to right and ``y`` top to bottom, both in ``[-1, 1]`` over the image
(pixel centres at ``-1 + (2i + 1) / size``, the convention of ``grid_sample(align_corners=False)``).
A face is drawn upright and centred on a canonical canvas; the pose and the aligner's errors
(yaw, roll, scale, shift) are then applied as one resampling warp, and light, occlusion by a
patch, blur and noise in image space.

Every shape is an ellipse (or a box) whose edge is a linear ramp one pixel wide, which is an
anti-aliased signed-distance mask: ``mask = clamp(0.5 - d / pixel, 0, 1)`` with ``d`` the
first-order distance to the ellipse. Horizontal and vertical terms are computed on ``[B, 1, S]``
and ``[B, S, 1]`` tensors and only broadcast to ``[B, S, S]`` at the end, which keeps a layer
at a few passes over the pixels.

Inputs are uniforms in ``[0, 1)``: ``face[name]`` per identity parameter (see ``FACE_PARAMS``)
and ``shot[name]`` per image nuisance variable (see ``SHOT_VARS``), each a ``[B]`` tensor; the
strengths scale the nuisances (0 = none, 1 = the default amount).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

FACE_PARAMS = (
    "face_width", "face_height", "jaw_taper", "chin", "skin_tone", "skin_warmth",
    "hair_dark", "hair_red", "hair_grey", "hair_length", "hair_volume", "hairline", "parting",
    "eye_size", "eye_spacing", "eye_shape", "eye_height", "eye_tilt", "iris_hue", "iris_dark",
    "brow_thickness", "brow_arch", "brow_gap", "nose_length", "nose_width",
    "mouth_width", "lip_thickness", "mouth_gap", "lip_red", "ear_size", "ear_out",
    "glasses", "glasses_frame", "beard", "mole", "mole_x", "mole_y", "clothes_hue",
    "fringe", "bald", "hair_top",
)

SHOT_VARS = (
    "yaw", "roll", "scale", "shift_x", "shift_y",
    "smile", "mouth_open", "mouth_open_amount", "eyes_closed", "brow_raise", "gaze",
    "light_angle", "light_amount", "brightness", "temperature",
    "occlusion", "occlusion_kind", "patch_x", "patch_y", "patch_w", "patch_h",
    "occ_r", "occ_g", "occ_b",
    "bg0_r", "bg0_g", "bg0_b", "bg1_r", "bg1_g", "bg1_b",
    *(f"blob{i}_{v}" for i in range(3) for v in ("x", "y", "a", "b", "r", "g", "b2")),
    "clothes_r", "clothes_g", "clothes_b",
    "blur", "noise", "noise_texture",
)

NUISANCES = ("pose", "rotation", "misalignment", "expression", "lighting", "occlusion", "clutter", "blur", "noise")

SKIN = torch.tensor([[0.28, 0.17, 0.11], [0.50, 0.33, 0.22], [0.74, 0.54, 0.42], [0.90, 0.72, 0.60], [0.98, 0.86, 0.77]])
HAIR = torch.tensor([[0.88, 0.74, 0.46], [0.62, 0.45, 0.26], [0.36, 0.23, 0.13], [0.17, 0.11, 0.07], [0.06, 0.05, 0.05]])
IRIS = torch.tensor([[0.30, 0.50, 0.78], [0.38, 0.55, 0.36], [0.50, 0.38, 0.18], [0.33, 0.19, 0.09], [0.18, 0.10, 0.05]])
CLOTHES = torch.tensor([[0.15, 0.20, 0.45], [0.55, 0.12, 0.12], [0.20, 0.40, 0.25], [0.85, 0.85, 0.82], [0.12, 0.12, 0.13], [0.60, 0.50, 0.30]])


@dataclass(frozen=True)
class Strengths:
    """How strong each nuisance is (0 = absent, 1 = default, up to 3)."""

    pose: float
    rotation: float
    misalignment: float
    expression: float
    lighting: float
    occlusion: float
    clutter: float
    blur: float
    noise: float


def shot_nuisances(shot: dict[str, torch.Tensor], s: Strengths) -> dict[str, torch.Tensor]:
    """The nuisance amounts each image is rendered with: ``[B]`` tensors in the renderer's units.

    ``render`` draws with these very values, so :func:`realised_strengths` (what an image went
    through) cannot drift from what was drawn.
    """
    e = min(s.expression, 1.5)
    occluded = shot["occlusion"] < min(0.3 * s.occlusion, 0.9)
    kind = shot["occlusion_kind"]
    return {
        "smile": shot["smile"] * e,
        "mouth_open": (shot["mouth_open"] < 0.3 * e).float(),
        "eyes_closed": (shot["eyes_closed"] < 0.12 * e).float(),
        "sunglasses": (occluded & (kind < 1 / 3)).float(),
        "face_cover": (occluded & (kind >= 1 / 3) & (kind < 2 / 3)).float(),
        "patch": (occluded & (kind >= 2 / 3)).float(),
        "roll": _lin(shot["roll"], -1, 1) * math.radians(12) * s.rotation,
        "log_scale": _lin(shot["scale"], -1, 1) * 0.10 * s.misalignment,
        "shift_x": _lin(shot["shift_x"], -1, 1) * 0.07 * s.misalignment,
        "shift_y": _lin(shot["shift_y"], -1, 1) * 0.07 * s.misalignment,
        "yaw": _lin(shot["yaw"], -1, 1) * 0.25 * min(s.pose, 1.8),  # capped: the warp must stay one-to-one (0.45 < 0.42 / 0.86)
        "light_amount": shot["light_amount"] * 0.45 * s.lighting,
        "log_brightness": _lin(shot["brightness"], -1, 1) * 0.22 * s.lighting,
        "temperature": _lin(shot["temperature"], -1, 1) * 0.10 * s.lighting,
        "blur": (shot["blur"] * s.blur).clamp(0, 1),
        "noise_sigma": shot["noise"] * 0.035 * s.noise,
    }


# Each nuisance's amount at strength 3 (the knobs' maximum): the unit that maps it onto [0, 1].
_FULL = {"roll": math.radians(12) * 3, "log_scale": 0.30, "shift": 0.07 * 3 * math.sqrt(2), "yaw": 0.25 * 1.8,
         "smile": 1.5, "light_amount": 0.45 * 3, "log_brightness": 0.22 * 3, "temperature": 0.30, "noise_sigma": 0.035 * 3}
_PATCH_FULL_AREA = 0.35 * 0.35


def realised_strengths(shot: dict[str, torch.Tensor], s: Strengths) -> dict[str, torch.Tensor]:
    """What each image went through, one ``[B]`` value in [0, 1] per nuisance of ``NUISANCES``.

    Each is the amount the renderer used (:func:`shot_nuisances`) over its amount at knob
    strength 3, so 0 = untouched and 1 = the worst any image can get:

    - pose |yaw|, rotation |roll|; misalignment the larger of |log scale| and the shift length;
    - expression the largest of smile, open mouth, closed eyes (0/1 each);
    - lighting the largest of gradient amount, |log brightness|, |temperature|;
    - occlusion 1 for sunglasses or a face mask, the patch's area over the largest patch's;
    - clutter the knob itself (min(strength, 1): background and clothes colours, same for all images);
    - blur the share of the blurred copy; noise the noise sigma.
    """
    n = shot_nuisances(shot, s)
    ones = torch.ones_like(n["blur"])
    patch_area = _lin(shot["patch_w"], 0.15, 0.35) * _lin(shot["patch_h"], 0.15, 0.35) / _PATCH_FULL_AREA
    out = {
        "pose": n["yaw"].abs() / _FULL["yaw"],
        "rotation": n["roll"].abs() / _FULL["roll"],
        "misalignment": torch.maximum(n["log_scale"].abs() / _FULL["log_scale"],
                                      torch.hypot(n["shift_x"], n["shift_y"]) / _FULL["shift"]),
        "expression": torch.maximum(torch.maximum(n["smile"] / _FULL["smile"], n["mouth_open"]), n["eyes_closed"]),
        "lighting": torch.maximum(torch.maximum(n["light_amount"] / _FULL["light_amount"],
                                                n["log_brightness"].abs() / _FULL["log_brightness"]),
                                  n["temperature"].abs() / _FULL["temperature"]),
        "occlusion": torch.maximum(torch.maximum(n["sunglasses"], n["face_cover"]), n["patch"] * patch_area),
        "clutter": ones * min(s.clutter, 1.0),
        "blur": n["blur"],
        "noise": n["noise_sigma"] / _FULL["noise_sigma"],
    }
    return {name: out[name].clamp(0, 1) for name in NUISANCES}


def degradation(strengths: dict[str, torch.Tensor]) -> torch.Tensor:
    """One scalar per image in [0, 1]: the plain mean of the nine realised strengths.

    A mean, not a max or a product, so that no nuisance is presumed worse than another and
    each one moves the value (it rises strictly with any nuisance that rises); the nine
    strengths are kept beside it for other combinations.
    """
    return torch.stack([strengths[name] for name in NUISANCES]).mean(0)


def _palette(table: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear colour ramp: ``u`` ``[B]`` in [0, 1] -> ``[B, 3]``."""
    table = table.to(u.device, u.dtype)
    pos = u.clamp(0, 1) * (table.shape[0] - 1)
    low = pos.floor().long().clamp(max=table.shape[0] - 2)
    frac = (pos - low).unsqueeze(1)
    return table[low] * (1 - frac) + table[low + 1] * frac


def _lin(u: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * u


def _v(t: torch.Tensor) -> torch.Tensor:
    """``[B]`` -> ``[B, 1, 1]``, to broadcast against ``[B, S, S]``."""
    return t.reshape(-1, 1, 1)


def _c(t: torch.Tensor) -> torch.Tensor:
    """``[B, 3]`` colour -> ``[B, 3, 1, 1]``."""
    return t.reshape(-1, 3, 1, 1)


class Canvas:
    """Pixel grids and the soft-mask helpers at one size.

    Masks are built so that a layer costs about two passes over ``[B, S, S]``: per-axis terms are
    formed on the small ``[B, 1, S]`` / ``[B, S, 1]`` tensors, and the opacity is folded into the
    ramp (``clamp(x, 0, 1) * o == clamp(o * x, 0, o)`` for ``o >= 0``).
    """

    def __init__(self, size: int, batch: int, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        line = (torch.arange(size, device=device, dtype=dtype) * 2 + 1) / size - 1
        self.x = line.reshape(1, 1, size)
        self.y = line.reshape(1, size, 1)
        self.pixel = 2.0 / size  # one pixel in canvas units: the width of every anti-aliased edge
        self.batch = batch
        self.device = device
        self.zero = torch.zeros((), device=device, dtype=dtype)

    def full(self, value: float) -> torch.Tensor:
        """A per-image constant ``[B, 1, 1]``."""
        return torch.full((self.batch, 1, 1), value, device=self.device)

    def _clamp(self, mask: torch.Tensor, opacity: torch.Tensor | float) -> torch.Tensor:
        if isinstance(opacity, torch.Tensor):
            return mask.clamp_(min=self.zero, max=opacity)
        return mask.clamp_(0.0, opacity)

    def ellipse(self, dx: torch.Tensor, dy: torch.Tensor, ax: torch.Tensor, ay: torch.Tensor,
                opacity: torch.Tensor | float = 1.0) -> torch.Tensor:
        """Soft ellipse mask ``[B, S, S]`` with values in ``[0, opacity]``.

        ``dx`` ``[B,1,S]`` (or full), ``dy`` ``[B,S,1]`` (or full): offsets from the centre; half-axes
        ``[B,1,1]``. With ``q = (dx/ax)^2 + (dy/ay)^2`` the distance to the edge is about
        ``(q - 1) * r / 2`` (``r`` the smaller half-axis), and the mask is ``clamp(0.5 - d / pixel)``.
        ``r`` is floored at one pixel: for a shape thinner than a pixel the first-order distance
        along its long axis would be tiny and smear a faint line across the image.
        """
        k = torch.clamp(torch.minimum(ax, ay), min=self.pixel) / (2 * self.pixel)
        ok = k * opacity
        outer = (0.5 + k) * opacity - ok * (dx / ax).square()
        return self._clamp(outer - ok * (dy / ay).square(), opacity)

    def rows(self, top: torch.Tensor, bottom: torch.Tensor) -> slice:
        """The pixel rows that cover ``[min(top), max(bottom)]`` over the batch (plus a pixel of margin).

        Small features are drawn only on these rows, a band of the image: that is most of the
        renderer's speed, and exact, since the masks are zero outside the band.
        """
        size = self.y.shape[1]
        first = int(math.floor((float(top.min()) + 1) / self.pixel - 1))
        last = int(math.ceil((float(bottom.max()) + 1) / self.pixel + 1))
        return slice(max(0, min(first, size - 1)), max(1, min(last, size)))

    def below(self, d: torch.Tensor) -> torch.Tensor:
        """1 where ``d > 0``, 0 where ``d < 0``, with a one-pixel ramp (``d`` in canvas units)."""
        return (d / self.pixel + 0.5).clamp_(0, 1)

    def box(self, inside_x: torch.Tensor, inside_y: torch.Tensor, opacity: torch.Tensor | float = 1.0) -> torch.Tensor:
        """Product of two ramps: ``inside_x`` ``[B,1,S]`` and ``inside_y`` ``[B,S,1]`` > 0 inside."""
        return (self.below(inside_x) * opacity) * self.below(inside_y)


def _paint(img: torch.Tensor, colour: torch.Tensor, mask: torch.Tensor) -> None:
    """Composite ``colour`` (``[B,3,1,1]`` or full) over ``img`` ``[B,3,S,S]`` through ``mask`` ``[B,S,S]``."""
    img.lerp_(colour.expand_as(img), mask.unsqueeze(1).expand_as(img))


def _blur(img: torch.Tensor, size: int) -> torch.Tensor:
    """A soft copy, about a Gaussian of sigma ``size / 64`` pixels: average-pool down, bilinear up.

    Cheaper than a convolution; the result is what a lower-resolution camera gives.
    """
    factor = max(2, round(2 * size / 64))
    small = F.avg_pool2d(img, factor, ceil_mode=True)
    return F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)


def render(face: dict[str, torch.Tensor], shot: dict[str, torch.Tensor], strengths: Strengths,
           size: int, noise_bank: torch.Tensor) -> torch.Tensor:
    """Render a batch. ``face``/``shot``: uniforms ``[B]`` on the target device; returns uint8 ``[B,3,S,S]``.

    ``noise_bank``: ``[M, 3, S, S]`` standard-normal textures on the device; image noise is one of
    them (chosen by ``shot["noise_texture"]``), so it is fixed per image without a per-pixel hash.
    """
    device = face["face_width"].device
    B = face["face_width"].shape[0]
    cv = Canvas(size, B, device)
    s = strengths
    X, Y = cv.x, cv.y
    f = {name: _v(value) for name, value in face.items()}  # [B,1,1] views
    g = {name: _v(value) for name, value in shot.items()}

    # --- identity geometry (canvas units) and colours ---
    w = _lin(f["face_width"], 0.44, 0.56)
    h = _lin(f["face_height"], 0.60, 0.72)
    cy = cv.full(0.12)
    skin = _palette(SKIN, face["skin_tone"])
    warm = (face["skin_warmth"] - 0.5) * 0.10
    skin = (skin + torch.stack([warm, 0.2 * warm, -warm], 1)).clamp(0, 1)
    hair = _palette(HAIR, face["hair_dark"])
    red = ((face["hair_red"] - 0.7) / 0.3).clamp(0, 1).unsqueeze(1)  # a minority of red-heads
    hair = hair * (1 - 0.6 * red) + torch.tensor([0.55, 0.22, 0.08], device=device) * 0.6 * red
    grey = ((face["hair_grey"] - 0.8) / 0.2).clamp(0, 1).unsqueeze(1)
    hair = hair * (1 - grey) + torch.tensor([0.72, 0.71, 0.70], device=device) * grey

    eye_y = cy - h * _lin(f["eye_height"], 0.08, 0.24)
    eye_x = w * _lin(f["eye_spacing"], 0.34, 0.46)
    eye_w = w * _lin(f["eye_size"], 0.15, 0.22)
    eye_h0 = eye_w * _lin(f["eye_shape"], 0.38, 0.62)
    nose_y = eye_y + h * _lin(f["nose_length"], 0.30, 0.46)
    nose_w = w * _lin(f["nose_width"], 0.13, 0.24)
    mouth_y = nose_y + h * _lin(f["mouth_gap"], 0.16, 0.26)
    mouth_w = w * _lin(f["mouth_width"], 0.28, 0.44)
    lip = _lin(f["lip_thickness"], 0.018, 0.045)

    # --- expression (per image) ---
    amounts = shot_nuisances(shot, s)
    e = min(s.expression, 1.5)
    smile = _v(amounts["smile"])
    opened = amounts["mouth_open"]
    mouth_open = _v(opened) * _lin(g["mouth_open_amount"], 0.4, 1.0)
    eye_open = 1 - 0.9 * _v(amounts["eyes_closed"])
    brow_raise = (g["brow_raise"] - 0.5) * 0.05 * e

    # --- background and clutter ---
    clutter = min(s.clutter, 1.0)
    neutral = torch.tensor([0.55, 0.56, 0.58], device=device)
    bg0 = neutral + 0.45 * clutter * (torch.stack([shot["bg0_r"], shot["bg0_g"], shot["bg0_b"]], 1) - neutral)
    bg1 = neutral * 0.8 + 0.45 * clutter * (torch.stack([shot["bg1_r"], shot["bg1_g"], shot["bg1_b"]], 1) - neutral * 0.8)
    ramp = ((Y + 1) / 2).unsqueeze(0)  # [1,1,S,1]
    img = (_c(bg0) + _c(bg1 - bg0) * ramp).expand(B, 3, size, size).contiguous()
    if clutter > 0:
        for i in range(3):
            bx, by = _lin(g[f"blob{i}_x"], -1.1, 1.1), _lin(g[f"blob{i}_y"], -1.1, 0.5)
            ba, bb = _lin(g[f"blob{i}_a"], 0.08, 0.55), _lin(g[f"blob{i}_b"], 0.08, 0.55)
            colour = torch.stack([shot[f"blob{i}_r"], shot[f"blob{i}_g"], shot[f"blob{i}_b2"]], 1)
            _paint(img, _c(0.15 + 0.7 * colour), cv.ellipse(X - bx, Y - by, ba, bb, 0.45 * clutter))

    # --- clothes and neck ---
    base = _palette(CLOTHES, face["clothes_hue"])
    shirt = base + clutter * (torch.stack([shot["clothes_r"], shot["clothes_g"], shot["clothes_b"]], 1) - base)
    _paint(img, _c(shirt), cv.ellipse(X, Y - (cy + h + 0.42), w * 2.1, cv.full(0.42)))
    neck = cv.box(w * 0.40 - X.abs(), Y - (cy + 0.3 * h))
    _paint(img, _c(skin * 0.78), neck)

    # --- hair behind the head (long hair falls to the shoulders) ---
    length = f["hair_length"] ** 1.5
    volume = f["hair_volume"]
    back = cv.ellipse(X, Y - (cy - 0.15 * h + 0.55 * h * length), w * (1.12 + 0.22 * volume), h * (0.95 + 0.8 * length))
    back.mul_(cv.below(cy - 0.05 * h + 1.7 * h * length - Y))
    bald = ((f["bald"] - 0.92) / 0.04).clamp(0, 1)
    back.mul_(cv.below(Y - (cy - 1.3 * h + 1.1 * h * bald)))  # no hair above a bald crown
    _paint(img, _c(hair), back)

    # --- ears (both at once: the face is symmetric about x = 0 on the canvas) ---
    ear_w = _lin(f["ear_size"], 0.045, 0.08)
    band = cv.rows(eye_y + 0.08 - ear_w * 1.9, eye_y + 0.08 + ear_w * 1.9)
    ears = torch.zeros(B, size, size, device=device)
    ears[:, band] = cv.ellipse(X.abs() - (w * 0.96 + f["ear_out"] * 0.03), Y[:, band] - (eye_y + 0.08), ear_w, ear_w * 1.9)
    _paint(img[:, :, band], _c(skin * 0.90), ears[:, band])

    # --- face: an ellipse whose width narrows towards the jaw, darker towards the rim ---
    dy = Y - cy
    below_mid = (dy / h).clamp(0, 1)
    exponent = _lin(f["chin"], 1.3, 2.6)
    inv_w2 = (w * (1 - _lin(f["jaw_taper"], 0.05, 0.42) * below_mid.pow(exponent))).reciprocal().square()  # [B,S,1]
    q = torch.addcmul((dy / h).square(), X.square(), inv_w2)  # [B,S,S]
    shade = _c(skin) * (1 - 0.22 * q.clamp(max=1)).unsqueeze(1)
    k = w / (2 * cv.pixel)
    face_mask = q.mul_(-k).add_(0.5 + k).clamp_(0, 1)
    _paint(img, shade, face_mask)
    skin_mask = torch.maximum(face_mask, ears)
    torch.maximum(skin_mask, neck, out=skin_mask)

    # --- hair on top: inside a cap, above a hairline that curves with the fringe and slants with the parting ---
    # fringe < 0: temples higher than the middle (a widow's peak); > 0: rounded bangs. Bald heads
    # (about 1 in 12) keep hair only at the sides.
    fringe = _lin(f["fringe"], -0.25, 0.35)
    height = _lin(f["hairline"], 0.32, 0.80) + 0.7 * bald
    hairline = cy - h * height + fringe * h * (X / w).square() + (f["parting"] - 0.5) * 0.30 * X
    top = f["hair_top"] * (1 - bald)
    cap = cv.ellipse(X, Y - (cy - 0.10 * h - 0.08 * h * top), w * (1.04 + 0.24 * volume), h * (0.98 + 0.12 * volume + 0.08 * top))
    cap.mul_(cv.below(hairline - Y))
    _paint(img, _c(hair), cap)

    # --- beard ---
    beard = ((f["beard"] - 0.78) / 0.10).clamp(0, 1) * 0.9
    if bool((beard > 0).any()):
        region = face_mask * cv.below(Y - (nose_y + 0.02)).mul_(beard)
        _paint(img, _c(hair * 0.9), region)

    # --- eyes: lash line, white, iris, pupil; brows; glasses (identity) and sunglasses (occlusion) ---
    sunglasses = _v(amounts["sunglasses"])
    face_cover = _v(amounts["face_cover"])
    patch = _v(amounts["patch"])
    glasses = (f["glasses"] > 0.82).float()
    tilt = (f["eye_tilt"] - 0.5) * 0.5
    brow_w = eye_w * 1.25
    brow_t = _lin(f["brow_thickness"], 0.014, 0.040)
    arch = _lin(f["brow_arch"], -0.01, 0.05)
    brow_y = eye_y - eye_h0 - _lin(f["brow_gap"], 0.035, 0.09) - brow_raise
    rim_x, rim_y = eye_w * 1.65, eye_w * 1.25
    band = cv.rows(torch.minimum(brow_y - brow_t - 0.5 * brow_w, eye_y - rim_y), eye_y + rim_y + 0.5 * eye_w)
    Yb, layer = Y[:, band], img[:, :, band]
    ex = X.abs() - eye_x
    ey = (Yb - eye_y) + tilt * ex  # outer corners up or down, mirrored
    eye_h = eye_h0 * eye_open
    _paint(layer, _c(hair * 0.5), cv.ellipse(ex, ey, eye_w * 1.08, eye_h + cv.pixel * 0.6, 0.85))
    white = cv.ellipse(ex, ey, eye_w, eye_h)
    _paint(layer, _c(0.82 * torch.tensor([[0.93, 0.91, 0.88]], device=device) + 0.18 * skin), white)
    gaze = (g["gaze"] - 0.5) * 0.4 * min(e, 1.0) * eye_w
    iris_r = eye_h0 * 0.95
    iris_col = (_palette(IRIS, face["iris_hue"]) * _lin(face["iris_dark"], 0.7, 1.1).unsqueeze(1)).clamp(0, 1)
    centred = ex - gaze * torch.sign(X)  # gaze moves both irises the same way
    _paint(layer, _c(iris_col), cv.ellipse(centred, Yb - eye_y, iris_r, iris_r).mul_(white))
    pupil = cv.ellipse(centred, Yb - eye_y, iris_r * 0.45, iris_r * 0.45).mul_(white)
    _paint(layer, _c(torch.full((B, 3), 0.04, device=device)), pupil)
    bx = X.abs() - eye_x - 0.01
    by = (Yb - brow_y) - (arch * (bx / brow_w).square() - tilt * 0.5 * bx)
    _paint(layer, _c(hair * 0.75), cv.ellipse(bx, by, brow_w, brow_t, 0.9))
    if bool(((glasses + sunglasses) > 0).any()):
        outer = cv.ellipse(ex, Yb - eye_y, rim_x, rim_y)
        bar = cv.box(eye_x - rim_x * 0.9 - X.abs(), 0.014 - (Yb - eye_y + 0.02).abs())
        frame_col = _palette(torch.tensor([[0.08, 0.07, 0.07], [0.35, 0.20, 0.10], [0.70, 0.58, 0.30]]), face["glasses_frame"])
        ring = (outer - cv.ellipse(ex, Yb - eye_y, rim_x - 0.022, rim_y - 0.022)).clamp_(0, 1)
        _paint(layer, _c(frame_col), torch.maximum(ring, bar).mul_(glasses))
        _paint(layer, _c(torch.full((B, 3), 0.06, device=device)), torch.maximum(outer, bar).mul_(sunglasses))

    # --- nose: bridge shadow, tip shadow, nostrils ---
    band = cv.rows(eye_y, nose_y + torch.clamp(nose_w * 0.45, min=0.04))
    Yb, layer = Y[:, band], img[:, :, band]
    _paint(layer, _c(skin * 0.80), cv.ellipse(X - 0.035, Yb - (eye_y + nose_y) / 2, cv.full(0.014), (nose_y - eye_y) / 2, 0.5))
    _paint(layer, _c(skin * 0.80), cv.ellipse(X, Yb - nose_y, nose_w, nose_w * 0.45, 0.55))
    _paint(layer, _c(skin * 0.42), cv.ellipse(X.abs() - nose_w * 0.5, Yb - (nose_y + 0.02), nose_w * 0.32, cv.full(0.016), 0.8))

    # --- mouth: lips bent by the smile, dark inside when open ---
    lip_red = face["lip_red"].unsqueeze(1)
    lip_col = skin * 0.75 + torch.tensor([0.62, 0.22, 0.24], device=device) * 0.25
    lip_col = lip_col * (1 - 0.3 * lip_red) + torch.tensor([0.70, 0.20, 0.25], device=device) * 0.3 * lip_red
    lip_h = lip + 0.06 * mouth_open
    band = cv.rows(mouth_y - lip_h - 0.1 * smile, mouth_y + lip_h + 0.03 * smile)
    Yb, layer = Y[:, band], img[:, :, band]
    my = (Yb - mouth_y) + (smile * 0.09 * (X / mouth_w).square() - smile * 0.025)
    mw = mouth_w * (1 + 0.12 * smile)
    _paint(layer, _c(lip_col), cv.ellipse(X, my, mw, lip_h))
    if bool((opened > 0).any()):
        inner = cv.ellipse(X, my, mw * 0.8, 0.05 * mouth_open + 1e-4)
        _paint(layer, _c(torch.tensor([[0.22, 0.06, 0.07]], device=device).expand(B, 3)), inner)
    _paint(layer, _c(lip_col * 0.45), cv.ellipse(X, my, mw * 0.92, cv.full(cv.pixel * 0.45), 0.8))

    # --- mole ---
    mole = ((f["mole"] - 0.72) / 0.05).clamp(0, 1)
    if bool((mole > 0).any()):
        mx = w * _lin(f["mole_x"], -0.6, 0.6)
        mole_y = cy + h * _lin(f["mole_y"], -0.15, 0.55)
        band = cv.rows(mole_y - 0.03, mole_y + 0.03)
        _paint(img[:, :, band], _c(skin * 0.35), cv.ellipse(X - mx, Y[:, band] - mole_y, cv.full(0.022), cv.full(0.022), mole))

    # --- face mask (occlusion) ---
    if bool((face_cover > 0).any()):
        cover_col = torch.stack([shot["occ_r"], shot["occ_g"], shot["occ_b"]], 1) * 0.4 + torch.tensor([0.55, 0.65, 0.75], device=device) * 0.6
        cover = cv.ellipse(X / (1 - 0.3 * below_mid), dy, w * 1.05, h * 1.03, face_cover).mul_(cv.below(Y - (nose_y - 0.04)))
        _paint(img, _c(cover_col), cover)

    # --- warp: roll, scale and shift (what an aligner leaves) and yaw (features slide sideways) ---
    img = torch.cat([img, skin_mask.unsqueeze(1)], 1)
    roll = _v(amounts["roll"])
    scale = torch.exp(_v(amounts["log_scale"]))
    tx, ty = _v(amounts["shift_x"]), _v(amounts["shift_y"])
    yaw = _v(amounts["yaw"])
    ox, oy = (X - tx) / scale, (Y - ty) / scale
    cos, sin = torch.cos(roll), torch.sin(roll)
    rx = cos * ox + sin * oy
    ry = cos * oy - sin * ox
    # A displacement that peaks at the face's centre line and vanishes at its rim: features slide
    # towards one side, which squashes that half and stretches the other, as a turned head does.
    if s.pose > 0:
        rx = rx - yaw * torch.exp(-(rx / 0.42).square() - ((ry - cy) / 0.8).square())
    grid = torch.stack([rx.expand(B, size, size), ry.expand(B, size, size)], -1)
    img = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
    img, skin_mask = img[:, :3], img[:, 3]

    # --- random patch (image space) ---
    if bool((patch > 0).any()):
        px, py = _lin(g["patch_x"], -0.7, 0.7), _lin(g["patch_y"], -0.6, 0.8)
        pw, ph = _lin(g["patch_w"], 0.15, 0.35), _lin(g["patch_h"], 0.15, 0.35)
        box = cv.box(pw - (X - px).abs(), ph - (Y - py).abs(), patch)
        _paint(img, _c(torch.stack([shot["occ_r"], shot["occ_g"], shot["occ_b"]], 1)), box)

    # --- light: a directional gradient, stronger on skin, overall brightness, colour temperature ---
    if s.lighting > 0:
        angle = g["light_angle"] * 2 * math.pi
        amount = _v(amounts["light_amount"])
        gradient = (amount * torch.cos(angle)) * X + (amount * torch.sin(angle)) * Y  # [B,S,S]
        light = gradient.mul_(skin_mask.mul_(0.5).add_(0.5)).add_(1)
        light.mul_(torch.exp(_v(amounts["log_brightness"])))
        temp = amounts["temperature"]
        tint = torch.stack([1 + temp, 1 + 0.2 * temp, 1 - temp], 1)
        img = img.mul_(light.unsqueeze(1)).mul_(_c(tint))

    # --- blur (a share of a blurred copy) and sensor noise ---
    blur = _v(amounts["blur"]).unsqueeze(1)
    if float(blur.max()) > 0:
        img = img.lerp_(_blur(img, size), blur.expand_as(img))
    sigma = _v(amounts["noise_sigma"]).unsqueeze(1)
    if float(sigma.max()) > 0:
        index = (shot["noise_texture"] * noise_bank.shape[0]).long().clamp_(max=noise_bank.shape[0] - 1)
        img = img.addcmul_(noise_bank[index], sigma)
    return img.clamp_(0, 1).mul_(255).round_().to(torch.uint8)
