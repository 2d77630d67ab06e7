"""A run directory: one process at a time, its configuration, and append-only JSONL records.

Synthesis (and later rewriting) write into a directory:

* ``run.json``: what the run is (its configuration and the versions that made it), written
  once, atomically. Resuming with a different configuration is an error, never a mix.
* ``records.jsonl``: one JSON object per finished example, appended in one ``write`` each.
  Readable while being written. After a ``kill -9`` the file ends at most with one torn
  line, which the next start cuts off (that example is simply done again); so no record is
  ever torn, corrupt or written twice.
* ``.lock``: held (``flock``) while a process works in the directory, so two processes
  never append to the same records.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from vpd.errors import ConfigError
from vpd.traces.records import read_records, scan_records

__all__ = ["RunDirectory", "read_records"]

RECORDS = "records.jsonl"
CONFIG = "run.json"
_LOCK = ".lock"


class RunDirectory:
    """A run directory, locked for this process while open (use it as a context manager).

    Args:
        path: The directory (created when missing).
        kind: What runs in it (``"synthesis"``); a directory of another kind is refused.

    Raises:
        ConfigError: Another process holds the directory, or it holds another kind of run.
    """

    def __init__(self, path: str | os.PathLike[str], kind: str = "synthesis") -> None:
        self.path = Path(path)
        self.kind = kind
        self._lock_fd: int | None = None
        self._fds: dict[str, int] = {}

    def __enter__(self) -> RunDirectory:
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(
                f"Another process is working in {self.path} (it holds {self.path / _LOCK}); wait for it to finish "
                "or use another directory."
            ) from None
        self._lock_fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop appending and release the directory."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    # -- configuration ------------------------------------------------------------------------
    def settle_config(self, config: Mapping[str, Any], *, identity: tuple[str, ...]) -> dict[str, Any]:
        """Store ``config`` on first use; later, check that its ``identity`` keys are unchanged.

        Args:
            config: The run's configuration (JSON).
            identity: The keys that must match for a run to be resumed.

        Returns:
            The stored configuration.

        Raises:
            ConfigError: The directory holds a run of another kind or configuration (the
                message lists what differs).
        """
        path = self.path / CONFIG
        if path.exists():
            try:
                stored = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"{path} cannot be read ({exc}); it describes the run, so resume is refused."
                ) from None
            if stored.get("kind") != self.kind:
                raise ConfigError(
                    f"{self.path} holds a {stored.get('kind')!r} run, not {self.kind}; use another directory."
                )
            differs = [
                f"{key}: {stored.get('config', {}).get(key)!r} then, {config.get(key)!r} now"
                for key in identity
                if stored.get("config", {}).get(key) != config.get(key)
            ]
            if differs:
                raise ConfigError(
                    f"{self.path} holds a run made with another configuration, so resuming would mix them: "
                    + "; ".join(differs)
                    + ". Resume with the same options, or use another directory."
                )
            return dict(stored["config"])
        stored = {"kind": self.kind, "config": dict(config), "versions": versions()}
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(stored, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(temporary, path)  # atomic: a run.json is whole or absent
        return dict(config)

    # -- records ----------------------------------------------------------------------------
    def records(self, name: str = RECORDS) -> list[dict[str, Any]]:
        """The finished records of ``name``; a torn last line (from a killed process) is cut off the file."""
        path = self.path / name
        records, good_end = scan_records(path)
        if path.exists() and path.stat().st_size > good_end:
            with open(path, "r+b") as handle:
                handle.truncate(good_end)
        return [record for record, _ in records]

    def append(self, record: Mapping[str, Any], name: str = RECORDS) -> None:
        """Append one record to ``name`` as one line, in one ``write``."""
        line = (json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n").encode("utf-8")
        fd = self._fds.get(name)
        if fd is None:
            fd = self._fds[name] = os.open(self.path / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        view = memoryview(line)
        while view:  # one write in practice; a partial one is finished (or left torn by a kill)
            written = os.write(fd, view)
            view = view[written:]

    def iter_lines(self) -> Iterator[dict[str, Any]]:
        """The records, for readers that do not hold the directory."""
        yield from read_records(self.path / RECORDS)


def versions() -> dict[str, str]:
    """The versions that made a run (stored in ``run.json``)."""
    from importlib import metadata

    found = {"python": sys.version.split()[0], "platform": platform.platform()}
    for package in ("vpd", "litellm", "llama_cpp_python", "onnxruntime", "torch", "transformers"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found
