"""Terminal views of traces, executions and solutions (their ``repr``; ``vpd solve`` prints the last).

The program with line numbers and, under each line, the calls it made and the values it
assigned, clipped to the terminal's width, with control characters escaped (trace text is
untrusted). The execution-trace text of the paper is :func:`vpd.traces.trace_to_text`.

This module reads records only: a solution is anything shaped like :class:`SolutionLike`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from vpd.traces.execution import Execution
from vpd.traces.text import answer_text, box_of, call_arguments, clip, format_box, one_line
from vpd.traces.trace import Assignment, PrintOutput, ToolCall, Trace

__all__ = [
    "CandidateLike",
    "SolutionLike",
    "call_summary",
    "format_execution",
    "format_solution",
    "format_trace",
    "result_summary",
]


class CandidateLike(Protocol):
    """One of several programs for a question, e.g. ``vpd.solve``'s ``Candidate`` (read-only)."""

    @property
    def index(self) -> int:
        """Its sample number."""

    @property
    def execution(self) -> Execution | None:
        """Its run, or None when no program was obtained."""

    @property
    def answer(self) -> str | None:
        """Its (normalised) answer, or None."""

    @property
    def votes(self) -> int:
        """Votes for its answer."""

    @property
    def chosen(self) -> bool:
        """Whether its answer won."""

    @property
    def error(self) -> str | None:
        """Why it has no answer, or None."""


class TimingsLike(Protocol):
    """Where the time of a solution went (e.g. ``vpd.SolveTimings``)."""

    @property
    def total(self) -> float:
        """Wall time of the whole call."""

    @property
    def load(self) -> float:
        """Loading the LLM."""

    @property
    def prompt(self) -> float:
        """Choosing the worked examples."""

    @property
    def llm(self) -> float:
        """Writing the programs."""

    @property
    def tools(self) -> float:
        """Serving tool calls."""

    @property
    def sandbox(self) -> float:
        """Running programs, minus tool time."""

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens."""

    @property
    def completion_tokens(self) -> int:
        """Generated tokens."""

    @property
    def cached_replies(self) -> int:
        """Replies from the completion cache."""


class SolutionLike(Protocol):
    """What the solution view reads (e.g. ``vpd.Solution``)."""

    @property
    def question(self) -> str:
        """The question."""

    @property
    def answer(self) -> str | None:
        """The answer, or None."""

    @property
    def model(self) -> str:
        """The model's cache identity."""

    @property
    def model_name(self) -> str:
        """The model, short."""

    @property
    def prompt(self) -> str:
        """``"vpd"``, or the custom prompt that asked for the programs."""

    @property
    def source(self) -> str:
        """``"program"``, ``"fallback"`` or ``"none"``."""

    @property
    def error(self) -> str | None:
        """Why there is no answer."""

    @property
    def votes(self) -> Mapping[str, int]:
        """Votes per answer."""

    @property
    def candidates(self) -> Sequence[CandidateLike]:
        """The candidates, in sample order."""

    @property
    def timings(self) -> TimingsLike:
        """Where the time went."""


def _terminal_width(width: int | None) -> int:
    if width is not None:
        return max(40, width)
    return max(60, min(160, shutil.get_terminal_size((100, 24)).columns))


def call_summary(call: ToolCall, limit: int = 120) -> str:
    """``op(arg=value, ...)`` of a tool call, on one line."""
    args, kwargs = call_arguments(call.inputs if isinstance(call.inputs, dict) else {})
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


def format_solution(solution: SolutionLike, *, width: int | None = None, max_rows: int = 60) -> str:
    """The terminal view of a solution such as :class:`~vpd.Solution` (its ``repr`` and ``vpd solve``'s output).

    The chosen program with what each line did, every candidate with its answer and votes
    or why it has none, where the time went, and the answer.
    """
    columns = _terminal_width(width)
    lines = [
        _fit(f"Question: {one_line(solution.question)}", columns),
        _fit(f"Model:    {solution.model_name or solution.model}", columns),
    ]
    if solution.prompt != "vpd":
        lines.append(_fit(f"Prompt:   {solution.prompt}", columns))
    chosen = next((c for c in solution.candidates if c.chosen), None)
    total = len(solution.candidates)
    answers = [c.answer for c in solution.candidates]
    if chosen is not None and chosen.execution is not None:
        agree = answers.count(chosen.answer)
        lines += ["", f"Program {chosen.index + 1} of {total} ({agree} of {total} programs agree on its answer):"]
        lines.append(format_execution(chosen.execution, width=columns, max_rows=max_rows))
    lines += ["", "Programs (numbered as the progress counts them):"]
    for c in solution.candidates:
        mark = "  <- chosen" if c.chosen else ""
        if c.answer is not None:
            # c.votes is 0 when a typed vote dropped the answer (the wrong kind for the question).
            dropped = "; not counted: the wrong kind of answer" if c.votes == 0 else ""
            agreement = f"{answers.count(c.answer)} of {total} agree{dropped}"
            lines.append(_fit(f"  {c.index + 1}. answer {clip(c.answer, 40)!r} ({agreement}){mark}", columns))
        else:
            lines.append(_fit(f"  {c.index + 1}. {one_line(c.error or 'no answer')}", columns))
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
