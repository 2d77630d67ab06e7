"""An on-disk cache of LLM completions, so reruns are reproducible and free.

A completion is keyed by the model's identity (its ``cache_identity()``: model, endpoint,
reply-changing options, never keys), the exact messages, the sampling parameters and the
sample index with its repair attempt. Sample 3 of a question therefore always gets the
same program back, even at temperature 0.8, and a rerun over a dataset costs no tokens.

The cache is one SQLite file, safe to share between threads and processes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vpd.errors import ConfigError
from vpd.tools.cache import cache_key, default_cache_dir
from vpd.tools.types import Completion

__all__ = ["CompletionCache", "default_cache_dir"]


class CompletionCache:
    """Completions on disk, keyed by model, prompt, parameters and sample index.

    Args:
        path: The SQLite file, or a directory to hold ``completions.sqlite`` (default:
            :func:`default_cache_dir`).
        max_entries: Most completions kept; beyond it the oldest tenth is deleted (a
            completion is a few kB, so the default keeps the file around a gigabyte or two).
            None keeps everything.

    Raises:
        ConfigError: The file cannot be created or opened, or ``max_entries`` is not positive.
    """

    #: How many writes pass between two checks of the size bound.
    CHECK_EVERY = 1000

    def __init__(self, path: str | os.PathLike[str] | None = None, *, max_entries: int | None = 500_000) -> None:
        if max_entries is not None and (
            isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1
        ):
            raise ConfigError(f"max_entries must be a positive integer or None, got {max_entries!r}.")
        self.max_entries = max_entries
        self._writes = 0
        target = Path(path).expanduser() if path is not None else default_cache_dir()
        if target.suffix not in (".sqlite", ".db"):
            target = target / "completions.sqlite"
        self.path = target
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(target), check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.commit()
            self._enforce_bound()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"Cannot open the completion cache at {target}: {exc}. Set VPD_CACHE_DIR to a writable "
                "directory, or pass cache=False."
            ) from exc

    @staticmethod
    def key(
        model: str,
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        sample: int,
        attempt: int = 0,
    ) -> str:
        """The cache key of one completion request."""
        return cache_key("completion", model, [dict(m) for m in messages], dict(params), sample, attempt)

    def get(self, key: str) -> Completion | None:
        """The cached completion (marked ``cached=True``, ``seconds=0``), or None."""
        with self._lock:
            try:
                row = self._db.execute("SELECT value FROM completions WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error:
                row = None
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
        try:
            fields = json.loads(row[0])
            return dataclasses.replace(Completion(**fields), cached=True, seconds=0.0, first_token_seconds=None)
        except (TypeError, ValueError):
            return None  # written by an incompatible version: treated as a miss

    def put(self, key: str, completion: Completion) -> Completion:
        """Store a completion unless one is already stored under ``key``; return the stored one.

        When two runs generate the same sample at once, the first to store wins and both
        use its reply, so a later rerun replays exactly what was used. A failure to write
        is not an error (the cache is an optimisation): the completion is returned as is.
        """
        value = json.dumps(dataclasses.asdict(completion) | {"cached": False})
        with self._lock:
            try:
                self._db.execute("INSERT OR IGNORE INTO completions (key, value) VALUES (?, ?)", (key, value))
                self._db.commit()
                row = self._db.execute("SELECT value FROM completions WHERE key = ?", (key,)).fetchone()
                self._writes += 1
                if self._writes % self.CHECK_EVERY == 0:
                    self._enforce_bound()
            except sqlite3.Error:
                return completion
        if row is None or row[0] == value:
            return completion
        try:
            stored = Completion(**json.loads(row[0]))
        except (TypeError, ValueError):
            return completion
        return dataclasses.replace(stored, cached=True, seconds=0.0, first_token_seconds=None)

    def _enforce_bound(self) -> None:
        """Over ``max_entries``: delete the oldest entries (insertion order). Called with the lock held."""
        if self.max_entries is None:
            return
        count = int(self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0])
        if count <= self.max_entries:
            return
        drop = count - self.max_entries + max(1, self.max_entries // 10)
        self._db.execute(
            "DELETE FROM completions WHERE rowid IN (SELECT rowid FROM completions ORDER BY rowid LIMIT ?)", (drop,)
        )
        self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0])

    def clear(self) -> None:
        """Delete every cached completion."""
        with self._lock:
            self._db.execute("DELETE FROM completions")
            self._db.commit()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"CompletionCache({str(self.path)!r}, hits={self.hits}, misses={self.misses})"
