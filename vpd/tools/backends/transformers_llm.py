"""A chat model run by Hugging Face transformers: any causal LM, a LoRA adapter on one, or a GGUF.

The backend for program writers fine-tuned with ``vpd train-writer`` (a base model plus a
PEFT adapter), and for any causal LM checkpoint: ``--llm transformers:DIR`` (or a folder
path; see :func:`vpd.tools.config.llm_spec`).

The model may be:

* a hub id or a folder saved with ``save_pretrained``;
* a folder with a PEFT adapter (``adapter_config.json``): its base comes from the
  adapter's ``vpd_train.json`` (or ``adapter_config.json``), and the adapter's tokenizer is used;
* a ``.gguf`` file, which transformers dequantises and loads (``pip install gguf``).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from vpd.errors import BackendUnavailable
from vpd.tools.backend import Availability
from vpd.tools.backends._chat import check_conversation, check_sampling
from vpd.tools.hub import HubBackend, load_causal_lm
from vpd.tools.types import ChatMessage, Completion

__all__ = ["TransformersChat"]


class TransformersChat(HubBackend):
    """Chat with a causal LM through transformers (see the module docstring).

    Implements :class:`~vpd.tools.protocols.LanguageModel` (``chat``) and
    :class:`~vpd.tools.protocols.TextGenerator` (``generate``). Calls are serialised;
    ``seed`` makes a sampled reply reproducible.

    Prompts that start the same reuse the attention keys and values of their shared start
    (for ``vpd solve``, the API description of every prompt): the first prompt that shares a
    start with the one before it computes that start once, and later prompts that begin
    with it skip it. ``prefix_hits`` counts the reuses.

    Options:
        top_p: Nucleus sampling when the temperature is above 0 (0.95).
        prefix_cache: Reuse the shared start of prompts (True). The reused keys and values
            are the same numbers up to rounding, so a greedy reply may rarely differ in a
            late token from one computed without it.
    """

    capability: ClassVar[str] = "llm"
    name: ClassVar[str] = "transformers"
    default_model: ClassVar[str | None] = None
    extra: ClassVar[str | None] = "train"
    description: ClassVar[str] = "causal LM run by transformers (hub id, folder, LoRA adapter folder or .gguf)"
    option_defaults: ClassVar[dict[str, Any]] = {"top_p": 0.95, "prefix_cache": True}

    #: Shared starts shorter than this are not worth a separate forward pass.
    MIN_PREFIX_TOKENS: ClassVar[int] = 64

    def __init__(self, model: str | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self._lock = threading.Lock()
        self._identity: str | None = None
        self._last_ids: list[int] = []
        self._prefix: tuple[list[int], Any] | None = None
        self.prefix_hits = 0

    @classmethod
    def check_available(cls, model: str | None = None) -> Availability:
        """Torch and transformers installed, and the model a local file or folder (or a cached hub id)."""
        if model is not None and (Path(model).expanduser().is_file() or Path(model).expanduser().is_dir()):
            return super(HubBackend, cls).check_available(model)
        return super().check_available(model)

    def model_key(self) -> Hashable:
        """One loaded model per source, device and dtype."""
        return ("transformers-llm", self.model_id, self.device, str(self.torch_dtype))

    def cache_identity(self) -> str:
        """The model and, for an adapter, a digest of its weights (a retrained adapter writes new replies)."""
        if self._identity is not None:
            return self._identity
        path = Path(str(self.model_id)).expanduser()
        digest = ""
        weights = path / "adapter_model.safetensors"
        if weights.is_file():
            digest = "@" + hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
        elif path.is_file():
            digest = f"@{path.stat().st_size}"
        # Once per backend: hashing the adapter for every completion would cost more than the lookup.
        self._identity = f"llm/transformers/{self.model_id}{digest}/top_p={self.options['top_p']!r}"
        return self._identity

    def _load(self) -> tuple[Any, Any]:
        if not self.model_id:
            raise BackendUnavailable(
                "The llm backend 'transformers' needs a model: a hub id, a folder, an adapter folder or a .gguf "
                "file (e.g. --llm transformers:runs/writer).",
                capability=self.capability,
                backend=self.name,
            )
        path = Path(self.model_id).expanduser()
        if self.model_id.startswith((".", "/", "~")) and not path.exists():
            raise BackendUnavailable(
                f"The model {self.model_id!r} for the llm backend 'transformers' does not exist.",
                capability=self.capability,
                backend=self.name,
            )
        try:
            model, tokenizer = load_causal_lm(str(self.model_id), dtype=self.torch_dtype)
        except (OSError, ValueError) as exc:
            detail = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise BackendUnavailable(
                f"Could not load {self.model_id!r} with transformers ({detail}).",
                capability=self.capability,
                backend=self.name,
            ) from exc
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        return model.to(self.device).eval(), tokenizer

    def generate(
        self,
        messages: Sequence[ChatMessage],
        *,
        temperature: float = 0.0,
        max_tokens: int = 512,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> Completion:
        """Sample one reply (greedy at temperature 0) with the model's chat template.

        Raises:
            InvalidArgumentError: Malformed messages or sampling settings.
            BackendUnavailable: The model cannot be loaded.
            BackendError: Generation failed.
        """
        import torch

        prepared = check_conversation(0, messages)
        stops = check_sampling(temperature=temperature, max_tokens=max_tokens, seed=seed, stop=stop)
        model, tokenizer = self.load()
        with self._lock, self.model_errors(f"transformers generation with {self.model_id}"):
            ids = tokenizer.apply_chat_template(prepared, add_generation_prompt=True, return_tensors="pt")
            if not isinstance(ids, torch.Tensor):  # transformers 5 returns a BatchEncoding
                ids = ids["input_ids"]
            ids = ids.to(self.device)
            sampling: dict[str, Any] = {"do_sample": False}
            if temperature > 0:
                if seed is not None:
                    torch.manual_seed(seed)
                sampling = {"do_sample": True, "temperature": float(temperature), "top_p": float(self.options["top_p"])}
            started = time.perf_counter()
            with torch.no_grad():
                past = self._prefix_cache(model, ids[0].tolist()) if self.options["prefix_cache"] else None
                reuse = {} if past is None else {_cache_keyword(model): past}
                output = model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=max_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                    stop_strings=stops or None,  # stop generating there, not only cut the text after
                    tokenizer=tokenizer,
                    **sampling,
                    **reuse,
                )
            seconds = time.perf_counter() - started
        new = output[0, ids.shape[1] :].tolist()
        text = tokenizer.decode(new, skip_special_tokens=True)
        finish = "length" if len(new) >= max_tokens else "stop"
        for marker in stops:
            if marker in text:
                text, finish = text[: text.index(marker)], "stop"
        return Completion(
            text=text,
            model=str(self.model_id),
            prompt_tokens=int(ids.shape[1]),
            completion_tokens=len(new),
            seconds=seconds,
            finish_reason=finish,
        )

    def _prefix_cache(self, model: Any, ids: list[int]) -> Any:
        """A copy of the cached keys and values of a start of ``ids``, or None (call under the lock).

        The cached start is the one the previous prompt shared with the one before it; a
        new shared start replaces it when the prompts change.
        """
        import copy

        import torch

        if self._prefix is not None:
            start, cache = self._prefix
            if len(ids) > len(start) and ids[: len(start)] == start:
                self.prefix_hits += 1
                self._last_ids = ids
                return copy.deepcopy(cache)  # generate() extends the copy, not the stored start
        shared = 0
        for a, b in zip(self._last_ids, ids[:-1], strict=False):  # at least one token left to compute
            if a != b:
                break
            shared += 1
        self._last_ids = ids
        if shared < self.MIN_PREFIX_TOKENS or not _plain_cache_model(model):
            return None
        from transformers import DynamicCache

        config = model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") else None
        cache = DynamicCache(config=config) if config is not None else DynamicCache()
        start_ids = torch.tensor([ids[:shared]], device=self.device)
        model(
            input_ids=start_ids,
            attention_mask=torch.ones_like(start_ids),
            use_cache=True,
            **_one_logit(model),  # only the keys and values are kept: no logits for every position
            **{_cache_keyword(model): cache},
        )
        self._prefix = (ids[:shared], cache)
        return copy.deepcopy(cache)

    def chat(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> list[str]:
        """Complete each conversation, one after the other."""
        for index, conversation in enumerate(conversations):
            check_conversation(index, conversation)
        return [self.generate(c, temperature=temperature, max_tokens=max_tokens).text for c in conversations]


def _unwrapped(model: Any) -> Any:
    """The transformers model itself: a PEFT model's base, or the model."""
    return model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model


def _forward_parameters(model: Any) -> Any:
    """The parameters the model's ``forward`` takes (by name)."""
    import inspect

    return inspect.signature(_unwrapped(model).forward).parameters


def _cache_keyword(model: Any) -> str:
    """The keyword that passes a key/value cache: ``cache`` in newer transformers, ``past_key_values`` before."""
    return "cache" if "cache" in _forward_parameters(model) else "past_key_values"


def _plain_cache_model(model: Any) -> bool:
    """Whether a plain dynamic key/value cache serves the model (not a hybrid, sliding or recurrent one)."""
    inner = _unwrapped(model)
    if getattr(getattr(inner, "generation_config", None), "cache_implementation", None):
        return False  # the model asks for its own cache type (e.g. hybrid)
    supports = getattr(inner, "_supports_default_dynamic_cache", None)
    return bool(supports()) if callable(supports) else True


def _one_logit(model: Any) -> dict[str, int]:
    """``logits_to_keep=1`` (``num_logits_to_keep`` in older transformers), when the model takes it."""
    parameters = _forward_parameters(model)
    for name in ("logits_to_keep", "num_logits_to_keep"):
        if name in parameters:
            return {name: 1}
    return {}
