"""The capabilities, as typed protocols.

Each vision or language capability is one :class:`typing.Protocol` with a single
*batched* method: callers pass lists of images (crops) and per-image queries and get one
result per image back, in order, so a backend can run the whole batch in one forward pass.
A backend class implements exactly one of these (see :class:`vpd.tools.Backend`).

Images are 8-bit RGB ``PIL.Image.Image`` objects; boxes and masks are in the pixel frame of
the image the backend was given (top-left origin; see :mod:`vpd.tools.types`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from vpd.tools.types import ChatMessage, Completion, Detection, PixelBox, TextLine

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

__all__ = [
    "DepthEstimator",
    "Detector",
    "ImageTextMatcher",
    "LanguageModel",
    "PROTOCOLS",
    "Segmenter",
    "TextGenerator",
    "TextReader",
    "VisualQA",
]


@runtime_checkable
class Detector(Protocol):
    """Open-vocabulary (or closed-set) object detection."""

    def detect(self, images: Sequence[Image], queries: Sequence[Sequence[str]]) -> list[list[Detection]]:
        """Detect objects.

        Args:
            images: The images (crops) to search.
            queries: For each image, the object names to look for.

        Returns:
            For each image, the detections above the backend's threshold, any order;
            each ``Detection.label`` is one of that image's queries.
        """
        ...


@runtime_checkable
class Segmenter(Protocol):
    """Box-prompted segmentation (segment-anything style)."""

    def segment(self, images: Sequence[Image], boxes: Sequence[Sequence[PixelBox]]) -> list[list[np.ndarray]]:
        """Segment the object inside each box.

        Args:
            images: The images.
            boxes: For each image, the boxes to segment.

        Returns:
            For each image, one boolean ``H x W`` mask (the image's size) per box, in order.
        """
        ...


@runtime_checkable
class DepthEstimator(Protocol):
    """Monocular relative depth."""

    def estimate_depth(self, images: Sequence[Image]) -> list[np.ndarray]:
        """Estimate depth.

        Args:
            images: The images.

        Returns:
            For each image a float32 ``H x W`` map (the image's size) where **larger is
            farther**. Values are relative: compare them within one image only.
        """
        ...


@runtime_checkable
class TextReader(Protocol):
    """Optical character recognition."""

    def read_text(self, images: Sequence[Image]) -> list[list[TextLine]]:
        """Read the text in each image.

        Returns:
            For each image, its text lines above the backend's confidence threshold.
        """
        ...


@runtime_checkable
class VisualQA(Protocol):
    """Visual question answering: a short answer about an image."""

    def answer(self, images: Sequence[Image], questions: Sequence[str]) -> list[str]:
        """Answer one question per image.

        Returns:
            One short answer per image, lower-case where the model allows.
        """
        ...


@runtime_checkable
class ImageTextMatcher(Protocol):
    """Image-text similarity (CLIP / SigLIP style)."""

    def score(self, images: Sequence[Image], texts: Sequence[Sequence[str]]) -> list[list[float]]:
        """Score texts against images.

        Args:
            images: The images.
            texts: For each image, the candidate texts.

        Returns:
            For each image, one logit per text (higher matches better). Logits of one model
            are comparable across texts and images, so softmax over them is meaningful.
        """
        ...


@runtime_checkable
class LanguageModel(Protocol):
    """A chat language model."""

    def chat(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> list[str]:
        """Complete each conversation.

        Returns:
            The assistant's reply text for each conversation.
        """
        ...


@runtime_checkable
class TextGenerator(Protocol):
    """A chat model that writes programs: one sampled reply per call, with its cost.

    The ``llm`` backends shipped with vpd (litellm, the embedded llama.cpp model) implement
    it beside :class:`LanguageModel`; program generation needs the sampling controls and
    token counts that ``chat`` hides.
    """

    def generate(
        self,
        messages: Sequence[ChatMessage],
        *,
        temperature: float = 0.0,
        max_tokens: int = 512,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> Completion:
        """Sample one reply to a conversation.

        Args:
            messages: The conversation (``{"role": ..., "content": ...}`` dicts).
            temperature: Sampling temperature (0: greedy).
            max_tokens: Most tokens to generate.
            seed: Sampling seed, so sample ``i`` of a question is reproducible where the
                backend supports seeds.
            stop: Strings that end generation.

        Returns:
            The reply and its cost.
        """
        ...

    def cache_identity(self) -> str:
        """A string naming the model and every option that changes its replies (never secrets)."""
        ...


#: Protocol per capability name.
PROTOCOLS: dict[str, type] = {
    "detect": Detector,
    "segment": Segmenter,
    "depth": DepthEstimator,
    "ocr": TextReader,
    "vqa": VisualQA,
    "match": ImageTextMatcher,
    "llm": LanguageModel,
}
