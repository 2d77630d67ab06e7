"""Notebook HTML of traces, executions and sets of candidate programs.

The views are plain HTML and CSS (no script), so they show in saved and untrusted
notebooks alike: the program with line numbers and, beside each line, the tool calls it
made (inputs, outputs, backend, time) and the values it assigned; the image with every
returned box drawn and numbered, a legend, and thumbnails of the regions tools looked at;
the answer, error and timings; the execution-trace text, beside the rationale when there is
one. Images are size-capped data URLs. Every text from a trace is escaped.

Without the image (a :class:`~vpd.traces.trace.Trace` records only its hash and size)
the boxes are drawn on a blank canvas of the image's size.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from vpd.render.text import CandidateLike
from vpd.render.view import BOX_CONVENTION, TraceView, build_view
from vpd.traces.answers import judge, normalize_answer
from vpd.traces.execution import Execution
from vpd.traces.text import answer_text, shown
from vpd.traces.trace import Trace

if TYPE_CHECKING:
    from vpd.image import ImageData, ImageSource

__all__ = [
    "LINE_KEY",
    "PROGRAM_COLUMNS",
    "CandidateLike",
    "esc",
    "line_mark",
    "render_candidates",
    "render_execution",
    "render_trace",
    "stylesheet",
]

#: Events shown per program line before the rest fold away.
_EVENTS_SHOWN = 6
#: Crop thumbnails per view.
_CROPS = 16
#: Legend rows per view.
_LEGEND = 100


def esc(value: Any) -> str:
    r"""HTML-escape any value (quotes included), as text, with invisible characters shown as escapes.

    Lone surrogates become ``?``; controls other than newlines and tabs, bidi overrides,
    zero-width characters and line separators are shown as ``\u202e``-style escapes
    (see :func:`vpd.traces.text.reveal`), so untrusted text cannot reorder what is shown.
    """
    text = value if isinstance(value, str) else answer_text(value)
    return html.escape(shown(text, len(text)), quote=True)


@functools.lru_cache(maxsize=1)
def stylesheet() -> str:
    """The CSS of the views (every rule scoped under ``.vpd``)."""
    return resources.files("vpd.render").joinpath("assets/vpd.css").read_text(encoding="utf-8")


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _facts(view: TraceView, question: Any, label: Any, correct: bool | None) -> str:
    parts: list[str] = []
    if view.ok:
        parts.append(f"<span><b>Answer</b> <code>{esc(view.answer)}</code></span>")
    else:
        kind = view.error["kind"] if view.error else "error"
        parts.append(f'<span class="vpd-badge vpd-bad">failed: {esc(kind)}</span>')
    if label is not None:
        parts.append(f"<span><b>Label</b> <code>{esc(label)}</code></span>")
    if correct is not None:
        badge = (
            '<span class="vpd-badge vpd-ok">correct</span>'
            if correct
            else '<span class="vpd-badge vpd-bad">wrong</span>'
        )
        parts.append(badge)
    calls = view.tool_calls
    parts.append(
        f'<span class="vpd-muted">{calls} tool call{"s" if calls != 1 else ""} · {_seconds(view.wall_seconds)} '
        f"(tools {_seconds(view.tool_seconds)})</span>"
    )
    size = f"{esc(view.image.get('width') or '?')}&times;{esc(view.image.get('height') or '?')}"
    parts.append(f'<span class="vpd-muted">image {size} {esc(str(view.image.get("sha256") or "")[:12])}</span>')
    head = f"<h3>{esc(question)}</h3>" if question is not None else ""
    return f'{head}<div class="vpd-facts">{"".join(parts)}</div>'


def _event_html(event: Any) -> str:
    if event.kind == "call":
        line = "" if event.line is None else esc(event.line)
        chips = "".join(
            f'<span class="vpd-chip" style="background:{esc(event.color)}" data-box="{n}" data-box-line="{line}">'
            f"{n}</span>"
            for n in event.boxes[:20]
        )
        if len(event.boxes) > 20:
            chips += f'<span class="vpd-muted">+{len(event.boxes) - 20}</span>'
        region = f' <span class="vpd-muted">on {esc(_box_text(event.region))}</span>' if event.region else ""
        if event.error is not None:
            result = f'<span class="vpd-err">error: {esc(event.error)}</span>'
        else:
            result = f'<span class="vpd-res">{esc(event.result)}</span>'
        return (
            f'<div class="vpd-call{" vpd-failed" if event.error is not None else ""}">'
            f'<span class="vpd-op">{esc(event.text)}</span>{region} → {result} {chips}'
            f' <span class="vpd-info">{esc(event.info)}</span></div>'
        )
    if event.kind == "assign":
        return f'<div class="vpd-assign">{esc(event.text)}</div>'
    return f'<div class="vpd-print">print: {esc(event.text)}</div>'


def _events_html(events: Sequence[Any]) -> str:
    shown = "".join(_event_html(e) for e in events[:_EVENTS_SHOWN])
    if len(events) > _EVENTS_SHOWN:
        rest = "".join(_event_html(e) for e in events[_EVENTS_SHOWN:])
        shown += f"<details><summary>{len(events) - _EVENTS_SHOWN} more events</summary>{rest}</details>"
    return shown


def line_mark(view: TraceView, number: int) -> tuple[list[str], str, str]:
    """``(row classes, mark, mark's explanation)`` of a program line: ran or not, the return, the failure."""
    runs = view.line_runs[number - 1] if number <= len(view.line_runs) else None
    classes = [] if runs is None else ["vpd-ran" if runs else "vpd-notrun"]
    error = view.error or {}
    if number == error.get("line"):
        classes.append("vpd-errline")
        if error.get("kind") == "timeout":
            return classes, "stopped", "this line was running when the program was stopped"
        return classes, "failed", "the error happened on this line"
    if number == view.return_line:
        classes.append("vpd-returned")
        return classes, "return", "the answer was returned from this line"
    if runs is not None and runs > 1:
        return classes, f"\u00d7{runs}", f"ran {runs} times"
    if runs == 0:
        return classes, "", "this line did not run"
    return classes, "", ""


#: What the line marks mean, shown under a program whose lines were counted.
LINE_KEY = (
    "Lines that ran have a green edge; lines that did not run are faded. "
    "\u00d7n: ran n times \u00b7 return: the answer came from this line \u00b7 "
    "failed / stopped: where the error or the timeout happened."
)

#: Column widths of the program table: code and calls share the width, so neither hides the other.
PROGRAM_COLUMNS = (
    '<colgroup><col class="vpd-c-no"><col class="vpd-c-mark"><col class="vpd-c-src"><col class="vpd-c-ev"></colgroup>'
)


def _program_html(view: TraceView) -> str:
    by_line: dict[int | None, list[Any]] = {}
    for event in view.events:
        by_line.setdefault(event.line, []).append(event)
    rows = []
    for number, code in enumerate(view.program_lines, start=1):
        classes, mark, why = line_mark(view, number)
        cls = f' class="{" ".join(classes)}"' if classes else ""
        title = f' title="{esc(why)}"' if why else ""
        events = by_line.pop(number, [])
        rows.append(
            f'<tr{cls} data-line="{number}"><td class="vpd-no">{number}</td>'
            f'<td class="vpd-mark"{title}>{esc(mark)}</td>'
            f'<td class="vpd-src"><code>{esc(code)}</code></td><td class="vpd-ev">{_events_html(events)}</td></tr>'
        )
    orphans = [event for events in by_line.values() for event in events]
    if orphans:
        rows.append(
            '<tr><td class="vpd-no">&ndash;</td><td class="vpd-mark"></td><td class="vpd-src vpd-muted">'
            f'(no program line)</td><td class="vpd-ev">{_events_html(orphans)}</td></tr>'
        )
    key = f'<div class="vpd-key">{esc(LINE_KEY)}</div>' if any(r is not None for r in view.line_runs) else ""
    return f'<table class="vpd-prog">{PROGRAM_COLUMNS}{"".join(rows)}</table>{key}'


def _box_text(box: Sequence[float] | None) -> str:
    if not box:
        return ""
    return "[" + ", ".join(str(int(v)) if float(v).is_integer() else f"{v:g}" for v in box) + "]"


def _image_html(view: TraceView, image: ImageData | None, max_side: int) -> str:
    from vpd.render.images import annotate, crop_thumbnail, data_url, placeholder

    size = (view.image["width"], view.image["height"]) if view.image["width"] and view.image["height"] else None
    notes = []
    if image is None:
        base = placeholder(size)
        notes.append(
            "Image not available: boxes drawn on a blank canvas of its size. An Execution keeps the image's "
            "hash, not its pixels: to draw on the picture, call vpd.render.render_execution(execution, image) "
            "with the image it ran on (a Solution from vpd.solve keeps its image and draws on it)."
        )
    else:
        base = image.pil
        if view.image.get("sha256") and image.sha256 != view.image["sha256"]:
            notes.append("This image is not the one the program ran on (different sha256); boxes may not line up.")
    drawn = annotate(base, view.boxes, size, max_side=max_side)
    caption = esc(BOX_CONVENTION)
    url = data_url(drawn, max_side=max_side, max_bytes=max_side * 150)  # about 96 kB at 640 px
    stage = f'<img alt="image with boxes" src="{url}">{_overlay(view, size or (drawn.width, drawn.height))}'
    parts = [f'<figure class="vpd-figure"><div class="vpd-stage">{stage}</div>']
    parts.append(f"<figcaption>{caption}</figcaption></figure>")
    parts.extend(f'<div class="vpd-note">{esc(note)}</div>' for note in notes)
    if view.boxes:
        rows = "".join(
            f'<tr data-box="{b.n}" data-box-line="{"" if b.line is None else esc(b.line)}" tabindex="0">'
            f'<td><span class="vpd-swatch" style="background:{esc(b.color)}"></span>{b.n}</td>'
            f"<td>{esc(b.label)}</td><td><code>{esc(_box_text(b.box))}</code></td>"
            f'<td class="vpd-muted">{esc(b.source)}</td></tr>'
            for b in view.boxes[:_LEGEND]
        )
        more = f'<tr><td colspan="4" class="vpd-muted">… {len(view.boxes) - _LEGEND} more</td></tr>'
        parts.append(f'<table class="vpd-legend">{rows}{more if len(view.boxes) > _LEGEND else ""}</table>')
    else:
        parts.append('<div class="vpd-muted">No tool returned a box.</div>')
    if view.regions:
        crops = []
        for region in view.regions[:_CROPS]:
            thumb = crop_thumbnail(image.pil, region.box, size) if image is not None else None
            img = f'<img alt="crop" src="{data_url(thumb, max_side=112)}">' if thumb is not None else ""
            where = f"<code>{esc(_box_text(region.box))}</code><br>{esc(region.label)}"
            crops.append(f'<figure class="vpd-crop">{img}{where}</figure>')
        extra = len(view.regions) - _CROPS
        tail = f'<div class="vpd-muted">… {extra} more regions</div>' if extra > 0 else ""
        parts.append(f'<h4>Regions the tools looked at</h4><div class="vpd-crops">{"".join(crops)}</div>{tail}')
    return "".join(parts)


def _overlay(view: TraceView, size: tuple[int, int]) -> str:
    """Invisible boxes over the drawn image, to point at: they light up with their line, and the reverse.

    Notebooks run no script, so the linking is CSS (``:has``): :func:`_link_rules`.
    """
    width, height = size
    boxes = []
    for b in view.boxes[:_LEGEND]:
        x0, x1 = sorted((b.box[0], b.box[2]))
        y0, y1 = sorted((b.box[1], b.box[3]))
        line = "" if b.line is None else esc(b.line)
        boxes.append(
            (
                (x1 - x0) * (y1 - y0),
                f'<g class="vpd-box" data-box="{b.n}" data-box-line="{line}" tabindex="0"><title>{b.n} {esc(b.label)} '
                f"{esc(_box_text(b.box))} \u2014 {esc(b.source)}</title>"
                f'<rect x="{x0:g}" y="{y0:g}" width="{x1 - x0:g}" height="{y1 - y0:g}" stroke="{esc(b.color)}"/></g>',
            )
        )
    boxes.sort(key=lambda item: -item[0])  # largest first: a small box over a large one stays reachable
    shapes = "".join(shape for _, shape in boxes)
    return (
        f'<svg class="vpd-overlay vpd-static" viewBox="0 0 {width} {height}" preserveAspectRatio="none" '
        f'aria-hidden="true">{shapes}</svg>'
    )


def _link_rules(view: TraceView) -> str:
    """CSS that links each box, its legend row and chip, and its program line, on hover or focus.

    Every rule is generic ("box n lights box n", "anything of line L lights line L"), never
    this view's mapping of boxes to lines: the rules of all the views on a page apply to
    each of them (a notebook, the solve page), and each ``.vpd-cols`` holds one view.
    """
    rules = []
    for n in sorted({b.n for b in view.boxes[:_LEGEND]}):
        on = f'.vpd-cols:has([data-box="{n}"]:is(:hover, :focus))'
        rules.append(f'{on} g[data-box="{n}"] rect {{ stroke-width: 4px; }}')
        rules.append(f'{on} tr[data-box="{n}"] td {{ background: var(--vpd-hot); }}')
        rules.append(f'{on} span[data-box="{n}"] {{ outline: 2px solid var(--vpd-fg); outline-offset: 1px; }}')
    for line in sorted({b.line for b in view.boxes[:_LEGEND] if isinstance(b.line, int)}):
        boxes = f'.vpd-cols:has([data-box-line="{line}"]:is(:hover, :focus))'
        rules.append(f'{boxes} tr[data-line="{line}"] td {{ background: var(--vpd-hot); }}')
        row = f'.vpd-cols:has(tr[data-line="{line}"]:hover)'
        rules.append(f'{row} g[data-box-line="{line}"] rect {{ stroke-width: 4px; }}')
        rules.append(f'{row} tr[data-box-line="{line}"] td {{ background: var(--vpd-hot); }}')
    return f"<style>{''.join(rules)}</style>" if rules else ""


def _text_html(view: TraceView, rationale: str | None) -> str:
    text = f"<h4>Execution trace (text for distillation)</h4><pre>{esc(view.text)}</pre>"
    if rationale:
        rationale_html = f"<h4>Rationale</h4><pre>{esc(rationale)}</pre>"
        return f'<div class="vpd-pair"><div>{text}</div><div>{rationale_html}</div></div>'
    return f"<details><summary>Execution trace (text for distillation)</summary><pre>{esc(view.text)}</pre></details>"


def _body(
    trace: Trace,
    image: ImageData | None,
    *,
    question: Any,
    label: Any,
    correct: bool | None,
    rationale: str | None,
    max_side: int,
) -> str:
    view = build_view(trace)
    if correct is None and label is not None:
        correct = judge(trace.answer if trace.ok else None, label)
    if rationale is None and isinstance(trace.meta.get("rationale"), str):
        rationale = trace.meta["rationale"]
    parts = [_facts(view, question, label, correct)]
    if view.error is not None:
        where = f" at line {esc(view.error['line'])}" if view.error.get("line") else ""
        parts.append(
            f'<div class="vpd-error"><b>{esc(view.error["kind"])}{where}</b>: {esc(view.error["message"])}</div>'
        )
    parts.extend(f'<div class="vpd-note">{esc(note)}</div>' for note in view.notes)
    parts.append(
        f'<div class="vpd-cols">{_link_rules(view)}<div class="vpd-code">{_program_html(view)}</div>'
        f'<div class="vpd-side">{_image_html(view, image, max_side)}</div></div>'
    )
    parts.append(_text_html(view, rationale))
    return "".join(parts)


def _wrap(body: str) -> str:
    return f'<div class="vpd"><style>{stylesheet()}</style>{body}</div>'


def render_trace(
    trace: Trace,
    image: ImageSource | None = None,
    *,
    question: Any = None,
    label: Any = None,
    correct: bool | None = None,
    rationale: str | None = None,
    max_side: int = 640,
) -> str:
    """HTML of one trace (see the module docstring), for a notebook or a web page.

    Args:
        trace: The run.
        image: The image it ran on (path, bytes, PIL image, array or ImageData); without
            it, boxes are drawn on a blank canvas.
        question: The question, shown as the title (default: ``trace.meta["question"]``).
        label: The expected answer (default: ``trace.meta["label"]``).
        correct: Whether the answer is right (default: the normalised answer equals the
            normalised label, when there is a label).
        rationale: A rationale written from this trace (default: ``trace.meta["rationale"]``),
            shown beside the execution-trace text.
        max_side: Longest side of the drawn image, in pixels.

    Returns:
        An HTML fragment (a ``<div class="vpd">`` with its own scoped ``<style>``).
    """
    from vpd.render.images import load_for_render

    if question is None:
        question = trace.meta.get("question")
    if label is None:
        label = trace.meta.get("label")
    body = _body(
        trace,
        load_for_render(image),
        question=question,
        label=label,
        correct=correct,
        rationale=rationale,
        max_side=max_side,
    )
    return _wrap(body)


def render_execution(
    execution: Execution,
    image: ImageSource | None = None,
    *,
    question: Any = None,
    label: Any = None,
    correct: bool | None = None,
    rationale: str | None = None,
    max_side: int = 640,
) -> str:
    """HTML of one :class:`~vpd.Execution` (its trace; see :func:`render_trace`)."""
    return render_trace(
        execution.trace,
        image,
        question=question,
        label=label,
        correct=correct,
        rationale=rationale,
        max_side=max_side,
    )


def _as_candidate(item: Any) -> tuple[Any, Any, str | None]:
    """``(execution or trace or None, answer, error)`` of an Execution, a Trace or a candidate."""
    if isinstance(item, (Execution, Trace)):
        error = f"{item.error.kind}: {item.error.message}" if item.error is not None else None
        return item, (item.answer if item.error is None else None), error
    run = getattr(item, "execution", None)
    error = getattr(item, "error", None)
    answer = getattr(item, "answer", None)
    if answer is None and run is not None and run.error is None:
        answer = run.answer
    return run, answer, error


def render_candidates(
    candidates: Iterable[CandidateLike | Execution | Trace],
    image: ImageSource | None = None,
    *,
    question: Any = None,
    answer: Any = None,
    label: Any = None,
    votes: Mapping[str, int] | None = None,
    max_side: int = 480,
) -> str:
    """HTML of several programs for one question: a table of answers and votes, then each run.

    Each candidate is an :class:`~vpd.Execution`, a   :class:`~vpd.traces.trace.Trace` or an
    object like ``vpd.solve``'s ``Candidate`` (see :class:`CandidateLike`). The chosen
    candidate's view is open; the others fold away.

    Args:
        candidates: The candidates, in sample order.
        image: The image they ran on (shared, loaded once).
        question: The question (title).
        answer: The final answer (shown in the header).
        label: The expected answer, if known.
        votes: Votes per normalised answer (default: counted from the candidates' answers).
        max_side: Longest side of each drawn image, in pixels.

    Returns:
        An HTML fragment.
    """
    from vpd.render.images import load_for_render

    items = list(candidates)
    unpacked = [_as_candidate(item) for item in items]
    keys = [normalize_answer(ans) for _, ans, _ in unpacked]
    same = {key: keys.count(key) for key in keys if key is not None}  # programs per answer
    if votes is None:  # one vote per program
        votes = same
    loaded = load_for_render(image)
    total = len(items)
    rows, views = [], []
    for index, (item, (run, ans, error), key) in enumerate(zip(items, unpacked, keys)):
        chosen = bool(getattr(item, "chosen", False))
        status = esc(error) if error else ""
        cls = ' class="vpd-chosen"' if chosen else ""
        # Numbered from 1, as the CLI's progress counts the samples.
        number = esc(int(getattr(item, "index", index)) + 1)
        if key is None:
            own, agree = "&ndash;", "&ndash;"
        else:
            in_vote = key in votes  # a typed vote drops answers of the wrong kind for the question
            own = "1" if in_vote else '<span title="an answer of the wrong kind for the question">0</span>'
            agree = f"{same[key]} of {total}"
        rows.append(
            f"<tr{cls}><td>{number}</td>"
            f"<td><code>{esc(ans) if ans is not None else '&ndash;'}</code></td><td>{own}</td><td>{agree}</td>"
            f'<td>{"&#10003; chosen" if chosen else ""}</td><td class="vpd-muted">{status}</td></tr>'
        )
        if run is None:
            continue
        trace = run.trace if hasattr(run, "trace") else run
        body = _body(trace, loaded, question=None, label=label, correct=None, rationale=None, max_side=max_side)
        shown = esc(ans) if ans is not None else esc(error or "no answer")
        title = f"Program {number}: {shown}"
        views.append(f"<details{' open' if chosen else ''}><summary>{title}</summary>{body}</details>")
    head = f"<h3>{esc(question)}</h3>" if question is not None else ""
    facts = []
    if answer is not None:
        agreeing = same.get(normalize_answer(answer) or "", 0)
        facts.append(f"<span><b>Answer</b> <code>{esc(answer)}</code></span>")
        facts.append(f"<span>{agreeing} of {total} program{'s' if total != 1 else ''} agree</span>")
    if label is not None:
        facts.append(f"<span><b>Label</b> <code>{esc(label)}</code></span>")
    tally = ", ".join(f"{esc(k)} &times;{esc(v)}" for k, v in sorted(votes.items(), key=lambda kv: -kv[1]))
    facts.append(f'<span class="vpd-muted">votes: {tally or "none"}</span>')
    table = (
        '<table class="vpd-cands"><tr><th>program</th><th>answer</th><th>its vote</th>'
        "<th>programs with this answer</th><th>chosen</th><th>why no answer</th></tr>"
        f"{''.join(rows)}</table>"
    )
    return _wrap(f'{head}<div class="vpd-facts">{"".join(facts)}</div>{table}{"".join(views)}')
