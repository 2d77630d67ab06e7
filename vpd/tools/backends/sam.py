"""Box-prompted segmentation with Segment Anything (Hugging Face ``transformers``).

The heavy image encoder runs once per image (batched over images); the light mask
decoder then runs once per image on all of that image's boxes, so images with different
numbers of boxes cost nothing extra. SlimSAM and the larger SAM checkpoints
(``facebook/sam-vit-large``, ``facebook/sam-vit-huge``) use the same classes and work as
``model=...`` unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from vpd.errors import InvalidArgumentError
from vpd.tools.backends._common import as_rgb, batches, require_finite, require_positive_int
from vpd.tools.hub import HubBackend
from vpd.tools.types import PixelBox

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["SamSegmenter"]

#: Boxes per mask-decoder call: bounds the memory of upsampling float masks to a large image.
_BOXES_PER_CALL = 16


class SamSegmenter(HubBackend):
    """Box-prompted segmenter: Segment Anything (``SamModel``), one mask per box.

    Options:
        batch_size: Images per image-encoder pass.
        mask_threshold: Logit above which a pixel belongs to the mask (0.0, SAM's own).
    """

    capability: ClassVar[str] = "segment"
    name: ClassVar[str] = "sam"
    default_model: ClassVar[str | None] = "facebook/sam-vit-base"
    description: ClassVar[str] = "Segment Anything, prompted with boxes (transformers; SlimSAM/ViT-H ids also work)"
    option_defaults: ClassVar[dict[str, Any]] = {"batch_size": 2, "mask_threshold": 0.0}

    def __init__(self, model: str | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        require_positive_int(self, "batch_size")
        require_finite(self, "mask_threshold")

    def _load(self) -> tuple[Any, Any]:
        from transformers import SamModel, SamProcessor

        processor = self.from_pretrained(SamProcessor)
        model = self.to_device(self.from_pretrained(SamModel))
        return model, processor

    def segment(self, images: Sequence[Image], boxes: Sequence[Sequence[PixelBox]]) -> list[list[np.ndarray]]:
        """Segment the object inside each box.

        Args:
            images: RGB images.
            boxes: For each image, ``(x0, y0, x1, y1)`` pixel boxes (top-left origin); parts
                outside the image are clipped away, and a box with no area left gets an
                all-False mask without running the model.

        Returns:
            For each image, one boolean ``H x W`` mask (the image's size) per box, in order.

        Raises:
            InvalidArgumentError: Mismatched lengths or a malformed box.
            BackendUnavailable: The model cannot be loaded.
            BackendError: The model failed while running.
        """
        per_image = _check_boxes(images, boxes)
        results = [
            [np.zeros((im.height, im.width), dtype=bool) for _ in b] for im, b in zip(images, per_image, strict=True)
        ]
        # Only boxes with an area are worth a model call; the rest keep their empty masks.
        valid = [[k for k, box in enumerate(b) if box[2] > box[0] and box[3] > box[1]] for b in per_image]
        todo = [i for i, keep in enumerate(valid) if keep]
        if not todo:
            return results
        model, processor = self.load()
        for chunk in batches(todo, int(self.options["batch_size"])):
            prompts = [[per_image[i][k] for k in valid[i]] for i in chunk]
            masks = self._run(model, processor, [images[i] for i in chunk], prompts)
            for i, image_masks in zip(chunk, masks, strict=True):
                for k, mask in zip(valid[i], image_masks, strict=True):
                    results[i][k] = mask
        return results

    def _run(
        self, model: Any, processor: Any, images: list[Image], boxes: list[list[PixelBox]]
    ) -> list[list[np.ndarray]]:
        """Encode a batch of images once, then decode every image's boxes."""
        import torch

        rgb = [as_rgb(im) for im in images]
        results = []
        with self.model_errors(f"SAM failed on a batch of {len(images)} image(s)"):
            encoded = processor(images=rgb, return_tensors="pt")
            original = encoded["original_sizes"].tolist()  # (height, width) per image
            resized = encoded["reshaped_input_sizes"].tolist()  # after the longest-edge resize
            with torch.inference_mode():
                embeddings = model.get_image_embeddings(**self.model_inputs({"pixel_values": encoded["pixel_values"]}))
                for i, image_boxes in enumerate(boxes):
                    (old_h, old_w), (new_h, new_w) = original[i], resized[i]
                    # The prompt encoder expects boxes in the resized (pre-padding) frame.
                    scale = torch.tensor([new_w / old_w, new_h / old_h, new_w / old_w, new_h / old_h])
                    prompts = torch.tensor(image_boxes, dtype=torch.float32) * scale
                    image_masks: list[np.ndarray] = []
                    for start in range(0, len(prompts), _BOXES_PER_CALL):
                        part = self.model_inputs({"input_boxes": prompts[None, start : start + _BOXES_PER_CALL]})
                        outputs = model(image_embeddings=embeddings[i : i + 1], multimask_output=False, **part)
                        # (1, boxes, 1, h, w) low-res logits -> (boxes, 1, H, W) booleans at the image size.
                        [masks] = processor.post_process_masks(
                            [outputs.pred_masks[0].float().cpu()],
                            [original[i]],
                            [resized[i]],
                            mask_threshold=float(self.options["mask_threshold"]),
                            binarize=True,
                        )
                        image_masks.extend(mask[0].numpy().astype(bool) for mask in masks)
                    results.append(image_masks)
        return results


def _check_boxes(images: Sequence[Image], boxes: Sequence[Sequence[PixelBox]]) -> list[list[PixelBox]]:
    """Validate a segment() call; return the boxes clipped to their images."""
    if len(images) != len(boxes):
        raise InvalidArgumentError(f"segment() got {len(images)} image(s) but {len(boxes)} box list(s).")
    cleaned = []
    for i, (image, image_boxes) in enumerate(zip(images, boxes, strict=True)):
        clipped: list[PixelBox] = []
        for box in image_boxes:
            try:
                x0, y0, x1, y1 = (float(v) for v in box)
            except (TypeError, ValueError):
                raise InvalidArgumentError(f"boxes[{i}] has {box!r}; a box is (x0, y0, x1, y1) in pixels.") from None
            if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 < x0 or y1 < y0:
                raise InvalidArgumentError(f"boxes[{i}] has {box!r}; need finite x0 <= x1 and y0 <= y1.")
            clipped.append(
                (
                    min(max(x0, 0.0), image.width),
                    min(max(y0, 0.0), image.height),
                    min(max(x1, 0.0), image.width),
                    min(max(y1, 0.0), image.height),
                )
            )
        cleaned.append(clipped)
    return cleaned
