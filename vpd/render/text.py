"""Plain-text forms of a trace: the paper's execution-trace text and a terminal summary.

**The execution-trace text** (:func:`trace_to_text`) is what the distillation side turns
into a rationale (Hu et al., 2024, Sec. 3): one "Calling ... function." line per tool
call, then its result, then the program's output::

    Calling find function. Detect cup
    Detection result: 2 cup detected: [100, 300, 180, 400], [400, 100, 480, 200]
    Calling verify_property function. Verify whether the cup in region [100, 300, 180, 400] is red
    Result: True
    Program output: yes

**Box convention** of that text: ``[x0, y0, x1, y1]`` with the origin at the **top-left**
corner of the image, x to the right and y downwards, in integer pixels of the image the
program ran on (x1, y1 exclusive), exactly as in :class:`~vpd.programs.trace.Trace`. With
``box_format="normalized"`` the same corners are divided by the image's width and height
(three decimals, still top-left origin). This is *not* the ``ImagePatch`` convention that
programs see (bottom-left origin: ``left=x0, lower=H-y1, right=x1, upper=H-y0``).

**The terminal summary** (:func:`format_trace`, :func:`format_execution`) is the
``repr`` of :class:`~vpd.programs.trace.Trace` and :class:`~vpd.Execution`: the program
with line numbers and, under each line, the calls it made and the values it assigned,
clipped to the terminal's width, with control characters escaped (trace text is untrusted).

This module depends on the standard library only.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from vpd.programs.sandbox import Execution
    from vpd.programs.trace import ToolCall, Trace
    from vpd.solve import Solution

__all__ = [
    "BoxFormat",
    "answer_text",
    "box_of",
    "call_summary",
    "clip",
    "format_box",
    "format_execution",
    "format_solution",
    "format_trace",
    "one_line",
    "result_summary",
    "trace_to_text",
]

#: ``"pixels"``: ``[x0, y0, x1, y1]`` integer pixels, top-left origin; ``"normalized"``: the
#: same corners divided by the image's width and height.
BoxFormat = Literal["pixels", "normalized"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def clip(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters (with a note of how much was cut), valid UTF-8.

    Args:
        text: Any text (lone surrogates become ``?``).
        limit: Most characters kept.

    Returns:
        The text, or its head followed by ``"… [N more characters]"``.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters]"


def one_line(text: str, limit: int = 200) -> str:
    """``text`` on one line: newlines and other control characters escaped, then clipped.

    Control characters are escaped so that untrusted text cannot move a terminal's cursor
    or change its colours.
    """
    text = clip(text, limit)
    return _CONTROL.sub(lambda m: _ESCAPES.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


def answer_text(value: Any) -> str:
    """A program's answer (JSON) as text: strings as they are, others in Python notation.

    Args:
        value: The answer.

    Returns:
        ``"yes"`` for ``"yes"``, ``"True"`` for ``True``, ``"2"`` for ``2``, ``"None"`` for
        None, compact JSON for lists and dicts.
    """
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, (bool, int)):
        return repr(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "nan"
    try:
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    except (TypeError, ValueError):
        return repr(value)


def format_box(box: Sequence[float], size: tuple[int, int] | None = None, box_format: BoxFormat = "pixels") -> str:
    """A box as text in the execution-trace convention (see the module docstring).

    Args:
        box: ``[x0, y0, x1, y1]`` pixels, top-left origin.
        size: ``(width, height)`` of the image; needed for ``"normalized"``.
        box_format: ``"pixels"`` or ``"normalized"``.

    Returns:
        E.g. ``"[100, 300, 180, 400]"`` or ``"[0.156, 0.625, 0.281, 0.833]"``.
    """
    if box_format == "normalized" and size and size[0] > 0 and size[1] > 0:
        w, h = size
        return "[" + ", ".join(f"{v / d:.3f}" for v, d in zip(box, (w, h, w, h))) + "]"
    return "[" + ", ".join(str(int(v)) if float(v).is_integer() else f"{v:g}" for v in box) + "]"


def _is_box(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )


def box_of(value: Any) -> list[float] | None:
    """The box a JSON value stands for: ``{"box": [...]}``, ``{"$patch": [...]}`` or None."""
    if isinstance(value, Mapping):
        for key in ("box", "$patch"):
            if _is_box(value.get(key)):
                return list(value[key])
    return None


class _Boxes:
    """Formats values and boxes of one trace in one box convention."""

    def __init__(self, trace: Trace, box_format: BoxFormat):
        width, height = trace.image.get("width"), trace.image.get("height")
        self.size = (int(width), int(height)) if isinstance(width, int) and isinstance(height, int) else None
        self.box_format = box_format

    def box(self, box: Sequence[float]) -> str:
        return format_box(box, self.size, self.box_format)

    def region(self, call: ToolCall, prefix: str = " in region ") -> str:
        """`` in region [...]`` unless the call looked at the whole image (or no region)."""
        if call.box is None or not _is_box(call.box):
            return ""
        if self.size and list(call.box) == [0, 0, self.size[0], self.size[1]]:
            return ""
        return prefix + self.box(call.box)

    def argument(self, value: Any) -> str:
        """A user tool's argument: strings quoted, patches as boxes."""
        if isinstance(value, str):
            return one_line(json.dumps(value, ensure_ascii=False), 200)
        if isinstance(value, list) and value and all(box_of(v) is not None for v in value):
            return "[" + self.value(value, 200) + "]"
        return self.value(value, 200)

    def value(self, value: Any, limit: int = 500) -> str:
        box = box_of(value)
        if box is not None:
            return self.box(box)
        if isinstance(value, list) and value and all(box_of(v) is not None for v in value):
            return ", ".join(self.box(box_of(v) or []) for v in value)
        if isinstance(value, str):
            return one_line(value, limit) if value else '""'
        return one_line(answer_text(value), limit)


def _arguments(inputs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments of a call: user tools record ``{"args", "kwargs"}``."""
    if inputs and set(inputs) <= {"args", "kwargs"}:
        args, kwargs = inputs.get("args"), inputs.get("kwargs")
        return (args if isinstance(args, list) else []), (kwargs if isinstance(kwargs, dict) else {})
    return [], dict(inputs)


def _call_lines(call: ToolCall, boxes: _Boxes) -> list[str]:
    """The two lines (call, result) of one tool call in the execution-trace text."""
    op, inputs = call.operation, call.inputs if isinstance(call.inputs, dict) else {}

    def arg(name: str) -> str:
        value = inputs.get(name, "")
        return one_line(value if isinstance(value, str) else answer_text(value), 300)

    region = boxes.region(call)
    result_label = "Result"
    if op == "find":
        what = arg("object_name")
        head = f"Detect {what}{region}"
        found = call.output if isinstance(call.output, list) else []
        found_boxes = [b for b in (box_of(item) for item in found) if b is not None]
        if call.error is None:
            shown = ", ".join(boxes.box(b) for b in found_boxes)
            result = f"{len(found_boxes)} {what} detected: {shown}" if found_boxes else f"no {what} detected"
            return [f"Calling find function. {head}", f"Detection result: {result}"]
    elif op == "exists":
        head = f"Check whether there is a {arg('object_name')}{region}"
    elif op == "verify_property":
        head = f"Verify whether the {arg('object_name')}{region} is {arg('property')}"
    elif op == "best_text_match":
        options = inputs.get("options")
        listed = ", ".join(one_line(str(o), 100) for o in options) if isinstance(options, list) else ""
        head = f"Choose the option that best describes{boxes.region(call, ' region ') or ' the image'}: {listed}"
    elif op == "simple_query":
        head = f"Ask about{boxes.region(call, ' region ') or ' the image'}: {arg('question')}"
        result_label = "Answer"
    elif op == "depth":
        head = f"Estimate the depth of{boxes.region(call, ' region ') or ' the image'}"
    elif op == "ocr":
        head = f"Read the text{boxes.region(call) or ' in the image'}"
    elif op == "llm_query":
        head = f"Ask the language model: {arg('question')}"
        result_label = "Answer"
    elif op == "best_image_match":
        regions = inputs.get("boxes")
        listed = ", ".join(boxes.box(b) for b in regions if _is_box(b)) if isinstance(regions, list) else ""
        content = inputs.get("content")
        texts = ", ".join(one_line(str(t), 100) for t in content) if isinstance(content, list) else ""
        head = f"Find which of the regions {listed} best matches: {texts}"
        index = call.output
        if isinstance(regions, list) and isinstance(index, int) and 0 <= index < len(regions):
            chosen = regions[index]
            if call.error is None and _is_box(chosen):
                return [f"Calling best_image_match function. {head}", f"Result: region {index} {boxes.box(chosen)}"]
    else:  # a user tool or an operation this version does not know
        args, kwargs = _arguments(inputs)
        values = [boxes.argument(a) for a in args] + [f"{k}={boxes.argument(v)}" for k, v in kwargs.items()]
        parts = [f"on region {boxes.box(call.box)}"] if region and call.box else []
        if values:
            parts.append("with " + ", ".join(values))
        head = " ".join(parts)
        head = head[:1].upper() + head[1:]
    title = f"Calling {one_line(op, 100)} function." + (f" {head}" if head else "")
    if call.error is not None:
        return [title, f"Error: {one_line(call.error, 500)}"]
    return [title, f"{result_label}: {boxes.value(call.output)}"]


def trace_to_text(trace: Trace, *, box_format: BoxFormat = "pixels", include_prints: bool = False) -> str:
    r"""The paper's execution-trace text of a run (see the module docstring for an example).

    One "Calling X function. ..." line per tool call, then its result ("Detection result:",
    "Result:", "Answer:" or "Error:"), then "Program output: ..." or "Program error (kind): ...".
    Regions are named only when a tool looked at part of the image. Untrusted text is put
    on one line (newlines escaped as ``\n``) and clipped, so each step stays one line.

    Args:
        trace: The run.
        box_format: ``"pixels"`` (``[x0, y0, x1, y1]``, top-left origin) or ``"normalized"``
            (the same divided by width and height; pixels when the trace lacks the image size).
        include_prints: Also list what the program printed ("Program printed: ...").

    Returns:
        The text, lines separated by ``\n``, no trailing newline.
    """
    from vpd.programs.trace import PrintOutput, ToolCall

    boxes = _Boxes(trace, box_format)
    lines: list[str] = []
    for event in trace.events:
        if isinstance(event, ToolCall):
            lines.extend(_call_lines(event, boxes))
        elif include_prints and isinstance(event, PrintOutput):
            lines.append(f"Program printed: {one_line(event.text.rstrip(chr(10)), 500)}")
    if trace.truncated or trace.dropped_events:
        lines.append(f"({trace.dropped_events} more events were not recorded)")
    if trace.error is not None:
        where = f" at line {trace.error.line}" if trace.error.line else ""
        lines.append(f"Program error ({one_line(trace.error.kind, 50)}{where}): {one_line(trace.error.message, 500)}")
    else:
        lines.append(f"Program output: {boxes.value(trace.answer)}")
    return "\n".join(lines)


# -- terminal summary --------------------------------------------------------------------------


def _terminal_width(width: int | None) -> int:
    if width is not None:
        return max(40, width)
    return max(60, min(160, shutil.get_terminal_size((100, 24)).columns))


def call_summary(call: ToolCall, limit: int = 120) -> str:
    """``op(arg=value, ...)`` of a tool call, on one line."""
    args, kwargs = _arguments(call.inputs if isinstance(call.inputs, dict) else {})
    parts = [_short(a) for a in args] + [f"{k}={_short(v)}" for k, v in kwargs.items()]
    return one_line(f"{call.operation}({', '.join(parts)})", limit)


def result_summary(call: ToolCall, limit: int = 160) -> str:
    """What a tool call returned (or its error), on one line."""
    if call.error is not None:
        return one_line(f"error: {call.error}", limit)
    output = call.output
    if isinstance(output, list) and output and all(box_of(v) is not None for v in output):
        scores = [v.get("score") for v in output]
        shown = ", ".join(
            format_box(box_of(v) or []) + (f" {s:.2f}" if isinstance(s, (int, float)) else "")
            for v, s in zip(output[:3], scores[:3])
        )
        more = f", ... ({len(output) - 3} more)" if len(output) > 3 else ""
        return one_line(f"{len(output)} box{'es' if len(output) != 1 else ''}: {shown}{more}", limit)
    if isinstance(output, list) and not output and call.operation == "find":
        return "0 boxes"
    return one_line(_short(output, limit), limit)


def _short(value: Any, limit: int = 60) -> str:
    box = box_of(value)
    if box is not None:
        return format_box(box)
    if isinstance(value, list) and value and all(box_of(v) is not None for v in value):
        return one_line("[" + ", ".join(format_box(box_of(v) or []) for v in value) + "]", limit)
    text = repr(value) if isinstance(value, str) else answer_text(value)
    return one_line(text, limit)


def _whole(trace: Trace, box: Sequence[float]) -> bool:
    return list(box) == [0, 0, trace.image.get("width"), trace.image.get("height")]


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."


def _header(kind: str, trace: Trace, answer: Any, error: Any, wall: float, tools: float) -> str:
    status = "ok" if error is None else f"failed: {one_line(error.kind, 30)}"
    result = f"answer={_short(answer, 60)}" if error is None else f"error={one_line(error.message, 80)!s}"
    calls = len(trace.tool_calls)
    size = f"{trace.image.get('width', '?')}x{trace.image.get('height', '?')}"
    sha = str(trace.image.get("sha256", ""))[:12]
    return (
        f"<{kind} {status} {result} | {calls} tool call{'s' if calls != 1 else ''} | "
        f"{wall:.2f} s (tools {tools:.2f} s) | image {size} {sha}>"
    )


def _body(trace: Trace, width: int, max_rows: int) -> list[str]:
    from vpd.programs.trace import Assignment, PrintOutput, ToolCall

    by_line: dict[int | None, list[str]] = {}
    for event in trace.events:
        if isinstance(event, ToolCall):
            where = f" on {format_box(event.box)}" if event.box and not _whole(trace, event.box) else ""
            note = f"-> {call_summary(event)}{where} = {result_summary(event)}"
        elif isinstance(event, Assignment):
            note = f"   {one_line(event.name, 40)} = {one_line(event.value, 200)}"
        elif isinstance(event, PrintOutput):
            note = f"   print: {one_line(event.text.rstrip(chr(10)), 200)}"
        else:  # pragma: no cover - every event type is handled above
            continue
        by_line.setdefault(event.line, []).append(note)
    program_lines = trace.program.splitlines()
    rows: list[str] = []
    error_line = trace.error.line if trace.error is not None else None
    for number, code in enumerate(program_lines, start=1):
        mark = ">" if number == error_line else " "
        rows.append(_fit(f"{mark}{number:4d}  {one_line(code.rstrip(), 400)}", width))
        rows.extend(_notes(by_line.pop(number, []), width))
    orphans = [note for line in list(by_line) for note in by_line.pop(line)]
    if orphans:
        rows.append("       (not tied to a program line)")
        rows.extend(_notes(orphans, width))
    if len(rows) > max_rows:
        head, tail = max_rows * 2 // 3, max_rows - max_rows * 2 // 3 - 1
        rows = [*rows[:head], f"       ... {len(rows) - head - tail} more rows ...", *rows[len(rows) - tail :]]
    return rows


def _notes(notes: list[str], width: int, most: int = 4) -> Iterable[str]:
    for note in notes[:most]:
        yield _fit(f"         {note}", width)
    if len(notes) > most:
        yield f"         ... {len(notes) - most} more events on this line"


def _footer(trace: Trace, error: Any) -> list[str]:
    rows = []
    if error is not None:
        where = f" (line {error.line})" if error.line else ""
        rows.append(f"  error {one_line(error.kind, 30)}{where}: {one_line(error.message, 300)}")
    if trace.truncated or trace.dropped_events:
        rows.append(f"  ({trace.dropped_events} events were not recorded)")
    return rows


def format_trace(trace: Trace, *, width: int | None = None, max_rows: int = 60) -> str:
    """A terminal-sized summary of a trace (its ``repr``).

    Args:
        trace: The run.
        width: Columns per row (default: the terminal's, 60 to 160).
        max_rows: Most rows of program and events (the middle is elided beyond).

    Returns:
        A header line, the numbered program with the events under each line, and the error.
    """
    columns = _terminal_width(width)
    header = _header("Trace", trace, trace.answer, trace.error, trace.wall_seconds, trace.tool_seconds)
    body = _body(trace, columns, max_rows)
    return "\n".join([_fit(header, columns), *body, *(_fit(r, columns) for r in _footer(trace, trace.error))])


def format_execution(execution: Execution, *, width: int | None = None, max_rows: int = 60) -> str:
    """A terminal-sized summary of an :class:`~vpd.Execution` (its ``repr``); see :func:`format_trace`."""
    columns = _terminal_width(width)
    trace = execution.trace
    header = _header(
        "Execution", trace, execution.answer, execution.error, execution.wall_seconds, execution.tool_seconds
    )
    body = _body(trace, columns, max_rows)
    footer = _footer(trace, execution.error)
    return "\n".join([_fit(header, columns), *body, *(_fit(r, columns) for r in footer)])


def format_solution(solution: Solution, *, width: int | None = None, max_rows: int = 60) -> str:
    """The terminal view of a :class:`~vpd.Solution` (its ``repr`` and ``vpd solve``'s output).

    The chosen program with what each line did, every candidate with its answer and votes
    or why it has none, where the time went, and the answer.
    """
    columns = _terminal_width(width)
    lines = [
        _fit(f"Question: {one_line(solution.question)}", columns),
        _fit(f"Model:    {solution.model_name or solution.model}", columns),
    ]
    chosen = next((c for c in solution.candidates if c.chosen), None)
    if chosen is not None and chosen.execution is not None:
        lines += ["", f"Program (sample {chosen.index}, {chosen.votes} of {len(solution.candidates)} votes):"]
        lines.append(format_execution(chosen.execution, width=columns, max_rows=max_rows))
    lines += ["", "Candidates:"]
    for c in solution.candidates:
        mark = "  <- chosen" if c.chosen else ""
        if c.answer is not None:
            votes = f"{c.votes} vote{'s' if c.votes != 1 else ''}"
            lines.append(_fit(f"  #{c.index}  answer {clip(c.answer, 40)!r} ({votes}){mark}", columns))
        else:
            lines.append(_fit(f"  #{c.index}  {one_line(c.error or 'no answer')}", columns))
    t = solution.timings
    cached = f", {t.cached_replies} from the cache" if t.cached_replies else ""
    lines += [
        "",
        _fit(
            f"Time: {t.total:.2f} s in all; model load {t.load:.2f} s, examples {t.prompt:.2f} s, "
            f"writing programs {t.llm:.2f} s,",
            columns,
        ),
        _fit(f"      tools {t.tools:.2f} s, sandbox {t.sandbox:.3f} s", columns),
        _fit(f"LLM:  {t.prompt_tokens} prompt and {t.completion_tokens} generated tokens{cached}", columns),
    ]
    if solution.source == "fallback":
        lines.append("No program answered; the answer comes from the VQA model directly.")
    if solution.answer is None:
        lines += ["", f"No answer: {clip(one_line(solution.error or 'unknown reason', 4 * columns), 4 * columns)}"]
    else:
        lines += ["", f"Answer: {one_line(solution.answer)}"]
    return "\n".join(lines) + "\n"
