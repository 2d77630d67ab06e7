"""Loading and normalising images.

Every image that enters vpd goes through :func:`load_image`, which returns an
:class:`ImageData`: an 8-bit RGB ``PIL.Image`` plus a content hash (the key of the
tool-result cache) and a record of what normalisation did (mode conversion, EXIF
rotation, downscaling of very large images).
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from vpd.errors import ImageError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image as PILImage

__all__ = ["DEFAULT_MAX_PIXELS", "ImageData", "ImageSource", "load_image"]

#: Images with more pixels than this are downscaled (aspect kept) when loaded; the
#: factor is recorded in :attr:`ImageData.scale`. 4096 x 4096 keeps every tool's memory bounded.
DEFAULT_MAX_PIXELS = 4096 * 4096

ImageSource = Union[str, os.PathLike, bytes, "PILImage.Image", "np.ndarray", "ImageData"]


@dataclass(frozen=True, eq=False)
class ImageData:
    """An RGB image ready for the tools, with its content hash and provenance.

    Attributes:
        pil: The image as an 8-bit RGB ``PIL.Image.Image``. Treat it as read-only.
        sha256: Hex digest of the RGB pixels and size; identical pixels give identical keys.
        original_size: ``(width, height)`` before any downscaling.
        scale: Factor applied to the original (1.0 when not resized); box coordinates are
            in the resized image, multiply by ``1 / scale`` to get original pixels.
        source: Where the image came from (a path, ``"bytes"``, ``"array"`` or ``"pil"``).
        notes: What normalisation did, e.g. ``("mode RGBA -> RGB", "resized 0.5")``.
    """

    pil: PILImage.Image
    sha256: str
    original_size: tuple[int, int]
    scale: float = 1.0
    source: str = "pil"
    notes: tuple[str, ...] = field(default=())

    @property
    def width(self) -> int:
        """Width in pixels."""
        return int(self.pil.width)

    @property
    def height(self) -> int:
        """Height in pixels."""
        return int(self.pil.height)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return (self.width, self.height)

    def to_numpy(self) -> np.ndarray:
        """Return an ``H x W x 3`` uint8 array (a fresh copy)."""
        import numpy as np

        return np.asarray(self.pil, dtype=np.uint8).copy()

    def crop(self, box: tuple[int, int, int, int]) -> PILImage.Image:
        """Return the pixels inside ``box = (x0, y0, x1, y1)`` (top-left origin, x1/y1 exclusive)."""
        return self.pil.crop(box)

    def __repr__(self) -> str:
        return f"ImageData({self.width}x{self.height}, sha256={self.sha256[:12]}, source={self.source!r})"


def _digest(pil: PILImage.Image) -> str:
    h = hashlib.sha256()
    h.update(f"{pil.width}x{pil.height}:".encode())
    h.update(pil.tobytes())
    return h.hexdigest()


def _from_array(array: Any) -> PILImage.Image:
    import numpy as np
    from PIL import Image

    arr = np.asarray(array)
    if arr.size == 0:
        raise ImageError("The image array is empty; pass an H x W or H x W x C array with pixels.")
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[2] > 4:
        arr = np.moveaxis(arr, 0, -1)  # CHW (torch layout) -> HWC
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(
            f"Cannot read an image from an array of shape {arr.shape}; "
            "expected H x W (grey), H x W x 3 (RGB) or H x W x 4 (RGBA)."
        )
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageError("The image array contains NaN or infinite values.")
        high = 1.0 if arr.max() <= 1.0 else 255.0
        arr = np.clip(arr / high * 255.0, 0, 255).round().astype(np.uint8)
    elif arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.integer):
            raise ImageError(f"Unsupported image array dtype {arr.dtype}; use uint8, uint16 or float.")
        # 16-bit (or other integer) images: scale the dtype's range to 8 bits.
        top = 65535 if arr.max() > 255 else 255
        arr = np.clip(arr.astype(np.float64) / top * 255.0, 0, 255).round().astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr))


def _to_rgb(pil: PILImage.Image, notes: list[str]) -> PILImage.Image:
    import numpy as np
    from PIL import Image

    mode = pil.mode
    if mode == "RGB":
        return pil
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(pil).astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        if mode == "F" and arr.max() <= 1.0:
            top = 1.0
        pil = Image.fromarray(np.clip(arr / top * 255.0, 0, 255).round().astype(np.uint8), "L")
        notes.append(f"mode {mode} -> 8-bit")
        mode = "L"
    if mode == "P" and "transparency" in pil.info:
        pil = pil.convert("RGBA")
    if pil.mode in ("RGBA", "LA", "PA") or (pil.mode == "RGBa"):
        rgba = pil.convert("RGBA")
        # Composite over white: transparent pixels must not turn into arbitrary colours.
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        out = Image.alpha_composite(background, rgba).convert("RGB")
        notes.append(f"mode {mode} -> RGB over white")
        return out
    notes.append(f"mode {mode} -> RGB")
    return pil.convert("RGB")


def load_image(source: ImageSource, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageData:
    """Load an image from a path, bytes, ``PIL.Image``, numpy array or :class:`ImageData`.

    Grayscale, palette, RGBA (composited over white), 16-bit and float images become 8-bit
    RGB; EXIF orientation is applied; an image larger than ``max_pixels`` is downscaled
    (aspect kept) and the factor recorded in :attr:`ImageData.scale`.

    Args:
        source: A file path, encoded image bytes, a PIL image, an ``H x W[ x C]`` array
            (uint8, uint16, bool or float in [0, 1] / [0, 255]) or an existing ImageData.
        max_pixels: Downscale above this many pixels; ``None`` disables the bound.

    Returns:
        The normalised image.

    Raises:
        ImageError: The file is missing or unreadable, the bytes are not an image, or the
            array has an unusable shape or dtype.
    """
    if isinstance(source, ImageData):
        if max_pixels is None or source.width * source.height <= max_pixels:
            return source
        return _finish(source.pil, source.source, [*source.notes], source.original_size, source.scale, max_pixels)
    try:
        from PIL import Image, ImageOps, UnidentifiedImageError
    except ImportError as exc:  # pragma: no cover - pillow is a core dependency
        raise ImageError("Pillow is required to load images: pip install pillow") from exc

    notes: list[str] = []
    if isinstance(source, str) and source.startswith(("http://", "https://", "data:")):
        raise ImageError(
            "vpd does not download images or decode URLs; fetch the image first and pass its path or bytes."
        )
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ImageError(
                f"Image file not found: {str(path)!r}. Check the path (relative paths are from {os.getcwd()!r})."
            )
        if path.is_dir():
            raise ImageError(f"{str(path)!r} is a directory, not an image file.")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageError(f"Cannot read image file {str(path)!r}: {exc.strerror or exc}.") from exc
        pil = _decode(data, str(path), Image, UnidentifiedImageError)
        origin = str(path)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        pil = _decode(bytes(source), "the given bytes", Image, UnidentifiedImageError)
        origin = "bytes"
    elif isinstance(source, Image.Image):
        pil = source
        origin = "pil"
    elif hasattr(source, "__array__") or hasattr(source, "shape"):
        if hasattr(source, "detach"):  # a torch tensor
            source = source.detach().cpu().numpy()
        pil = _from_array(source)
        origin = "array"
    else:
        raise ImageError(
            f"Cannot load an image from a {type(source).__name__}; pass a file path, bytes, "
            "a PIL.Image, a numpy array or vpd.ImageData."
        )
    if pil.width < 1 or pil.height < 1:
        raise ImageError(f"The image has no pixels ({pil.width}x{pil.height}).")
    try:
        transposed = ImageOps.exif_transpose(pil)
        if transposed is not None and transposed is not pil:
            if transposed.size != pil.size or transposed.tobytes() != pil.tobytes():
                notes.append("EXIF orientation applied")
            pil = transposed
        if getattr(pil, "n_frames", 1) > 1:
            notes.append("first frame of an animated image")
        pil = _to_rgb(pil, notes)
        pil.load()
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"The image from {origin!r} is corrupt or truncated: {exc}.") from exc
    return _finish(pil, origin, notes, (pil.width, pil.height), 1.0, max_pixels)


def _decode(data: bytes, where: str, image_module: Any, unidentified: type[Exception]) -> PILImage.Image:
    if not data:
        raise ImageError(f"No image data in {where} (0 bytes).")
    try:
        pil = image_module.open(io.BytesIO(data))
        pil.load()  # decode now so truncation errors surface here, with a clear message
    except unidentified as exc:
        raise ImageError(f"{where} is not a readable image (unknown format or corrupt header).") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{where} is corrupt or truncated: {exc}.") from exc
    except image_module.DecompressionBombError as exc:
        raise ImageError(f"{where} is too large to decode safely: {exc}") from exc
    return pil


def _finish(
    pil: PILImage.Image,
    origin: str,
    notes: list[str],
    original_size: tuple[int, int],
    scale: float,
    max_pixels: int | None,
) -> ImageData:
    if max_pixels is not None and pil.width * pil.height > max_pixels:
        from PIL import Image

        factor = (max_pixels / (pil.width * pil.height)) ** 0.5
        new_size = (max(1, int(pil.width * factor)), max(1, int(pil.height * factor)))
        pil = pil.resize(new_size, Image.Resampling.LANCZOS)
        scale = new_size[0] / original_size[0]
        notes.append(f"resized {original_size[0]}x{original_size[1]} -> {new_size[0]}x{new_size[1]}")
    return ImageData(
        pil=pil, sha256=_digest(pil), original_size=original_size, scale=scale, source=origin, notes=tuple(notes)
    )
