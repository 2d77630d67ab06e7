"""The ``vqa/litellm`` backend: ask a vision-capable chat model through litellm.

Any model litellm can send images to works: hosted ones (``"openai/gpt-4o-mini"``,
``"anthropic/claude-3-5-haiku-latest"``, ``"gemini/gemini-1.5-flash"``) or a local
OpenAI-compatible server that serves a VLM (``"openai/<alias>"`` with ``api_base``). The image
goes inline as a base64 data URL in an OpenAI-style ``image_url`` content part, downscaled
so its longer side is at most ``max_side`` pixels. Configure it with ``VPD_VQA=litellm`` and
``VPD_VQA_MODEL=<litellm model string>``, or ``model=...``; there is no default model.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from vpd.errors import InvalidArgumentError
from vpd.tools.backends._common import check_questions
from vpd.tools.backends._litellm import LiteLLMBackend, short_answer

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["LiteLLMVQA", "image_data_url"]

_SYSTEM_PROMPT = (
    "You answer questions about images. Reply with a short answer only: a few words, a number, "
    "or yes/no. No explanation, no full sentence."
)


def image_data_url(image: Image, *, max_side: int = 1024, image_format: str = "jpeg", quality: int = 90) -> str:
    """Encode an image as a ``data:`` URL, downscaled so its longer side is at most ``max_side``.

    Args:
        image: An RGB PIL image.
        max_side: Longest side in pixels after downscaling (never upscaled).
        image_format: ``"jpeg"`` (smaller) or ``"png"`` (lossless).
        quality: JPEG quality.

    Returns:
        ``"data:image/<format>;base64,<...>"``.
    """
    from PIL import Image as PILImage

    fmt = image_format.lower()
    if fmt == "jpg":
        fmt = "jpeg"
    if fmt not in ("jpeg", "png"):
        raise InvalidArgumentError(f"image_format must be 'jpeg' or 'png', not {image_format!r}.")
    img = image.convert("RGB") if image.mode != "RGB" else image
    longest = max(img.size)
    if max_side > 0 and longest > max_side:
        scale = max_side / longest
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, PILImage.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if fmt == "jpeg":
        img.save(buffer, format="JPEG", quality=quality)
    else:
        img.save(buffer, format="PNG")
    return f"data:image/{fmt};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


class LiteLLMVQA(LiteLLMBackend):
    """Visual question answering with a vision-capable chat model, through litellm.

    Options, besides the shared litellm ones (``api_base``, ``api_key``, ``timeout``,
    ``num_retries``, ``extra_headers``, ``max_workers``):
        max_side: The image is downscaled so its longer side is at most this (pixels).
        image_format: ``"jpeg"`` or ``"png"`` for the inline image.
        max_tokens: Most tokens per answer.
        lowercase: Lower-case the answers (the VQA convention).
    """

    capability: ClassVar[str] = "vqa"
    name: ClassVar[str] = "litellm"
    description: ClassVar[str] = "a vision-capable chat model through litellm (image sent inline as a data URL)"
    option_defaults: ClassVar[dict[str, Any]] = {
        **LiteLLMBackend.option_defaults,
        "max_side": 1024,
        "image_format": "jpeg",
        "max_tokens": 32,
        "lowercase": True,
    }

    def answer(self, images: Sequence[Image], questions: Sequence[str]) -> list[str]:
        """Answer one question per image.

        Args:
            images: RGB PIL images.
            questions: One question per image.

        Returns:
            One short answer per image, in order.

        Raises:
            InvalidArgumentError: Lengths differ, or a question is empty.
            BackendUnavailable: No model configured, or litellm not installed.
            BackendError: The provider failed (for example the model cannot take images).
        """
        check_questions(images, questions)
        if not images:
            return []
        self.require_model()
        conversations = [self.build_messages(image, question) for image, question in zip(images, questions)]
        replies = self.run_concurrently(
            lambda messages: self.complete(messages, max_tokens=int(self.options["max_tokens"]), temperature=0.0),
            conversations,
        )
        return [short_answer(reply, lowercase=bool(self.options["lowercase"])) for reply in replies]

    def build_messages(self, image: Image, question: str) -> list[dict[str, Any]]:
        """The OpenAI-style messages sent for one question (system prompt, text and image parts)."""
        url = image_data_url(
            image, max_side=int(self.options["max_side"]), image_format=str(self.options["image_format"])
        )
        return [
            {"role": "system", "content": _SYSTEM_PROMPT},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": f"{question.strip()}\nAnswer in a few words."},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            },
        ]
