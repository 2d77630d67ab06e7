"""The ``ocr/rapidocr`` backend: PP-OCR ONNX models run by onnxruntime, fully offline.

The ``rapidocr`` wheel ships the PP-OCRv6 small detection and recognition models and a
text-direction classifier (Apache-2.0), so nothing is downloaded. It reads printed Latin and
Chinese text well (signs, labels, scanned pages) at about 0.3-0.7 s per image on two CPU cores.

Filtering. On photographs without text the pipeline sometimes "reads" a glyph in texture
(a coin as "O", a cup as "8"). Measured on scikit-image photos at several scales and crops,
these were nearly all one- or two-character strings, sometimes with a high score (up to 0.96,
and 0.99 for an "8" whose box was the whole coffee photo), while rendered single characters
scored 0.99-1.0. So:

* lines of three or more characters need ``min_score`` (0.85: the best non-text line scored
  0.80, real lines 0.97-1.0; logos read with one wrong letter scored 0.83-0.89);
* lines of one or two characters need ``min_score_short`` (0.98), and are dropped when
  their box covers nearly the whole image (the detector found "text everywhere"); a
  legitimate single glyph that fills the whole crop is dropped too, the price of that rule;
* boxes shorter than ``min_height_px`` pixels are dropped (unreadably small).
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from vpd.errors import BackendError
from vpd.tools.backend import Availability
from vpd.tools.backends._common import OnnxBackend, require_fraction, require_range, to_bgr
from vpd.tools.types import TextLine

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["RapidOCRReader"]

#: Model files the rapidocr 3.x wheel ships for its default pipeline.
_BUNDLED_MODELS = ("PP-OCRv6_det_small.onnx", "PP-OCRv6_rec_small.onnx")
#: A short line (this many characters or fewer) must pass ``min_score_short``.
_SHORT = 2
#: A short line whose box spans at least this fraction of both image sides is dropped.
_WHOLE_IMAGE = 0.9


class RapidOCRReader(OnnxBackend):
    """Offline OCR with rapidocr (PP-OCRv6 small, ONNX, models inside the wheel).

    Options (checked when the backend is constructed; a bad value is a ConfigError):
        min_score: Lowest recognition score, in [0, 1], kept for lines of three or more characters.
        min_score_short: Lowest score, in [0, 1], kept for one- or two-character lines (see
            the module docstring for the measurements behind both thresholds).
        min_height_px: Boxes shorter than this many pixels (a number >= 0) are dropped.

    ``device="cuda"`` (or ``"cuda:N"``) asks onnxruntime for its CUDA provider, which needs
    the ``onnxruntime-gpu`` package; without it the reader falls back to the CPU with a
    warning. None, ``"auto"`` and ``"cpu"`` run on the CPU; any other device is a
    ConfigError. The models run in float32: ``dtype`` must be None or ``"float32"``. The
    model is never loaded by constructing the backend, only by the first :meth:`read_text` call.
    """

    capability: ClassVar[str] = "ocr"
    name: ClassVar[str] = "rapidocr"
    default_model: ClassVar[str | None] = "PP-OCRv6-small"
    requires: ClassVar[tuple[str, ...]] = ("rapidocr", "onnxruntime")
    extra: ClassVar[str | None] = None  # default dependencies of vpd: the hint names the packages
    description: ClassVar[str] = "rapidocr: PP-OCRv6 small ONNX models shipped in the wheel (offline; CPU by default)"
    option_defaults: ClassVar[dict[str, Any]] = {
        "min_score": 0.85,
        "min_score_short": 0.98,
        "min_height_px": 8,
    }

    # CPU by default (see the class docstring): CUDA only when asked for by name.
    auto_cuda: ClassVar[bool] = False

    def __init__(self, model: str | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        require_fraction(self, "min_score")
        require_fraction(self, "min_score_short")
        require_range(self, "min_height_px", 0.0)

    @classmethod
    def check_available(cls, model: str | None = None) -> Availability:
        """Dependencies installed and the bundled model files present (checked without importing rapidocr)."""
        deps = super().check_available(model)
        if not deps:
            return deps
        import importlib.util

        spec = importlib.util.find_spec("rapidocr")
        locations = list(spec.submodule_search_locations or []) if spec else []
        for location in locations:
            models = Path(location) / "models"
            if all((models / name).is_file() for name in _BUNDLED_MODELS):
                return Availability(True, f"rapidocr with its bundled models ({models})")
        return Availability(
            False, "the rapidocr package has no bundled models (reinstall it: pip install --force-reinstall rapidocr)"
        )

    def model_key(self) -> Hashable:
        """One engine per device; thresholds are applied afterwards, so they do not split the cache."""
        return ("rapidocr", self.model_id, self.onnx_device())

    def _load(self) -> tuple[Any, threading.Lock]:
        from rapidocr import RapidOCR

        params: dict[str, Any] = {
            "Global.log_level": "error",
            # Filter ourselves (see the module docstring): the engine is shared by readers
            # with different thresholds.
            "Global.text_score": 0.0,
        }
        device = self.onnx_device()  # "cuda:N" only when onnxruntime has its CUDA provider
        if device.startswith("cuda"):
            params["EngineConfig.onnxruntime.use_cuda"] = True
            params["EngineConfig.onnxruntime.cuda_ep_cfg.device_id"] = int(device.split(":")[1])
        try:
            engine = RapidOCR(params=params)
        except Exception as exc:
            raise BackendError(
                f"rapidocr failed to start: {exc}", capability=self.capability, backend=self.name
            ) from exc
        # One call at a time per engine: onnxruntime already uses every core for one image,
        # and rapidocr's pipeline object keeps per-call state we do not want to share.
        return engine, threading.Lock()

    def read_text(self, images: Sequence[Image]) -> list[list[TextLine]]:
        """Read the text lines in each image.

        Args:
            images: RGB PIL images.

        Returns:
            For each image its lines in reading order (top to bottom, then left to right),
            with axis-aligned boxes in the image's pixels. Images without text give ``[]``.

        Raises:
            BackendUnavailable: rapidocr or onnxruntime is not installed.
            BackendError: The OCR pipeline failed on an image.
        """
        if not images:
            return []
        engine, lock = self.load()
        results = []
        for image in images:
            array = _padded(to_bgr(image))
            try:
                with lock:
                    output = engine(array)
            except Exception as exc:
                raise BackendError(
                    f"rapidocr failed on a {image.width}x{image.height} image: {exc}",
                    capability=self.capability,
                    backend=self.name,
                ) from exc
            results.append(self._lines(output, image.width, image.height))
        return results

    def _lines(self, output: Any, width: int, height: int) -> list[TextLine]:
        """Convert rapidocr's output (``txts``, ``scores``, quadrilateral ``boxes``) to filtered TextLines."""
        texts = getattr(output, "txts", None)
        scores = getattr(output, "scores", None)
        boxes = getattr(output, "boxes", None)
        if texts is None or scores is None or boxes is None:
            return []
        lines = []
        for text, score, quad in zip(texts, scores, boxes):
            text = str(text).strip()
            box = _axis_aligned(quad, width, height)
            if not text or box is None:
                continue
            if self._keep(text, float(score), box, width, height):
                lines.append(TextLine(text=text, score=float(score), box=box))
        return lines

    def _keep(self, text: str, score: float, box: tuple[float, float, float, float], width: int, height: int) -> bool:
        x0, y0, x1, y1 = box
        if y1 - y0 < float(self.options["min_height_px"]):
            return False
        if len(text.replace(" ", "")) <= _SHORT:
            if score < float(self.options["min_score_short"]):
                return False
            return not (x1 - x0 >= _WHOLE_IMAGE * width and y1 - y0 >= _WHOLE_IMAGE * height)
        return score >= float(self.options["min_score"])


#: Longest side over shortest side of what the engine reads. Its detector scales an image's
#: short side up to 736 px, so a thin strip (1x64 px) would become a 736x47,104 input, many
#: seconds and gigabytes; padded to this aspect, no input exceeds 736x2,944.
MAX_ASPECT = 4


def _padded(array: Any) -> Any:
    """``array`` padded with white on the right or at the bottom to :data:`MAX_ASPECT` at most.

    Padding there leaves every text box where it was; boxes in the padding are clipped away.
    """
    import numpy as np

    height, width = array.shape[:2]
    if height > MAX_ASPECT * width:
        return np.pad(array, ((0, 0), (0, -(-height // MAX_ASPECT) - width), (0, 0)), constant_values=255)
    if width > MAX_ASPECT * height:
        return np.pad(array, ((0, -(-width // MAX_ASPECT) - height), (0, 0), (0, 0)), constant_values=255)
    return array


def _axis_aligned(quad: Any, width: int, height: int) -> tuple[float, float, float, float] | None:
    """The axis-aligned box around a quadrilateral, clipped to the image; None when empty."""
    import numpy as np

    points = np.asarray(quad, dtype=np.float64).reshape(-1, 2)
    if points.size == 0:
        return None
    x0 = float(np.clip(points[:, 0].min(), 0, width))
    y0 = float(np.clip(points[:, 1].min(), 0, height))
    x1 = float(np.clip(points[:, 0].max(), 0, width))
    y1 = float(np.clip(points[:, 1].max(), 0, height))
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1, y1)
