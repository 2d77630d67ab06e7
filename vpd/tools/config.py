"""Toolkit configuration: which backend serves each capability, from code, env or TOML.

Environment variables (all optional)::

    VPD_TOOLKIT=offline|hub|auto|/path/to/toolkit.toml   the starting point (default: auto)
    VPD_DEVICE=cpu|cuda|cuda:1                           device for every backend
    VPD_<CAP>=<backend>|none                             e.g. VPD_DETECT=owlv2, VPD_SEGMENT=none
    VPD_<CAP>_MODEL=<hub id or path>                     e.g. VPD_DEPTH_MODEL=/models/depth-anything
    VPD_<CAP>_DEVICE=...                                 per-capability device
    VPD_LLM=local|local:0.5b|/path/model.gguf            the embedded llama.cpp model (see below)
    VPD_LLM=<litellm model string>                       e.g. VPD_LLM=openai/gpt-4o-mini
    VPD_LLM_API_BASE=http://127.0.0.1:8000/v1            OpenAI-compatible server (also VPD_VQA_API_BASE)
    VPD_LLM_API_KEY=...                                  key for it (also VPD_VQA_API_KEY)
    VPD_CACHE_DIR=~/.cache/vpd                           also keep tool results on disk; assembled
                                                         local models go to its models/ folder
    VPD_RESULT_CACHE=0                                   disable the result cache

``<CAP>`` is one of DETECT, SEGMENT, DEPTH, OCR, VQA, MATCH, LLM.

``VPD_LLM`` picks the language model (see :func:`llm_spec`):

* ``local`` (Qwen2.5-Coder-1.5B-Instruct), ``local:0.5b`` (the 0.5B), a known model name
  such as ``qwen2.5-coder-0.5b``, or a path ending in ``.gguf``: the embedded model, run
  in-process by llama.cpp (backend ``llama_cpp``; ``pip install 'vpd[local]'``);
* ``none``: no LLM;
* the name of a registered llm backend (``litellm``, ``llama_cpp``), with ``VPD_LLM_MODEL``;
* anything else is a litellm model string (``openai/gpt-4o-mini``, ``ollama/qwen2.5-coder``,
  ``gpt-4o-mini``...; litellm comes with a bare ``pip install vpd``), with the provider's
  key in its usual environment variable (``OPENAI_API_KEY``...).

Unset, the ``auto``, ``offline`` and ``hub`` toolkits use the embedded model when
llama-cpp-python is installed and its weights are on disk or in installed packages, and
leave the LLM off otherwise (``vpd tools`` says why and how to get one). A hosted model is
never chosen without ``VPD_LLM``, even when a provider's key is set.

A TOML file has the same content::

    preset = "offline"          # offline | hub | auto
    device = "cpu"

    [cache]
    max_entries = 4096
    directory = "~/.cache/vpd"

    [detect]
    backend = "owlv2"
    model = "google/owlv2-base-patch16-ensemble"
    score_threshold = 0.2       # any other key is a backend option

    [llm]
    backend = "llama_cpp"       # or: llm = "local:0.5b" / "openai/gpt-4o-mini" as a plain string
    model = "qwen2.5-coder-0.5b"
    n_ctx = 8192
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vpd.errors import ConfigError
from vpd.tools.types import CAPABILITIES

__all__ = [
    "AUTO",
    "AUTO_ORDER",
    "PRESETS",
    "BackendSpec",
    "ToolkitConfig",
    "config_from_env",
    "config_from_toml",
    "llm_spec",
]

#: A preset's choice meaning "the first available backend in :data:`AUTO_ORDER`".
AUTO = "auto"

#: In ``auto`` mode, the backends tried per capability, best first; the first one whose
#: dependencies and weights are on disk wins. Capabilities absent here stay unset.
AUTO_ORDER: dict[str, tuple[str, ...]] = {
    "detect": ("owlv2", "grounding_dino", "nanodet"),
    "segment": ("sam",),
    "depth": ("depth_anything", "ground_plane"),
    "ocr": ("paddleocr", "rapidocr"),
    "vqa": ("blip", "described"),
    "match": ("siglip", "clip"),
    "llm": ("llama_cpp",),
}

#: Fixed choices per preset (``None``: the capability is not served; :data:`AUTO`: the first
#: available backend of :data:`AUTO_ORDER`, e.g. the embedded LLM when its weights are installed).
PRESETS: dict[str, dict[str, str | None]] = {
    "offline": {
        "detect": "nanodet",
        "segment": None,
        "depth": "ground_plane",
        "ocr": "rapidocr",
        "vqa": "described",
        "match": None,
        "llm": AUTO,
    },
    "hub": {
        "detect": "owlv2",
        "segment": "sam",
        "depth": "depth_anything",
        "ocr": "rapidocr",
        "vqa": "blip",
        "match": "clip",
        "llm": AUTO,
    },
}


@dataclass(frozen=True)
class BackendSpec:
    """How to build the backend of one capability.

    Attributes:
        backend: Registered backend name (see ``vpd tools --all``).
        model: Hub id or local path; None for the backend's default.
        device: Device for this backend; None for the toolkit's.
        dtype: ``float32``/``float16``/``bfloat16``; None to pick per device.
        options: Backend-specific options (thresholds...).
        source: Where this choice came from, for ``vpd tools`` (e.g. ``"VPD_DETECT"``).
    """

    backend: str
    model: str | None = None
    device: str | None = None
    dtype: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    source: str = "code"


@dataclass(frozen=True)
class ToolkitConfig:
    """A whole toolkit configuration.

    Attributes:
        preset: ``"auto"``, ``"offline"`` or ``"hub"``: the choice for capabilities not in ``backends``.
        backends: Explicit choices; ``None`` as a value turns a capability off.
        device: Default device of every backend.
        cache_entries: Size of the in-memory result cache (0 disables the cache).
        cache_dir: Directory for the on-disk result cache; None keeps results in memory only.
    """

    preset: str = "auto"
    backends: Mapping[str, BackendSpec | None] = field(default_factory=dict)
    device: str | None = None
    cache_entries: int = 4096
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.preset not in ("auto", *PRESETS):
            raise ConfigError(f"Unknown toolkit preset {self.preset!r}; use one of: auto, {', '.join(PRESETS)}.")
        for capability in self.backends:
            check_capability(capability)

    def with_backend(self, capability: str, spec: BackendSpec | None) -> ToolkitConfig:
        """A copy with ``capability`` served by ``spec`` (None turns it off)."""
        check_capability(capability)
        return replace(self, backends={**self.backends, capability: spec})


def check_capability(capability: str) -> None:
    """Raise :class:`ConfigError` unless ``capability`` is known."""
    if capability not in CAPABILITIES:
        raise ConfigError(f"Unknown capability {capability!r}; capabilities are: {', '.join(CAPABILITIES)}.")


_SPEC_KEYS = ("backend", "model", "device", "dtype")
_OFF = ("none", "off", "")


def _spec_from_table(capability: str, table: Any, source: str) -> BackendSpec | None:
    if isinstance(table, str):
        if table.strip().lower() in _OFF:
            return None
        if capability == "llm":
            return llm_spec(table, source=source)
        return BackendSpec(backend=table, source=source)
    if not isinstance(table, Mapping):
        raise ConfigError(f"[{capability}] in {source} must be a table or a backend name, not {type(table).__name__}.")
    backend = table.get("backend")
    if backend is None or (isinstance(backend, str) and backend.lower() in _OFF):
        if backend is None and any(k in table for k in ("model", "device", "dtype")):
            raise ConfigError(f'[{capability}] in {source} sets a model or device but no backend; add backend = "...".')
        return None
    if not isinstance(backend, str):
        raise ConfigError(f"[{capability}] backend in {source} must be a string.")
    for key in ("model", "device", "dtype"):
        if key in table and not isinstance(table[key], str):
            raise ConfigError(f"[{capability}] {key} in {source} must be a string.")
    options = {k: v for k, v in table.items() if k not in _SPEC_KEYS}
    return BackendSpec(
        backend=backend,
        model=table.get("model"),
        device=table.get("device"),
        dtype=table.get("dtype"),
        options=options,
        source=source,
    )


def config_from_mapping(data: Mapping[str, Any], source: str = "config") -> ToolkitConfig:
    """Build a :class:`ToolkitConfig` from parsed TOML (or any nested mapping)."""
    known = {"preset", "device", "cache", *CAPABILITIES}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"Unknown key(s) {', '.join(unknown)} in {source}; allowed: preset, device, [cache] and one table per "
            f"capability ({', '.join(CAPABILITIES)})."
        )
    preset = data.get("preset", "auto")
    if not isinstance(preset, str):
        raise ConfigError(f"preset in {source} must be a string.")
    device = data.get("device")
    if device is not None and not isinstance(device, str):
        raise ConfigError(f"device in {source} must be a string.")
    cache = data.get("cache", {})
    if not isinstance(cache, Mapping):
        raise ConfigError(f"[cache] in {source} must be a table.")
    bad_cache = sorted(set(cache) - {"max_entries", "directory"})
    if bad_cache:
        raise ConfigError(
            f"Unknown key(s) {', '.join(bad_cache)} in [cache] of {source}; allowed: max_entries, directory."
        )
    entries = cache.get("max_entries", 4096)
    if not isinstance(entries, int) or isinstance(entries, bool) or entries < 0:
        raise ConfigError(f"[cache] max_entries in {source} must be a non-negative integer.")
    backends = {cap: _spec_from_table(cap, data[cap], source) for cap in CAPABILITIES if cap in data}
    directory = cache.get("directory")
    return ToolkitConfig(
        preset=preset,
        backends=backends,
        device=device,
        cache_entries=entries,
        cache_dir=str(directory) if directory is not None else None,
    )


def config_from_toml(path: str | os.PathLike[str]) -> ToolkitConfig:
    """Read a toolkit TOML file (see the module docstring for its format).

    Raises:
        ConfigError: The file is missing, not valid TOML, or has unknown keys or bad values.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    file = Path(path).expanduser()
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"Toolkit file not found: {str(file)!r}.") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read toolkit file {str(file)!r}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{str(file)!r} is not valid TOML: {exc}") from exc
    return config_from_mapping(data, source=str(file))


def config_from_env(environ: Mapping[str, str] | None = None) -> ToolkitConfig:
    """Build a :class:`ToolkitConfig` from ``VPD_*`` environment variables (see the module docstring).

    Raises:
        ConfigError: An invalid value (unknown preset, unreadable TOML file...).
    """
    env = os.environ if environ is None else environ
    base_name = env.get("VPD_TOOLKIT", "").strip()
    if base_name.lower() in ("", "auto", "default"):
        config = ToolkitConfig()
    elif base_name.lower() in PRESETS:
        config = ToolkitConfig(preset=base_name.lower())
    elif base_name.endswith(".toml") or Path(base_name).expanduser().is_file():
        config = config_from_toml(base_name)
    else:
        raise ConfigError(
            f"VPD_TOOLKIT={base_name!r} is neither a preset (auto, {', '.join(PRESETS)}) nor an existing TOML file."
        )
    backends: dict[str, BackendSpec | None] = dict(config.backends)
    for capability in CAPABILITIES:
        key = f"VPD_{capability.upper()}"
        name = env.get(key)
        model = env.get(f"{key}_MODEL")
        device = env.get(f"{key}_DEVICE")
        api_base = env.get(f"{key}_API_BASE")
        api_key = env.get(f"{key}_API_KEY")
        if name is None and model is None and device is None and api_base is None and api_key is None:
            continue
        current = backends.get(capability)
        if name is not None and name.strip().lower() in _OFF:
            backends[capability] = None
            continue
        options: dict[str, Any] = dict(current.options) if current else {}
        if api_base:
            options["api_base"] = api_base
        if api_key:
            options["api_key"] = api_key
        backend = (name or "").strip() or (current.backend if current else None)
        if capability == "llm" and name is not None and name.strip():
            # VPD_LLM=local:0.5b, =/models/x.gguf or =openai/gpt-4o-mini: a model rather than a backend name.
            chosen = llm_spec(name.strip(), source=key)
            backend = chosen.backend
            model = chosen.model if chosen.model is not None else model
        if backend is None:
            raise ConfigError(
                f"{key}_MODEL, {key}_DEVICE or {key}_API_BASE is set but {key} (the backend name) is not."
            )
        backends[capability] = BackendSpec(
            backend=backend,
            model=model or (current.model if current and current.backend == backend else None),
            device=device or (current.device if current else None),
            dtype=current.dtype if current else None,
            options=options,
            source=key,
        )
    cache_entries = config.cache_entries
    flag = env.get("VPD_RESULT_CACHE")
    if flag is not None and flag.strip().lower() in ("0", "false", "no", "off"):
        cache_entries = 0
    return ToolkitConfig(
        preset=config.preset,
        backends=backends,
        device=env.get("VPD_DEVICE") or config.device,
        cache_entries=cache_entries,
        cache_dir=env.get("VPD_CACHE_DIR") or config.cache_dir,
    )


_LLM_BACKENDS_FOR_MODELS = ("llama_cpp", "litellm")


def llm_spec(value: str, *, source: str = "code", options: Mapping[str, Any] | None = None) -> BackendSpec:
    """Interpret a ``VPD_LLM``-style string as the spec of an llm backend.

    Args:
        value: ``"local"``, ``"local:0.5b"``, a known local model name, or a path ending in
            ``.gguf`` (the embedded ``llama_cpp`` backend); ``"transformers:MODEL"`` or a
            model folder (a saved causal LM, or a LoRA adapter of ``vpd train-writer``: the
            ``transformers`` backend); the name of a registered llm backend; or a litellm
            model string (``"openai/gpt-4o-mini"``...).
        source: Where the value came from (shown by ``vpd tools``).
        options: Backend options to attach.

    Returns:
        The :class:`BackendSpec`.

    Raises:
        ConfigError: An empty value.

    Example:
        >>> llm_spec("local:0.5b").backend, llm_spec("local:0.5b").model
        ('llama_cpp', 'qwen2.5-coder-0.5b')
        >>> llm_spec("openai/gpt-4o-mini").backend
        'litellm'
    """
    from vpd.tools.gguf import is_gguf_path, known_model

    text = value.strip()
    if not text:
        raise ConfigError(
            f"The LLM setting from {source} is empty; use local, local:0.5b, a .gguf path or a litellm model string."
        )
    opts = dict(options or {})
    spec = known_model(text)
    if spec is not None:
        return BackendSpec(backend="llama_cpp", model=spec.name, options=opts, source=source)
    if text.lower().startswith("transformers:"):
        return BackendSpec(backend="transformers", model=text.split(":", 1)[1], options=opts, source=source)
    folder = Path(text).expanduser()
    if folder.is_dir() and ((folder / "adapter_config.json").is_file() or (folder / "config.json").is_file()):
        # A fine-tuned writer (vpd train-writer's adapter) or any saved causal LM.
        return BackendSpec(backend="transformers", model=text, options=opts, source=source)
    if text.lower().endswith(".gguf"):
        return BackendSpec(backend="llama_cpp", model=text, options=opts, source=source)
    if text.lower().startswith("local:") or text.lower().startswith("qwen2.5-coder-"):
        from vpd.tools.gguf import KNOWN_MODELS

        raise ConfigError(
            f"Unknown local model {text!r} (from {source}): use local, local:1.5b, local:0.5b "
            f"({', '.join(sorted(KNOWN_MODELS))}) or a path to a .gguf file."
        )
    if "/" not in text and not is_gguf_path(text) and _is_llm_backend(text):
        return BackendSpec(backend=text, options=opts, source=source)
    return BackendSpec(backend="litellm", model=text, options=opts, source=source)


def _is_llm_backend(name: str) -> bool:
    """Whether ``name`` is a registered llm backend (the built-ins without loading plug-ins first)."""
    if name in _LLM_BACKENDS_FOR_MODELS:
        return True
    from vpd.tools.registry import backend_registry

    try:
        return name in backend_registry.names("llm")
    except ConfigError:
        return False
