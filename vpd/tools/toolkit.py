"""The toolkit: which backend serves each capability, the models they share, the result cache.

A :class:`Toolkit` owns everything heavy: the loaded models (one :class:`ModelStore`),
the tool-result cache, and the user tools it exposes. ``ImagePatch`` methods ask the
toolkit (see :mod:`vpd.tools.operations` for what each method does with which capability).

Build one from code, a preset, environment variables or a TOML file::

    Toolkit.offline()                      # runs with no network: NanoDet, RapidOCR, ...
    Toolkit.hub(device="cuda")             # OWLv2, SAM, Depth Anything, BLIP, CLIP
    Toolkit(detect="grounding_dino", depth=None)   # auto for the rest, no depth
    Toolkit.from_env()                     # VPD_* variables (see vpd.tools.config)
    Toolkit.from_toml("toolkit.toml")
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import dataclasses
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from vpd.errors import BackendUnavailable, ConfigError
from vpd.tools.backend import Backend, BackendInfo, ModelStore
from vpd.tools.cache import ResultCache
from vpd.tools.config import (
    AUTO,
    AUTO_ORDER,
    PRESETS,
    BackendSpec,
    ToolkitConfig,
    check_capability,
    config_from_env,
    config_from_toml,
)
from vpd.tools.contract import PatchOperations
from vpd.tools.operations import ToolOperations
from vpd.tools.registry import BackendRegistry, backend_registry
from vpd.tools.types import CAPABILITIES
from vpd.tools.user_tools import ToolRegistry, tool_registry

__all__ = [
    "CapabilityStatus",
    "Toolkit",
    "current_operations",
    "current_toolkit",
    "set_default_toolkit",
    "use_toolkit",
]

_UNSET: Any = object()
BackendChoice = str | BackendSpec | Backend | None


@dataclass(frozen=True)
class CapabilityStatus:
    """What serves one capability and why (one row of ``vpd tools``)."""

    capability: str
    info: BackendInfo | None
    reason: str


class Toolkit(ToolOperations):
    """Serves the capabilities that ``ImagePatch`` methods need.

    Args:
        config: A full configuration (from :func:`~vpd.tools.config.config_from_env`, TOML...).
        detect, segment, depth, ocr, vqa, match, llm: Override one capability: a backend
            name (``"owlv2"``), a :class:`~vpd.tools.config.BackendSpec`, a ready
            :class:`~vpd.tools.Backend` instance, or ``None`` to turn it off.
        device: Default device for every backend (``None``: CUDA when present).
        cache: A :class:`ResultCache` to use (can be shared between toolkits), ``False`` for
            none, or ``None`` to build one from ``config``.
        tools: The user tools programs may call (default: those registered with ``@vpd.tool``).
        models: The store of loaded models (share one between toolkits to share models).
        registry: The backend registry to resolve names in.

    Raises:
        ConfigError: Unknown capability or backend names, or options a backend does not take.
    """

    def __init__(
        self,
        config: ToolkitConfig | None = None,
        *,
        detect: BackendChoice = _UNSET,
        segment: BackendChoice = _UNSET,
        depth: BackendChoice = _UNSET,
        ocr: BackendChoice = _UNSET,
        vqa: BackendChoice = _UNSET,
        match: BackendChoice = _UNSET,
        llm: BackendChoice = _UNSET,
        device: str | None = None,
        cache: ResultCache | bool | None = None,
        tools: ToolRegistry | None = None,
        models: ModelStore | None = None,
        registry: BackendRegistry | None = None,
    ) -> None:
        self.config = config or ToolkitConfig()
        self.device = device or self.config.device
        self.models = models if models is not None else ModelStore()
        self.registry = registry or backend_registry
        self.tools = tools if tools is not None else tool_registry
        if cache is None:
            self.cache: ResultCache | None = (
                ResultCache(self.config.cache_entries, self.config.cache_dir) if self.config.cache_entries > 0 else None
            )
        elif cache is False:
            self.cache = None
        elif cache is True:
            self.cache = ResultCache(max(self.config.cache_entries, 1), self.config.cache_dir)
        else:
            self.cache = cache
        overrides = dict(detect=detect, segment=segment, depth=depth, ocr=ocr, vqa=vqa, match=match, llm=llm)
        self._backends: dict[str, Backend | None] = {}
        self._reasons: dict[str, str] = {}
        for capability in CAPABILITIES:
            choice = overrides[capability]
            if choice is not _UNSET:
                self._set(capability, choice, "set in code")
            elif capability in self.config.backends:
                spec = self.config.backends[capability]
                self._set(capability, spec, f"set by {spec.source}" if spec else "turned off in the configuration")
            elif self.config.preset in PRESETS and PRESETS[self.config.preset][capability] == AUTO:
                self._auto(capability, f"preset {self.config.preset!r}, auto")
            elif self.config.preset in PRESETS:
                name = PRESETS[self.config.preset][capability]
                self._set(capability, name, f"preset {self.config.preset!r}")
            else:
                self._auto(capability)
        self._bind_dependencies()

    # -- construction ------------------------------------------------------------------
    @classmethod
    def offline(cls, **overrides: Any) -> Toolkit:
        """The preset that runs with no network.

        NanoDet (COCO-80) detection, RapidOCR, the ground-plane depth heuristic, VQA by an
        LLM over a description of the image, and the embedded llama.cpp LLM when
        ``vpd[local]`` is installed (off otherwise; ``vpd tools`` says why).

        Segmentation and image-text matching are off (no offline weights exist); pass e.g.
        ``segment="grabcut"`` to turn GrabCut on. Keyword arguments are as for ``Toolkit``.
        """
        return cls(ToolkitConfig(preset="offline"), **overrides)

    @classmethod
    def hub(cls, **overrides: Any) -> Toolkit:
        """The preset of Hugging Face checkpoints: OWLv2, SAM, Depth Anything V2, BLIP VQA, CLIP.

        Checkpoints download on first use (needs ``vpd[hub]``). Keyword arguments are as for ``Toolkit``.
        """
        return cls(ToolkitConfig(preset="hub"), **overrides)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Toolkit:
        """A toolkit configured by ``VPD_*`` environment variables (see :mod:`vpd.tools.config`)."""
        return cls(config_from_env(environ), **overrides)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> Toolkit:
        """A toolkit configured by a TOML file (see :mod:`vpd.tools.config`)."""
        return cls(config_from_toml(path), **overrides)

    @classmethod
    def default(cls) -> Toolkit:
        """The process-wide default toolkit (built from the environment on first use)."""
        return _default_toolkit()

    def _set(self, capability: str, choice: BackendChoice, reason: str) -> None:
        check_capability(capability)
        if choice is None:
            self._backends[capability] = None
            self._reasons[capability] = "turned off" if reason == "set in code" else reason
            return
        if isinstance(choice, Backend):
            if choice.capability and choice.capability != capability:
                raise ConfigError(
                    f"{type(choice).__name__} serves {choice.capability!r}, not {capability!r}; "
                    f"pass it as {choice.capability}=..."
                )
            # A backend built on other capabilities is rebound to this toolkit's backends: copy
            # it, so the toolkit it came from (e.g. through replace()) keeps its own bindings.
            self._backends[capability] = copy.copy(choice) if choice.uses else choice
            self._reasons[capability] = reason
            return
        if isinstance(choice, str):
            choice = BackendSpec(backend=choice)
        if not isinstance(choice, BackendSpec):
            raise ConfigError(
                f"{capability}= takes a backend name, a BackendSpec, a Backend instance or None, "
                f"not {type(choice).__name__}."
            )
        cls = self.registry.get(capability, choice.backend)
        self._backends[capability] = cls(
            choice.model,
            device=choice.device or self.device,
            dtype=choice.dtype,
            models=self.models,
            **dict(choice.options),
        )
        self._reasons[capability] = reason

    def _auto(self, capability: str, label: str = "auto") -> None:
        order = AUTO_ORDER.get(capability, ())
        skipped = []
        for name in order:
            try:
                cls = self.registry.get(capability, name)
            except ConfigError as exc:
                skipped.append(f"{name}: {exc}")
                continue
            availability = cls.check_available(cls.default_model)
            if availability:
                why = f"{label}: first available" + (f"; skipped {'; '.join(skipped)}" if skipped else "")
                self._set(capability, name, why)
                return
            skipped.append(f"{name}: {availability.reason}")
        # Nothing can run without a download or an install: leave the capability off rather
        # than let the first call block on the network; the reason says how to turn it on.
        self._backends[capability] = None
        if order:
            self._reasons[capability] = f"{label}: nothing available; " + "; ".join(skipped)
        else:
            if capability == "llm":
                from vpd.tools.llm_setup import llm_setup_hint

                hint = llm_setup_hint()
            else:
                hint = "choose a backend"
            self._reasons[capability] = f"not configured ({hint})"

    def _bind_dependencies(self) -> None:
        for backend in self._backends.values():
            if backend is not None and backend.uses:
                backend.bind({cap: self._backends[cap] for cap in backend.uses if self._backends.get(cap) is not None})

    # -- access ------------------------------------------------------------------------
    def backend(self, capability: str) -> Backend:
        """The backend serving ``capability``.

        Raises:
            ConfigError: Unknown capability.
            BackendUnavailable: The capability is turned off or not configured (the message
                says how to turn it on).
        """
        check_capability(capability)
        backend = self._backends.get(capability)
        if backend is None:
            names = ", ".join(self.registry.names(capability))
            raise BackendUnavailable(
                f"No {capability} backend is configured ({self._reasons.get(capability, 'off')}). "
                f"Choose one with Toolkit({capability}=...) or VPD_{capability.upper()}=<name>; available: {names}.",
                capability=capability,
            )
        return backend

    def has(self, capability: str) -> bool:
        """Whether a backend is configured for ``capability`` (it may still lack weights)."""
        check_capability(capability)
        return self._backends.get(capability) is not None

    def describe(self) -> list[CapabilityStatus]:
        """One :class:`CapabilityStatus` per capability (what ``vpd tools`` prints)."""
        rows = []
        for capability in CAPABILITIES:
            backend = self._backends.get(capability)
            reason = self._reasons[capability]
            info = backend.info() if backend else None
            if backend is not None and info is not None and backend.uses:
                off = [cap for cap in backend.uses if self._backends.get(cap) is None]
                if off:
                    reason += f"; it builds on {', '.join(backend.uses)}, and {', '.join(off)} is off"
                missing = [cap for cap in backend.needs if cap in off]
                if missing:
                    info = dataclasses.replace(
                        info, available=False, reason=f"needs {', '.join(missing)}, which is off"
                    )
            rows.append(CapabilityStatus(capability, info, reason))
        return rows

    def replace(self, **overrides: BackendChoice) -> Toolkit:
        """A new toolkit with some capabilities changed, sharing models, cache and tools."""
        current: dict[str, Any] = {cap: self._backends[cap] for cap in CAPABILITIES}
        current.update(overrides)
        return Toolkit(
            self.config,
            device=self.device,
            cache=self.cache if self.cache is not None else False,
            tools=self.tools,
            models=self.models,
            registry=self.registry,
            **current,
        )

    def close(self) -> None:
        """Release loaded models and close the disk cache."""
        self.models.clear()
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> Toolkit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        parts = ", ".join(f"{c}={b.name if b else None!r}" for c, b in self._backends.items())
        return f"Toolkit({parts})"


# -- the default and current toolkit ----------------------------------------------------
_default: Toolkit | None = None
_default_lock = threading.Lock()
# What serves patches in this context: a Toolkit in the host, the sandbox worker's client
# inside a program (both satisfy the PatchOperations contract).
_current: contextvars.ContextVar[PatchOperations | None] = contextvars.ContextVar("vpd_current_toolkit", default=None)
Ops = TypeVar("Ops", bound=PatchOperations)


def _default_toolkit() -> Toolkit:
    global _default
    with _default_lock:
        if _default is None:
            _default = Toolkit.from_env()
        return _default


def set_default_toolkit(toolkit: Toolkit | None) -> None:
    """Replace the process-wide default toolkit (``None``: rebuild from the environment on next use)."""
    global _default
    with _default_lock:
        _default = toolkit


def current_toolkit() -> Toolkit:
    """The toolkit in effect: the one set by :func:`use_toolkit`, else the default.

    Host code asks for this. Inside a sandboxed program what is in effect is the worker's
    client, not a toolkit: ImagePatch asks :func:`current_operations` instead.
    """
    current = _current.get()
    return current if isinstance(current, Toolkit) else _default_toolkit()


def current_operations() -> PatchOperations:
    """What serves ``ImagePatch`` operations here.

    The toolkit in effect, or, inside a sandboxed program, the client that forwards them to the host.
    """
    return _current.get() or _default_toolkit()


@contextlib.contextmanager
def use_toolkit(toolkit: Ops) -> Iterator[Ops]:
    """Make ``toolkit`` the current one inside a ``with`` block (per thread / task).

    Any object satisfying :class:`~vpd.tools.contract.PatchOperations` serves patches
    (:func:`current_operations`); only a :class:`Toolkit` is also :func:`current_toolkit`.
    """
    token = _current.set(toolkit)
    try:
        yield toolkit
    finally:
        _current.reset(token)


if TYPE_CHECKING:
    # The type checker holds the toolkit to the operations contract here. (The sandbox
    # worker's client generates its methods from the contract; tests/test_contract.py holds
    # their signatures to it.)
    _SERVES_PATCHES: type[PatchOperations] = Toolkit
