"""Shared code of the backends that load Hugging Face checkpoints (``vpd[hub]``).

:class:`HubBackend` knows how to tell, without touching the network, whether a
checkpoint is on disk (a local directory or the Hugging Face cache), and turns the
errors of ``from_pretrained`` into :class:`~vpd.errors.BackendUnavailable` messages that
say what to do. :func:`load_causal_lm` loads a text model from a hub id, a folder, a GGUF
file or a LoRA adapter folder (the program writer's backend and its trainer share it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from vpd.errors import BackendError, BackendUnavailable
from vpd.tools.backend import Availability, Backend, resolve_torch_dtype

__all__ = ["HubBackend", "adapter_base", "dequantized", "load_causal_lm", "read_json_object", "weights_on_disk"]


def weights_on_disk(model: str | None, filename: str = "config.json") -> Availability:
    """Whether ``model`` (a local directory or a hub repo id) is present locally.

    Looks at the directory, or at the Hugging Face cache; never downloads.
    """
    if not model:
        return Availability(False, "no model id configured")
    path = Path(model).expanduser()
    if path.exists():
        return Availability(path.is_dir() or path.is_file(), f"local path {model}")
    if model.startswith((".", "/", "~")):
        return Availability(False, f"local path {model} does not exist")
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return Availability(False, "huggingface_hub is not installed (pip install 'vpd[hub]')")
    try:
        found = try_to_load_from_cache(repo_id=model, filename=filename)
    except Exception as exc:  # an invalid repo id, for instance
        return Availability(False, f"cannot look up {model!r} in the cache: {exc}")
    if isinstance(found, str):
        return Availability(True, f"{model} is in the Hugging Face cache")
    return Availability(False, f"{model} not downloaded")


class HubBackend(Backend):
    """A backend whose model is a transformers checkpoint (hub id or local directory).

    Options common to hub backends are declared by subclasses in ``option_defaults``.
    """

    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers")
    extra: ClassVar[str | None] = "hub"
    #: A file every checkpoint of this backend has; used to check the cache offline.
    probe_file: ClassVar[str] = "config.json"

    @classmethod
    def check_available(cls, model: str | None = None) -> Availability:
        """Dependencies installed *and* weights on disk (the default toolkit never blocks on a download)."""
        deps = super().check_available(model)
        if not deps:
            return deps
        return weights_on_disk(model or cls.default_model, cls.probe_file)

    @property
    def torch_dtype(self) -> Any:
        """The torch dtype for this backend's device."""
        return resolve_torch_dtype(self.requested_dtype, self.device)

    def from_pretrained(self, loader: Any, **kwargs: Any) -> Any:
        """Call ``loader.from_pretrained(self.model_id, **kwargs)`` with readable errors."""
        if not self.model_id:
            raise BackendUnavailable(
                f"No model configured for the {self.capability} backend {self.name!r}; pass model=... "
                f"or set VPD_{self.capability.upper()}_MODEL.",
                capability=self.capability,
                backend=self.name,
            )
        local = Path(self.model_id).expanduser()
        if self.model_id.startswith((".", "/", "~")) and not local.exists():
            raise BackendUnavailable(
                f"The local model directory {self.model_id!r} for the {self.capability} backend {self.name!r} "
                "does not exist; pass an existing directory (saved with save_pretrained) or a hub model id.",
                capability=self.capability,
                backend=self.name,
            )
        try:
            return loader.from_pretrained(self.model_id, **kwargs)
        except (OSError, ValueError) as exc:
            detail = (str(exc).splitlines() or [type(exc).__name__])[0].rstrip(".")
            if local.exists():
                message = (
                    f"{self.model_id!r} is not a checkpoint the {self.capability} backend {self.name!r} can load "
                    f"({detail}). Point it at a directory saved with save_pretrained for this model type."
                )
            else:
                offline = os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0")
                why = "HF_HUB_OFFLINE is set and it is not cached" if offline else "not cached, and the download failed"
                message = (
                    f"Could not load {self.model_id!r} for the {self.capability} backend {self.name!r} ({why}: "
                    f"{detail}). Download it where the hub is reachable (huggingface-cli download {self.model_id}) "
                    "or pass a local directory as the model."
                )
            raise BackendUnavailable(message, capability=self.capability, backend=self.name) from exc

    def to_device(self, model: Any) -> Any:
        """Move a torch module to this backend's device and dtype, in eval mode."""
        return model.to(device=self.device, dtype=self.torch_dtype).eval()

    @contextmanager
    def model_errors(self, what: str) -> Iterator[None]:
        """Turn a ``RuntimeError``/``ValueError`` raised inside into a :class:`BackendError` ``"{what}: {error}"``.

        Wraps processor and model calls, whose failures (bad image sizes, out of memory,
        dtype trouble) are not the caller's bug but should still name the backend.
        """
        try:
            yield
        except (RuntimeError, ValueError) as exc:
            raise BackendError(f"{what}: {exc}", capability=self.capability, backend=self.name) from exc

    def model_inputs(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Move processor outputs to this backend's device; floating tensors also take its dtype.

        Integer tensors (token ids, masks) keep their dtype; values that are not tensors
        are passed through unchanged.
        """
        moved = {}
        for key, value in inputs.items():
            if hasattr(value, "to"):
                value = (
                    value.to(device=self.device, dtype=self.torch_dtype)
                    if value.is_floating_point()
                    else value.to(self.device)
                )
            moved[key] = value
        return moved


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; ``{}`` when it is missing, unreadable or not an object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def adapter_base(folder: Path) -> str | None:
    """The base model a PEFT adapter folder was trained on (``vpd_train.json``, else ``adapter_config.json``)."""
    base = read_json_object(folder / "vpd_train.json").get("base") or read_json_object(
        folder / "adapter_config.json"
    ).get("base_model_name_or_path")
    return str(base) if base else None


def dequantized(model: Any) -> Any:
    """A model loaded from a GGUF file, without the quantization marker transformers leaves on it.

    transformers dequantises GGUF weights to floats on load but keeps ``hf_quantizer`` and
    ``config.quantization_config``, so the ``Trainer`` refuses to fine-tune it ("GGUF does
    not support training") and saved copies claim to be quantized. The weights are plain
    floats: drop the marker.
    """
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    # The Trainer reads ``is_quantized`` (set on the model and on every sub-model's config).
    if getattr(model, "is_quantized", False):
        model.is_quantized = False
    if hasattr(model, "quantization_method"):
        del model.quantization_method
    modules = model.modules() if callable(getattr(model, "modules", None)) else [model]
    for module in modules:
        config = getattr(module, "config", None)
        for part in (config, getattr(config, "text_config", None)):
            if part is None:
                continue
            if getattr(part, "quantization_config", None) is not None:
                del part.quantization_config
            if getattr(part, "_is_quantized", False):
                part._is_quantized = False
    return model


def load_causal_lm(source: str, *, dtype: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) for a hub id, a folder, a ``.gguf`` file, or an adapter folder on any of those.

    Raises:
        BackendUnavailable: transformers (or peft, or gguf for a GGUF file) is missing, or
            an adapter folder does not name its base.
    """
    import transformers

    path = Path(source).expanduser()
    if (path / "adapter_config.json").is_file():
        base = adapter_base(path)
        if base is None:
            raise BackendUnavailable(f"The adapter folder {path} does not say which base model it adapts.")
        try:
            import peft
        except ImportError as exc:
            raise BackendUnavailable("Loading a LoRA adapter needs peft: pip install 'vpd[train]'.") from exc
        model, tokenizer = load_causal_lm(base, dtype=dtype)
        if (path / "tokenizer_config.json").is_file():
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
        return peft.PeftModel.from_pretrained(model, str(path)), tokenizer
    options: dict[str, Any] = {} if dtype is None else {"dtype": dtype}
    if path.suffix.lower() == ".gguf":
        try:
            import gguf  # noqa: F401  (transformers reads GGUF files through it)
        except ImportError as exc:
            raise BackendUnavailable(
                "Loading a .gguf file with transformers needs the gguf package: pip install gguf."
            ) from exc
        folder, name = str(path.parent), path.name
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, **options)
        return dequantized(model), tokenizer
    tokenizer = transformers.AutoTokenizer.from_pretrained(source)
    model = transformers.AutoModelForCausalLM.from_pretrained(source, **options)
    return model, tokenizer
