"""Images for rendered views: size-capped data URLs, boxes drawn and numbered, crop thumbnails.

Boxes are ``[x0, y0, x1, y1]`` pixels of the image the program ran on (top-left origin);
when the image given for rendering has another size (e.g. the original before vpd
downscaled it), boxes are scaled by the ratio of the sizes.

Pillow is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from vpd.image import ImageData, ImageSource
    from vpd.render.view import BoxView

__all__ = ["annotate", "crop_thumbnail", "data_url", "load_for_render", "placeholder"]

#: Most boxes labelled with their number and label; beyond, numbers only.
_LABELLED = 12


def load_for_render(image: ImageSource | None) -> ImageData | None:
    """The image as :class:`~vpd.ImageData` (None stays None)."""
    if image is None:
        return None
    from vpd.image import load_image

    return load_image(image)


def fit(pil: PILImage.Image, max_side: int) -> PILImage.Image:
    """``pil`` downscaled (aspect kept) so that its longer side is at most ``max_side``."""
    from PIL import Image

    side = max(pil.width, pil.height)
    if side <= max_side:
        return pil
    factor = max_side / side
    size = (max(1, round(pil.width * factor)), max(1, round(pil.height * factor)))
    return pil.resize(size, Image.Resampling.LANCZOS)


def data_url(pil: PILImage.Image, *, max_side: int = 640, max_bytes: int = 150_000, quality: int = 85) -> str:
    """A ``data:`` URL of the image, at most ``max_side`` pixels on a side and about ``max_bytes``.

    Small images of few colours are PNG when that is smaller (a photo's PNG is many times its
    JPEG, and slow to optimise, so it is not tried); others JPEG, whose quality and then size
    are lowered until the encoding fits ``max_bytes``.

    Args:
        pil: The image.
        max_side: Longest side, in pixels.
        max_bytes: Target size of the encoded image.
        quality: Starting JPEG quality.

    Returns:
        ``data:image/jpeg;base64,...`` or ``data:image/png;base64,...``.
    """
    image = fit(pil.convert("RGB"), max_side)
    encoded, mime = _jpeg(image, quality), "image/jpeg"
    pixels = image.width * image.height
    if pixels <= 64 * 64 or (pixels <= 256 * 256 and image.getcolors(4096) is not None):
        png = io.BytesIO()
        image.save(png, format="PNG", optimize=True)
        if png.tell() < len(encoded):
            encoded, mime = png.getvalue(), "image/png"
    while len(encoded) > max_bytes and mime == "image/jpeg":
        if quality > 55:
            quality -= 15
        elif max(image.width, image.height) > 64:
            image = fit(image, int(max(image.width, image.height) * 0.75))
        else:
            break
        encoded = _jpeg(image, quality)
    return f"data:{mime};base64,{base64.b64encode(encoded).decode('ascii')}"


def _jpeg(image: PILImage.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()


def placeholder(size: tuple[int, int] | None) -> PILImage.Image:
    """A light grey canvas of the image's size (shape kept), for views without the image."""
    from PIL import Image

    width, height = size if size and size[0] > 0 and size[1] > 0 else (640, 480)
    factor = min(1.0, 640 / max(width, height))
    return Image.new("RGB", (max(1, round(width * factor)), max(1, round(height * factor))), (226, 228, 232))


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def annotate(
    pil: PILImage.Image, boxes: Sequence[BoxView], trace_size: tuple[int, int] | None, *, max_side: int = 640
) -> PILImage.Image:
    """A copy of the image, downscaled to ``max_side``, with the boxes drawn and numbered.

    Args:
        pil: The image (any size: boxes are scaled from ``trace_size`` to it).
        boxes: The boxes, ``[x0, y0, x1, y1]`` in the trace's pixels, top-left origin.
        trace_size: ``(width, height)`` of the image the program ran on (None: ``pil``'s).
        max_side: Longest side of the result.

    Returns:
        The annotated image. The first 12 boxes carry "number label", later ones their number.
    """
    from PIL import ImageDraw

    image = fit(pil.convert("RGB"), max_side).copy()
    source = trace_size if trace_size and trace_size[0] > 0 and trace_size[1] > 0 else (pil.width, pil.height)
    sx, sy = image.width / source[0], image.height / source[1]
    draw = ImageDraw.Draw(image)
    stroke = max(2, round(max(image.size) / 320))
    font = _font(max(11, round(max(image.size) / 45)))
    for index, box in enumerate(boxes):
        x0, y0, x1, y1 = (box.box[0] * sx, box.box[1] * sy, box.box[2] * sx, box.box[3] * sy)
        x0, x1 = sorted((x0, x1))
        y0, y1 = sorted((y0, y1))
        draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=box.color, width=stroke)
        text = f"{box.n} {box.label}" if index < _LABELLED else str(box.n)
        text = text.encode("ascii", "replace").decode("ascii")  # the drawing font has no other glyphs
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left + 6, bottom - top + 4
        ty = y0 - th if y0 - th >= 0 else y0
        tx = min(max(0.0, x0), max(0.0, image.width - tw))
        draw.rectangle((tx, ty, tx + tw, ty + th), fill=box.color)
        draw.text((tx + 3 - left, ty + 2 - top), text, fill="white", font=font)
    return image


def crop_thumbnail(
    pil: PILImage.Image, box: Sequence[float], trace_size: tuple[int, int] | None, *, side: int = 112
) -> PILImage.Image | None:
    """The region ``box`` of the image as a thumbnail (None when the region is empty)."""
    source = trace_size if trace_size and trace_size[0] > 0 and trace_size[1] > 0 else (pil.width, pil.height)
    sx, sy = pil.width / source[0], pil.height / source[1]
    x0, y0 = max(0, round(box[0] * sx)), max(0, round(box[1] * sy))
    x1, y1 = min(pil.width, round(box[2] * sx)), min(pil.height, round(box[3] * sy))
    if x1 <= x0 or y1 <= y0:
        return None
    return fit(pil.crop((x0, y0, x1, y1)).convert("RGB"), side)
