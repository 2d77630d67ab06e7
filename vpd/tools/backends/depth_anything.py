"""Monocular depth with Depth Anything (Hugging Face ``transformers``).

The relative Depth Anything checkpoints (V1 and V2, and DPT-style models generally)
predict affine-invariant *inverse* depth, i.e. disparity: larger means closer, and its
scale and shift are unknown. vpd's depth convention is the opposite (larger = farther),
so each map is converted with

    depth = max(disparity) - disparity

computed per image. This keeps the ordering exact (strictly decreasing in disparity),
is finite everywhere (no division by a near-zero disparity at the horizon) and keeps
equal disparity steps equal. It is *relative*: 0 is the nearest pixel of that image, and
values are comparable within one image only. ``1 / disparity`` was not used because the
unknown shift makes its values arbitrary and it explodes on sky and far walls.

Checkpoints whose config says ``depth_estimation_type="metric"`` already predict depth
(metres, larger = farther) and are returned unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from vpd.tools.backends._common import as_rgb, batches, require_positive_int
from vpd.tools.hub import HubBackend

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

__all__ = ["DepthAnythingEstimator"]


class DepthAnythingEstimator(HubBackend):
    """Relative monocular depth: Depth Anything (``AutoModelForDepthEstimation``).

    Options:
        batch_size: Images per forward pass. The processor keeps each image's aspect
            ratio, so only images that resize to the same shape share a pass.
    """

    capability: ClassVar[str] = "depth"
    name: ClassVar[str] = "depth_anything"
    default_model: ClassVar[str | None] = "depth-anything/Depth-Anything-V2-Small-hf"
    description: ClassVar[str] = "Depth Anything V2 relative depth (transformers); larger = farther, per image"
    option_defaults: ClassVar[dict[str, Any]] = {"batch_size": 4}

    def __init__(self, model: str | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        require_positive_int(self, "batch_size")

    def _load(self) -> tuple[Any, Any]:
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        processor = self.from_pretrained(AutoImageProcessor)
        model = self.to_device(self.from_pretrained(AutoModelForDepthEstimation))
        return model, processor

    def estimate_depth(self, images: Sequence[Image]) -> list[np.ndarray]:
        """Estimate a relative depth map per image.

        Args:
            images: RGB images.

        Returns:
            For each image a float32 ``H x W`` map (the image's size), larger = farther,
            0 at the nearest pixel; compare values within one image only.

        Raises:
            BackendUnavailable: The model cannot be loaded.
            BackendError: The model failed while running.
        """
        if not images:
            return []
        model, processor = self.load()
        rgb = [as_rgb(im) for im in images]
        with self.model_errors("Depth Anything could not pre-process an image"):
            # Pre-process one by one: sizes differ with the aspect ratio; then batch equal shapes.
            pixels = [processor(images=im, return_tensors="pt")["pixel_values"] for im in rgb]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, tensor in enumerate(pixels):
            groups.setdefault(tuple(tensor.shape), []).append(i)
        results: list[np.ndarray | None] = [None] * len(images)
        size = int(self.options["batch_size"])
        metric = getattr(model.config, "depth_estimation_type", "relative") == "metric"
        for members in groups.values():
            for chunk in batches(members, size):
                maps = self._run(model, [pixels[i] for i in chunk], [rgb[i] for i in chunk], metric)
                for i, depth in zip(chunk, maps, strict=True):
                    results[i] = depth
        return [r for r in results if r is not None]

    def _run(self, model: Any, pixels: list[Any], images: list[Image], metric: bool) -> list[np.ndarray]:
        """One forward pass over same-shaped inputs; maps resized to each image and converted."""
        import torch

        with self.model_errors(f"Depth Anything failed on a batch of {len(images)} image(s)"):
            batch = self.model_inputs({"pixel_values": torch.cat(pixels)})
            with torch.inference_mode():
                predicted = model(**batch).predicted_depth.float()  # (B, h, w)
                maps = []
                for i, image in enumerate(images):
                    resized = torch.nn.functional.interpolate(
                        predicted[i][None, None], size=(image.height, image.width), mode="bicubic", align_corners=False
                    )[0, 0]
                    maps.append(resized.cpu().numpy())
        return [to_depth(m, metric=metric) for m in maps]


def to_depth(prediction: np.ndarray, *, metric: bool = False) -> np.ndarray:
    """Convert a model's map to vpd's convention: float32, finite, larger = farther.

    Args:
        prediction: The model's output at the image size: disparity (larger = closer)
            for relative models, depth for metric ones.
        metric: The prediction already is depth.

    Returns:
        ``max(disparity) - disparity`` for relative models; the (non-negative) depth
        itself for metric ones. Non-finite values are replaced so the map stays finite.
    """
    import numpy as np

    values = np.nan_to_num(prediction.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if metric:
        # Bicubic resizing can undershoot slightly below zero; depth cannot.
        return np.maximum(values, 0.0).astype(np.float32)
    return (values.max() - values).astype(np.float32)
