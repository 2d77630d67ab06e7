"""What every reader shares: reading JSON, turning raw fields into an example's, collecting rows.

A reader walks its file's rows and, for each, opens ``with rows.row(source) as row:``;
inside, a field that cannot be used raises :class:`RowProblem` (or the :class:`Example`
constructor raises :class:`DatasetError`), and the row becomes a :class:`BadRow` with the
id read so far. :meth:`Rows.finish` then raises or warns, so no row is dropped silently.

Reasons read ``"<kind>: <detail>"``; the warning counts the rows of each kind.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vpd.distill.datasets.example import BadRow, Dataset, Example
from vpd.errors import DatasetError

#: What to do with bad rows.
ON_BAD = ("skip", "raise")
#: How many bad rows a DatasetError lists, and a warning.
_LISTED_IN_ERROR = 10
_LISTED_IN_WARNING = 3
_INTEGER = re.compile(r"[+-]?\d+")


class RowProblem(Exception):
    """Why one row cannot become an example (private: it becomes a BadRow's reason, never escapes)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (write numbers, or null)")


def parse_json_text(text: str | bytes) -> Any:
    """JSON without NaN or Infinity (they are not JSON, and no benchmark writes them).

    Raises:
        ValueError: Not JSON, or nested too deeply.
    """
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None


def check_file(path: Path, what: str = "dataset file") -> None:
    """Raise DatasetError unless ``path`` is a readable file."""
    if not path.exists():
        raise DatasetError(f"The {what} {str(path)!r} does not exist; check the path.")
    if path.is_dir():
        raise DatasetError(
            f"{str(path)!r} is a folder; pass the {what} itself (e.g. the questions .json or the .jsonl)."
        )


def load_json(path: Path, what: str = "dataset file") -> Any:
    """The whole of a JSON file.

    Raises:
        DatasetError: Missing, unreadable, not UTF-8 or not JSON (the message says what to try).
    """
    check_file(path, what)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"Cannot read {str(path)!r}: {exc.strerror or exc}.") from None
    try:
        return parse_json_text(raw)
    except json.JSONDecodeError as exc:
        hint = ""
        if exc.msg == "Extra data":
            hint = "; if it holds one JSON object per line, name it .jsonl or pass format='jsonl'"
        raise DatasetError(
            f"{str(path)!r} is not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}){hint}."
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{str(path)!r} cannot be read as JSON: {exc}.") from None


def folder(path: str | os.PathLike[str], what: str) -> Path:
    """An existing folder, made absolute (symlinks resolved once, here, not per image).

    Raises:
        DatasetError: It does not exist or is not a folder.
    """
    found = Path(path).expanduser()
    if not found.is_dir():
        problem = "is not a folder" if found.exists() else "does not exist"
        raise DatasetError(f"The {what} {str(found)!r} {problem}; check the path.")
    return found.resolve()


def text_id(value: Any, key: str) -> str:
    """A row's id: a non-empty string, or an integer written as one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    if value is None:
        raise RowProblem("bad id", f"the row has no {key!r}")
    raise RowProblem("bad id", f"{key!r} must be a string or an integer, got {json.dumps(value)[:40]}")


def number_text(value: int | float) -> str:
    """A number as an answer: integers (``2``, ``2.0``) without a decimal point."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def is_integer(value: Any) -> bool:
    """Whether an answer is a whole number: an int, or a string of digits."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and _INTEGER.fullmatch(value.strip()) is not None)


def answer_text(value: Any, where: str) -> str:
    """One answer: a string as it is, a number as text; anything else is a bad row."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return number_text(value)
    raise RowProblem("bad answers", f"{where} must be a string or a number, got {json.dumps(value)[:40]}")


def answer_list(value: Any, key: str, *, dicts: bool = False) -> tuple[str, ...]:
    """Reference answers: a list of strings or numbers, or one bare string or number.

    Args:
        value: The raw field.
        key: Its name, for messages.
        dicts: Also accept ``{"answer": ...}`` items (VQAv2's annotations, its HF copies).
    """
    if value is None:
        raise RowProblem("no answers", f"the row has no {key!r}")
    if not isinstance(value, list):
        return (answer_text(value, repr(key)),)
    if not value:
        raise RowProblem("no answers", f"{key!r} is an empty list")
    if all(isinstance(item, str) for item in value):
        return tuple(value)  # the usual case, checked in one pass
    answers = []
    for number, item in enumerate(value, start=1):
        if dicts and isinstance(item, dict):
            if "answer" not in item:
                raise RowProblem("bad answers", f"item {number} of {key!r} has no 'answer'")
            item = item["answer"]
        answers.append(answer_text(item, f"item {number} of {key!r}"))
    return tuple(answers)


def text_list(value: Any, key: str) -> tuple[str, ...]:
    """A list of strings (choices), else a bad row."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RowProblem("bad choices", f"{key!r} must be a list of strings, got {json.dumps(value)[:60]}")
    return tuple(value)


def question_text(value: Any, key: str = "question") -> str:
    """The question: a non-empty string, else a bad row."""
    if not isinstance(value, str):
        found = "nothing" if value is None else type(value).__name__
        raise RowProblem("bad question", f"{key!r} must be a string, got {found}")
    if not value.strip():
        raise RowProblem("bad question", f"{key!r} is empty")
    return value


def coco_image_id(item: dict[str, Any]) -> int:
    """A row's integer ``image_id`` (COCO's numbering, as VQAv2, OK-VQA and A-OKVQA give it)."""
    image_id = item.get("image_id")
    if not isinstance(image_id, int) or isinstance(image_id, bool):
        raise RowProblem("bad image", f"'image_id' must be an integer, got {image_id!r}")
    return image_id


def expect_object(item: Any, what: str = "row") -> dict[str, Any]:
    """A row that must be a JSON object."""
    if not isinstance(item, dict):
        raise RowProblem("not an object", f"a {what} is a JSON object, got {type(item).__name__}")
    return item


@dataclass
class RowDraft:
    """What is known about the row being read (its id, once read, names a bad row)."""

    id: str | None = None


class Rows:
    """The examples and bad rows of one load: ids kept unique, image files checked once each."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.examples: list[Example] = []
        self.skipped: list[BadRow] = []
        self._first_source: dict[str, str] = {}
        self._images: dict[str, tuple[Path, str | None]] = {}

    @contextmanager
    def row(self, source: str) -> Iterator[RowDraft]:
        """Read one row inside this block; a RowProblem or DatasetError makes it a BadRow."""
        draft = RowDraft()
        try:
            yield draft
        except (RowProblem, DatasetError) as exc:
            self.skipped.append(BadRow(source, draft.id, str(exc)))

    def image(self, base: Path | str, value: Any, key: str = "image") -> Path:
        """The image file ``value`` names (relative to ``base``, or absolute); it must exist and be readable.

        Only the file's existence and permissions are checked, never its pixels.
        """
        if not isinstance(value, str) or not value.strip():
            found = "nothing" if value is None else json.dumps(value)[:40]
            raise RowProblem("bad image", f"{key!r} must be a path (a string), got {found}")
        return self.image_path(os.path.join(base, os.path.expanduser(value)))

    def image_path(self, path: Path | str) -> Path:
        """``path`` made absolute and normalised, after checking it is a readable file.

        Checked once per path, and one Path object shared by the rows that name it (a
        benchmark asks several questions about each image).
        """
        text = os.fspath(path)
        found = self._images.get(text)
        if found is None:
            absolute = os.path.abspath(text)
            problem = None
            if not os.path.isfile(absolute):
                problem = f"image not found: {absolute}"
            elif not os.access(absolute, os.R_OK):
                problem = f"image not readable: {absolute} (check its permissions)"
            found = self._images[text] = (Path(absolute), problem)
        image, problem = found
        if problem is not None:
            kind, _, detail = problem.partition(": ")
            raise RowProblem(kind, detail)
        return image

    def has_image(self, path: Path | str) -> bool:
        """Whether :meth:`image_path` would accept ``path``."""
        try:
            self.image_path(path)
        except RowProblem:
            return False
        return True

    def add(self, example: Example) -> None:
        """Keep an example, unless its id was seen before (then the row is bad)."""
        first = self._first_source.get(example.id)
        if first is not None:
            raise RowProblem("duplicate id", f"{example.id!r} was first used at {first}")
        self._first_source[example.id] = example.source
        self.examples.append(example)

    def finish(self, name: str, on_bad: str, *, stacklevel: int) -> Dataset:
        """The dataset; bad rows raise (``on_bad="raise"``) or are listed and warned about once.

        Raises:
            DatasetError: There are bad rows and ``on_bad`` is ``"raise"``.
        """
        bad = self.skipped
        total = len(self.examples) + len(bad)
        if bad and on_bad == "raise":
            shown = "\n".join(f"  {row}" for row in bad[:_LISTED_IN_ERROR])
            more = f"\n  ... and {len(bad) - _LISTED_IN_ERROR} more" if len(bad) > _LISTED_IN_ERROR else ""
            raise DatasetError(
                f"{_rows(len(bad))} of {total} in {self.what} cannot be used "
                f"(fix them, or pass on_bad='skip' to load the others and list these in dataset.skipped):"
                f"\n{shown}{more}"
            )
        if bad:
            kinds = Counter(row.reason.partition(":")[0] for row in bad)
            counts = ", ".join(f"{count} {kind}" for kind, count in kinds.most_common())
            first = "; ".join(str(row) for row in bad[:_LISTED_IN_WARNING])
            more = "; ..." if len(bad) > _LISTED_IN_WARNING else ""
            hint = ""
            if kinds.get("image not found") == total:
                hint = " No image was found: is images= the right folder?"
            warnings.warn(
                f"Skipped {_rows(len(bad))} of {total} in {self.what} ({counts}); they are listed in "
                f"dataset.skipped. First: {first}{more}.{hint}",
                stacklevel=stacklevel + 1,
            )
        return Dataset(name, tuple(self.examples), tuple(bad))


def _rows(count: int) -> str:
    return f"{count} row{'s' if count != 1 else ''}"
