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

from vpd.tools.backends._common import (
    HubDetector,
    as_rgb,
    batches,
    box_tuple,
    nms,
    pixel_corners,
    require_fraction,
    require_positive_int,
    sigmoid,
)
from vpd.tools.types import Detection

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["OWLv2Detector"]


class OWLv2Detector(HubDetector):
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

    name: ClassVar[str] = "owlv2"
    default_model: ClassVar[str | None] = "google/owlv2-base-patch16-ensemble"
    description: ClassVar[str] = "OWLv2 open-vocabulary detector (transformers; any text query)"
    option_defaults: ClassVar[dict[str, Any]] = {"score_threshold": 0.1, "nms_iou": 0.3, "batch_size": 4}

    def __init__(self, model: str | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        require_fraction(self, "score_threshold")
        require_fraction(self, "nms_iou", upper=None)
        require_positive_int(self, "batch_size")

    def _load(self) -> tuple[Any, Any]:
        from transformers import Owlv2ForObjectDetection, Owlv2Processor

        processor = self.from_pretrained(Owlv2Processor)
        model = self.to_device(self.from_pretrained(Owlv2ForObjectDetection))
        return model, processor

    def _detect(
        self, images: Sequence[Image], queries: list[list[str]], todo: list[int], results: list[list[Detection]]
    ) -> None:
        model, processor = self.load()
        for chunk in batches(todo, int(self.options["batch_size"])):
            batch = self._run(model, processor, [images[i] for i in chunk], [queries[i] for i in chunk])
            for i, detections in zip(chunk, batch, strict=True):
                results[i] = detections

    def _run(self, model: Any, processor: Any, images: list[Image], queries: list[list[str]]) -> list[list[Detection]]:
        """One forward pass over a batch of images, each with its own (non-empty) queries."""
        import torch

        width = max(len(q) for q in queries)
        # Pad every image's query list to the same length; the padded columns are ignored below.
        padded = [q + [" "] * (width - len(q)) for q in queries]
        max_tokens = int(getattr(model.config.text_config, "max_position_embeddings", 16))
        rgb = [as_rgb(im) for im in images]
        with self.model_errors(f"OWLv2 failed on a batch of {len(images)} image(s)"):
            inputs = processor(
                text=padded,
                images=rgb,
                return_tensors="pt",
                padding="max_length",
                truncation=True,
                max_length=max_tokens,
            )
            with torch.inference_mode():
                outputs = model(**self.model_inputs(inputs))
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
    scores_all = sigmoid(logits)
    labels = scores_all.argmax(axis=1)
    scores = scores_all[np.arange(len(labels)), labels]
    side = float(max(width, height))  # the padded square's side, in real-image pixels
    corners = pixel_corners(boxes, scale=(side, side), width=width, height=height)
    # Boxes that lie entirely in the padding collapse to nothing once clipped.
    keep = (scores > score_threshold) & (corners[:, 2] > corners[:, 0]) & (corners[:, 3] > corners[:, 1])
    idx = np.flatnonzero(keep)
    if nms_iou < 1.0 and idx.size:
        kept = idx[nms(corners[idx], scores[idx], labels[idx], nms_iou)]
        # Grouped by query before the sort by score, so that equal scores stay in query order.
        idx = kept[np.argsort(labels[kept], kind="stable")]
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    return [(box_tuple(corners[i]), float(scores[i]), int(labels[i])) for i in idx]
