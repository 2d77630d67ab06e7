"""The paper's execution-trace text of a run, and the text primitives every view shares.

**The execution-trace text** (:func:`trace_to_text`) is what the distillation side turns
into a rationale (Hu et al., 2024, Sec. 3): one "Calling ... function." line per tool
call, then its result, then the program's output::

    Calling find function. Detect cup
    Detection result: 2 cups detected: [100, 300, 180, 400], [400, 100, 480, 200]
    Calling verify_property function. Verify whether the cup in region [100, 300, 180, 400] is red
    Result: True
    Program output: yes

**Box convention** of that text: ``[x0, y0, x1, y1]`` with the origin at the **top-left**
corner of the image, x to the right and y downwards, in integer pixels of the image the
program ran on (x1, y1 exclusive), exactly as in :class:`~vpd.traces.trace.Trace`. With
``box_format="normalized"`` the same corners are divided by the image's width and height
(three decimals, still top-left origin). This is *not* the ``ImagePatch`` convention that
programs see (bottom-left origin: ``left=x0, lower=H-y1, right=x1, upper=H-y0``).

Trace text is untrusted: :func:`one_line` escapes control characters and :func:`clip`
bounds length, so no program can forge extra lines of the text or move a terminal's cursor.
The terminal and HTML views (:mod:`vpd.render`) build on these primitives.

This module depends on the standard library only.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from vpd.traces.trace import OMITTED, PrintOutput, ToolCall, Trace

__all__ = [
    "BoxFormat",
    "answer_text",
    "box_of",
    "call_arguments",
    "clip",
    "format_box",
    "is_box",
    "one_line",
    "reveal",
    "shown",
    "trace_to_text",
]

#: ``"pixels"``: ``[x0, y0, x1, y1]`` integer pixels, top-left origin; ``"normalized"``: the
#: same corners divided by the image's width and height.
BoxFormat = Literal["pixels", "normalized"]

_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
# Characters that change how text around them is shown without being seen themselves:
# controls (Cc: cursor moves, colours), format characters (Cf: bidi overrides and isolates,
# zero-width spaces and joiners, soft hyphens), line/paragraph separators (Zl, Zp), and
# code points with no agreed glyph: private use (Co), unassigned (Cn, which a later Unicode
# may make a format character) and surrogates (Cs). Untrusted text shows them as escapes,
# so a program cannot reorder or add lines of a view or of the execution-trace text.
_HIDDEN = frozenset(("Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp"))


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
    or change its colours, and invisible format characters (bidi overrides, zero-width
    characters) and line or paragraph separators so that it cannot reorder what is shown or
    start a line of its own (see :func:`reveal`).
    """
    return reveal(clip(text, limit), keep="")


def reveal(text: str, keep: str = "\n\t") -> str:
    r"""``text`` with every invisible character shown as an escape, except those in ``keep``.

    Escaped: control characters (``\x1b`` ...), Unicode format characters such as bidi
    overrides and zero-width spaces (``\u202e``, ``\u200b``), and the line and paragraph
    separators ``\u2028`` and ``\u2029``. Views of untrusted text (program lines, prints,
    error messages) pass through this, so what is shown is what is there.

    Args:
        text: Any text.
        keep: Characters left as they are (by default newlines and tabs, for multi-line views).

    Returns:
        The text, unchanged when it has nothing to reveal.
    """
    if text.isprintable() or all(ch in keep or ch.isprintable() for ch in text):
        return text
    return "".join(ch if ch in keep or unicodedata.category(ch) not in _HIDDEN else _escape(ch) for ch in text)


def shown(text: str, limit: int) -> str:
    """Untrusted multi-line text for a view: clipped to ``limit`` (:func:`clip`), then :func:`reveal`."""
    return reveal(clip(text, limit))


def _escape(ch: str) -> str:
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


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


def is_box(value: Any) -> bool:
    """Whether ``value`` is four numbers (a box as traces write it)."""
    return (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )


def box_of(value: Any) -> list[float] | None:
    """The box a JSON value stands for: ``{"box": [...]}``, ``{"$patch": [...]}`` or None."""
    if isinstance(value, Mapping):
        for key in ("box", "$patch"):
            if is_box(value.get(key)):
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
        if call.box is None or not is_box(call.box):
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


_IRREGULAR = {
    "person": "people", "man": "men", "woman": "women", "child": "children", "mouse": "mice", "foot": "feet",
    "tooth": "teeth", "goose": "geese", "knife": "knives", "leaf": "leaves", "shelf": "shelves", "wolf": "wolves",
    "sheep": "sheep", "fish": "fish", "deer": "deer", "people": "people", "glasses": "glasses", "scissors": "scissors",
}  # fmt: skip


def plural(noun: str) -> str:
    """The plural of an English noun phrase (its last word inflected): ``"red bus"`` -> ``"red buses"``."""
    head, _, last = noun.rpartition(" ")
    lower = last.lower()
    if not lower or not lower[-1].isalpha():
        return noun
    if lower in _IRREGULAR:
        word = _IRREGULAR[lower]
    elif lower.endswith(("s", "x", "z", "ch", "sh")):
        word = last + "es"
    elif lower.endswith("y") and len(lower) > 1 and lower[-2] not in "aeiou":
        word = last[:-1] + "ies"
    else:
        word = last + "s"
    return f"{head} {word}" if head else word


def call_arguments(inputs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
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

    if OMITTED in inputs:  # recorded without its arguments (too large for the trace)
        title = f"Calling {one_line(op, 100)} function. (arguments not recorded: {one_line(str(inputs[OMITTED]), 100)})"
        return [title, f"Error: {one_line(call.error, 500)}" if call.error is not None else "Result: (not recorded)"]
    region = boxes.region(call)
    result_label = "Result"
    if op == "find":
        what = arg("object_name")
        head = f"Detect {what}{region}"
        found = call.output if isinstance(call.output, list) else []
        found_boxes = [b for b in (box_of(item) for item in found) if b is not None]
        if call.error is None:
            shown = ", ".join(boxes.box(b) for b in found_boxes)
            count = len(found_boxes)
            named = what if count == 1 else plural(what)
            result = f"{count} {named} detected: {shown}" if found_boxes else f"no {plural(what)} detected"
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
        listed = ", ".join(boxes.box(b) for b in regions if is_box(b)) if isinstance(regions, list) else ""
        content = inputs.get("content")
        texts = ", ".join(one_line(str(t), 100) for t in content) if isinstance(content, list) else ""
        head = f"Find which of the regions {listed} best matches: {texts}"
        index = call.output
        if isinstance(regions, list) and isinstance(index, int) and 0 <= index < len(regions):
            chosen = regions[index]
            if call.error is None and is_box(chosen):
                return [f"Calling best_image_match function. {head}", f"Result: region {index} {boxes.box(chosen)}"]
    else:  # a user tool or an operation this version does not know
        args, kwargs = call_arguments(inputs)
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
    boxes = _Boxes(trace, box_format)
    lines: list[str] = []
    for event in trace.events:
        if isinstance(event, ToolCall):
            lines.extend(_call_lines(event, boxes))
        elif include_prints and isinstance(event, PrintOutput):
            lines.append(f"Program printed: {one_line(event.text.rstrip(chr(10)), 500)}")
    if trace.dropped_events:
        lines.append(f"({trace.dropped_events} more events were not recorded)")
    elif trace.truncated:
        lines.append("(the trace is incomplete: some of what the program did was not recorded in full)")
    if trace.error is not None:
        where = f" at line {trace.error.line}" if trace.error.line else ""
        lines.append(f"Program error ({one_line(trace.error.kind, 50)}{where}): {one_line(trace.error.message, 500)}")
    else:
        lines.append(f"Program output: {boxes.value(trace.answer)}")
    return "\n".join(lines)
