"""Appending traces to a JSONL file, crash-safe: the writer beside :func:`~vpd.traces.read_traces`.

Long runs (synthesis over a dataset, evaluation) write one line per trace as they go, so a
crash loses at most the line being written, and a rerun can append to the same file:

    >>> with TraceWriter("runs/traces.jsonl") as out:
    ...     out.write(execution, id="q17-s3", question="How many cups?", label="2")

**What it guarantees.**

* Every line it writes reads back: it runs the reader's own checks
  (:func:`~vpd.traces.files.parse_record`) first and refuses a record the reader would
  call bad, with the same reason (:class:`~vpd.errors.InvalidArgumentError`).
* Append-only: nothing already in the file is changed. If the file ends in a line cut
  short (an earlier writer crashed mid-line), the first new record starts with a newline,
  so that line stays one bad line that the reader reports by number and the new records
  stay whole; the writer warns about it and sets :attr:`TraceWriter.repaired_tail`. The
  same goes for a write that fails half way (disk full, file size limit): it raises, and
  the next record starts on a line of its own.
* Each line goes to the operating system in one ``write`` of the whole line, with the
  file opened ``O_APPEND``: lines from several threads (a lock orders them) or several
  processes appending to one local file do not interleave. ``sync=True`` also forces each
  line to disk (survives a power cut, at a cost per line).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any

from vpd.errors import InvalidArgumentError, TraceFileError
from vpd.traces.execution import Execution
from vpd.traces.files import RECORD_KEYS, parse_record
from vpd.traces.trace import Trace

__all__ = ["TraceWriter"]


class TraceWriter:
    """Appends traces to a JSONL file, one record per line (see the module docstring).

    Args:
        path: The file; created (with its folder) when missing, appended to otherwise.
        sync: Force each line to disk with ``fsync`` (slower; survives power loss).

    Raises:
        TraceFileError: The file cannot be opened for appending.
    """

    def __init__(self, path: str | Path, *, sync: bool = False) -> None:
        self.path = Path(path)
        self.sync = sync
        self.written = 0
        self.repaired_tail = False
        # The file may end in part of a line (an earlier crash, a failed write): the next
        # record then starts with a newline.
        self._torn = False
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise TraceFileError(f"Cannot open {str(self.path)!r} to append traces: {exc.strerror or exc}.") from None
        try:
            self._repair_tail()
        except BaseException:
            self.close()
            raise

    def _repair_tail(self) -> None:
        """End a line cut short by an earlier crash, so new records start on a line of their own."""
        try:
            size = self.path.stat().st_size
            if size == 0:
                return
            with self.path.open("rb") as handle:
                handle.seek(size - 1)
                last = handle.read(1)
        except OSError as exc:
            raise TraceFileError(f"Cannot read the end of {str(self.path)!r}: {exc.strerror or exc}.") from None
        if last != b"\n":
            self._torn = self.repaired_tail = True
            warnings.warn(
                f"{self.path} ended in an incomplete line (a writer crashed mid-line?); it is kept as it is, "
                "and reading the file reports it as a bad line. New traces start on the next line.",
                stacklevel=3,
            )

    def write(
        self,
        run: Trace | Execution,
        *,
        id: str | int | None = None,
        question: str | None = None,
        label: Any = None,
        correct: bool | None = None,
        image: str | Path | None = None,
        rationale: str | None = None,
        **extra: Any,
    ) -> None:
        """Append one trace, with what is known about it, as one line.

        A bare trace line is written when no field is given; otherwise a record wrapping it
        (``{"trace": ..., "id": ..., "question": ...}``, see :mod:`vpd.traces.files`).

        Args:
            run: The trace, or an execution (its trace is written).
            id: Its name (shown by ``vpd show`` and in links).
            question: The question.
            label: The expected answer (JSON).
            correct: Whether the answer is right, when the caller knows better than
                :func:`~vpd.traces.answers.judge`.
            image: The image's path (relative paths resolve against the file's folder when read).
            rationale: A rationale written from the trace.
            **extra: Other JSON fields, kept as they are (shown as extra fields).

        Raises:
            InvalidArgumentError: Not a trace, a field the reader would reject, a value
                that is not JSON (NaN included), or an extra field named like a record key.
            TraceFileError: The line could not be written (disk full, closed writer...).
        """
        trace = run.trace if isinstance(run, Execution) else run
        if not isinstance(trace, Trace):
            raise InvalidArgumentError(f"TraceWriter.write takes a Trace or an Execution, not {type(run).__name__}.")
        clashes = sorted(set(extra) & set(RECORD_KEYS))
        if clashes:
            raise InvalidArgumentError(f"Extra fields {clashes} clash with record keys; pass them by their own names.")
        fields: dict[str, Any] = {
            "id": id,
            "question": question,
            "label": label,
            "correct": correct,
            "image": str(image) if image is not None else None,
            "rationale": rationale,
        }
        record = {key: value for key, value in fields.items() if value is not None}
        record.update(extra)
        data: dict[str, Any] = {"trace": trace.to_dict(), **record} if record else trace.to_dict()
        try:
            line = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
            encoded = line.encode("utf-8")
        except RecursionError:
            raise InvalidArgumentError("This trace record is nested too deeply to write as JSON.") from None
        except (TypeError, ValueError, UnicodeEncodeError) as exc:
            raise InvalidArgumentError(f"This trace record cannot be written as JSON: {exc}.") from None
        try:
            parse_record(json.loads(line))
        except RecursionError:
            raise InvalidArgumentError("This trace record is nested too deeply to read back.") from None
        except ValueError as exc:
            raise InvalidArgumentError(f"This trace record would not read back: {exc}.") from None
        with self._lock:
            self._write_bytes(encoded + b"\n")
            self.written += 1

    def _write_bytes(self, data: bytes) -> None:
        if self._fd is None:
            raise TraceFileError(f"The writer of {str(self.path)!r} is closed.")
        if self._torn:
            data = b"\n" + data
        try:
            done = os.write(self._fd, data)  # one write: appends from other processes cannot split it
        except OSError as exc:
            # Nothing, or an unknown part, reached the file: end that part's line before the next record.
            self._torn = True
            raise TraceFileError(f"Cannot append to {str(self.path)!r}: {exc.strerror or exc}.") from None
        if done < len(data):
            self._torn = True
            raise TraceFileError(
                f"Only {done} of {len(data)} bytes of a trace reached {str(self.path)!r} (disk full, or a file "
                "size limit?); that line is cut short, and the reader will report it."
            )
        self._torn = False
        if self.sync:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise TraceFileError(f"Cannot sync {str(self.path)!r} to disk: {exc.strerror or exc}.") from None

    def close(self) -> None:
        """Close the file (further writes raise :class:`~vpd.errors.TraceFileError`)."""
        with self._lock:
            if self._fd is not None:
                try:
                    os.close(self._fd)
                finally:
                    self._fd = None

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Only the descriptor: a writer dropped without close() must not leak it.
        fd = getattr(self, "_fd", None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __repr__(self) -> str:
        state = "closed" if self._fd is None else "open"
        return f"<TraceWriter {str(self.path)!r} {state}, {self.written} written>"
