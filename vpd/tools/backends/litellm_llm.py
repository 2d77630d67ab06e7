"""The ``llm/litellm`` backend: any chat model litellm can reach.

The model is a litellm model string: ``"openai/gpt-4o-mini"``, ``"anthropic/claude-3-5-haiku-latest"``,
``"ollama/qwen2.5-coder"``, or ``"openai/<alias>"`` with ``api_base`` pointing at any
OpenAI-compatible server (vLLM, llama.cpp's server, LM Studio...). There is no default model:
set ``VPD_LLM`` or pass ``model=...``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from vpd.errors import InvalidArgumentError
from vpd.tools.backends._litellm import LiteLLMBackend
from vpd.tools.types import ChatMessage

__all__ = ["LiteLLMChat"]


class LiteLLMChat(LiteLLMBackend):
    """Chat completions through litellm (OpenAI, Anthropic, Ollama, OpenAI-compatible servers...).

    Example:
        >>> llm = LiteLLMChat("openai/qwen", api_base="http://127.0.0.1:8080/v1", api_key="none")
        >>> llm.chat([[{"role": "user", "content": "Say hi"}]])  # doctest: +SKIP
        ['Hi!']

    Options are those of :class:`~vpd.tools.backends._litellm.LiteLLMBackend`: ``api_base``,
    ``api_key``, ``timeout`` (60 s), ``num_retries`` (2), ``extra_headers``, ``max_workers`` (4).
    """

    capability: ClassVar[str] = "llm"
    name: ClassVar[str] = "litellm"
    description: ClassVar[str] = "any chat model through litellm (hosted APIs, Ollama, OpenAI-compatible servers)"
    option_defaults: ClassVar[dict[str, Any]] = dict(LiteLLMBackend.option_defaults)

    def chat(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> list[str]:
        """Complete each conversation; several are sent concurrently.

        Args:
            conversations: Each a list of ``{"role": ..., "content": ...}`` messages.
            max_tokens: Most tokens per reply.
            temperature: Sampling temperature (0 for the most deterministic reply).

        Returns:
            The assistant's reply text for each conversation, in order.

        Raises:
            InvalidArgumentError: A conversation is empty or a message is malformed.
            ToolUnavailable: No model configured, or litellm not installed.
            ToolError: The provider failed (the message says what to check).
        """
        if not conversations:
            return []
        prepared = [_check_conversation(i, conversation) for i, conversation in enumerate(conversations)]
        self.require_model()
        return self.run_concurrently(
            lambda messages: self.complete(messages, max_tokens=max_tokens, temperature=temperature), prepared
        )


def _check_conversation(index: int, conversation: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """Validate one conversation and return it as plain dicts."""
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
