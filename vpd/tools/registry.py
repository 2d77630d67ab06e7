"""Which backend classes exist for each capability.

Built-in backends are registered by import path and imported only when selected, so
``import vpd`` stays light. Third-party packages add backends either with the
:func:`register_backend` decorator or through the ``vpd.backends`` entry-point group::

    # pyproject.toml of a plug-in package
    [project.entry-points."vpd.backends"]
    "detect.yolo_world" = "my_pkg.detector:YoloWorldDetector"

The entry-point name is ``"<capability>.<backend name>"``.
"""

from __future__ import annotations

import importlib
import re
import threading
import warnings
from collections.abc import Callable
from typing import TypeVar

from vpd.errors import ConfigError, RegistrationError
from vpd.tools.backend import Backend
from vpd.tools.types import CAPABILITIES

__all__ = ["BackendRegistry", "ENTRY_POINT_GROUP", "backend_registry", "register_backend"]

ENTRY_POINT_GROUP = "vpd.backends"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

B = TypeVar("B", bound=type[Backend])

#: (capability, backend name, "module:Class") of the backends that ship with vpd.
_BUILTINS: tuple[tuple[str, str, str], ...] = (
    ("detect", "owlv2", "vpd.tools.backends.owlv2:OWLv2Detector"),
    ("detect", "grounding_dino", "vpd.tools.backends.grounding_dino:GroundingDinoDetector"),
    ("detect", "nanodet", "vpd.tools.backends.nanodet:NanoDetDetector"),
    ("segment", "sam", "vpd.tools.backends.sam:SamSegmenter"),
    ("segment", "grabcut", "vpd.tools.backends.grabcut:GrabCutSegmenter"),
    ("depth", "depth_anything", "vpd.tools.backends.depth_anything:DepthAnythingEstimator"),
    ("depth", "ground_plane", "vpd.tools.backends.ground_plane:GroundPlaneDepth"),
    ("ocr", "paddleocr", "vpd.tools.backends.paddleocr:PaddleOCRReader"),
    ("ocr", "rapidocr", "vpd.tools.backends.rapidocr:RapidOCRReader"),
    ("vqa", "blip", "vpd.tools.backends.blip:BlipVQA"),
    ("vqa", "litellm", "vpd.tools.backends.litellm_vqa:LiteLLMVQA"),
    ("vqa", "described", "vpd.tools.backends.described_vqa:DescribedVQA"),
    ("match", "clip", "vpd.tools.backends.clip:ClipMatcher"),
    ("match", "siglip", "vpd.tools.backends.clip:SiglipMatcher"),
    ("llm", "litellm", "vpd.tools.backends.litellm_llm:LiteLLMChat"),
    ("llm", "llama_cpp", "vpd.tools.backends.llama_cpp:LlamaCppChat"),
    ("llm", "transformers", "vpd.tools.backends.transformers_llm:TransformersChat"),
)


class BackendRegistry:
    """Maps ``(capability, name)`` to a backend class (or its import path, until used)."""

    def __init__(self, builtins: tuple[tuple[str, str, str], ...] = ()) -> None:
        self._entries: dict[str, dict[str, type[Backend] | str]] = {c: {} for c in CAPABILITIES}
        self._lock = threading.Lock()
        self._entry_points_loaded = False
        for capability, name, target in builtins:
            self._entries[capability][name] = target

    def register(self, capability: str, name: str, target: type[Backend] | str, *, replace: bool = False) -> None:
        """Register a backend class (or ``"module:Class"`` path) under a capability.

        Raises:
            RegistrationError: Unknown capability, a name that is not snake_case, or a
                name already taken (pass ``replace=True`` to override on purpose).
        """
        if capability not in self._entries:
            raise RegistrationError(f"Unknown capability {capability!r}; capabilities are: {', '.join(CAPABILITIES)}.")
        if not _NAME.match(name):
            raise RegistrationError(f"Backend name {name!r} must be snake_case (a-z, 0-9, _), starting with a letter.")
        if isinstance(target, type) and not issubclass(target, Backend):
            raise RegistrationError(f"{target.__qualname__} must subclass vpd.tools.Backend to be registered.")
        with self._lock:
            existing = self._entries[capability].get(name)
            if existing is not None and existing is not target and not replace:
                where = existing if isinstance(existing, str) else f"{existing.__module__}:{existing.__qualname__}"
                raise RegistrationError(
                    f"A {capability} backend named {name!r} is already registered ({where}); "
                    "choose another name or pass replace=True."
                )
            self._entries[capability][name] = target

    def names(self, capability: str) -> list[str]:
        """The registered backend names of a capability."""
        self._check_capability(capability)
        self._load_entry_points()
        return sorted(self._entries[capability])

    def get(self, capability: str, name: str) -> type[Backend]:
        """Return the backend class, importing it on first use.

        Raises:
            ConfigError: Unknown capability or backend name (the message lists the known ones).
        """
        self._check_capability(capability)
        self._load_entry_points()
        target = self._entries[capability].get(name)
        if target is None:
            raise ConfigError(
                f"Unknown {capability} backend {name!r}; available: {', '.join(sorted(self._entries[capability]))}."
            )
        if isinstance(target, str):
            loaded = _import(target)
            if not (isinstance(loaded, type) and issubclass(loaded, Backend)):
                raise ConfigError(f"{capability} backend {name!r} does not point at a vpd.tools.Backend subclass.")
            with self._lock:
                self._entries[capability][name] = loaded
            return loaded
        return target

    def _check_capability(self, capability: str) -> None:
        if capability not in self._entries:
            raise ConfigError(f"Unknown capability {capability!r}; capabilities are: {', '.join(CAPABILITIES)}.")

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            capability, _, name = ep.name.partition(".")
            if capability not in self._entries or not name:
                # A malformed plug-in must not break vpd, but it must not vanish silently either.
                warnings.warn(
                    f"Ignoring entry point {ep.name!r} = {ep.value!r} in group {ENTRY_POINT_GROUP!r}: its name must be "
                    f"'<capability>.<backend>' with a capability among {', '.join(CAPABILITIES)}.",
                    stacklevel=2,
                )
                continue
            if name in self._entries[capability]:
                if self._entries[capability][name] != ep.value:
                    warnings.warn(
                        f"Ignoring entry point {ep.name!r} = {ep.value!r}: a {capability} backend named {name!r} "
                        "is already registered.",
                        stacklevel=2,
                    )
                continue
            try:
                self.register(capability, name, ep.value)
            except RegistrationError as exc:
                warnings.warn(f"Ignoring entry point {ep.name!r}: {exc}", stacklevel=2)


def _import(path: str) -> object:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"Cannot import backend {path!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise ConfigError(f"Module {module_name!r} has no {attr!r}.") from exc


_PROTOCOL_METHODS = ("detect", "segment", "estimate_depth", "read_text", "answer", "score", "chat")

#: The process-wide registry of backend classes (classes only; never loaded models).
backend_registry = BackendRegistry(_BUILTINS)


def register_backend(capability: str, name: str | None = None, *, replace: bool = False) -> Callable[[B], B]:
    """Class decorator: register a :class:`Backend` subclass under ``capability``.

    Example:
        >>> @register_backend("detect", "my_detector")
        ... class MyDetector(Backend):
        ...     capability = "detect"
        ...     def detect(self, images, queries): ...
    """

    def decorate(cls: B) -> B:
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise RegistrationError(f"{getattr(cls, '__qualname__', cls)!r} must subclass vpd.tools.Backend.")
        backend_name = name or cls.name
        if not backend_name:
            raise RegistrationError(f"{cls.__qualname__} has no name; pass register_backend(capability, 'name').")
        if cls.capability and cls.capability != capability:
            raise RegistrationError(
                f"{cls.__qualname__}.capability is {cls.capability!r} but it is registered under {capability!r}."
            )
        from vpd.tools.protocols import PROTOCOLS

        if capability not in PROTOCOLS:
            raise RegistrationError(f"Unknown capability {capability!r}; capabilities are: {', '.join(CAPABILITIES)}.")
        method = next(iter(m for m in _PROTOCOL_METHODS if m in PROTOCOLS[capability].__dict__), None)
        if method and not callable(getattr(cls, method, None)):
            raise RegistrationError(f"{cls.__qualname__} serves {capability!r} but has no {method}() method.")
        cls.capability = capability
        cls.name = backend_name
        backend_registry.register(capability, backend_name, cls, replace=replace)
        return cls

    return decorate
