"""The tool-result cache.

Results are memoised by ``(backend identity, image content hash, box, arguments)``, so the
k programs sampled for one question, or a rerun over the same dataset, reuse one
detection instead of running the detector again. The memory tier is a bounded LRU; an
optional disk tier (SQLite in a directory you choose) survives restarts.

Cached values are shared between callers: numpy arrays are stored read-only, records are
frozen dataclasses.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vpd.errors import ConfigError

__all__ = ["CacheStats", "ResultCache", "cache_key", "default_cache_dir"]

_MISSING = object()
# Bumped whenever the layout of cached values changes, so old disk entries are ignored.
_FORMAT = 1


def default_cache_dir() -> Path:
    """Vpd's cache directory: ``$VPD_CACHE_DIR``, else ``$XDG_CACHE_HOME/vpd``, else ``~/.cache/vpd``.

    Completions and assembled model files go there (the result cache only when configured).
    """
    configured = os.environ.get("VPD_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "vpd"


def cache_key(*parts: Any) -> str:
    """A stable hex key for JSON-representable ``parts`` (tuples become lists)."""
    blob = json.dumps([_FORMAT, *parts], sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class _Flight:
    """A computation of one key in progress: who runs it, when it ends, how it failed."""

    __slots__ = ("done", "error", "thread")

    def __init__(self, thread: int) -> None:
        self.thread = thread
        self.done = threading.Event()
        self.error: BaseException | None = None


@dataclass(frozen=True)
class CacheStats:
    """Counters of a :class:`ResultCache`."""

    hits: int
    misses: int
    entries: int
    disk_hits: int

    @property
    def hit_rate(self) -> float:
        """Hits / lookups (0.0 before any lookup)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


def _nbytes(value: Any) -> int:
    """Approximate memory held by a cached value (arrays counted exactly, the rest roughly)."""
    if hasattr(value, "nbytes") and hasattr(value, "dtype"):
        return int(value.nbytes) + 112
    if isinstance(value, (list, tuple)):
        return 64 + sum(_nbytes(v) for v in value)
    if isinstance(value, dict):
        return 64 + sum(_nbytes(v) for v in value.values())
    if isinstance(value, str):
        return 64 + len(value)
    if hasattr(value, "__dataclass_fields__"):
        return 64 + sum(_nbytes(getattr(value, f)) for f in value.__dataclass_fields__)
    return 64


def _freeze(value: Any) -> Any:
    """Make arrays read-only (recursively in lists/tuples/dicts) so cached values stay intact."""
    if hasattr(value, "setflags") and hasattr(value, "dtype"):
        value.setflags(write=False)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _freeze(item)
    elif isinstance(value, dict):
        for item in value.values():
            _freeze(item)
    return value


class ResultCache:
    """A bounded in-memory LRU of tool results, optionally backed by SQLite on disk.

    Args:
        max_entries: Entries kept in memory; the least recently used are dropped first.
        max_bytes: Approximate memory budget of the memory tier (depth maps and masks are
            large); least recently used entries are dropped to stay under it.
        directory: If given, results are also written to ``directory/results.sqlite``
            and read back from there on a memory miss (also by later processes).

    Raises:
        ConfigError: ``max_entries`` is not positive, or the directory cannot be created.
    """

    def __init__(
        self, max_entries: int = 4096, directory: str | Path | None = None, *, max_bytes: int = 1 << 30
    ) -> None:
        if max_entries < 1:
            raise ConfigError(f"max_entries must be at least 1, got {max_entries}.")
        if max_bytes < 1:
            raise ConfigError(f"max_bytes must be at least 1, got {max_bytes}.")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._memory: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._inflight: dict[str, _Flight] = {}
        self._hits = self._misses = self._disk_hits = 0
        self.directory = Path(directory).expanduser() if directory is not None else None
        self._db: sqlite3.Connection | None = None
        if self.directory is not None:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(str(self.directory / "results.sqlite"), check_same_thread=False)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
                self._db.commit()
            except (OSError, sqlite3.Error) as exc:
                raise ConfigError(f"Cannot use {str(self.directory)!r} as a result cache directory: {exc}") from exc

    def get(self, key: str, default: Any = None) -> Any:
        """Return the cached value for ``key`` or ``default`` (counts a hit or a miss)."""
        value = self.lookup(key)
        return default if value is _MISSING else value

    def lookup(self, key: str) -> Any:
        """Return the cached value, or a sentinel for which :meth:`is_missing` is true."""
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                self._hits += 1
                return self._memory[key][0]
            if self._db is not None:
                row = self._db.execute("SELECT value FROM results WHERE key = ?", (key,)).fetchone()
                if row is not None:
                    try:
                        value = _freeze(pickle.loads(row[0]))
                    except Exception:  # an entry written by an incompatible version: treat as a miss
                        value = _MISSING
                    if value is not _MISSING:
                        self._hits += 1
                        self._disk_hits += 1
                        self._remember(key, value)
                        return value
            self._misses += 1
            return _MISSING

    def get_or_compute(self, key: str, compute: Callable[[], Any]) -> tuple[Any, bool]:
        """The cached value for ``key``, computing and storing it on a miss; ``(value, hit)``.

        Concurrent callers with the same key compute it once: the others wait for the first
        and take its result (the k programs of one question, run at the same time, ask for
        the same detections), or its exception when it fails. A thread that asks for a key
        it is computing itself computes it again rather than wait for itself.
        """
        me = threading.get_ident()
        while True:
            value = self.lookup(key)
            if value is not _MISSING:
                return value, True
            with self._lock:
                pending = self._inflight.get(key)
                owner = pending is None or pending.thread == me
                if owner:
                    flight = self._inflight[key] = _Flight(me)
            if not owner:
                assert pending is not None
                pending.done.wait()
                if pending.error is not None:
                    raise pending.error
                continue  # normally a hit now (unless evicted already: then compute it)
            try:
                value = compute()
            except BaseException as exc:
                flight.error = exc
                raise
            else:
                self.put(key, value)
                return value, False
            finally:
                with self._lock:
                    if self._inflight.get(key) is flight:
                        del self._inflight[key]
                    if pending is not None and pending.thread == me:
                        self._inflight[key] = pending  # the outer computation of this thread goes on
                flight.done.set()

    @staticmethod
    def is_missing(value: Any) -> bool:
        """Whether a :meth:`lookup` result means "not cached"."""
        return value is _MISSING

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` (arrays inside are made read-only)."""
        _freeze(value)
        with self._lock:
            self._remember(key, value)
            if self._db is not None:
                blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
                self._db.execute("INSERT OR REPLACE INTO results (key, value) VALUES (?, ?)", (key, blob))
                self._db.commit()

    def _remember(self, key: str, value: Any) -> None:
        if key in self._memory:
            self._bytes -= self._memory.pop(key)[1]
        size = _nbytes(value)
        self._memory[key] = (value, size)
        self._bytes += size
        # Keep the newest entry even if it alone exceeds the byte budget: it is in use now.
        while len(self._memory) > 1 and (len(self._memory) > self.max_entries or self._bytes > self.max_bytes):
            self._bytes -= self._memory.popitem(last=False)[1][1]

    def __contains__(self, key: str) -> bool:
        with self._lock:
            if key in self._memory:
                return True
            if self._db is not None:
                return self._db.execute("SELECT 1 FROM results WHERE key = ?", (key,)).fetchone() is not None
            return False

    def __len__(self) -> int:
        return len(self._memory)

    @property
    def memory_bytes(self) -> int:
        """Approximate bytes held by the memory tier."""
        return self._bytes

    @property
    def stats(self) -> CacheStats:
        """Hit/miss counters since creation (or the last :meth:`clear`)."""
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._memory), self._disk_hits)

    def clear(self, *, disk: bool = False) -> None:
        """Empty the memory tier (and the disk tier when ``disk=True``); reset counters."""
        with self._lock:
            self._memory.clear()
            self._bytes = 0
            self._hits = self._misses = self._disk_hits = 0
            if disk and self._db is not None:
                self._db.execute("DELETE FROM results")
                self._db.commit()

    def close(self) -> None:
        """Close the disk database (the memory tier stays usable)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
