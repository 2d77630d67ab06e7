"""Loading a benchmark: :func:`load_dataset`, the format detection, and vpd's own JSONL format.

**vpd's JSONL format** (``format="jsonl"``; :meth:`Dataset.save_jsonl` writes it). UTF-8,
one JSON object per line; blank lines are ignored::

    {"id": "q17",                      # a string, or an integer (read as a string)
     "image": "images/17.jpg",         # relative to the JSONL file's folder (or images=), or absolute
     "question": "How many cups are there?",
     "answers": ["2"],                 # a list of strings; a bare string or number is one answer
     "choices": ["1", "2", "3"],       # optional: the options of a multiple-choice question
     "metric": "count",                # optional: one of METRICS (else metric=, else "choice" with
                                       # choices, else "exact")
     "extra": {"difficulty": "easy"}}  # optional; other keys are kept in Example.extra too

A line that is not JSON (one cut short by a crash, say) is a bad row named by its line.

**Bad rows** never vanish: with ``on_bad="skip"`` each becomes a :class:`BadRow` in
:attr:`Dataset.skipped` and one warning sums them up; with ``on_bad="raise"`` a
:class:`~vpd.errors.DatasetError` lists the first ten (file, line or index, id, reason).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vpd.distill.datasets._rows import (
    ON_BAD,
    RowProblem,
    Rows,
    answer_list,
    check_file,
    expect_object,
    folder,
    load_json,
    parse_json_text,
    question_text,
    text_id,
    text_list,
)
from vpd.distill.datasets.benchmarks import (
    Request,
    read_aokvqa,
    read_clevr,
    read_gqa,
    read_octotools,
    read_tallyqa,
    read_vqa,
)
from vpd.distill.datasets.example import METRICS, Dataset, Example
from vpd.errors import DatasetError

__all__ = ["DATASET_FORMATS", "load_dataset"]

#: The formats :func:`load_dataset` reads (``"aokvqa"`` is A-OKVQA's direct-answer task).
DATASET_FORMATS = (
    "jsonl",
    "vqav2",
    "okvqa",
    "aokvqa",
    "aokvqa-mc",
    "aokvqa-da",
    "gqa",
    "tallyqa",
    "clevr",
    "octotools",
)
#: The keys of a JSONL row that are an example's own (the others go to ``extra``).
_JSONL_KEYS = ("id", "image", "question", "answers", "choices", "metric", "extra")

_Reader = Callable[[Request, Any], Rows]
_READERS: dict[str, _Reader] = {
    "vqav2": read_vqa,
    "okvqa": read_vqa,
    "aokvqa": lambda request, data: read_aokvqa(request, data, multiple_choice=False),
    "aokvqa-da": lambda request, data: read_aokvqa(request, data, multiple_choice=False),
    "aokvqa-mc": lambda request, data: read_aokvqa(request, data, multiple_choice=True),
    "gqa": read_gqa,
    "tallyqa": read_tallyqa,
    "clevr": read_clevr,
    "octotools": read_octotools,
}


def load_dataset(
    path: str | os.PathLike[str],
    format: str = "auto",
    *,
    images: str | os.PathLike[str] | None = None,
    split: str | None = None,
    annotations: str | os.PathLike[str] | None = None,
    on_bad: str = "skip",
    metric: str | None = None,
    name: str | None = None,
) -> Dataset:
    """Read a benchmark's questions, images and answers into a :class:`Dataset`.

    Only the image files' existence is checked; no pixels are read.

    Args:
        path: The file: vpd's JSONL, or a benchmark's own questions file (VQAv2's
            ``v2_OpenEnded_mscoco_val2014_questions.json``, A-OKVQA's
            ``aokvqa_v1p0_val.json``, GQA's ``testdev_balanced_questions.json``, ...).
        format: One of :data:`DATASET_FORMATS`, or ``"auto"`` to tell from the file.
        images: The images folder. Needed by the benchmarks' formats (see each reader:
            :mod:`vpd.distill.datasets.benchmarks`); for ``jsonl`` and ``octotools``, where
            relative image paths are resolved (default: the file's folder).
        split: For ``vqav2``/``okvqa``, the COCO split in image names (default: the
            file's ``data_subtype``); for A-OKVQA, ``train``/``val`` (default: from the
            file name); for CLEVR, the images' subfolder (default: each row's ``split``);
            for TallyQA, ``"simple"`` or ``"complex"`` to keep only those questions.
        annotations: VQAv2 / OK-VQA's annotations file, when it is not beside ``path``.
        on_bad: ``"skip"`` bad rows (listed in :attr:`Dataset.skipped`, and a warning) or
            ``"raise"`` a DatasetError naming them.
        metric: A metric (one of :data:`METRICS`) instead of the format's; for ``jsonl``,
            the default of rows that name none.
        name: The dataset's name (default: the file's stem; for a ``data.json`` or
            ``data.jsonl``, its folder's name).

    Returns:
        The examples in file order, and the skipped rows.

    Raises:
        DatasetError: The file is missing or not what the format expects, the format
            cannot be told, the labels are missing (a test split), an argument is invalid,
            or (with ``on_bad="raise"``) some rows are bad.
    """
    if on_bad not in ON_BAD:
        raise DatasetError(f"on_bad is 'skip' or 'raise', got {on_bad!r}.")
    if metric is not None and metric not in METRICS:
        raise DatasetError(f"Unknown metric {metric!r}; choose one of {', '.join(METRICS)}.")
    if format != "auto" and format not in DATASET_FORMATS:
        raise DatasetError(f"Unknown dataset format {format!r}; choose 'auto' or one of {', '.join(DATASET_FORMATS)}.")
    file = Path(path).expanduser()
    check_file(file)
    file = file.resolve()
    data: Any = None
    if format == "auto":
        if file.suffix.lower() == ".jsonl":
            format = "jsonl"
        else:
            data = load_json(file)
            format = detect_format(file, data)
    if split is not None and format in ("jsonl", "gqa", "octotools"):
        raise DatasetError(f"Format {format!r} has no splits to choose from; drop split= (got {split!r}).")
    if annotations is not None and format not in ("vqav2", "okvqa"):
        raise DatasetError(f"annotations= is for the vqav2 and okvqa formats, not {format!r}.")
    request = Request(
        path=file,
        format=format,
        images=None if images is None else folder(images, "images folder"),
        split=split,
        metric=metric,
        annotations=None if annotations is None else Path(annotations).expanduser().resolve(),
    )
    if format == "jsonl":
        rows = _read_jsonl(request)
    else:
        if data is None:
            data = load_json(file)
        rows = _READERS[format](request, data)
    # OctoTools-style folders hold a data.json each: the folder names the dataset better.
    default = file.parent.name if file.stem == "data" and file.parent.name else file.stem
    return rows.finish(name or default, on_bad, stacklevel=2)


def detect_format(path: Path, data: Any) -> str:
    """The format of a parsed JSON file (the rules are those of ``format="auto"``).

    Raises:
        DatasetError: The content matches no format.
    """
    if isinstance(data, dict):
        questions = data.get("questions")
        if isinstance(questions, list):
            if "data_subtype" in data:
                okvqa = "OpenEnded_mscoco" in path.name and "v2_" not in path.name
                return "okvqa" if okvqa else "vqav2"
            first = next((item for item in questions if isinstance(item, dict)), None)
            if first is not None and "image_filename" in first:
                return "clevr"
        first_value = next(iter(data.values()), None) if data else None
        if isinstance(first_value, dict) and "imageId" in first_value:
            return "gqa"
        if "annotations" in data and "questions" not in data:
            raise DatasetError(
                f"{str(path)!r} is a VQA annotations file; pass the questions file beside it "
                "(e.g. v2_OpenEnded_mscoco_val2014_questions.json)."
            )
    elif isinstance(data, list):
        first = next((item for item in data if isinstance(item, dict)), None)
        if first is not None:
            if "correct_choice_idx" in first:
                return "aokvqa-da"
            if "pid" in first:
                return "octotools"
            if "issimple" in first or ("image" in first and "data_source" in first):
                return "tallyqa"
    raise DatasetError(
        f"Cannot tell the format of {str(path)!r}; pass format= one of {', '.join(DATASET_FORMATS)} "
        "(vpd's own format is JSONL, one object per line, in a .jsonl file)."
    )


def _read_jsonl(request: Request) -> Rows:
    """Read a file in vpd's JSONL format (module docstring)."""
    base = request.images or folder(request.path.parent, "folder of the JSONL file")
    rows = Rows(str(request.path))
    try:
        with request.path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                source = f"{request.path.name}:{number}"
                with rows.row(source) as row:
                    try:
                        parsed = parse_json_text(raw)
                    except (ValueError, UnicodeDecodeError) as exc:
                        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                        torn = "" if raw.endswith(b"\n") else " (the file's last line is cut short)"
                        raise RowProblem("not JSON", f"{reason}{torn}") from None
                    item = expect_object(parsed)
                    row.id = text_id(item.get("id"), "id")
                    rows.add(_jsonl_example(rows, item, base, source, request.metric))
    except OSError as exc:
        raise DatasetError(f"Cannot read {str(request.path)!r}: {exc.strerror or exc}.") from None
    return rows


def _jsonl_example(rows: Rows, item: dict[str, Any], base: Path, source: str, default_metric: str | None) -> Example:
    question = question_text(item.get("question"))
    image = rows.image(base, item.get("image"))
    if "answers" not in item and "answer" in item:
        raise RowProblem("no answers", "the row has 'answer' but no 'answers' (vpd's format names it 'answers')")
    answers = answer_list(item.get("answers"), "answers")
    choices = None if item.get("choices") is None else text_list(item["choices"], "choices")
    metric = item.get("metric")
    if metric is not None and metric not in METRICS:
        raise RowProblem("bad metric", f"{metric!r} is not one of {', '.join(METRICS)}")
    nested = item.get("extra", {})
    if not isinstance(nested, dict):
        raise RowProblem("bad field", f"'extra' must be an object, got {type(nested).__name__}")
    # Written by save_jsonl under "extra"; hand-written files may put them beside the others.
    extra = {**nested, **{key: value for key, value in item.items() if key not in _JSONL_KEYS}}
    metric = metric or default_metric or ("choice" if choices is not None else "exact")
    return Example(text_id(item.get("id"), "id"), image, question, answers, choices, metric, source, extra)
