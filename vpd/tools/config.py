"""Toolkit configuration: which backend serves each capability, from code, env or TOML.

Environment variables (all optional)::

    VPD_TOOLKIT=offline|hub|auto|/path/to/toolkit.toml   the starting point (default: auto)
    VPD_DEVICE=cpu|cuda|cuda:1                           device for every backend
    VPD_<CAP>=<backend>|none                             e.g. VPD_DETECT=owlv2, VPD_SEGMENT=none
    VPD_<CAP>_MODEL=<hub id or path>                     e.g. VPD_DEPTH_MODEL=/models/depth-anything
    VPD_<CAP>_DEVICE=...                                 per-capability device
    VPD_LLM=<litellm model string>                       e.g. VPD_LLM=openai/gpt-4o-mini
    VPD_LLM_API_BASE=http://127.0.0.1:8000/v1            OpenAI-compatible server (also VPD_VQA_API_BASE)
    VPD_LLM_API_KEY=...                                  key for it (also VPD_VQA_API_KEY)
    VPD_CACHE_DIR=~/.cache/vpd                           also keep tool results on disk
    VPD_RESULT_CACHE=0                                   disable the result cache

``<CAP>`` is one of DETECT, SEGMENT, DEPTH, OCR, VQA, MATCH, LLM.

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

__all__ = ["AUTO_ORDER", "PRESETS", "BackendSpec", "ToolkitConfig", "config_from_env", "config_from_toml"]

#: In ``auto`` mode, the backends tried per capability, best first; the first one whose
#: dependencies and weights are on disk wins. Capabilities absent here stay unset.
AUTO_ORDER: dict[str, tuple[str, ...]] = {
    "detect": ("owlv2", "grounding_dino", "nanodet"),
    "segment": ("sam",),
    "depth": ("depth_anything", "ground_plane"),
    "ocr": ("paddleocr", "rapidocr"),
    "vqa": ("blip", "described"),
    "match": ("siglip", "clip"),
    "llm": (),
}

#: Fixed choices per preset (``None``: the capability is not served).
PRESETS: dict[str, dict[str, str | None]] = {
    "offline": {
        "detect": "nanodet",
        "segment": None,
        "depth": "ground_plane",
        "ocr": "rapidocr",
        "vqa": "described",
        "match": None,
        "llm": None,
    },
    "hub": {
        "detect": "owlv2",
        "segment": "sam",
        "depth": "depth_anything",
        "ocr": "rapidocr",
        "vqa": "blip",
        "match": "clip",
        "llm": None,
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
        return None if table.lower() in _OFF else BackendSpec(backend=table, source=source)
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
        if capability == "llm" and backend and "/" in backend:
            # VPD_LLM=openai/gpt-4o-mini: a litellm model string rather than a backend name.
            model, backend = backend, "litellm"
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
