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
from typing import Any

from vpd.traces.execution import Execution
from vpd.traces.trace import Assignment, PrintOutput, ProgramError, ToolCall, Trace, TraceEvent

__all__ = ["MAX_TRACE_EVENTS", "TraceRecorder", "bounded", "jsonable"]

#: Most events one trace keeps (the rest are counted in ``dropped_events``).
MAX_TRACE_EVENTS = 5000
_MAX_MESSAGE_CHARS = 2000
_MAX_STDOUT = 20_000


def bounded(text: Any, limit: int = _MAX_MESSAGE_CHARS) -> str:
    """``text`` as a string of at most ``limit`` characters (marked when cut)."""
    text = text if isinstance(text, str) else str(text)
    return text if len(text) <= limit else text[: limit - 15] + "... [truncated]"


def jsonable(value: Any) -> Any:
    """Plain JSON for a trace (exact round trip).

    Non-finite floats become None, lone surrogates ``?``, tuples lists, anything else its type name.
    """
    try:  # the common case, in C: already plain, finite and valid Unicode
        return json.loads(json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8"))
    except (TypeError, ValueError, UnicodeEncodeError, RecursionError):
        return _sanitised(value)


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
    """The events of one run, in order, capped at :data:`MAX_TRACE_EVENTS` (the rest counted)."""

    def __init__(self) -> None:
        self.events: list[TraceEvent] = []
        self.dropped = 0
        self.stdout: list[str] = []
        self._stdout_chars = 0

    def add_worker_events(self, raw: Any) -> bool:
        """Record assignments and prints the worker reported; False when they are malformed."""
        if not isinstance(raw, list):
            return False
        for item in raw:
            if not isinstance(item, dict):
                return False
            line = item.get("line")
            if line is not None and (not isinstance(line, int) or isinstance(line, bool)):
                return False
            if len(self.events) >= MAX_TRACE_EVENTS:
                self.dropped += 1
                continue
            if item.get("kind") == "assign":
                name, value = item.get("name"), item.get("value")
                if not isinstance(name, str) or not isinstance(value, str) or not isinstance(line, int):
                    return False
                self.events.append(Assignment(len(self.events), line, bounded(name, 100), bounded(value, 300)))
            elif item.get("kind") == "print":
                text = item.get("text")
                if not isinstance(text, str):
                    return False
                text = text[: max(0, _MAX_STDOUT - self._stdout_chars)]
                self._stdout_chars += len(text)
                self.stdout.append(text)
                self.events.append(PrintOutput(len(self.events), line, text))
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
        if len(self.events) >= MAX_TRACE_EVENTS:
            self.dropped += max(1, len(served))
            return
        if not served:  # rejected before any tool ran: still part of what the program did
            self.events.append(
                ToolCall(
                    index=len(self.events),
                    operation=bounded(op if isinstance(op, str) else "?", 100),
                    capability="",
                    backend="",
                    model=None,
                    inputs=jsonable(args) if isinstance(args, dict) and len(str(args)) < 4000 else {},
                    output=None,
                    box=None,
                    line=line,
                    seconds=round(seconds, 6),
                    cache_hit=False,
                    error=bounded(failed or "rejected"),
                )
            )
            return
        for position, call in enumerate(served):
            # A result the host could not hand to the program is a failed call in the trace too.
            error = call.error or (failed if position == len(served) - 1 else None)
            inputs, output, details = jsonable([call.inputs, call.output, call.details])
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
        trace = Trace(
            program=code.encode("utf-8", "replace").decode("utf-8"),  # lone surrogates become "?"
            image=image,
            events=tuple(self.events),
            answer=answer,
            error=error,
            wall_seconds=round(wall_seconds, 6),
            tool_seconds=round(tool_seconds, 6),
            truncated=self.dropped > 0,
            dropped_events=self.dropped,
            meta=jsonable(meta or {}),
        )
        return Execution(answer, error, trace, wall_seconds, tool_seconds, "".join(self.stdout))
