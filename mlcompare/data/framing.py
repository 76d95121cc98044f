"""How a photograph becomes a ``size`` x ``size`` input: a crop, then a resize.

Real face photographs come at any size and framing (CFP: 43 to 2,270 pixels wide, loosely cropped,
not aligned). Every method of a comparison sees the same framing, declared in ``[data]``:

* ``crop = F`` (0 < F <= 1): a centred square whose side is F times the image's shorter side;
* ``crop_box = [left, top, right, bottom]``: that box, in pixels (right and bottom exclusive);
* ``keep_aspect = true``: the resize keeps the aspect ratio (the shorter side becomes ``size``,
  the longer is centre-cropped to it) instead of squashing the image to a square.

With none of them (the defaults) an image is squashed to the square, as before these options.
The crop is integer pixel arithmetic, so a test can compute it by hand:
``side = round(F * min(w, h))``, ``left = (w - side) // 2``, ``top = (h - side) // 2``.
"""
from __future__ import annotations

from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class Framing:
    """The deterministic part of preprocessing, the same for training and test images."""

    crop: float = 0.0  # 0: no centre crop
    box: tuple[int, int, int, int] | None = None  # left, top, right, bottom in pixels
    keep_aspect: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.crop <= 1.0:
            raise ValueError(f"crop must be in (0, 1] (0: none), got {self.crop}")
        if self.crop and self.box is not None:
            raise ValueError("give crop (a centred square) or crop_box (a box), not both")
        if self.box is not None:
            left, top, right, bottom = self.box
            if not (0 <= left < right and 0 <= top < bottom):
                raise ValueError(f"crop_box must be [left, top, right, bottom] with left < right and top < bottom, got {list(self.box)}")

    @property
    def is_default(self) -> bool:
        return self == Framing()

    def describe(self) -> str:
        """One phrase for a report's setup line."""
        parts = []
        if self.crop:
            parts.append(f"centre crop {self.crop:g} of the shorter side")
        if self.box is not None:
            parts.append(f"crop box {list(self.box)}")
        parts.append("aspect-preserving resize" if self.keep_aspect else "resize to a square")
        return ", ".join(parts)

    def crop_of(self, width: int, height: int) -> tuple[int, int, int, int] | None:
        """The box cut from a ``width`` x ``height`` image, or None for no crop.

        >>> Framing(crop=0.5).crop_of(105, 137)
        (26, 42, 78, 94)
        """
        if self.box is not None:
            if self.box[2] > width or self.box[3] > height:
                raise ValueError(f"crop_box {list(self.box)} reaches beyond a {width} x {height} image")
            return self.box
        if not self.crop:
            return None
        side = max(1, round(self.crop * min(width, height)))
        left, top = (width - side) // 2, (height - side) // 2
        return left, top, left + side, top + side

    def apply(self, img: Image.Image, size: int) -> Image.Image:
        """``img`` cropped, then resized (bilinear) to ``size`` x ``size``."""
        box = self.crop_of(*img.size)
        if box is not None:
            img = img.crop(box)
        if not self.keep_aspect or img.size[0] == img.size[1]:
            return img.resize((size, size), Image.BILINEAR)
        width, height = img.size
        scale = size / min(width, height)
        wide, high = max(size, round(width * scale)), max(size, round(height * scale))
        img = img.resize((wide, high), Image.BILINEAR)
        left, top = (wide - size) // 2, (high - size) // 2
        return img.crop((left, top, left + size, top + size))
