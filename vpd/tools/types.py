"""Plain records passed between the toolkit and backends.

Backends work in the usual computer-vision convention: pixel boxes ``(x0, y0, x1, y1)``
with the origin at the **top-left** corner of the image they were given, y growing
downwards, ``x1``/``y1`` exclusive. :class:`vpd.ImagePatch` converts to its own
bottom-left convention at the boundary; nothing below it needs to know.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict

__all__ = ["CAPABILITIES", "Capability", "ChatMessage", "Completion", "Detection", "PixelBox", "TextLine"]

#: The capabilities a toolkit serves, each with one protocol in :mod:`vpd.tools.protocols`.
CAPABILITIES: tuple[str, ...] = ("detect", "segment", "depth", "ocr", "vqa", "match", "llm")

Capability = Literal["detect", "segment", "depth", "ocr", "vqa", "match", "llm"]

PixelBox = tuple[float, float, float, float]
"""``(x0, y0, x1, y1)``, top-left origin, in pixels of the image handed to the backend."""


@dataclass(frozen=True)
class Detection:
    """One detected object.

    Attributes:
        box: ``(x0, y0, x1, y1)`` in pixels of the image the detector saw (top-left origin).
        score: Confidence in [0, 1].
        label: The query this detection answers (as the caller spelled it).
        class_name: The detector's own class, when it differs from the query
            (a closed-vocabulary detector maps "mug" to its class "cup"); else None.
    """

    box: PixelBox
    score: float
    label: str
    class_name: str | None = None


@dataclass(frozen=True)
class TextLine:
    """One line of text read by OCR.

    Attributes:
        text: The text.
        score: Recognition confidence in [0, 1].
        box: Axis-aligned ``(x0, y0, x1, y1)`` around the line (top-left origin).
    """

    text: str
    score: float
    box: PixelBox


class ChatMessage(TypedDict):
    """One chat message in the OpenAI format."""

    role: str
    content: str


@dataclass(frozen=True)
class Completion:
    """One reply of a text generator, with what it cost.

    Attributes:
        text: The assistant's reply.
        model: The model that wrote it (as the backend names it).
        prompt_tokens: Tokens in the prompt, when the backend reports them.
        completion_tokens: Tokens generated, when the backend reports them.
        seconds: Wall time of the request (0 when it came from a cache).
        first_token_seconds: Time until the first generated token (prompt evaluation),
            when the backend measures it.
        finish_reason: ``"stop"``, ``"length"``..., when reported.
        cached: Whether the reply came from a completion cache instead of the model.
    """

    text: str
    model: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    seconds: float = 0.0
    first_token_seconds: float | None = None
    finish_reason: str | None = None
    cached: bool = False
