"""Code shared by the litellm backends (``llm/litellm`` and ``vqa/litellm``).

litellm speaks to any provider (OpenAI, Anthropic, Ollama, vLLM, llama.cpp's server...) with
one call, so these backends only need a litellm model string such as ``"openai/gpt-4o-mini"``
or ``"ollama/qwen2.5-coder"`` plus, for self-hosted servers, an ``api_base``.

Nothing here imports litellm at module level: importing it takes seconds, and it would
download its model cost map unless ``LITELLM_LOCAL_MODEL_COST_MAP`` is set first, which
:func:`import_litellm` does.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, ClassVar, TypeVar

from vpd.errors import BackendError, BackendUnavailable
from vpd.tools.backend import Availability, Backend, BackendInfo

__all__ = ["LiteLLMBackend", "import_litellm", "short_answer"]

#: Options that never change a reply (or are secret): left out of the result-cache key.
_NOT_IN_CACHE_KEY = frozenset({"api_key", "extra_headers", "timeout", "num_retries", "retry_delay", "max_workers"})

#: Longest wait between two retries that vpd picks itself, and longest Retry-After it honours.
_MAX_BACKOFF = 8.0
_MAX_RETRY_AFTER = 60.0

T = TypeVar("T")
R = TypeVar("R")


def import_litellm() -> Any:
    """Import litellm without letting it reach the network for its cost map."""
    # Must be set before the first import: litellm reads it at import time.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    # Its "Give Feedback / Get Help" banner on every exception is noise in a library.
    litellm.suppress_debug_info = True
    return litellm


def short_answer(text: str, *, lowercase: bool = True) -> str:
    """Tidy a model's short answer: first line, no quotes or final full stop.

    Args:
        text: The raw reply.
        lowercase: Lower-case the answer (the VQA protocol's convention).

    Returns:
        The cleaned answer ("" when the reply was empty).
    """
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    answer = lines[0] if lines else ""
    for prefix in ("answer:", "a:"):
        if answer.lower().startswith(prefix):
            answer = answer[len(prefix) :].strip()
    answer = answer.strip().strip("\"'`").strip()
    if answer.endswith(".") and not answer.endswith(".."):
        answer = answer[:-1].rstrip()
    return answer.lower() if lowercase else answer


class LiteLLMBackend(Backend):
    """Base of the litellm backends: configuration, one completion call, error messages.

    Options (shared by subclasses):
        api_base: Server URL, e.g. ``"http://127.0.0.1:8080/v1"`` for an OpenAI-compatible
            server, or ``"http://localhost:11434"`` for Ollama. ``None`` uses the provider's.
        api_key: The key; ``None`` lets litellm read the provider's environment variable
            (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``...). With an ``api_base`` and no key
            anywhere, a placeholder is sent: local OpenAI-compatible servers (llama.cpp,
            vLLM, Ollama) need none, but the OpenAI client refuses to send a request without one.
        timeout: Seconds to wait for one reply.
        num_retries: Retries of a call that failed transiently (HTTP 429, 5xx, connection
            errors, timeouts), with exponential backoff and jitter (tenacity). Authentication,
            bad-request and not-found errors are never retried.
        retry_delay: Seconds before the first retry; doubled for each further one, plus random
            jitter, capped at 8 s. A server's ``Retry-After`` (up to 60 s) takes precedence.
        extra_headers: Extra HTTP headers sent with every request (a dict), or ``None``.
        max_workers: Conversations sent concurrently when a batch has several.
    """

    requires: ClassVar[tuple[str, ...]] = ("litellm", "tenacity")
    extra: ClassVar[str | None] = "llm"
    default_model: ClassVar[str | None] = None
    option_defaults: ClassVar[dict[str, Any]] = {
        "api_base": None,
        "api_key": None,
        "timeout": 60.0,
        "num_retries": 2,
        "retry_delay": 0.5,
        "extra_headers": None,
        "max_workers": 4,
    }

    @classmethod
    def check_available(cls, model: str | None = None) -> Availability:
        """Whether litellm is installed and a model configured (the provider itself is not contacted)."""
        deps = super().check_available(model)
        if not deps:
            return deps
        model = model or cls.default_model
        if not model:
            return Availability(False, f"no model configured: {cls.how_to_configure()}")
        return Availability(True, f"litellm model {model} (reachability and credentials not checked)")

    def model_key(self) -> Hashable:
        """One shared entry: litellm is the same module whatever the model or device (and no device probing)."""
        return ("litellm",)

    def _load(self) -> Any:
        return import_litellm()

    def info(self) -> BackendInfo:
        """Describe this backend, with the API key and extra headers masked (``vpd tools`` prints this)."""
        described = super().info()
        return replace(described, options=_masked(self.options))

    def cache_identity(self) -> str:
        """Model, endpoint and answer-changing options only: never the key, and not timeouts or retries."""
        kept = {k: v for k, v in self.options.items() if k not in _NOT_IN_CACHE_KEY}
        opts = ",".join(f"{k}={kept[k]!r}" for k in sorted(kept))
        return f"{self.capability}/{self.name}/{self.model_id}/{opts}"

    def require_model(self) -> str:
        """The configured litellm model string; raises BackendUnavailable when there is none."""
        if not self.model_id:
            raise BackendUnavailable(
                f"No model configured for the {self.capability} backend 'litellm': {self.how_to_configure()}",
                capability=self.capability,
                backend=self.name,
            )
        return self.model_id

    @classmethod
    def how_to_configure(cls) -> str:
        """How a user sets the model of this backend (used in error messages)."""
        if cls.capability == "llm":
            return (
                "set VPD_LLM to a litellm model string (e.g. openai/gpt-4o-mini or ollama/qwen2.5-coder) "
                "or pass model=..."
            )
        cap = cls.capability.upper()
        return (
            f"set VPD_{cap}=litellm and VPD_{cap}_MODEL to a litellm model string (e.g. openai/gpt-4o-mini) "
            "or pass model=..."
        )

    def complete(self, messages: list[dict[str, Any]], *, max_tokens: int, temperature: float) -> str:
        """Send one conversation and return the reply text.

        Raises:
            BackendUnavailable: No model is configured, or litellm is not installed.
            BackendError: The provider failed; the message says what to check.
        """
        response = self.request(messages, max_tokens=max_tokens, temperature=temperature)
        return self.reply_text(response)

    def request(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int,
        temperature: float,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> Any:
        """Send one conversation, retrying transient failures, and return litellm's response.

        Rate limits (HTTP 429), server errors (5xx), timeouts and connection errors are
        retried up to ``num_retries`` times with exponential backoff and jitter (honouring a
        server's ``Retry-After``); authentication, bad-request and not-found errors are not.

        Raises:
            BackendUnavailable: No model is configured, or litellm is not installed.
            BackendError: The provider failed; the message says what to check.
        """
        model = self.require_model()
        litellm = self.load()
        from tenacity import Retrying, retry_if_exception, stop_after_attempt

        kwargs: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "timeout": float(self.options["timeout"]),
            # We retry ourselves (see num_retries); stop the OpenAI client retrying underneath.
            "max_retries": 0,
            # Models that reject a parameter (e.g. temperature on reasoning models) still answer.
            "drop_params": True,
        }
        if seed is not None:
            kwargs["seed"] = seed
        if stop:
            kwargs["stop"] = list(stop)
        for name in ("api_base", "api_key", "extra_headers"):
            if self.options[name] is not None:
                kwargs[name] = self.options[name]
        if "api_base" in kwargs and "api_key" not in kwargs and _needs_placeholder_key(model):
            kwargs["api_key"] = "no-key-needed"
        retrying = Retrying(
            stop=stop_after_attempt(max(0, int(self.options["num_retries"])) + 1),
            wait=_Backoff(float(self.options["retry_delay"])),
            retry=retry_if_exception(lambda exc: _transient(exc, litellm)),
            reraise=True,
        )
        try:
            return retrying(litellm.completion, **kwargs)
        except Exception as exc:
            raise self._explain(exc, litellm) from exc

    def reply_text(self, response: Any) -> str:
        """The assistant's text in a litellm response (``""`` for an empty message).

        Raises:
            BackendError: The response has no message (a server that does not speak the protocol).
        """
        try:
            content = response.choices[0].message.content
        except (AttributeError, IndexError, KeyError, TypeError) as exc:
            raise BackendError(
                f"{self.model_id} returned a response without a message: {response!r:.300}. Check that api_base "
                "points at an OpenAI-compatible chat-completions server.",
                capability=self.capability,
                backend=self.name,
            ) from exc
        return content if isinstance(content, str) else ""

    def run_concurrently(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(item) for item in items]``, several at a time, results in order."""
        if len(items) <= 1:
            return [fn(item) for item in items]
        workers = max(1, min(int(self.options["max_workers"]), len(items)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"vpd-{self.capability}-litellm") as pool:
            return list(pool.map(fn, items))

    def _explain(self, exc: Exception, litellm: Any) -> BackendError:
        """Turn a litellm exception into a BackendError whose message says what to check."""
        model = self.model_id
        where = self.options["api_base"] or "the provider's default endpoint"
        detail = _first_line(getattr(exc, "message", None) or str(exc)) or type(exc).__name__
        status = getattr(exc, "status_code", None)
        code = f" (HTTP {status})" if isinstance(status, int) else ""
        if isinstance(exc, litellm.AuthenticationError):
            message = (
                f"{model} rejected the credentials{code}: {detail}. Check the API key (the api_key option, "
                "or the provider's environment variable such as OPENAI_API_KEY)."
            )
        elif _malformed(exc):
            bad_json = next((c for c in _causes(exc) if isinstance(c, json.JSONDecodeError)), None)
            if bad_json is not None:
                detail = f"invalid JSON ({bad_json})"
            message = (
                f"{model} at {where} sent a reply that is not a chat completion: {detail}. Check that api_base "
                "points at an OpenAI-compatible server (usually ending in /v1)."
            )
        elif _timed_out(exc, litellm):
            message = (
                f"{model} did not answer within {self.options['timeout']} s at {where}: {detail}. "
                "Raise the timeout option or check the server."
            )
        elif _connection_failed(exc, litellm):
            message = (
                f"Could not connect to {where} for {model}: {detail}. Check that the server is running and "
                "that api_base is right."
            )
        elif isinstance(exc, litellm.RateLimitError):
            message = f"{model} is rate limited{code} after {self.options['num_retries']} retries: {detail}"
        elif isinstance(exc, getattr(litellm, "PermissionDeniedError", ())) or status == 403:
            message = (
                f"{model} refused access{code}: {detail}. Check that the API key may use this model "
                "(the api_key option, or the provider's environment variable)."
            )
        elif isinstance(exc, litellm.NotFoundError):
            message = f"{model} was not found at {where}{code}: {detail}. Check the model name."
        elif isinstance(exc, litellm.BadRequestError):
            message = f"{model} rejected the request{code}: {detail}"
        elif isinstance(exc, BackendError):
            return exc
        else:
            message = f"{model} failed{code}: {type(exc).__name__}: {detail}"
        return BackendError(message, capability=self.capability, backend=self.name)


# Providers spoken to through the OpenAI client, which refuses to send a request without a
# key even when the server (llama.cpp, vLLM, LM Studio...) needs none.
_OPENAI_CLIENT_PROVIDERS = ("openai", "text-completion-openai", "hosted_vllm", "lm_studio")


def _needs_placeholder_key(model: str) -> bool:
    """Whether to send a placeholder key: an OpenAI-style model at a custom api_base, with no key set.

    Other providers (Groq, Azure, Anthropic...) read their own key variables, so nothing is
    added for them.
    """
    provider = model.split("/", 1)[0].lower() if "/" in model else "openai"
    return provider in _OPENAI_CLIENT_PROVIDERS and not os.environ.get("OPENAI_API_KEY")


def _masked(options: dict[str, Any]) -> dict[str, Any]:
    """A copy of the options with secrets replaced by ``"***"``."""
    shown = dict(options)
    if shown.get("api_key"):
        shown["api_key"] = "***"
    if shown.get("extra_headers"):
        shown["extra_headers"] = dict.fromkeys(shown["extra_headers"], "***")
    return shown


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from (litellm wraps the transport's errors)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _timed_out(exc: BaseException, litellm: Any) -> bool:
    """Whether the call timed out (litellm.Timeout, or a transport timeout underneath)."""
    return any(
        isinstance(c, (litellm.Timeout, TimeoutError)) or type(c).__name__ in ("APITimeoutError", "ReadTimeout")
        for c in _causes(exc)
    )


def _connection_failed(exc: BaseException, litellm: Any) -> bool:
    """Whether the server could not be reached.

    litellm reports a refused connection to an OpenAI-compatible server as an HTTP 500
    ``InternalServerError``; the transport's ``ConnectError`` is further down the chain.
    """
    return any(
        isinstance(c, (litellm.APIConnectionError, ConnectionError))
        or type(c).__name__ in ("APIConnectionError", "ConnectError", "ConnectTimeout")
        for c in _causes(exc)
    )


def _malformed(exc: BaseException) -> bool:
    """Whether a "successful" response could not be parsed as a chat completion.

    litellm reports that as an HTTP 500 with the JSON decoding error (or its own complaint
    about an invalid response) underneath; it is a misconfigured endpoint, not a glitch.
    """
    return any(isinstance(c, json.JSONDecodeError) or "Empty or invalid response" in str(c) for c in _causes(exc))


def _transient(exc: BaseException, litellm: Any) -> bool:
    """Whether a retry may succeed: rate limits, server errors, connection problems, timeouts.

    Never for errors a retry cannot fix: bad credentials, a rejected request, an unknown model.
    """
    permanent = tuple(
        getattr(litellm, name)
        for name in ("AuthenticationError", "PermissionDeniedError", "BadRequestError", "NotFoundError")
        if isinstance(getattr(litellm, name, None), type)
    )
    if (permanent and isinstance(exc, permanent)) or _malformed(exc):
        return False
    if _timed_out(exc, litellm) or _connection_failed(exc, litellm):
        return True
    if isinstance(exc, litellm.RateLimitError):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status in (408, 429) or status >= 500)


def _retry_after(exc: BaseException | None) -> float | None:
    """Seconds a server asked the client to wait (``Retry-After`` in seconds), if it said."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or getattr(exc, "litellm_response_headers", None)
    if headers is None:
        return None
    try:
        value = headers.get("retry-after")
        return max(0.0, float(value)) if value is not None else None
    except (AttributeError, TypeError, ValueError):
        return None


class _Backoff:
    """Tenacity wait: exponential backoff with jitter from ``delay`` (capped at 8 s), or the server's ``Retry-After``.

    Args:
        delay: Seconds before the first retry (0 retries at once); doubled for each further one,
            plus up to ``delay`` seconds of random jitter.
    """

    def __init__(self, delay: float) -> None:
        self.delay = max(0.0, delay)

    def __call__(self, retry_state: Any) -> float:
        outcome = retry_state.outcome
        asked = _retry_after(outcome.exception() if outcome is not None else None)
        if asked is not None:
            return min(asked, _MAX_RETRY_AFTER)
        exponential = self.delay * 2 ** max(0, retry_state.attempt_number - 1)
        return min(_MAX_BACKOFF, exponential + random.uniform(0, self.delay))


# litellm prefixes messages with its class names twice ("litellm.RateLimitError: RateLimitError: ...").
_NOISE = re.compile(r"^(?:litellm\.\w+:\s*)?(?:\w+(?:Error|Exception):\s*)?")


def _first_line(text: str, limit: int = 400) -> str:
    """The first non-empty line of ``text`` without litellm's prefixes, shortened to ``limit`` characters."""
    for line in str(text).splitlines():
        if line.strip():
            line = _NOISE.sub("", line.strip()).rstrip(". ") or line.strip()
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return ""
