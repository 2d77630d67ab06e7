"""Recording one program run: the trace events, bounded, as the host saw them.

A trace is what distillation learns from, so it is written by the host, never by the
program: tool calls are recorded as the host serves them (:meth:`TraceRecorder.add_tool_calls`);
the values a program assigns and what it prints are reported by the worker and kept as
bounded, untrusted text (:meth:`TraceRecorder.add_worker_events`). Every event over the
cap is counted, never silently lost (``Trace.dropped_events``).
"""

from __future__ import annotations

import json
import math
import threading
from typing import Any

from vpd.traces.execution import Execution
from vpd.traces.trace import OMITTED, Assignment, PrintOutput, ProgramError, ToolCall, Trace, TraceEvent

__all__ = ["MAX_TRACE_BYTES", "MAX_TRACE_EVENTS", "TraceRecorder", "bounded", "jsonable"]

#: Most events one trace keeps (the rest are counted in ``dropped_events``).
MAX_TRACE_EVENTS = 5000
#: Most characters of tool inputs and outputs one trace keeps (JSON); past it, calls keep
#: their names and errors and the trace is marked truncated.
MAX_TRACE_BYTES = 4_000_000
#: Most characters of a rejected call's arguments kept (the rest become a note).
_MAX_REJECTED_INPUT_CHARS = 2_000
_MAX_MESSAGE_CHARS = 2000
_MAX_STDOUT = 20_000


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def bounded(text: Any, limit: int = _MAX_MESSAGE_CHARS) -> str:
    """``text`` as a string of at most ``limit`` characters (marked when cut)."""
    text = text if isinstance(text, str) else str(text)
    return text if len(text) <= limit else text[: limit - 15] + "... [truncated]"


def jsonable(value: Any) -> Any:
    """Plain JSON for a trace (exact round trip).

    Non-finite floats become None, lone surrogates ``?``, tuples lists, anything else its type name.
    """
    return _jsonable_sized(value)[0]


def _jsonable_sized(value: Any) -> tuple[Any, int]:
    """:func:`jsonable` and the size of its JSON text (characters)."""
    try:  # the common case, in C: already plain, finite and valid Unicode
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        return json.loads(text.encode("utf-8")), len(text)
    except (TypeError, ValueError, UnicodeEncodeError, RecursionError):
        clean = _sanitised(value)
        return clean, len(json.dumps(clean, ensure_ascii=False))


def _sanitised(value: Any, depth: int = 0) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if depth > 12:
        return "..."
    if isinstance(value, (list, tuple)):
        return [_sanitised(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {_sanitised(str(k), depth + 1): _sanitised(v, depth + 1) for k, v in value.items()}
    return bounded(type(value).__name__, 100)


class TraceRecorder:
    """The events of one run, in order, within bounds; what does not fit is counted, never lost silently.

    Bounds: :data:`MAX_TRACE_EVENTS` events (the rest counted in ``dropped_events``) and
    :data:`MAX_TRACE_BYTES` of tool inputs and outputs (past it, a call keeps its name,
    line, backend and error, its data is replaced by a note, and the trace is marked
    truncated). The recorder is safe to seal from another thread: after :meth:`seal`,
    whatever a late tool call reports is discarded.
    """

    def __init__(self) -> None:
        self.events: list[TraceEvent] = []
        self.dropped = 0
        # Events the worker says it did not send (over its cap, or a hook that failed).
        self.worker_dropped = 0
        # Tool calls whose data did not fit the byte budget.
        self.trimmed = 0
        # The run ended before the worker could say what it still held (killed): events after
        # its last report may be missing.
        self.incomplete = False
        self.stdout: list[str] = []
        self._stdout_chars = 0
        self._bytes = 0
        self._lock = threading.Lock()
        self._sealed = False
        # From the worker's last message: {line: times it ran}, the return taken, the line a stop interrupted.
        self.line_counts: dict[int, int] | None = None
        self.return_line: int | None = None
        self.stop_line: int | None = None

    def note_lines(self, message: dict[str, Any], program_lines: int) -> None:
        """Take the line counts of a ``done`` or ``stopped`` message: a count per line, from line 0.

        Malformed ones are ignored (the counts are optional; the worker is not trusted): a
        count must be a non-negative integer, and only the program's own lines may have one.
        """
        raw: Any = message.get("lines")
        counts_ok = isinstance(raw, list) and len(raw) <= program_lines + 1
        if counts_ok and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < 2**63 for c in raw):
            self.line_counts = {line: count for line, count in enumerate(raw) if count and line > 0}
        for name in ("return_line", "line"):
            value: Any = message.get(name)
            if _positive(value) and value <= program_lines:
                setattr(self, "return_line" if name == "return_line" else "stop_line", value)

    def note_worker_dropped(self, count: Any) -> None:
        """Take the worker's running count of events it did not send (carried by every message)."""
        if isinstance(count, int) and not isinstance(count, bool) and count > self.worker_dropped:
            self.worker_dropped = count

    def add_worker_events(self, raw: Any) -> bool:
        """Record assignments, prints and unsendable calls the worker reported; False when malformed."""
        if not isinstance(raw, list):
            return False
        with self._lock:
            for item in raw:
                if not isinstance(item, dict):
                    return False
                line = item.get("line")
                if line is not None and (not isinstance(line, int) or isinstance(line, bool)):
                    return False
                if self._sealed:
                    continue
                if len(self.events) >= MAX_TRACE_EVENTS:
                    self.dropped += 1
                    continue
                kind = item.get("kind")
                if kind == "assign":
                    name, value = item.get("name"), item.get("value")
                    if not isinstance(name, str) or not isinstance(value, str) or not isinstance(line, int):
                        return False
                    self.events.append(Assignment(len(self.events), line, bounded(name, 100), bounded(value, 300)))
                elif kind == "print":
                    text = item.get("text")
                    if not isinstance(text, str):
                        return False
                    room = max(0, _MAX_STDOUT - self._stdout_chars)
                    if len(text) > room:  # the worker keeps prints within this; a worker that does not is cut
                        text = text[:room]
                        self.trimmed += 1
                    self._stdout_chars += len(text)
                    self.stdout.append(text)
                    self.events.append(PrintOutput(len(self.events), line, text))
                elif kind == "rejected":  # a call the worker could not send (its arguments were too large)
                    op, message = item.get("op"), item.get("error")
                    if not isinstance(op, str) or not isinstance(message, str):
                        return False
                    self.trimmed += 1  # the trace has the call, not its arguments
                    inputs = {OMITTED: "arguments that could not be sent"}
                    self.events.append(_rejected(len(self.events), op, inputs, line, 0.0, message))
                else:
                    return False
        return True

    def add_tool_calls(
        self, op: Any, args: Any, line: int | None, served: list[ToolCall], failed: str | None, seconds: float
    ) -> None:
        """Record what serving one request did.

        Args:
            op: The operation the worker asked for (untrusted).
            args: Its arguments (untrusted).
            line: The program line that asked.
            served: The calls the toolkit served for it (usually one).
            failed: The error the program got, if the request failed.
            seconds: Time spent serving it.
        """
        with self._lock:
            if self._sealed:
                return
            if len(self.events) >= MAX_TRACE_EVENTS:
                self.dropped += max(1, len(served))
                return
            if not served:  # rejected before any tool ran: still part of what the program did
                inputs, size = _jsonable_sized(args) if isinstance(args, dict) else ({}, 2)
                if size > _MAX_REJECTED_INPUT_CHARS:
                    self.trimmed += 1  # the trace keeps the call, not its arguments: it says so
                    inputs = {OMITTED: f"{size} characters of arguments"}
                elif not self._fits(size):
                    inputs = {OMITTED: f"{size} characters of arguments"}
                self.events.append(_rejected(len(self.events), op, inputs, line, seconds, failed or "rejected"))
                return
            for position, call in enumerate(served):
                # A result the host could not hand to the program is a failed call in the trace too.
                error = call.error or (failed if position == len(served) - 1 else None)
                (inputs, output, details), size = _jsonable_sized([call.inputs, call.output, call.details])
                if not self._fits(size):
                    note = {OMITTED: f"{size} characters over the trace's {MAX_TRACE_BYTES} budget"}
                    inputs, output, details = note, None, {}
                self.events.append(
                    call.placed(
                        len(self.events),
                        line=line,
                        inputs=inputs,
                        output=output,
                        details=details,
                        error=bounded(error) if error else None,
                    )
                )

    def _fits(self, size: int) -> bool:
        """Count ``size`` characters against the budget; False (and trimmed) when they do not fit."""
        if self._bytes + size > MAX_TRACE_BYTES:
            self.trimmed += 1
            return False
        self._bytes += size
        return True

    def seal(self) -> None:
        """Take nothing more: a tool call that finishes after the run was abandoned is discarded."""
        with self._lock:
            self._sealed = True

    def execution(
        self,
        code: str,
        image: dict[str, Any],
        answer: Any,
        error: ProgramError | None,
        wall_seconds: float,
        tool_seconds: float,
        meta: dict[str, Any] | None,
    ) -> Execution:
        """The run's :class:`~vpd.traces.Execution`, its trace holding what was recorded."""
        with self._lock:
            events = tuple(self.events)
            dropped = self.dropped + self.worker_dropped
            truncated = dropped > 0 or self.trimmed > 0 or self.incomplete
            stdout = "".join(self.stdout)
        trace = Trace(
            program=code.encode("utf-8", "replace").decode("utf-8"),  # lone surrogates become "?"
            image=image,
            events=events,
            answer=answer,
            error=error,
            wall_seconds=round(wall_seconds, 6),
            tool_seconds=round(tool_seconds, 6),
            truncated=truncated,
            dropped_events=dropped,
            meta=jsonable(meta or {}),
            line_counts=self.line_counts,
            return_line=self.return_line if error is None else None,
        )
        return Execution(answer, error, trace, wall_seconds, tool_seconds, stdout)


def _rejected(index: int, op: Any, inputs: Any, line: int | None, seconds: float, error: str) -> ToolCall:
    return ToolCall(
        index=index,
        operation=bounded(op if isinstance(op, str) else "?", 100),
        capability="",
        backend="",
        model=None,
        inputs=inputs,
        output=None,
        box=None,
        line=line,
        seconds=round(seconds, 6),
        cache_hit=False,
        error=bounded(error),
    )
