"""Small images with known content, for tests, examples and benchmarks (no download)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["noise_image", "street_sign"]


def street_sign() -> Image:
    """A 640x360 photo-like test image: a white sign reading "STOP 42" over "Main St." on a grey wall.

    The sign spans x 120..520, y 100..260 (top-left origin); "STOP 42" is the upper line.
    """
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (640, 360), (120, 120, 120))
    draw = ImageDraw.Draw(image)
    draw.rectangle((120, 100, 520, 260), fill=(250, 250, 250), outline=(0, 0, 0), width=4)
    draw.text((160, 130), "STOP 42", fill=(0, 0, 0), font=ImageFont.load_default(size=64))
    draw.text((170, 205), "Main St.", fill=(0, 0, 0), font=ImageFont.load_default(size=40))
    return image


def noise_image(width: int, height: int, seed: int = 0) -> Image:
    """A ``width`` x ``height`` RGB image of uniform random pixels (deterministic per seed)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
