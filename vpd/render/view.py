"""What a trace view shows, computed once for both renderers.

:func:`build_view` turns a :class:`~vpd.traces.trace.Trace` into a :class:`TraceView`:
plain data (short texts, numbered boxes, regions, limits applied) that the notebook
renderer (:mod:`vpd.render.html`) lays out in Python and the ``vpd show`` report
(:mod:`vpd.render.report`) embeds as JSON and lays out in the browser. Texts here are
raw (unescaped): each renderer escapes them.

Boxes are ``[x0, y0, x1, y1]`` pixels of the image the program ran on, origin at the
top-left corner (x1, y1 exclusive), as in the trace.

It reads records only (:mod:`vpd.traces`) and imports no image library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vpd.render.lines import line_runs
from vpd.render.text import call_summary, result_summary
from vpd.traces.text import answer_text, box_of, clip, one_line, reveal, shown, trace_to_text
from vpd.traces.trace import Assignment, PrintOutput, ToolCall, Trace

__all__ = ["BOX_CONVENTION", "PALETTE", "BoxView", "EventView", "RegionView", "TraceView", "build_view"]

#: One sentence on the box convention, shown in every view.
BOX_CONVENTION = (
    "Boxes are [x0, y0, x1, y1] pixels with the origin at the top-left corner (x right, y down, x1/y1 exclusive); "
    "ImagePatch values use a bottom-left origin (left=x0, lower=H-y1, right=x1, upper=H-y0)."
)

#: Box colours, one per tool call that returned boxes (cycled).
PALETTE = (
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#9a6324",
    "#008080",
    "#800000",
)

MAX_PROGRAM_LINES = 2000
MAX_LINE_CHARS = 400
MAX_EVENTS = 1000
MAX_BOXES = 300
MAX_REGIONS = 48
MAX_TEXT = 300
MAX_PRINT = 2000


@dataclass
class BoxView:
    """A box a tool returned, numbered as drawn on the image.

    Attributes:
        n: Its number (1-based, in the order the boxes were returned).
        box: ``[x0, y0, x1, y1]`` pixels, top-left origin.
        label: Short label, e.g. ``"cup 0.90"``.
        source: The call that returned it, e.g. ``"find(object_name='cup'), line 3"``.
        color: ``#rrggbb``, shared by the boxes of one call.
        line: The program line of that call (None when unknown): views link the box to it.
    """

    n: int
    box: list[float]
    label: str
    source: str
    color: str
    line: int | None = None


@dataclass
class RegionView:
    """A region of the image that tools looked at (a crop), other than the whole image.

    Attributes:
        box: ``[x0, y0, x1, y1]`` pixels, top-left origin.
        label: The operations that looked at it and their lines, e.g. ``"ocr (line 8)"``.
    """

    box: list[int]
    label: str


@dataclass
class EventView:
    """One event, as shown next to its program line.

    Attributes:
        kind: ``"call"``, ``"assign"`` or ``"print"``.
        line: The program line (None when unknown).
        text: The call (``find(object_name='cup')``), the assignment (``cups = [...]``) or
            the printed text.
        result: What a call returned, summarised.
        error: A call's error message.
        boxes: Numbers of the boxes a call returned (see :class:`BoxView`).
        region: The region a call looked at, when not the whole image.
        info: Capability, backend, model, time and cache hit of a call.
        color: The colour of the call's boxes.
        iteration: Which time this same call or assignment ran on its line (1, 2...), when
            it ran more than once (a loop); None when it ran once. ``text`` starts with ``#n``.
    """

    kind: str
    line: int | None
    text: str
    result: str = ""
    error: str | None = None
    boxes: list[int] = field(default_factory=list)
    region: list[int] | None = None
    info: str = ""
    color: str | None = None
    iteration: int | None = None


@dataclass
class TraceView:
    """Everything a rendered trace shows (raw texts; renderers escape them).

    Attributes:
        program_lines: The program's lines (clipped).
        events: The events in order (at most ``MAX_EVENTS``).
        boxes: The boxes tools returned (at most ``MAX_BOXES``).
        regions: The distinct regions tools looked at (at most ``MAX_REGIONS``).
        ok: Whether the run produced an answer.
        answer: The answer as text, or None.
        error: ``{"kind", "message", "line"}`` or None.
        image: ``{"sha256", "width", "height"}`` of the image it ran on.
        wall_seconds: Total run time.
        tool_seconds: Time spent in tools.
        tool_calls: How many tool calls the trace holds.
        notes: What was left out (truncation, limits).
        text: The execution-trace text (:func:`~vpd.traces.trace_to_text`).
        line_runs: For each program line, how many times its statement ran (0: it never
            did), or None for a line of no statement and for every line when the trace did
            not record it (see :func:`vpd.render.lines.line_runs`).
        return_line: The line of the ``return`` that produced the answer.
    """

    program_lines: list[str]
    events: list[EventView]
    boxes: list[BoxView]
    regions: list[RegionView]
    ok: bool
    answer: str | None
    error: dict[str, Any] | None
    image: dict[str, Any]
    wall_seconds: float
    tool_seconds: float
    tool_calls: int
    notes: list[str]
    text: str
    line_runs: list[int | None] = field(default_factory=list)
    return_line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form; an event's empty fields (no result, no error, no boxes...) are left out."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["events"] = [{k: v for k, v in vars(e).items() if v or k in ("kind", "line", "text")} for e in self.events]
        data["boxes"] = [vars(b) for b in self.boxes]
        data["regions"] = [vars(r) for r in self.regions]
        return data


def _label(item: Any, call: ToolCall) -> str:
    name = None
    if isinstance(item, dict):
        name = item.get("class_name") or item.get("label")
    if not isinstance(name, str) or not name:
        name = call.inputs.get("object_name") if isinstance(call.inputs, dict) else None
    if not isinstance(name, str) or not name:
        name = call.operation
    score = item.get("score") if isinstance(item, dict) else None
    text = one_line(name, 40)
    return f"{text} {score:.2f}" if isinstance(score, (int, float)) and not isinstance(score, bool) else text


def _returned(output: Any, depth: int = 0) -> list[Any]:
    """Items of a call's output that stand for boxes (found recursively, bounded)."""
    if box_of(output) is not None:
        return [output]
    if depth < 3 and isinstance(output, list):
        return [item for value in output for item in _returned(value, depth + 1)]
    if depth < 3 and isinstance(output, dict):
        return [item for value in list(output.values())[:50] for item in _returned(value, depth + 1)]
    return []


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _line(value: Any) -> int | None:
    return value if _positive(value) else None


def _number_repeats(events: list[EventView]) -> None:
    """Number the events that ran more than once on their line (loop iterations): ``#1 total = 0``...

    Events are the same when their line, kind and name (the assigned variable, or the call
    with its arguments) are: in a loop, the k-th of them ran in the k-th iteration that
    reached it.
    """

    def key(event: EventView) -> tuple[Any, ...]:
        name = event.text.split(" = ", 1)[0] if event.kind == "assign" else event.text
        return (event.line, event.kind, name)

    counts: dict[tuple[Any, ...], int] = {}
    for event in events:
        if event.line is not None and event.kind != "print":
            counts[key(event)] = counts.get(key(event), 0) + 1
    seen: dict[tuple[Any, ...], int] = {}
    for event in events:
        if event.line is None or event.kind == "print" or counts[key(event)] < 2:
            continue
        seen[key(event)] = seen.get(key(event), 0) + 1
        event.iteration = seen[key(event)]
        event.text = f"#{event.iteration} {event.text}"


#: A result-cache hit slower than this waited for an identical call in progress (a plain
#: lookup takes microseconds, a disk read a few milliseconds).
SHARED_CALL_SECONDS = 0.05


def _mapping(call: ToolCall) -> str:
    """How a closed-vocabulary detector read the query: ``'flag' -> no class`` / ``'mug' -> cup``."""
    rows = call.details.get("query_mapping") if isinstance(call.details, dict) else None
    if not isinstance(rows, list):
        return ""
    texts = []
    for row in rows[:4]:
        if not isinstance(row, dict):
            continue
        classes = [str(c) for c in row.get("classes") or []]
        target = ", ".join(classes[:3]) + (" ..." if len(classes) > 3 else "") if classes else "no class it knows"
        texts.append(f"{one_line(str(row.get('query', '')), 40)!r} -> {target}")
    return "; ".join(texts)


def _info(call: ToolCall) -> str:
    parts = [p for p in (call.capability, call.backend, call.model) if p]
    mapping = _mapping(call)
    if mapping:
        parts.append(mapping)
    parts.append(f"{call.seconds * 1000:.1f} ms" if call.seconds < 1 else f"{call.seconds:.2f} s")
    steps = call.details.get("steps") if isinstance(call.details, dict) else None
    if isinstance(steps, list) and any(isinstance(step, dict) and step.get("cold_start") for step in steps):
        parts.append("cold start: the model loaded during this call")
    if call.cache_hit:
        # A hit that took time waited for the identical call another program was making
        # (the result cache computes concurrent identical calls once).
        quick = call.seconds < SHARED_CALL_SECONDS
        parts.append("from the result cache" if quick else "shared: an identical call was computing it")
    return one_line(" · ".join(parts), 200)


def build_view(trace: Trace) -> TraceView:
    """Compute what a rendered view of ``trace`` shows (see the module docstring).

    Args:
        trace: The run.

    Returns:
        The view; its texts are raw, bounded and valid UTF-8.
    """
    width, height = trace.image.get("width"), trace.image.get("height")
    whole = [0, 0, width, height]
    lines = trace.program.splitlines()
    notes: list[str] = []
    if len(lines) > MAX_PROGRAM_LINES:
        notes.append(f"The program has {len(lines)} lines; the first {MAX_PROGRAM_LINES} are shown.")
    program_lines = [reveal(clip(line.rstrip(), MAX_LINE_CHARS), keep="\t") for line in lines[:MAX_PROGRAM_LINES]]
    events: list[EventView] = []
    boxes: list[BoxView] = []
    regions: dict[tuple[int, ...], list[str]] = {}
    skipped_boxes = 0
    colors = 0
    for event in trace.events[:MAX_EVENTS]:
        line = _line(event.line)  # a trace from a file is untrusted: only a positive integer is a line
        if isinstance(event, ToolCall):
            view = EventView(
                "call",
                line,
                call_summary(event, MAX_TEXT),
                result_summary(event, MAX_TEXT),
                shown(event.error, MAX_PRINT) if event.error is not None else None,
                info=_info(event),
            )
            if event.box is not None and len(event.box) == 4 and list(event.box) != whole:
                view.region = [int(v) for v in event.box]
                where = f" (line {line})" if line is not None else ""
                regions.setdefault(tuple(view.region), []).append(one_line(event.operation, 40) + where)
            found = _returned(event.output) if event.error is None else []
            evidence = event.details.get("evidence") if isinstance(event.details, dict) else None
            if not found and event.error is None and isinstance(evidence, list):
                found = _returned(evidence)  # exists(): the boxes that made it True
            if found:
                view.color = PALETTE[colors % len(PALETTE)]
                colors += 1
                source = view.text + (f", line {line}" if line is not None else "")
                for item in found:
                    if len(boxes) >= MAX_BOXES:
                        skipped_boxes += 1
                        continue
                    box = list(box_of(item) or [])
                    boxes.append(BoxView(len(boxes) + 1, box, _label(item, event), source, view.color, line))
                    view.boxes.append(len(boxes))
            events.append(view)
        elif isinstance(event, Assignment):
            text = f"{one_line(event.name, 100)} = {one_line(event.value, MAX_TEXT)}"
            events.append(EventView("assign", line, text))
        elif isinstance(event, PrintOutput):
            events.append(EventView("print", line, shown(event.text, MAX_PRINT)))
    _number_repeats(events)
    if len(trace.events) > MAX_EVENTS:
        notes.append(f"{len(trace.events) - MAX_EVENTS} more events are not shown (at most {MAX_EVENTS}).")
    if skipped_boxes:
        notes.append(f"{skipped_boxes} more boxes are not drawn (at most {MAX_BOXES}).")
    if trace.truncated or trace.dropped_events:
        notes.append(f"The run exceeded the event cap: {trace.dropped_events} events were not recorded.")
    if len(regions) > MAX_REGIONS:
        notes.append(f"{len(regions) - MAX_REGIONS} more regions are not shown (at most {MAX_REGIONS}).")
    error = None
    if trace.error is not None:
        error = {
            "kind": one_line(trace.error.kind, 40),
            "message": shown(trace.error.message, MAX_PRINT),
            "line": _line(trace.error.line),
        }
    image = {
        "sha256": one_line(str(trace.image.get("sha256") or ""), 64),
        "width": width if _positive(width) else None,
        "height": height if _positive(height) else None,
    }
    return TraceView(
        program_lines=program_lines,
        events=events,
        boxes=boxes,
        regions=[RegionView(list(box), ", ".join(ops[:4])) for box, ops in list(regions.items())[:MAX_REGIONS]],
        ok=trace.error is None,
        answer=shown(answer_text(trace.answer), MAX_PRINT) if trace.error is None else None,
        error=error,
        image=image,
        wall_seconds=round(float(trace.wall_seconds), 4),
        tool_seconds=round(float(trace.tool_seconds), 4),
        tool_calls=sum(1 for e in trace.events if isinstance(e, ToolCall)),
        notes=notes,
        text=shown(trace_to_text(trace), 20_000),
        line_runs=line_runs(trace.program, trace.line_counts, len(program_lines)),
        return_line=_line(trace.return_line) if trace.error is None else None,
    )
