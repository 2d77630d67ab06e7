"""Open-vocabulary detection with OWLv2 (Hugging Face ``transformers``).

OWLv2 predicts one box per image patch and scores every box against every text query.
Two details matter for correct results:

* The image processor pads each image to a **square** (bottom and right) before resizing,
  so the predicted boxes are normalised to the padded square, not to the image. Boxes are
  therefore scaled by ``max(height, width)`` and then clipped to the real image; scaling by
  ``(width, height)`` would squash every box of a non-square image.
* Images of one batch may have different numbers of queries. The shorter query lists
  are padded with blank queries (as the processor itself would do), which the model does
  *not* mask out, so the padded columns are dropped here before any box is labelled.

OWLv2's text encoder reads at most 16 tokens: longer queries are truncated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from vpd.errors import ConfigError, InvalidArgumentError, ToolError
from vpd.tools.hub import HubBackend
from vpd.tools.types import Detection

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["OWLv2Detector"]


class OWLv2Detector(HubBackend):
    """Open-vocabulary object detector: OWLv2 (``Owlv2ForObjectDetection``).

    Each box is labelled with the query it scores highest on (among that image's queries),
    kept when that score exceeds ``score_threshold``, and suppressed by per-query
    non-maximum suppression.

    Options:
        score_threshold: Minimum sigmoid score of a kept box (0.1 is OWLv2's usual value).
        nms_iou: IoU above which the weaker of two boxes with the same label is dropped;
            1.0 or more disables suppression.
        batch_size: Images per forward pass.
    """

    capability: ClassVar[str] = "detect"
    name: ClassVar[str] = "owlv2"
    default_model: ClassVar[str | None] = "google/owlv2-base-patch16-ensemble"
    description: ClassVar[str] = "OWLv2 open-vocabulary detector (transformers; any text query)"
    option_defaults: ClassVar[dict[str, Any]] = {"score_threshold": 0.1, "nms_iou": 0.3, "batch_size": 4}

    def __init__(self, model: str | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        _check_fraction(self, "score_threshold")
        _check_fraction(self, "nms_iou", upper=None)
        _check_batch_size(self)

    def _load(self) -> tuple[Any, Any]:
        from transformers import Owlv2ForObjectDetection, Owlv2Processor

        processor = self.from_pretrained(Owlv2Processor)
        model = self.to_device(self.from_pretrained(Owlv2ForObjectDetection))
        return model, processor

    def detect(self, images: Sequence[Image], queries: Sequence[Sequence[str]]) -> list[list[Detection]]:
        """Detect the queried objects in each image.

        Args:
            images: RGB images.
            queries: For each image, the object names to look for (lists may differ in length).

        Returns:
            For each image, its detections (boxes in that image's pixels, top-left origin),
            best first; ``label`` is the query exactly as given.

        Raises:
            InvalidArgumentError: Mismatched lengths, or an empty/blank query.
            ToolUnavailable: The model cannot be loaded.
            ToolError: The model failed while running.
        """
        per_image = _check_inputs(images, queries)
        results: list[list[Detection]] = [[] for _ in images]
        # Images without queries need no forward pass.
        todo = [i for i, q in enumerate(per_image) if q]
        if not todo:
            return results
        model, processor = self.load()
        size = int(self.options["batch_size"])
        for start in range(0, len(todo), size):
            chunk = todo[start : start + size]
            batch = self._run(model, processor, [images[i] for i in chunk], [per_image[i] for i in chunk])
            for i, detections in zip(chunk, batch, strict=True):
                results[i] = detections
        return results

    def _run(self, model: Any, processor: Any, images: list[Image], queries: list[list[str]]) -> list[list[Detection]]:
        """One forward pass over a batch of images, each with its own (non-empty) queries."""
        import torch

        width = max(len(q) for q in queries)
        # Pad every image's query list to the same length; the padded columns are ignored below.
        padded = [q + [" "] * (width - len(q)) for q in queries]
        max_tokens = int(getattr(model.config.text_config, "max_position_embeddings", 16))
        rgb = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
        try:
            inputs = processor(
                text=padded,
                images=rgb,
                return_tensors="pt",
                padding="max_length",
                truncation=True,
                max_length=max_tokens,
            )
            inputs = _to_model(inputs, self.device, self.torch_dtype)
            with torch.inference_mode():
                outputs = model(**inputs)
        except (RuntimeError, ValueError) as exc:
            raise ToolError(
                f"OWLv2 failed on a batch of {len(images)} image(s): {exc}", tool=self.capability, backend=self.name
            ) from exc
        logits = outputs.logits.float().cpu().numpy()
        boxes = outputs.pred_boxes.float().cpu().numpy()
        results = []
        for i, image in enumerate(rgb):
            kept = postprocess(
                logits[i, :, : len(queries[i])],
                boxes[i],
                width=image.width,
                height=image.height,
                score_threshold=float(self.options["score_threshold"]),
                nms_iou=float(self.options["nms_iou"]),
            )
            results.append([Detection(box=box, score=score, label=queries[i][q]) for box, score, q in kept])
        return results


def postprocess(
    logits: np.ndarray,
    boxes: np.ndarray,
    *,
    width: int,
    height: int,
    score_threshold: float,
    nms_iou: float,
) -> list[tuple[tuple[float, float, float, float], float, int]]:
    """Turn OWLv2's raw outputs for one image into labelled pixel boxes.

    Args:
        logits: ``(num_boxes, num_queries)`` class logits, real queries only.
        boxes: ``(num_boxes, 4)`` ``(cx, cy, w, h)`` normalised to the *padded square* image.
        width: Width of the real image in pixels.
        height: Height of the real image in pixels.
        score_threshold: Minimum sigmoid score.
        nms_iou: IoU threshold of the per-query suppression (>= 1 disables it).

    Returns:
        ``(box, score, query_index)`` triples, best first; boxes are ``(x0, y0, x1, y1)``
        in pixels of the real image, clipped to it.
    """
    if logits.size == 0:
        return []
    # Clipped so that exp() cannot overflow on very negative logits.
    scores_all = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -60.0, 60.0)))
    labels = scores_all.argmax(axis=1)
    scores = scores_all[np.arange(len(labels)), labels]
    side = float(max(width, height))  # the padded square's side, in real-image pixels
    cx, cy, w, h = (boxes[:, k].astype(np.float64) for k in range(4))
    corners = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1) * side
    corners[:, [0, 2]] = corners[:, [0, 2]].clip(0.0, width)
    corners[:, [1, 3]] = corners[:, [1, 3]].clip(0.0, height)
    # Boxes that lie entirely in the padding collapse to nothing once clipped.
    keep = (scores > score_threshold) & (corners[:, 2] > corners[:, 0]) & (corners[:, 3] > corners[:, 1])
    idx = np.flatnonzero(keep)
    if nms_iou < 1.0 and idx.size:
        survivors = []
        for query in np.unique(labels[idx]):
            same = idx[labels[idx] == query]
            survivors.append(same[_nms(corners[same], scores[same], nms_iou)])
        idx = np.concatenate(survivors)
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    return [(_pixel_box(corners[i]), float(scores[i]), int(labels[i])) for i in idx]


def _pixel_box(row: np.ndarray) -> tuple[float, float, float, float]:
    return (float(row[0]), float(row[1]), float(row[2]), float(row[3]))


def _nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns the indices kept, best first."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept = []
    while order.size:
        best, rest = order[0], order[1:]
        kept.append(best)
        x0 = np.maximum(boxes[best, 0], boxes[rest, 0])
        y0 = np.maximum(boxes[best, 1], boxes[rest, 1])
        x1 = np.minimum(boxes[best, 2], boxes[rest, 2])
        y1 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = (x1 - x0).clip(0) * (y1 - y0).clip(0)
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-12)
        order = rest[iou <= iou_threshold]
    return np.asarray(kept, dtype=np.int64)


def _check_inputs(images: Sequence[Image], queries: Sequence[Sequence[str]]) -> list[list[str]]:
    """Validate a detect() call; return each image's queries, de-duplicated."""
    if len(images) != len(queries):
        raise InvalidArgumentError(f"detect() got {len(images)} image(s) but {len(queries)} query list(s).")
    cleaned = []
    for i, image_queries in enumerate(queries):
        if isinstance(image_queries, str):
            raise InvalidArgumentError(f"queries[{i}] must be a list of strings, not the string {image_queries!r}.")
        seen: list[str] = []
        for query in image_queries:
            if not isinstance(query, str) or not query.strip():
                raise InvalidArgumentError(f"queries[{i}] has an empty or non-string query {query!r}; name an object.")
            if query not in seen:
                seen.append(query)
        cleaned.append(seen)
    return cleaned


def _check_fraction(backend: HubBackend, option: str, upper: float | None = 1.0) -> None:
    """Raise ConfigError unless the option is a number in [0, upper]."""
    value = backend.options[option]
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value < 0
        or (upper is not None and value > upper)
    ):
        bound = f"[0, {upper}]" if upper is not None else ">= 0"
        raise ConfigError(
            f"Option {option} of the {backend.capability} backend {backend.name!r} must be a number {bound}, "
            f"got {value!r}."
        )


def _check_batch_size(backend: HubBackend) -> None:
    """Raise ConfigError unless batch_size is a positive integer."""
    value = backend.options["batch_size"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"Option batch_size of the {backend.capability} backend {backend.name!r} must be a positive integer, "
            f"got {value!r}."
        )


def _to_model(inputs: Any, device: str, dtype: Any) -> dict[str, Any]:
    """Move processor outputs to the model's device; floating tensors also take its dtype."""
    moved = {}
    for key, value in inputs.items():
        if hasattr(value, "to"):
            value = value.to(device=device, dtype=dtype) if value.is_floating_point() else value.to(device)
        moved[key] = value
    return moved
