"""The ``segment/grabcut`` backend: OpenCV's GrabCut seeded with each box.

GrabCut is a classical graph-cut segmentation (colour mixture models, no learned weights):
pixels outside the box are background, the box holds the object plus some background, and
a few iterations separate the two by colour. It works for an object whose colours differ
from its surroundings; it fails on camouflage, thin structures and objects that look like
the background. It is the offline stand-in for SAM, not its equal.

To stay fast, each box is cut from the image with a margin of context around it (the
background model learns from that ring) and processed at most ``max_side`` pixels on its
longer side; the mask is scaled back to full resolution.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from vpd.errors import BackendError, InvalidArgumentError
from vpd.tools.backends._common import CpuBackend, require_positive_int, require_range, to_bgr
from vpd.tools.types import PixelBox

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

__all__ = ["GrabCutSegmenter"]


class GrabCutSegmenter(CpuBackend):
    """Box-prompted segmentation with OpenCV GrabCut (no model to download).

    Options (checked when the backend is constructed; a bad value is a ConfigError):
        iterations: GrabCut iterations per box, >= 1 (more is slower and rarely better after 5).
        margin: Context around the box used for the background model, as a fraction (>= 0)
            of the box's size on each side.
        max_side: Longer side, in pixels (>= 1), of the region GrabCut works on (downscaled
            above it).
        min_box_px: Boxes narrower or shorter than this (a number >= 0; after clipping to
            the image) are returned as their rectangle: too small for colour models.

    Results are deterministic: OpenCV's random generator (which seeds GrabCut's colour
    models) is reset just before each cut, so one image and box always give one mask.
    It runs on the CPU whatever ``device`` says (a toolkit-wide device reaches it too).

    Degenerate cases, by design:

    * a box partly outside the image is clipped to it; a box entirely outside gives an
      all-False mask;
    * a tiny box (under ``min_box_px``) gives its clipped rectangle as the mask;
    * when GrabCut finds no foreground in the box, the mask is the box rectangle, so a
      caller always gets the region it asked about rather than nothing;
    * a box covering the whole image has no background around it: GrabCut then starts from
      a thin band along the image border as "probably background".
    """

    capability: ClassVar[str] = "segment"
    name: ClassVar[str] = "grabcut"
    default_model: ClassVar[str | None] = None
    requires: ClassVar[tuple[str, ...]] = ("cv2",)
    extra: ClassVar[str | None] = None  # opencv-python-headless is a default dependency of vpd
    description: ClassVar[str] = "OpenCV GrabCut seeded with the box (classical, no learned weights)"
    option_defaults: ClassVar[dict[str, Any]] = {
        "iterations": 5,
        "margin": 0.25,
        "max_side": 320,
        "min_box_px": 4,
    }

    def __init__(self, model: str | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        require_positive_int(self, "iterations", "max_side")
        require_range(self, "margin", 0.0)
        require_range(self, "min_box_px", 0.0)

    def model_key(self) -> Hashable:
        """There is no model: the 'loaded model' is the cv2 module."""
        return ("cv2",)

    def _load(self) -> Any:
        import cv2

        return cv2

    def segment(self, images: Sequence[Image], boxes: Sequence[Sequence[PixelBox]]) -> list[list[np.ndarray]]:
        """Segment the object inside each box.

        Args:
            images: RGB PIL images.
            boxes: For each image, ``(x0, y0, x1, y1)`` boxes in its pixels (top-left origin).

        Returns:
            For each image, one boolean ``H x W`` mask per box, in order; pixels outside
            the (clipped) box are always False.

        Raises:
            InvalidArgumentError: Lengths differ or a box is not four numbers.
            BackendUnavailable: OpenCV is not installed.
        """
        if len(images) != len(boxes):
            raise InvalidArgumentError(f"Got {len(images)} images but {len(boxes)} box lists; pass one per image.")
        if not images:
            return []
        cv2 = self.load()
        results: list[list[np.ndarray]] = []
        for image, image_boxes in zip(images, boxes):
            bgr = to_bgr(image)
            results.append([self._segment_one(cv2, bgr, _check_box(box)) for box in image_boxes])
        return results

    def _segment_one(self, cv2: Any, bgr: np.ndarray, box: PixelBox) -> np.ndarray:
        import numpy as np

        height, width = bgr.shape[:2]
        mask = np.zeros((height, width), dtype=bool)
        # Integer pixel bounds of the clipped box (x1/y1 exclusive).
        x0 = int(np.clip(np.floor(box[0]), 0, width))
        y0 = int(np.clip(np.floor(box[1]), 0, height))
        x1 = int(np.clip(np.ceil(box[2]), 0, width))
        y1 = int(np.clip(np.ceil(box[3]), 0, height))
        if x1 <= x0 or y1 <= y0:
            return mask  # entirely outside the image, or empty
        min_px = int(self.options["min_box_px"])
        if x1 - x0 < min_px or y1 - y0 < min_px:
            mask[y0:y1, x0:x1] = True
            return mask

        # Work on the box plus a margin of context, downscaled to at most max_side.
        margin = float(self.options["margin"])
        mx, my = round((x1 - x0) * margin), round((y1 - y0) * margin)
        cx0, cy0 = max(0, x0 - mx), max(0, y0 - my)
        cx1, cy1 = min(width, x1 + mx), min(height, y1 + my)
        region = bgr[cy0:cy1, cx0:cx1]
        scale = min(1.0, float(self.options["max_side"]) / max(region.shape[:2]))
        if scale < 1.0:
            size = (max(1, round(region.shape[1] * scale)), max(1, round(region.shape[0] * scale)))
            region = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
        rh, rw = region.shape[:2]
        # The box in region coordinates.
        bx0 = int(np.clip(round((x0 - cx0) * scale), 0, rw - 1))
        by0 = int(np.clip(round((y0 - cy0) * scale), 0, rh - 1))
        bx1 = int(np.clip(round((x1 - cx0) * scale), bx0 + 1, rw))
        by1 = int(np.clip(round((y1 - cy0) * scale), by0 + 1, rh))

        init = np.full((rh, rw), cv2.GC_BGD, dtype=np.uint8)
        init[by0:by1, bx0:bx1] = cv2.GC_PR_FGD
        if not (init == cv2.GC_BGD).any():
            # No pixel outside the box: seed the background model with a thin border band.
            band = max(1, round(0.03 * min(rh, rw)))
            init[:band, :] = init[-band:, :] = cv2.GC_PR_BGD
            init[:, :band] = init[:, -band:] = cv2.GC_PR_BGD
        bgd_model = np.zeros((1, 65), dtype=np.float64)
        fgd_model = np.zeros((1, 65), dtype=np.float64)
        try:
            # GrabCut initialises its colour models with k-means from OpenCV's per-thread
            # random generator: without a fixed seed the same box gave masks differing by
            # about 1% of their area from call to call.
            cv2.setRNGSeed(0)
            cv2.grabCut(
                region, init, None, bgd_model, fgd_model, int(self.options["iterations"]), cv2.GC_INIT_WITH_MASK
            )
        except cv2.error as exc:
            raise BackendError(f"GrabCut failed: {exc}", capability=self.capability, backend=self.name) from exc
        foreground = ((init == cv2.GC_FGD) | (init == cv2.GC_PR_FGD)).astype(np.uint8)
        if scale < 1.0:
            foreground = cv2.resize(foreground, (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_NEAREST)
        mask[cy0:cy1, cx0:cx1] = foreground.astype(bool)
        # Never outside the box, whatever the resizing did at the edges.
        inside = np.zeros_like(mask)
        inside[y0:y1, x0:x1] = True
        mask &= inside
        if not mask.any():
            mask = inside  # GrabCut found nothing: fall back to the box rectangle (documented)
        return mask


def _check_box(box: Any) -> PixelBox:
    try:
        values = tuple(float(v) for v in box)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"A box must be four numbers (x0, y0, x1, y1), not {box!r:.80}.") from exc
    if len(values) != 4:
        raise InvalidArgumentError(f"A box must be four numbers (x0, y0, x1, y1), not {box!r:.80}.")
    return (values[0], values[1], values[2], values[3])
