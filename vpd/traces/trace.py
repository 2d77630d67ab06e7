"""The trace of one program run: a typed, versioned record with an exact JSON round trip.

A trace is what distillation learns from, so it is written by the host, never by the
program: tool calls are recorded as the host serves them; the values a program assigns
and what it prints are reported by the worker and kept as bounded, untrusted text.

Boxes in a trace are pixel boxes ``[x0, y0, x1, y1]`` with the origin at the **top-left**
corner of the image (x1, y1 exclusive), the convention every drawing library uses;
``ImagePatch`` coordinates (bottom-left origin) are ``left=x0, lower=H-y1, right=x1, upper=H-y0``.

This module depends on the standard library only; ``Trace.__repr__`` and
``Trace._repr_html_`` import their renderer when called (the one upward import the layer
contract allows, see ``ARCHITECTURE.md``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ERROR_KINDS",
    "OMITTED",
    "TRACE_VERSION",
    "Assignment",
    "ErrorKind",
    "PrintOutput",
    "ProgramError",
    "ToolCall",
    "Trace",
    "TraceEvent",
]

#: Version of the trace format; bumped on any incompatible change.
TRACE_VERSION = "vpd.trace/1"

#: The only key of a :class:`ToolCall`'s ``inputs`` when its arguments were too large to
#: keep; its value says how large they were. Such a trace is marked ``truncated``.
OMITTED = "$omitted"

ErrorKind = Literal[
    "compile", "static-check", "runtime", "timeout", "memory", "violation", "tool", "worker-crash", "answer"
]
ERROR_KINDS: tuple[str, ...] = (
    "compile",
    "static-check",
    "runtime",
    "timeout",
    "memory",
    "violation",
    "tool",
    "worker-crash",
    "answer",
)


@dataclass(frozen=True)
class ProgramError:
    """Why a program did not produce an answer.

    Attributes:
        kind: ``compile`` (syntax or forbidden construct), ``static-check`` (unknown name or
            method, wrong argument count...), ``runtime`` (an exception in the program),
            ``timeout``, ``memory``, ``violation`` (broke a sandbox rule at run time, e.g. too
            many tool calls), ``tool`` (a tool failed), ``worker-crash`` (the worker died or
            sent malformed data), ``answer`` (the return value is not JSON-safe).
        message: Bounded, untrusted text: escape it before showing, quote it before feeding
            it to an LLM.
        line: The program line, when known.
    """

    kind: str
    message: str
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"kind": self.kind, "message": self.message, "line": self.line}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProgramError:
        """Inverse of :meth:`to_dict`."""
        return cls(kind=data["kind"], message=data["message"], line=data.get("line"))


@dataclass(frozen=True)
class ToolCall:
    """One tool call, as the toolkit served it and the host recorded it.

    The toolkit emits one for every operation it serves (see
    :func:`vpd.tools.events.record_tool_calls`); whoever records it places it in a run
    with :meth:`placed`, setting ``index`` and ``line``.

    Attributes:
        index: Position among all events of the run (-1 until a recorder places it).
        operation: ``find``, ``exists``, ``simple_query``, ... or a user tool's name.
        capability: The capability that answered (``detect``, ``ocr``, ..., ``tool``).
        backend: The backend that answered.
        model: Its model id, if any.
        inputs: The call's arguments (JSON); ``{OMITTED: "<how large>"}`` when they were too
            large to keep.
        output: A JSON summary of the result (boxes, text, numbers, booleans).
        box: The region the tool looked at, ``[x0, y0, x1, y1]`` top-left origin, if any.
        line: The program line that made the call (None outside a program, or unknown).
        seconds: Time spent serving the call.
        cache_hit: Whether the result came from the result cache.
        error: The error message if the call failed.
        details: Backend facts (e.g. which COCO class answered a query) and sub-steps.
    """

    index: int
    operation: str
    capability: str
    backend: str
    model: str | None
    inputs: dict[str, Any]
    output: Any
    box: list[int] | None
    line: int | None
    seconds: float
    cache_hit: bool
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    type: Literal["tool_call"] = "tool_call"

    def placed(self, index: int, **changes: Any) -> ToolCall:
        """A copy of this call at ``index`` of a run, with other fields changed (``line=...``).

        Like :func:`dataclasses.replace`, without its cost: the recorders call this for
        every tool call a program makes, so the fields are copied directly.

        Raises:
            TypeError: A change names no field of a tool call.
        """
        if not _TOOL_CALL_FIELDS.issuperset(changes):
            raise TypeError(f"ToolCall has no fields {sorted(set(changes) - _TOOL_CALL_FIELDS)}")
        copy = object.__new__(ToolCall)
        fields = copy.__dict__
        fields.update(self.__dict__)
        fields.update(changes, index=index)
        return copy


@dataclass(frozen=True)
class Assignment:
    """A value the program assigned, as reported by the worker (bounded text).

    Attributes:
        index: Position among all events of the run.
        line: The program line.
        name: The variable (or target expression) assigned.
        value: A short rendering of the value, e.g. ``"[ImagePatch(left=1, ...), ...]"``.
    """

    index: int
    line: int
    name: str
    value: str
    type: Literal["assignment"] = "assignment"


@dataclass(frozen=True)
class PrintOutput:
    """Text the program printed (bounded, untrusted)."""

    index: int
    line: int | None
    text: str
    type: Literal["print"] = "print"


TraceEvent = ToolCall | Assignment | PrintOutput
_TOOL_CALL_FIELDS = frozenset(ToolCall.__dataclass_fields__)
_EVENT_TYPES: dict[str, type] = {"tool_call": ToolCall, "assignment": Assignment, "print": PrintOutput}


def _event_to_dict(event: TraceEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in event.__dataclass_fields__}


@dataclass(frozen=True)
class Trace:
    """Everything that happened in one program run.

    Attributes:
        program: The program's source code.
        image: ``{"sha256": ..., "width": ..., "height": ...}`` of the image it ran on.
        events: Tool calls, assignments and prints, in the order they happened.
        answer: The program's answer (JSON), or None.
        error: Why it failed, or None.
        wall_seconds: Total time of the run.
        tool_seconds: Time spent serving tool calls.
        truncated: True when events were dropped because the run exceeded the event cap
            (the count of dropped events is in ``dropped_events``).
        dropped_events: How many events were not recorded.
        version: The trace format version.
        meta: Free-form JSON for callers (question, label, sample index...).
        line_counts: How many times each program line was reached (``{line: count}``): its
            first statement counts, so a loop's header counts once per entry and a body line
            once per iteration; a line holding a whole loop (``for x in y: f(x)``) counts
            entries. None when not recorded: a worker killed before it reported, a program
            that never started, a program that ran so many distinct lines (about 10,000)
            that the counts did not fit the worker's last message, older traces. Lines
            absent from it did not run.
        return_line: The line ``execute_command`` returned from, when it returned an answer.
    """

    program: str
    image: dict[str, Any]
    events: tuple[TraceEvent, ...] = ()
    answer: Any = None
    error: ProgramError | None = None
    wall_seconds: float = 0.0
    tool_seconds: float = 0.0
    truncated: bool = False
    dropped_events: int = 0
    version: str = TRACE_VERSION
    meta: dict[str, Any] = field(default_factory=dict)
    line_counts: dict[int, int] | None = None
    return_line: int | None = None

    @property
    def ok(self) -> bool:
        """True when the program returned an answer without error."""
        return self.error is None

    @property
    def tool_calls(self) -> list[ToolCall]:
        """The tool calls, in order."""
        return [e for e in self.events if isinstance(e, ToolCall)]

    @property
    def assignments(self) -> list[Assignment]:
        """The recorded assignments, in order."""
        return [e for e in self.events if isinstance(e, Assignment)]

    @property
    def prints(self) -> list[PrintOutput]:
        """What the program printed, in order."""
        return [e for e in self.events if isinstance(e, PrintOutput)]

    def __repr__(self) -> str:
        from vpd.render.text import format_trace

        return format_trace(self)

    def _repr_html_(self) -> str:
        """Notebook view (see :func:`vpd.render.render_trace`; without the image, boxes go on a blank canvas)."""
        from vpd.render.html import render_trace

        return render_trace(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``Trace.from_dict(t.to_dict()) == t``)."""
        return {
            "version": self.version,
            "program": self.program,
            "image": self.image,
            "events": [_event_to_dict(e) for e in self.events],
            "answer": self.answer,
            "error": self.error.to_dict() if self.error else None,
            "wall_seconds": self.wall_seconds,
            "tool_seconds": self.tool_seconds,
            "truncated": self.truncated,
            "dropped_events": self.dropped_events,
            "meta": self.meta,
            "line_counts": None if self.line_counts is None else {str(k): v for k, v in self.line_counts.items()},
            "return_line": self.return_line,
        }

    def to_json(self, **kwargs: Any) -> str:
        """Serialise to JSON (keyword arguments go to :func:`json.dumps`)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False, **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trace:
        """Rebuild a trace from :meth:`to_dict` output.

        Raises:
            ValueError: Unknown version or event type.
        """
        version = data.get("version")
        if version != TRACE_VERSION:
            raise ValueError(f"Unsupported trace version {version!r}; this vpd reads {TRACE_VERSION!r}.")
        events: list[TraceEvent] = []
        for raw in data.get("events", []):
            kind = raw.get("type")
            if kind not in _EVENT_TYPES:
                raise ValueError(f"Unknown trace event type {kind!r}.")
            events.append(_EVENT_TYPES[kind](**raw))
        error = data.get("error")
        return cls(
            program=data["program"],
            image=dict(data["image"]),
            events=tuple(events),
            answer=data.get("answer"),
            error=ProgramError.from_dict(error) if error else None,
            wall_seconds=data.get("wall_seconds", 0.0),
            tool_seconds=data.get("tool_seconds", 0.0),
            truncated=data.get("truncated", False),
            dropped_events=data.get("dropped_events", 0),
            version=version,
            meta=dict(data.get("meta", {})),
            line_counts=_line_counts(data.get("line_counts")),
            return_line=data.get("return_line"),
        )

    @classmethod
    def from_json(cls, text: str) -> Trace:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


def _line_counts(raw: Any) -> dict[int, int] | None:
    """``{line: count}`` from JSON's string keys (None stays None: not recorded)."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ValueError(f"line_counts must be an object of line numbers to counts, not {type(raw).__name__}.")
    return {int(line): int(count) for line, count in raw.items()}
