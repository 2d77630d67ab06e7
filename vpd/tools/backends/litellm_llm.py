"""The ``llm/litellm`` backend: any chat model litellm can reach.

The model is a litellm model string: ``"openai/gpt-4o-mini"``, ``"anthropic/claude-3-5-haiku-latest"``,
``"ollama/qwen2.5-coder"``, or ``"openai/<alias>"`` with ``api_base`` pointing at any
OpenAI-compatible server (vLLM, llama.cpp's server, LM Studio...). There is no default model:
set ``VPD_LLM`` or pass ``model=...``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

from vpd.tools.backends._chat import check_conversation, check_sampling
from vpd.tools.backends._litellm import LiteLLMBackend
from vpd.tools.types import ChatMessage, Completion

__all__ = ["LiteLLMChat"]


class LiteLLMChat(LiteLLMBackend):
    """Chat completions through litellm (OpenAI, Anthropic, Ollama, OpenAI-compatible servers...).

    Example:
        >>> llm = LiteLLMChat("openai/qwen", api_base="http://127.0.0.1:8080/v1", api_key="none")
        >>> llm.chat([[{"role": "user", "content": "Say hi"}]])  # doctest: +SKIP
        ['Hi!']

    Implements :class:`~vpd.tools.protocols.LanguageModel` (``chat``) and
    :class:`~vpd.tools.protocols.TextGenerator` (``generate``).

    Options are those of :class:`~vpd.tools.backends._litellm.LiteLLMBackend`: ``api_base``,
    ``api_key``, ``timeout`` (60 s per request), ``num_retries`` (2), ``retry_delay`` (0.5 s),
    ``extra_headers``, ``max_workers`` (4).
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
            BackendUnavailable: No model configured, or litellm not installed.
            BackendError: The provider failed (the message says what to check).
        """
        if not conversations:
            return []
        prepared = [check_conversation(i, conversation) for i, conversation in enumerate(conversations)]
        self.require_model()
        return self.run_concurrently(
            lambda messages: self.complete(messages, max_tokens=max_tokens, temperature=temperature), prepared
        )

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
            seed: Sent to providers that take one (OpenAI and most OpenAI-compatible servers);
                dropped silently for the others.
            stop: Strings that end generation.

        Returns:
            The reply with the token counts the provider reports, the request's wall time
            (retries included) and the finish reason. ``first_token_seconds`` is ``None``
            (replies are not streamed).

        Raises:
            InvalidArgumentError: Malformed messages or sampling settings.
            BackendUnavailable: No model configured, or litellm not installed.
            BackendError: The provider failed (the message says what to check).
        """
        prepared = check_conversation(0, messages)
        stops = check_sampling(temperature=temperature, max_tokens=max_tokens, seed=seed, stop=stop)
        start = time.perf_counter()
        response = self.request(prepared, max_tokens=max_tokens, temperature=temperature, seed=seed, stop=stops)
        seconds = time.perf_counter() - start
        text = self.reply_text(response)
        usage = getattr(response, "usage", None)
        try:
            finish_reason = response.choices[0].finish_reason
        except (AttributeError, IndexError, TypeError):
            finish_reason = None
        return Completion(
            text=text,
            model=str(self.model_id),
            prompt_tokens=_count(getattr(usage, "prompt_tokens", None)),
            completion_tokens=_count(getattr(usage, "completion_tokens", None)),
            seconds=seconds,
            finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        )


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None
