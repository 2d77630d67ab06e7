"""Image-text matching with CLIP and SigLIP (Hugging Face ``transformers``).

Both score an (image, text) pair as a scaled cosine similarity of their embeddings,
exactly the model's ``logits_per_image``: ``exp(logit_scale) * cos`` for CLIP, plus the
learnt ``logit_bias`` for SigLIP. Images and texts are encoded separately, each distinct
text once per call however many images ask for it, then every image is scored against
its own texts.

SigLIP's text tower was trained on token sequences padded to 64 tokens with no attention
mask, pooling the last position; its texts are encoded the same way here (and truncated
to 64 tokens). CLIP pads to the longest text of a batch (truncating at 77 tokens) and
uses the attention mask, as trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from vpd.tools.backends._common import as_rgb, batches, check_text_lists, require_positive_int
from vpd.tools.hub import HubBackend

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["ClipMatcher", "SiglipMatcher"]


class _ContrastiveMatcher(HubBackend):
    """Shared code of the dual-encoder matchers."""

    capability: ClassVar[str] = "match"
    option_defaults: ClassVar[dict[str, Any]] = {"batch_size": 32}
    #: Tokenizer arguments the model was trained with.
    text_kwargs: ClassVar[dict[str, Any]] = {"padding": True, "truncation": True}
    #: Whether the text tower takes an attention mask.
    text_attention_mask: ClassVar[bool] = True

    def __init__(self, model: str | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        require_positive_int(self, "batch_size")

    def _load(self) -> tuple[Any, Any]:
        from transformers import AutoModel, AutoProcessor

        processor = self.from_pretrained(AutoProcessor)
        model = self.to_device(self.from_pretrained(AutoModel))
        return model, processor

    def score(self, images: Sequence[Image], texts: Sequence[Sequence[str]]) -> list[list[float]]:
        """Score each image against its candidate texts.

        Args:
            images: RGB images.
            texts: For each image, the candidate texts (lists may differ).

        Returns:
            For each image, one logit per text, in order (higher matches better; the
            model's ``logits_per_image``, comparable across images and texts).

        Raises:
            InvalidArgumentError: Mismatched lengths, or an empty/blank text.
            BackendUnavailable: The model cannot be loaded.
            BackendError: The model failed while running.
        """
        per_image = check_text_lists(images, texts, call="score", argument="texts", item="text")
        results: list[list[float]] = [[] for _ in images]
        todo = [i for i, t in enumerate(per_image) if t]
        if not todo:
            return results
        model, processor = self.load()
        unique = list(dict.fromkeys(t for i in todo for t in per_image[i]))
        with self.model_errors(f"{type(self).__name__} failed on {len(todo)} image(s) and {len(unique)} text(s)"):
            image_embeds = self._encode_images(model, processor, [images[i] for i in todo])
            text_embeds = self._encode_texts(model, processor, unique)
        scale = model.logit_scale.detach().float().exp().cpu()
        bias = getattr(model, "logit_bias", None)
        logits = scale * image_embeds @ text_embeds.T
        if bias is not None:
            logits = logits + bias.detach().float().cpu()
        column = {text: j for j, text in enumerate(unique)}
        for row, i in enumerate(todo):
            results[i] = [float(logits[row, column[t]]) for t in per_image[i]]
        return results

    def _encode_images(self, model: Any, processor: Any, images: list[Image]) -> Any:
        """Unit-norm float32 image embeddings (CPU), batch by batch."""
        import torch

        parts = []
        for batch in batches(images, int(self.options["batch_size"])):
            pixels = processor(images=[as_rgb(im) for im in batch], return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                features = model.get_image_features(**self.model_inputs({"pixel_values": pixels}))
            parts.append(_unit(_pooled(features)))
        return torch.cat(parts)

    def _encode_texts(self, model: Any, processor: Any, texts: list[str]) -> Any:
        """Unit-norm float32 text embeddings (CPU), batch by batch."""
        import torch

        parts = []
        for batch in batches(texts, int(self.options["batch_size"])):
            tokens = processor.tokenizer(batch, return_tensors="pt", **self.text_kwargs)
            inputs = {"input_ids": tokens["input_ids"]}
            if self.text_attention_mask and "attention_mask" in tokens:
                inputs["attention_mask"] = tokens["attention_mask"]
            with torch.inference_mode():
                features = model.get_text_features(**self.model_inputs(inputs))
            parts.append(_unit(_pooled(features)))
        return torch.cat(parts)


class ClipMatcher(_ContrastiveMatcher):
    """Image-text matcher: OpenAI CLIP (``CLIPModel``); logits are ``exp(logit_scale) * cos``.

    Options:
        batch_size: Images, or distinct texts, per forward pass.
    """

    name: ClassVar[str] = "clip"
    default_model: ClassVar[str | None] = "openai/clip-vit-base-patch32"
    description: ClassVar[str] = "CLIP image-text similarity logits (transformers)"


class SiglipMatcher(_ContrastiveMatcher):
    """Image-text matcher: SigLIP (``SiglipModel``); logits are ``exp(logit_scale) * cos + logit_bias``.

    ``sigmoid(logit)`` is SigLIP's own probability that a text matches an image.
    Its tokenizer needs ``sentencepiece`` (and ``protobuf``).

    Options:
        batch_size: Images, or distinct texts, per forward pass.
    """

    name: ClassVar[str] = "siglip"
    default_model: ClassVar[str | None] = "google/siglip-base-patch16-224"
    description: ClassVar[str] = "SigLIP image-text logits (transformers; sigmoid gives a match probability)"
    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers", "sentencepiece", "google.protobuf")
    text_kwargs: ClassVar[dict[str, Any]] = {"padding": "max_length", "max_length": 64, "truncation": True}
    text_attention_mask: ClassVar[bool] = False


def _pooled(features: Any) -> Any:
    """The embedding tensor, whether ``get_*_features`` returned it or a model output holding it."""
    return features if hasattr(features, "norm") else features.pooler_output


def _unit(features: Any) -> Any:
    """Float32 CPU copy, scaled to unit length."""
    features = features.float().cpu()
    return features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
