"""The ``ocr/paddleocr`` backend: PaddleOCR 3.x (PP-OCRv5 models on PaddlePaddle).

PaddleOCR downloads its models on first use into PaddleX's cache
(``$PADDLE_PDX_CACHE_HOME/official_models/<model name>``, by default ``~/.paddlex``), so
it needs the network once; after that it runs offline. Use rapidocr (installed with vpd)
when the model servers are unreachable.

The model id names the detection and recognition models:

* ``"PP-OCRv5_mobile"`` (default) or ``"PP-OCRv5_server"``: the ``_det``/``_rec`` pair;
* ``"<det model>+<rec model>"``, e.g. ``"PP-OCRv5_mobile_det+en_PP-OCRv5_mobile_rec"``.

Alternatively the ``lang`` / ``ocr_version`` options let PaddleOCR pick the models for a
language (then the model id is ignored, and :meth:`PaddleOCRReader.check_available` cannot
tell offline which models that choice needs), and ``det_model_dir`` / ``rec_model_dir``
point at exported models on disk.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from vpd.errors import BackendError, BackendUnavailable
from vpd.tools.backend import Availability, Backend
from vpd.tools.types import TextLine

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["PaddleOCRReader", "model_names", "paddlex_model_dir", "parse_result"]


def model_names(model: str) -> tuple[str, str]:
    """``(detection model, recognition model)`` for a model id (see the module docstring)."""
    if "+" in model:
        det, _, rec = model.partition("+")
        return det.strip(), rec.strip()
    return f"{model}_det", f"{model}_rec"


def paddlex_model_dir() -> Path:
    """Where PaddleX keeps downloaded models: ``$PADDLE_PDX_CACHE_HOME/official_models``.

    This is PaddleX 3.x's layout as documented; other versions may differ, in which case
    pass ``det_model_dir``/``rec_model_dir`` explicitly.
    """
    home = os.environ.get("PADDLE_PDX_CACHE_HOME") or str(Path.home() / ".paddlex")
    return Path(home).expanduser() / "official_models"


def parse_result(result: Any, width: int, height: int, *, min_score: float = 0.0) -> list[TextLine]:
    """Convert one PaddleOCR 3.x result to TextLines.

    Args:
        result: One item of ``PaddleOCR.predict(...)``: a dict-like ``OCRResult`` with
            ``rec_texts``, ``rec_scores`` and ``rec_boxes`` (``N x 4`` ``x0, y0, x1, y1``)
            or ``rec_polys`` (``N`` quadrilaterals); a ``{"res": {...}}`` wrapper (its
            ``.json`` form) works too.
        width: Image width, to clip boxes.
        height: Image height, to clip boxes.
        min_score: Lines scoring lower are dropped.

    Returns:
        The lines in PaddleOCR's order, with axis-aligned boxes.
    """
    import numpy as np

    data = _as_mapping(result)
    texts = list(data.get("rec_texts") or [])
    scores = list(_as_list(data.get("rec_scores")))
    boxes = _as_list(data.get("rec_boxes"))
    if len(boxes) != len(texts):
        boxes = [_quad_to_box(poly) for poly in _as_list(data.get("rec_polys"))]
    lines = []
    for text, score, box in zip(texts, scores, boxes):
        text = str(text).strip()
        if not text or float(score) < min_score:
            continue
        x0, y0, x1, y1 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(-1)[:4])
        x0, x1 = float(np.clip(x0, 0, width)), float(np.clip(x1, 0, width))
        y0, y1 = float(np.clip(y0, 0, height)), float(np.clip(y1, 0, height))
        if x1 > x0 and y1 > y0:
            lines.append(TextLine(text=text, score=float(score), box=(x0, y0, x1, y1)))
    return lines


def _as_mapping(result: Any) -> Mapping[str, Any]:
    if isinstance(result, Mapping):
        inner = result.get("res")
        return inner if isinstance(inner, Mapping) and "rec_texts" not in result else result
    as_json = getattr(result, "json", None)
    if isinstance(as_json, Mapping):
        return _as_mapping(as_json)
    raise BackendError(
        f"Unexpected PaddleOCR result type {type(result).__name__}", capability="ocr", backend="paddleocr"
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value)


def _quad_to_box(poly: Any) -> tuple[float, float, float, float]:
    import numpy as np

    points = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
    return (float(points[:, 0].min()), float(points[:, 1].min()), float(points[:, 0].max()), float(points[:, 1].max()))


class PaddleOCRReader(Backend):
    """OCR with PaddleOCR 3.x (``PaddleOCR(...).predict``), models from PaddleX's cache or a download.

    Options:
        min_score: Lowest recognition score kept.
        lang: Let PaddleOCR pick models for a language (``"en"``, ``"ch"``, ``"fr"``...); overrides the model id.
        ocr_version: With ``lang``: ``"PP-OCRv5"``, ``"PP-OCRv4"`` or ``"PP-OCRv3"``.
        det_model_dir: A local text-detection model directory (overrides the name).
        rec_model_dir: A local text-recognition model directory (overrides the name).
        use_textline_orientation: Classify and fix upside-down text lines (one more model).
        batch_size: Images per ``predict`` call.
    """

    capability: ClassVar[str] = "ocr"
    name: ClassVar[str] = "paddleocr"
    default_model: ClassVar[str | None] = "PP-OCRv5_mobile"
    requires: ClassVar[tuple[str, ...]] = ("paddleocr", "paddle")
    extra: ClassVar[str | None] = "paddle"
    description: ClassVar[str] = "PaddleOCR 3.x (PP-OCRv5); downloads its models on first use"
    option_defaults: ClassVar[dict[str, Any]] = {
        "min_score": 0.5,
        "lang": None,
        "ocr_version": None,
        "det_model_dir": None,
        "rec_model_dir": None,
        "use_textline_orientation": False,
        "batch_size": 8,
    }

    @classmethod
    def check_available(cls, model: str | None = None) -> Availability:
        """Dependencies installed and both models in PaddleX's cache (never downloads)."""
        deps = super().check_available(model)
        if not deps:
            return deps
        det, rec = model_names(model or cls.default_model or "PP-OCRv5_mobile")
        cache = paddlex_model_dir()
        missing = [name for name in (det, rec) if not (cache / name).is_dir()]
        if missing:
            return Availability(
                False,
                f"{', '.join(missing)} not in {cache} (PaddleOCR downloads it on first use when online; "
                "or pass det_model_dir/rec_model_dir)",
            )
        return Availability(True, f"{det} and {rec} in {cache}")

    def model_key(self) -> Hashable:
        """Everything that changes which models are loaded, without probing devices through torch."""
        o = self.options
        return (
            "paddleocr",
            self.model_id,
            o["lang"],
            o["ocr_version"],
            o["det_model_dir"],
            o["rec_model_dir"],
            bool(o["use_textline_orientation"]),
            self._paddle_device(),
        )

    def _paddle_device(self) -> str | None:
        """Paddle's device string (``"cpu"``, ``"gpu:0"``) or None to let Paddle choose."""
        requested = (self.requested_device or "").lower()
        if requested in ("", "auto"):
            return None
        if requested.startswith("cuda"):
            return "gpu" + requested[4:]
        return requested

    def _load(self) -> Any:
        try:
            from paddleocr import PaddleOCR
        except ImportError as exc:
            raise BackendUnavailable(
                f"paddleocr could not be imported ({exc}): pip install 'vpd[paddle]'",
                capability="ocr",
                backend=self.name,
            ) from exc
        o = self.options
        kwargs: dict[str, Any] = {
            # Document-photo preprocessing (orientation, unwarping) is for scanned pages, not crops.
            "use_doc_orientation_classify": False,
            "use_doc_unwarping": False,
            "use_textline_orientation": bool(o["use_textline_orientation"]),
        }
        if o["det_model_dir"] or o["rec_model_dir"]:
            kwargs["text_detection_model_dir"] = o["det_model_dir"]
            kwargs["text_recognition_model_dir"] = o["rec_model_dir"]
        elif o["lang"] or o["ocr_version"]:
            kwargs["lang"] = o["lang"]
            kwargs["ocr_version"] = o["ocr_version"]
        else:
            det, rec = model_names(self.model_id or "PP-OCRv5_mobile")
            kwargs["text_detection_model_name"] = det
            kwargs["text_recognition_model_name"] = rec
        device = self._paddle_device()
        if device is not None:
            kwargs["device"] = device
        try:
            return PaddleOCR(**kwargs)
        except Exception as exc:  # failed downloads surface as many different types
            raise BackendUnavailable(
                f"PaddleOCR could not load its models ({type(exc).__name__}: {exc}). It downloads them on first use "
                f"into {paddlex_model_dir()}; run it once where the model servers are reachable, or use the offline "
                "rapidocr backend (VPD_OCR=rapidocr).",
                capability=self.capability,
                backend=self.name,
            ) from exc

    def read_text(self, images: Sequence[Image]) -> list[list[TextLine]]:
        """Read the text lines in each image.

        Args:
            images: RGB PIL images.

        Returns:
            For each image its lines (above ``min_score``) with axis-aligned boxes.

        Raises:
            BackendUnavailable: paddleocr/paddlepaddle missing, or models neither cached nor downloadable.
            BackendError: PaddleOCR failed on the images.
        """
        if not images:
            return []
        import numpy as np

        engine = self.load()
        batch_size = max(1, int(self.options["batch_size"]))
        results: list[list[TextLine]] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            # PaddleX reads arrays as OpenCV does: BGR.
            arrays = [np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8)[:, :, ::-1]) for img in chunk]
            try:
                outputs = list(engine.predict(arrays))
            except Exception as exc:
                raise BackendError(f"PaddleOCR failed: {exc}", capability=self.capability, backend=self.name) from exc
            if len(outputs) != len(chunk):
                raise BackendError(
                    f"PaddleOCR returned {len(outputs)} results for {len(chunk)} images",
                    capability=self.capability,
                    backend=self.name,
                )
            for img, output in zip(chunk, outputs):
                results.append(parse_result(output, img.width, img.height, min_score=float(self.options["min_score"])))
        return results
