"""Argument checks shared by the chat (``llm``) backends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vpd.errors import InvalidArgumentError
from vpd.tools.types import ChatMessage

__all__ = ["check_conversation", "check_sampling"]


def check_conversation(index: int, conversation: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """Validate one conversation and return it as plain dicts.

    Args:
        index: The conversation's position in its batch (named in the error).
        conversation: ``{"role": ..., "content": ...}`` messages.

    Raises:
        InvalidArgumentError: The conversation is empty, or a message is not such a dict.
    """
    if isinstance(conversation, (str, bytes)) or not conversation:
        raise InvalidArgumentError(
            f"Conversation {index} must be a non-empty list of {{'role': ..., 'content': ...}} messages."
        )
    messages = []
    for message in conversation:
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise InvalidArgumentError(
                f"Conversation {index} has a message that is not a {{'role': ..., 'content': ...}} dict: "
                f"{message!r:.100}"
            )
        messages.append(dict(message))
    return messages


def check_sampling(
    *, temperature: float, max_tokens: int, seed: int | None = None, stop: Sequence[str] | None = None
) -> list[str]:
    """Validate sampling settings; returns ``stop`` as a list (``[]`` for none).

    Raises:
        InvalidArgumentError: A negative temperature, ``max_tokens`` below 1, a seed that is
            not an integer, or stop strings that are not non-empty strings.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature < 0:
        raise InvalidArgumentError(f"temperature must be a number >= 0, got {temperature!r}.")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidArgumentError(f"max_tokens must be an integer >= 1, got {max_tokens!r}.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InvalidArgumentError(f"seed must be an integer or None, got {seed!r}.")
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    stops = list(stop)
    if not all(isinstance(s, str) and s for s in stops):
        raise InvalidArgumentError(f"stop must be a list of non-empty strings, got {stop!r:.100}.")
    return stops
