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
    """Pixel grids and the soft-mask helpers at one size."""

    def __init__(self, size: int, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        line = (torch.arange(size, device=device, dtype=dtype) * 2 + 1) / size - 1
        self.x = line.reshape(1, 1, size)
        self.y = line.reshape(1, size, 1)
        self.pixel = 2.0 / size  # one pixel in canvas units: the width of every anti-aliased edge

    def from_q(self, q: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
        """Mask from ``q = sum (d_i / a_i)^2`` (1 on the boundary); ``d ~ (q - 1) * radius / 2`` near it.

        The radius is floored at one pixel: for a shape thinner than a pixel the first-order
        distance along its long axis would be tiny and smear a faint line across the image.
        """
        k = torch.clamp(radius, min=self.pixel) / (2 * self.pixel)
        return q.mul_(-k).add_(0.5 + k).clamp_(0, 1)

    def ellipse(self, dx: torch.Tensor, dy: torch.Tensor, ax: torch.Tensor, ay: torch.Tensor) -> torch.Tensor:
        """``dx`` ``[B,1,S]`` (or ``[B,S,S]``), ``dy`` ``[B,S,1]`` (or full), half-axes ``[B,1,1]``."""
        q = (dx / ax).square_() + (dy / ay).square_()
        return self.from_q(q, torch.minimum(ax, ay))

    def below(self, dy: torch.Tensor) -> torch.Tensor:
        """1 where ``dy > 0`` with a one-pixel ramp."""
        return (dy / self.pixel + 0.5).clamp_(0, 1)


def _paint(img: torch.Tensor, colour: torch.Tensor, mask: torch.Tensor, opacity: torch.Tensor | None = None) -> None:
    """Composite ``colour`` (``[B,3,1,1]`` or full) over ``img`` ``[B,3,S,S]`` through ``mask`` ``[B,S,S]``."""
    weight = mask.unsqueeze(1)
    if opacity is not None:
        weight = weight * opacity.reshape(-1, 1, 1, 1)
    img.lerp_(colour.expand_as(img), weight.expand_as(img))


def _gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(2.5 * sigma)))
    t = torch.arange(-radius, radius + 1, device=img.device, dtype=img.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = img.shape[1]
    horizontal = kernel.reshape(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.reshape(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    out = F.conv2d(F.pad(img, (radius, radius, 0, 0), mode="replicate"), horizontal, groups=channels)
    return F.conv2d(F.pad(out, (0, 0, radius, radius), mode="replicate"), vertical, groups=channels)


def render(face: dict[str, torch.Tensor], shot: dict[str, torch.Tensor], strengths: Strengths,
           size: int, noise_bank: torch.Tensor) -> torch.Tensor:
    """Render a batch. ``face``/``shot``: uniforms ``[B]`` on the target device; returns uint8 ``[B,3,S,S]``.

    ``noise_bank``: ``[M, 3, S, S]`` standard-normal textures on the device; image noise is one of
    them (chosen by ``shot["noise_texture"]``), so it is fixed per image without a per-pixel hash.
    """
    device = face["face_width"].device
    cv = Canvas(size, device)
    s = strengths
    B = face["face_width"].shape[0]
    X, Y = cv.x, cv.y

    # --- identity geometry (canvas units) ---
    w = _v(_lin(face["face_width"], 0.44, 0.56))
    h = _v(_lin(face["face_height"], 0.60, 0.72))
    cy = _v(torch.full((B,), 0.12, device=device))
    skin = _palette(SKIN, face["skin_tone"])
    warm = (face["skin_warmth"] - 0.5) * 0.10
    skin = (skin + torch.stack([warm, 0.2 * warm, -warm], 1)).clamp(0, 1)
    hair = _palette(HAIR, face["hair_dark"])
    red = (face["hair_red"].clamp(0.7, 1.0) - 0.7) / 0.3  # a minority of red-heads
    hair = hair * (1 - red.unsqueeze(1) * 0.6) + torch.tensor([0.55, 0.22, 0.08], device=device) * red.unsqueeze(1) * 0.6
    grey = ((face["hair_grey"] - 0.8) / 0.2).clamp(0, 1).unsqueeze(1)
    hair = hair * (1 - grey) + torch.tensor([0.72, 0.71, 0.70], device=device) * grey

    eye_y = cy - h * _v(_lin(face["eye_height"], 0.08, 0.24))
    eye_x = w * _v(_lin(face["eye_spacing"], 0.34, 0.46))
    eye_w = w * _v(_lin(face["eye_size"], 0.15, 0.22))
    eye_h0 = eye_w * _v(_lin(face["eye_shape"], 0.38, 0.62))
    nose_y = eye_y + h * _v(_lin(face["nose_length"], 0.30, 0.46))
    nose_w = w * _v(_lin(face["nose_width"], 0.13, 0.24))
    mouth_y = nose_y + h * _v(_lin(face["mouth_gap"], 0.16, 0.26))
    mouth_w = w * _v(_lin(face["mouth_width"], 0.28, 0.44))
    lip = _v(_lin(face["lip_thickness"], 0.018, 0.045))

    # --- expression (per image) ---
    e = min(s.expression, 1.5)
    smile = _v(shot["smile"] * e)
    opened = (shot["mouth_open"] < 0.3 * e).to(X.dtype)
    mouth_open = _v(opened * _lin(shot["mouth_open_amount"], 0.4, 1.0))
    closed = (shot["eyes_closed"] < 0.12 * e).to(X.dtype)
    eye_open = _v(1 - 0.9 * closed)
    brow_raise = _v((shot["brow_raise"] - 0.5) * 0.05 * e)

    # --- background and clutter ---
    clutter = min(s.clutter, 1.0)
    neutral = torch.tensor([0.55, 0.56, 0.58], device=device)
    bg0 = neutral + 0.6 * clutter * (torch.stack([shot["bg0_r"], shot["bg0_g"], shot["bg0_b"]], 1) - neutral)
    bg1 = neutral * 0.8 + 0.6 * clutter * (torch.stack([shot["bg1_r"], shot["bg1_g"], shot["bg1_b"]], 1) - neutral * 0.8)
    ramp = (Y + 1) / 2  # [1,S,1]
    img = (_c(bg0) + _c(bg1 - bg0) * ramp.unsqueeze(0)).expand(B, 3, size, size).contiguous()
    if clutter > 0:
        for i in range(3):
            bx = _v(_lin(shot[f"blob{i}_x"], -1.1, 1.1))
            by = _v(_lin(shot[f"blob{i}_y"], -1.1, 0.5))
            ba = _v(_lin(shot[f"blob{i}_a"], 0.08, 0.55))
            bb = _v(_lin(shot[f"blob{i}_b"], 0.08, 0.55))
            colour = torch.stack([shot[f"blob{i}_r"], shot[f"blob{i}_g"], shot[f"blob{i}_b2"]], 1)
            _paint(img, _c(0.15 + 0.7 * colour), cv.ellipse(X - bx, Y - by, ba, bb), torch.full((B,), 0.6 * clutter, device=device))

    # --- clothes and neck ---
    base = _palette(CLOTHES, face["clothes_hue"])
    shirt = base + clutter * (torch.stack([shot["clothes_r"], shot["clothes_g"], shot["clothes_b"]], 1) - base)
    shoulders_y = cy + h + 0.42
    _paint(img, _c(shirt), cv.ellipse(X, Y - shoulders_y, w * 2.1, _v(torch.full((B,), 0.42, device=device))))
    neck = cv.below(w * 0.40 - X.abs()) * cv.below(Y - (cy + 0.3 * h))
    _paint(img, _c(skin * 0.78), neck)

    # --- hair behind the head (long hair falls to the shoulders) ---
    length = _v(face["hair_length"] ** 1.5)
    volume = _v(face["hair_volume"])
    back = cv.ellipse(X, Y - (cy - 0.15 * h + 0.55 * h * length), w * (1.12 + 0.22 * volume), h * (0.95 + 0.8 * length))
    back.mul_(cv.below(cy - 0.05 * h + 1.7 * h * length - Y))
    _paint(img, _c(hair), back)

    # --- ears (both at once: the face is symmetric about x = 0 on the canvas) ---
    ear_w = _v(_lin(face["ear_size"], 0.045, 0.08))
    ears = cv.ellipse(X.abs() - (w * 0.96 + _v(face["ear_out"]) * 0.03), Y - (eye_y + 0.08), ear_w, ear_w * 1.9)
    _paint(img, _c(skin * 0.90), ears)

    # --- face: an ellipse whose width narrows towards the jaw ---
    dy = Y - cy
    below_mid = (dy / h).clamp(0, 1)
    exponent = _v(_lin(face["chin"], 1.3, 2.6))
    half_w = w * (1 - _v(_lin(face["jaw_taper"], 0.05, 0.42)) * below_mid.pow(exponent))
    q = (X / half_w).square() + (dy / h).square()  # [B,S,S]
    shade = (1 - 0.22 * q.clamp(0, 1)).unsqueeze(1)  # darker towards the rim: a rounded look
    face_mask = cv.from_q(q, w)
    _paint(img, _c(skin) * shade, face_mask)
    skin_mask = torch.maximum(face_mask, torch.maximum(ears, neck))

    # --- hair on top: inside a cap, above a hairline that slants with the parting ---
    hairline = cy - h * _v(_lin(face["hairline"], 0.32, 0.80)) + 0.10 * h * (X / w).square()
    hairline = hairline + _v(face["parting"] - 0.5) * 0.30 * X
    cap = cv.ellipse(X, Y - (cy - 0.10 * h), w * (1.05 + 0.16 * volume), h * (1.0 + 0.10 * volume))
    cap.mul_(cv.below(hairline - Y))
    _paint(img, _c(hair), cap)

    # --- beard ---
    beard = _v(((face["beard"] - 0.72) / 0.12).clamp(0, 1) * 0.9)
    if bool((beard > 0).any()):
        region = face_mask * cv.below(Y - (nose_y + 0.02))
        _paint(img, _c(hair * 0.9), region, beard.reshape(-1))

    # --- eyes: lash line, white, iris, pupil ---
    tilt = _v((face["eye_tilt"] - 0.5) * 0.5)
    ex = X.abs() - eye_x
    ey = (Y - eye_y) + tilt * ex  # outer corners up or down, mirrored
    eye_h = eye_h0 * eye_open
    lash = cv.ellipse(ex, ey, eye_w * 1.08, eye_h + cv.pixel * 0.6)
    _paint(img, _c(hair * 0.5), lash, torch.full((B,), 0.85, device=device))
    white = cv.ellipse(ex, ey, eye_w, eye_h)
    _paint(img, _c(torch.tensor([[0.93, 0.91, 0.88]], device=device).expand(B, 3)), white)
    gaze = _v((shot["gaze"] - 0.5) * 0.4 * min(e, 1.0)) * eye_w
    iris_r = eye_h0 * 0.95
    iris_col = _palette(IRIS, face["iris_hue"]) * _v(_lin(face["iris_dark"], 0.7, 1.1)).reshape(-1, 1)
    iris = cv.ellipse(X - torch.sign(X) * eye_x - gaze, Y - eye_y, iris_r, iris_r) * white
    _paint(img, _c(iris_col.clamp(0, 1)), iris)
    pupil = cv.ellipse(X - torch.sign(X) * eye_x - gaze, Y - eye_y, iris_r * 0.45, iris_r * 0.45) * white
    _paint(img, _c(torch.full((B, 3), 0.04, device=device)), pupil)

    # --- brows ---
    brow_w = eye_w * 1.25
    brow_t = _v(_lin(face["brow_thickness"], 0.014, 0.040))
    arch = _v(_lin(face["brow_arch"], -0.01, 0.05))
    brow_y = eye_y - eye_h0 - _v(_lin(face["brow_gap"], 0.035, 0.09)) - brow_raise
    bx = X.abs() - eye_x - 0.01
    by = Y - brow_y - arch * (bx / brow_w).square() + tilt * 0.5 * bx
    _paint(img, _c(hair * 0.75), cv.ellipse(bx, by, brow_w, brow_t), torch.full((B,), 0.9, device=device))

    # --- nose: bridge shadow, tip shadow, nostrils ---
    bridge = cv.ellipse(X - 0.035, Y - (eye_y + nose_y) / 2, _v(torch.full((B,), 0.014, device=device)), (nose_y - eye_y) / 2)
    _paint(img, _c(skin * 0.80), bridge, torch.full((B,), 0.5, device=device))
    tip = cv.ellipse(X, Y - nose_y, nose_w, nose_w * 0.45)
    _paint(img, _c(skin * 0.80), tip, torch.full((B,), 0.55, device=device))
    nostrils = cv.ellipse(X.abs() - nose_w * 0.5, Y - (nose_y + 0.02), nose_w * 0.32, _v(torch.full((B,), 0.016, device=device)))
    _paint(img, _c(skin * 0.42), nostrils, torch.full((B,), 0.8, device=device))

    # --- mouth: lips bent by the smile, dark inside when open ---
    lip_col = skin * 0.75 + torch.tensor([0.62, 0.22, 0.24], device=device) * 0.25
    lip_col = lip_col * (1 - 0.3 * face["lip_red"].unsqueeze(1)) + torch.tensor([0.70, 0.20, 0.25], device=device) * 0.3 * face["lip_red"].unsqueeze(1)
    my = Y - mouth_y + smile * 0.07 * (X / mouth_w).square() - smile * 0.02
    mw = mouth_w * (1 + 0.12 * smile)
    _paint(img, _c(lip_col), cv.ellipse(X, my, mw, lip + 0.05 * mouth_open))
    inner = cv.ellipse(X, my, mw * 0.8, 0.04 * mouth_open + 1e-4)
    _paint(img, _c(torch.tensor([[0.22, 0.06, 0.07]], device=device).expand(B, 3)), inner)
    line = cv.ellipse(X, my, mw * 0.92, _v(torch.full((B,), cv.pixel * 0.45, device=device)))
    _paint(img, _c(lip_col * 0.45), line, torch.full((B,), 0.8, device=device))

    # --- mole ---
    mole = ((face["mole"] - 0.72) / 0.05).clamp(0, 1)
    if bool((mole > 0).any()):
        mx = w * _v(_lin(face["mole_x"], -0.6, 0.6))
        mole_y = cy + h * _v(_lin(face["mole_y"], -0.15, 0.55))
        dot = cv.ellipse(X - mx, Y - mole_y, _v(torch.full((B,), 0.022, device=device)), _v(torch.full((B,), 0.022, device=device)))
        _paint(img, _c(skin * 0.35), dot, mole)

    # --- glasses (identity) and sunglasses / face mask (occlusion, per image) ---
    occ_p = min(0.3 * s.occlusion, 0.9)
    occluded = shot["occlusion"] < occ_p
    kind = shot["occlusion_kind"]
    sunglasses = (occluded & (kind < 1 / 3)).to(X.dtype)
    face_cover = (occluded & (kind >= 1 / 3) & (kind < 2 / 3)).to(X.dtype)
    patch = (occluded & (kind >= 2 / 3)).to(X.dtype)
    glasses = (face["glasses"] > 0.82).to(X.dtype)
    if bool(((glasses + sunglasses) > 0).any()):
        rim_x, rim_y = eye_w * 1.65, eye_w * 1.25
        outer = cv.ellipse(ex, Y - eye_y, rim_x, rim_y)
        bar = cv.below(eye_x - rim_x * 0.9 - X.abs()) * cv.below(0.014 - (Y - eye_y + 0.02).abs())
        frame_col = _palette(torch.tensor([[0.08, 0.07, 0.07], [0.35, 0.20, 0.10], [0.70, 0.58, 0.30]]), face["glasses_frame"])
        ring = (outer - cv.ellipse(ex, Y - eye_y, rim_x - 0.022, rim_y - 0.022)).clamp_(0, 1)
        _paint(img, _c(frame_col), torch.maximum(ring, bar), glasses)
        _paint(img, _c(torch.full((B, 3), 0.06, device=device)), torch.maximum(outer, bar), sunglasses)
    if bool((face_cover > 0).any()):
        cover_col = torch.stack([shot["occ_r"], shot["occ_g"], shot["occ_b"]], 1) * 0.4 + torch.tensor([0.55, 0.65, 0.75], device=device) * 0.6
        cover = cv.ellipse(X / (1 - 0.3 * below_mid), dy, w * 1.05, h * 1.03) * cv.below(Y - (nose_y - 0.04))
        _paint(img, _c(cover_col), cover, face_cover)

    # --- warp: roll, scale and shift (what an aligner leaves) and yaw (features slide sideways) ---
    img = torch.cat([img, skin_mask.unsqueeze(1)], 1)
    roll = (shot["roll"] * 2 - 1) * math.radians(14) * s.rotation
    scale = torch.exp((shot["scale"] * 2 - 1) * 0.12 * s.misalignment)
    tx = (shot["shift_x"] * 2 - 1) * 0.09 * s.misalignment
    ty = (shot["shift_y"] * 2 - 1) * 0.09 * s.misalignment
    yaw = (shot["yaw"] * 2 - 1) * 0.17 * min(s.pose, 2.5)
    ox = (X - _v(tx)) / _v(scale)
    oy = (Y - _v(ty)) / _v(scale)
    cos, sin = _v(torch.cos(roll)), _v(torch.sin(roll))
    rx = cos * ox + sin * oy
    ry = cos * oy - sin * ox
    # A displacement that peaks at the face's centre line and vanishes at its rim: features slide
    # towards one side, which squashes that half and stretches the other, as a turned head does.
    rx = rx - _v(yaw) * torch.exp(-(rx / 0.42).square() - ((ry - cy) / 0.8).square())
    grid = torch.stack([rx.expand(B, size, size), ry.expand(B, size, size)], -1)
    img = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
    img, skin_mask = img[:, :3], img[:, 3]

    # --- random patch (image space) ---
    if bool((patch > 0).any()):
        px, py = _v(_lin(shot["patch_x"], -0.7, 0.7)), _v(_lin(shot["patch_y"], -0.6, 0.8))
        pw, ph = _v(_lin(shot["patch_w"], 0.15, 0.35)), _v(_lin(shot["patch_h"], 0.15, 0.35))
        box = cv.below(pw - (X - px).abs()) * cv.below(ph - (Y - py).abs())
        _paint(img, _c(torch.stack([shot["occ_r"], shot["occ_g"], shot["occ_b"]], 1)), box, patch)

    # --- light: a directional gradient, stronger on skin, overall brightness, colour temperature ---
    angle = shot["light_angle"] * 2 * math.pi
    amount = _v(shot["light_amount"] * 0.55 * s.lighting)
    gradient = _v(torch.cos(angle)) * X + _v(torch.sin(angle)) * Y
    light = 1 + amount * gradient * (0.5 + 0.5 * skin_mask)
    light = light * _v(torch.exp((shot["brightness"] * 2 - 1) * 0.30 * s.lighting))
    temp = (shot["temperature"] * 2 - 1) * 0.10 * s.lighting
    tint = torch.stack([1 + temp, 1 + 0.2 * temp, 1 - temp], 1)
    img = img * light.unsqueeze(1) * _c(tint)

    # --- blur (a share of a blurred copy) and sensor noise ---
    blur = _v(shot["blur"] * s.blur).clamp(0, 1).unsqueeze(1)
    if float(blur.max()) > 0:
        img = img + blur * (_gaussian_blur(img, 1.1 * size / 64) - img)
    sigma = _v(shot["noise"] * 0.06 * s.noise).unsqueeze(1)
    if float(sigma.max()) > 0:
        index = (shot["noise_texture"] * noise_bank.shape[0]).long().clamp_(max=noise_bank.shape[0] - 1)
        img = img + sigma * noise_bank[index]
    return img.clamp_(0, 1).mul_(255).round_().to(torch.uint8)
