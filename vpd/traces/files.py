"""JSONL files of traces: the format, and reading them (``vpd show``, the distillation pipeline).

:class:`~vpd.traces.writer.TraceWriter` appends to such files; :func:`read_traces` and
:func:`iter_traces` read them back.

**Format.** UTF-8, one JSON object per line; blank lines are ignored. A line is either

* a trace, exactly as :meth:`Trace.to_json() <vpd.traces.trace.Trace.to_json>` writes it
  (``{"version": "vpd.trace/1", "program": ..., "events": [...], ...}``), or
* a record wrapping one::

      {"trace": {...a trace...},
       "id": "q17-s3",            # optional: shown in the list and in links (default: file:line)
       "question": "How many cups?",
       "label": "2",              # optional: the expected answer
       "correct": true,           # optional: overrides the comparison of answer and label
       "image": "images/17.jpg",  # optional: the image the program ran on
       "rationale": "..."}        # optional: a rationale written from this trace

  Other keys are kept and shown as extra fields; or
* a synthesis record (``{"version": "vpd.synthesis/1", "id", "question", "image",
  "references", "candidates": [{"index", "trace", "outcome", "score", ...}], "chosen"}``,
  one line of a ``vpd synthesize`` run's ``records.jsonl``): each candidate with a trace is
  read as a record of its own, ``id#index``, labelled with the references, correct when its
  outcome is ``correct`` (candidates without a program have no trace to show).

``question``, ``label``, ``image`` and ``rationale`` may also sit in the trace's ``meta``;
the record's own keys win. When there is a label and no ``correct``, the answer is
correct when :func:`~vpd.traces.answers.judge` says so (the normalised answers match).

**Images.** A relative ``image`` path is resolved against ``images_dir`` when given, else
against the folder of the JSONL file; absolute paths are used as they are. Without a path,
``images_dir/<sha256>.{png,jpg,jpeg,webp}`` is tried (the trace records the image's sha256).
A trace whose image is not found is still shown, with its boxes on a blank canvas.

**Bad lines** (not JSON, not an object, not a valid trace, a field of the wrong type, a
line cut short by a crash) are errors that name the file and line; with ``skip_bad=True``
they are skipped and listed in :attr:`TraceRecords.bad`, never dropped silently.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vpd.errors import TraceFileError
from vpd.traces.answers import judge
from vpd.traces.trace import Assignment, PrintOutput, ToolCall, Trace

__all__ = [
    "RECORD_KEYS",
    "SYNTHESIS_VERSION",
    "BadLine",
    "TraceRecord",
    "TraceRecords",
    "ParsedRecord",
    "parse_line",
    "parse_record",
    "iter_traces",
    "read_traces",
]

#: The version of a synthesis record (a line of a ``vpd synthesize`` run's records).
SYNTHESIS_VERSION = "vpd.synthesis/1"
#: The keys a record wrapping a trace may have besides its extra fields.
RECORD_KEYS = ("trace", "id", "question", "label", "correct", "image", "rationale")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass(frozen=True)
class BadLine:
    """A line that could not be read.

    Attributes:
        path: The file.
        line: The line number (1-based).
        reason: What is wrong with it.
    """

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass(frozen=True)
class TraceRecord:
    """One trace with what is known about it.

    Attributes:
        trace: The trace.
        id: Its name (the record's ``id``, else ``file:line``).
        source: ``file:line`` it came from.
        question: The question, if known.
        label: The expected answer, if known.
        correct: Whether the answer is right (None without a label).
        image_path: The image file, when found.
        image_problem: Why the image is missing, when a path was given or looked for.
        rationale: A rationale written from the trace, if any.
        extra: Other keys of the record.
    """

    trace: Trace
    id: str
    source: str
    question: str | None = None
    label: Any = None
    correct: bool | None = None
    image_path: Path | None = None
    image_problem: str | None = None
    rationale: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TraceRecords:
    """What :func:`read_traces` read.

    Attributes:
        records: The traces, in file order.
        bad: The lines skipped (only with ``skip_bad=True``).
    """

    records: list[TraceRecord]
    bad: list[BadLine]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (write numbers, or null)")


def parse_line(raw: bytes) -> dict[str, Any]:
    """One line of a JSONL file as a JSON object (no NaN or Infinity).

    Raises:
        ValueError: Not UTF-8, not JSON, or not an object.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not valid UTF-8 (byte {exc.start + 1})") from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise ValueError("nested too deeply to read") from None
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object (a trace or a record), got {type(data).__name__}")
    return data


def _text_field(data: dict[str, Any], meta: dict[str, Any], key: str) -> str | None:
    value = data[key] if key in data else meta.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key!r} must be a string, got {type(value).__name__}")
    return value


def _find_image(
    path_text: str | None, sha256: Any, base: Path, images_dir: Path | None
) -> tuple[Path | None, str | None]:
    if path_text:
        path = Path(path_text)
        if not path.is_absolute():
            path = (images_dir or base) / path
        return (path, None) if path.is_file() else (None, f"image not found: {path}")
    if images_dir is not None and isinstance(sha256, str) and sha256.isalnum():
        for suffix in _IMAGE_SUFFIXES:
            candidate = images_dir / f"{sha256}{suffix}"
            if candidate.is_file():
                return candidate, None
        return None, f"no image named {sha256[:12]}….(png|jpg|jpeg|webp) in {images_dir}"
    return None, None


@dataclass(frozen=True)
class ParsedRecord:
    """One valid line before its image is looked up (see :func:`parse_record`).

    Attributes:
        trace: The trace.
        fields: The wrapping record's keys (empty for a bare trace).
        question: The question (the record's, else the trace's ``meta``), if any.
        label: The expected answer, if any.
        correct: The record's own verdict, if it has one.
        image: The image path as written, if any.
        rationale: A rationale written from the trace, if any.
    """

    trace: Trace
    fields: dict[str, Any]
    question: str | None
    label: Any
    correct: bool | None
    image: str | None
    rationale: str | None


def parse_record(data: dict[str, Any]) -> ParsedRecord:
    """Validate one parsed line (a trace, or a record wrapping one); what the reader accepts.

    The writer runs the same check before it writes, so every line it writes reads back.

    Raises:
        ValueError: What is wrong with it (the reader reports it with file and line).
    """
    wrapped = "trace" in data and "version" not in data
    raw_trace = data["trace"] if wrapped else data
    if not isinstance(raw_trace, dict):
        raise ValueError(f"'trace' must be an object, got {type(raw_trace).__name__}")
    try:
        trace = Trace.from_dict(raw_trace)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        message = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ValueError(f"not a valid trace: {message}") from None
    _check(trace)
    fields = data if wrapped else {}
    meta = trace.meta
    question = _text_field(fields, meta, "question")
    rationale = _text_field(fields, meta, "rationale")
    image_text = _text_field(fields, meta, "image")
    label = fields["label"] if "label" in fields else meta.get("label")
    correct = fields.get("correct")
    if correct is not None and not isinstance(correct, bool):
        raise ValueError(f"'correct' must be true, false or null, got {json.dumps(correct)[:40]}")
    ident = fields.get("id")
    if ident is not None and (not isinstance(ident, (str, int)) or isinstance(ident, bool)):
        raise ValueError("'id' must be a string or an integer")
    return ParsedRecord(trace, fields, question, label, correct, image_text, rationale)


def _records(data: dict[str, Any], source: str, base: Path, images_dir: Path | None) -> list[TraceRecord]:
    """The records of one line: one, or one per traced candidate of a synthesis record."""
    if data.get("version") != SYNTHESIS_VERSION:
        return [_record(data, source, base, images_dir)]
    candidates = data.get("candidates")
    if not isinstance(candidates, list) or not all(isinstance(c, dict) for c in candidates):
        raise ValueError("a synthesis record's 'candidates' must be a list of objects")
    references = data.get("references")
    records = []
    for candidate in candidates:
        if candidate.get("trace") is None:
            continue  # no program, so nothing ran: there is no trace to show
        wrapper = {
            "trace": candidate["trace"],
            "id": f"{data.get('id')}#{candidate.get('index')}",
            "question": data.get("question"),
            "label": references,
            "correct": candidate.get("outcome") == "correct",
            "image": data.get("image"),
            "outcome": candidate.get("outcome"),
            "prediction": candidate.get("prediction"),
            "score": candidate.get("score"),
            "chosen": candidate.get("index") == data.get("chosen"),
            "metric": data.get("metric"),
        }
        records.append(_record(wrapper, source, base, images_dir))
    return records


def _record(data: dict[str, Any], source: str, base: Path, images_dir: Path | None) -> TraceRecord:
    checked = parse_record(data)
    trace, fields = checked.trace, checked.fields
    correct = checked.correct
    if correct is None:
        correct = judge(trace.answer if trace.ok else None, checked.label)
    image_path, problem = _find_image(checked.image, trace.image.get("sha256"), base, images_dir)
    return TraceRecord(
        trace=trace,
        id=str(fields.get("id", source)),
        source=source,
        question=checked.question,
        label=checked.label,
        correct=correct,
        image_path=image_path,
        image_problem=problem,
        rationale=checked.rationale,
        extra={k: v for k, v in fields.items() if k not in RECORD_KEYS},
    )


def _number(value: Any) -> bool:
    """A finite number: a record read by a plain JSON parser (a run's records) may hold NaN or 1e999."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _line(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check(trace: Trace) -> None:
    """Raise ValueError when a field has a type no vpd writer produces (renderers rely on them)."""
    if not isinstance(trace.program, str):
        raise ValueError("not a valid trace: 'program' must be a string")
    if not _number(trace.wall_seconds) or not _number(trace.tool_seconds):
        raise ValueError("not a valid trace: 'wall_seconds' and 'tool_seconds' must be numbers")
    error = trace.error
    if error is not None and not (isinstance(error.kind, str) and isinstance(error.message, str) and _line(error.line)):
        raise ValueError("not a valid trace: 'error' must have a string kind and message and an integer line")
    counts = trace.line_counts
    if counts is not None and not (
        isinstance(counts, dict) and all(_positive(k) and _positive(v) for k, v in counts.items())
    ):
        raise ValueError("not a valid trace: 'line_counts' must map line numbers to positive counts, or be null")
    if not _line(trace.return_line):
        raise ValueError("not a valid trace: 'return_line' must be an integer or null")
    for event in trace.events:
        where = f"not a valid trace: event {event.index}"
        if not _line(event.line):
            raise ValueError(f"{where}: 'line' must be an integer or null")
        if isinstance(event, ToolCall):
            box_ok = event.box is None or (
                isinstance(event.box, list) and len(event.box) == 4 and all(_number(v) for v in event.box)
            )
            if not (isinstance(event.operation, str) and isinstance(event.inputs, dict) and _number(event.seconds)):
                raise ValueError(f"{where}: a tool call needs a string operation, object inputs and numeric seconds")
            if not box_ok or not (event.error is None or isinstance(event.error, str)):
                raise ValueError(f"{where}: 'box' must be four numbers or null and 'error' a string or null")
            names_ok = isinstance(event.capability, str) and isinstance(event.backend, str)
            if not names_ok or not (event.model is None or isinstance(event.model, str)):
                raise ValueError(f"{where}: 'capability' and 'backend' must be strings, 'model' a string or null")
        elif isinstance(event, Assignment) and not (isinstance(event.name, str) and isinstance(event.value, str)):
            raise ValueError(f"{where}: an assignment needs a string name and value")
        elif isinstance(event, PrintOutput) and not isinstance(event.text, str):
            raise ValueError(f"{where}: a print needs a string text")


def iter_traces(
    paths: str | Path | Sequence[str | Path], *, images_dir: str | Path | None = None
) -> Iterator[TraceRecord | BadLine]:
    """Stream JSONL files of traces, one line at a time (format in the module docstring).

    For files too large to hold in memory: each good line yields a :class:`TraceRecord`,
    each bad one a :class:`BadLine` (the caller decides what to do with it; nothing is
    skipped silently).

    Args:
        paths: One file or several, read in order.
        images_dir: Where relative image paths (and ``<sha256>.<ext>`` files) are.

    Yields:
        Records and bad lines, in file order.

    Raises:
        TraceFileError: A file cannot be opened or read, or ``images_dir`` does not exist.
    """
    files = [paths] if isinstance(paths, (str, Path)) else list(paths)
    images = Path(images_dir) if images_dir is not None else None
    if images is not None and not images.is_dir():
        raise TraceFileError(f"The images folder {str(images)!r} does not exist.")
    for file in files:
        path = Path(file)
        for number, raw in _lines(path):
            if not raw.strip():
                continue
            try:
                yield from _records(parse_line(raw), f"{path.name}:{number}", path.parent, images)
            except RecursionError:  # an answer or label nested too deeply to judge
                yield BadLine(str(path), number, "nested too deeply to read")
            except ValueError as exc:
                reason = str(exc)
                if not raw.endswith(b"\n"):
                    reason += " (the file's last line is cut short: was it written by a process that crashed?)"
                yield BadLine(str(path), number, reason)


def read_traces(
    paths: str | Path | Sequence[str | Path],
    *,
    images_dir: str | Path | None = None,
    skip_bad: bool = False,
) -> TraceRecords:
    """Read JSONL files of traces (format in the module docstring); see :func:`iter_traces` to stream.

    Args:
        paths: One file or several, read in order.
        images_dir: Where relative image paths (and ``<sha256>.<ext>`` files) are.
        skip_bad: Skip bad lines (listed in the result) instead of raising.

    Returns:
        The records and the skipped lines.

    Raises:
        TraceFileError: A file cannot be read, or has bad lines and ``skip_bad`` is False
            (the message lists the first ones, with file and line number).
    """
    records: list[TraceRecord] = []
    bad: list[BadLine] = []
    for item in iter_traces(paths, images_dir=images_dir):
        if isinstance(item, BadLine):
            bad.append(item)
        else:
            records.append(item)
    if bad and not skip_bad:
        shown = "\n".join(f"  {b}" for b in bad[:5])
        more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise TraceFileError(
            f"{len(bad)} bad line{'s' if len(bad) != 1 else ''} in the traces "
            f"(pass --skip-bad to skip them):\n{shown}{more}"
        )
    return TraceRecords(records, bad)


def _lines(path: Path) -> Iterable[tuple[int, bytes]]:
    try:
        with path.open("rb") as handle:
            yield from enumerate(handle, start=1)
    except FileNotFoundError:
        raise TraceFileError(f"Traces file not found: {str(path)!r}.") from None
    except IsADirectoryError:
        raise TraceFileError(f"{str(path)!r} is a directory, not a JSONL file.") from None
    except OSError as exc:
        raise TraceFileError(f"Cannot read {str(path)!r}: {exc.strerror or exc}.") from None
