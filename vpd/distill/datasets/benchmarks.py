"""Readers for benchmarks' own files: VQAv2, OK-VQA, A-OKVQA, GQA, TallyQA, CLEVR, OctoTools.

Each reader takes the parsed JSON of the file :func:`~vpd.distill.datasets.load_dataset`
was given and returns its :class:`~vpd.distill.datasets._rows.Rows`. The official files
are read as their authors publish them (the layouts are in each reader's docstring);
fields that do not become an :class:`Example`'s own are kept, as given, in its ``extra``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vpd.distill.datasets._rows import (
    RowProblem,
    Rows,
    answer_list,
    coco_image_id,
    expect_object,
    folder,
    is_integer,
    load_json,
    question_text,
    text_id,
    text_list,
)
from vpd.distill.datasets.example import Example
from vpd.errors import DatasetError

__all__ = ["Request", "read_aokvqa", "read_clevr", "read_gqa", "read_octotools", "read_tallyqa", "read_vqa"]

_AOKVQA_FILE = re.compile(r"aokvqa_v\d+p\d+_([A-Za-z]+)\.json$")
_TALLYQA_SPLITS = ("simple", "complex")


@dataclass(frozen=True)
class Request:
    """What :func:`load_dataset` was asked for, as the readers need it.

    Attributes:
        path: The file given (absolute).
        format: The format being read.
        images: The images folder (absolute), if given.
        split: The ``split=`` argument, if given.
        metric: The ``metric=`` argument, if given (it replaces the format's default).
        annotations: The ``annotations=`` file (VQAv2 and OK-VQA), if given.
    """

    path: Path
    format: str
    images: Path | None
    split: str | None
    metric: str | None
    annotations: Path | None

    def source(self, index: int) -> str:
        """A row's place in a JSON file: ``file#index`` (0-based)."""
        return f"{self.path.name}#{index}"

    def images_folder(self, what: str) -> Path:
        """The images folder, which this format needs."""
        if self.images is None:
            raise DatasetError(f"Format {self.format!r} needs images=: {what}.")
        return self.images


def _inside(base: Path, name: str) -> Path:
    """``base/name`` when that folder exists (images given as the parent of a split's folder), else ``base``."""
    candidate = base / name
    return candidate if candidate.is_dir() else base


def _rest(item: dict[str, Any], used: Iterable[str]) -> dict[str, Any]:
    """The fields of a row that did not become an example's own, as given."""
    taken = set(used)
    return {key: value for key, value in item.items() if key not in taken}


def _no_labels(request: Request, detail: str) -> DatasetError:
    return DatasetError(
        f"{str(request.path)!r} has no answers ({detail}): it looks like a test split, whose labels are not "
        "public. vpd needs reference answers to score programs; use a train or validation split."
    )


# --- VQAv2 and OK-VQA --------------------------------------------------------------------------


def _find_annotations(request: Request, subtype: str) -> Path:
    """The annotations file beside the questions file: ``*annotations*.json`` naming the same split."""
    found = sorted(p for p in request.path.parent.glob("*annotations*.json") if subtype in p.name)
    if len(found) > 1:
        # A folder holding both VQAv2's (``v2_``) and OK-VQA's files: take the format's own.
        wanted = [p for p in found if p.name.startswith("v2_") == (request.format == "vqav2")]
        found = wanted or found
    if len(found) == 1:
        return found[0]
    if subtype.startswith("test"):
        raise _no_labels(request, f"no annotations file for {subtype!r}")
    if found:
        names = ", ".join(p.name for p in found)
        raise DatasetError(
            f"Several annotations files for {subtype!r} beside {request.path.name}: {names}; "
            "pass the one to use as annotations=."
        )
    raise DatasetError(
        f"No annotations file for {subtype!r} beside {str(request.path)!r} (looked for *annotations*.json with "
        f"{subtype!r} in the name, e.g. v2_mscoco_{subtype}_annotations.json); pass it as annotations=."
    )


def read_vqa(request: Request, data: Any) -> Rows:
    """VQAv2 (``format="vqav2"``) and OK-VQA (``"okvqa"``): the official questions and annotations files.

    ``request.path`` is the questions file, ``{"data_subtype": "val2014", "questions":
    [{"image_id", "question", "question_id"}]}``; the annotations file
    (``{"annotations": [{"question_id", "answers": [{"answer"}...], "answer_type",
    "question_type", "multiple_choice_answer"}]}``) is ``annotations=`` or found beside it.
    Images are ``{images}/COCO_{split}_{image_id:012d}.jpg`` (or in ``{images}/{split}/``),
    ``split`` being ``split=`` or the file's ``data_subtype``. Answers are the ten human
    answers; metric ``"vqa"``.
    """
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        if isinstance(data, dict) and "annotations" in data:
            raise DatasetError(
                f"{str(request.path)!r} is an annotations file; pass the questions file "
                "(e.g. v2_OpenEnded_mscoco_val2014_questions.json) and, if needed, this one as annotations=."
            )
        raise DatasetError(f"{str(request.path)!r} is not a VQA questions file: it has no 'questions' list.")
    subtype = data.get("data_subtype")
    if not isinstance(subtype, str) or not subtype:
        if request.split is None:
            raise DatasetError(
                f"{str(request.path)!r} has no 'data_subtype' naming its COCO split; pass split= (e.g. 'val2014')."
            )
        subtype = request.split
    annotations_path = request.annotations or _find_annotations(request, subtype)
    annotations = load_json(annotations_path, "annotations file")
    if not isinstance(annotations, dict) or not isinstance(annotations.get("annotations"), list):
        raise DatasetError(f"{str(annotations_path)!r} is not a VQA annotations file: it has no 'annotations' list.")
    by_question: dict[Any, dict[str, Any]] = {}
    for item in annotations["annotations"]:
        if isinstance(item, dict) and "question_id" in item:
            by_question[item["question_id"]] = item
    split = request.split or subtype
    images = _inside(request.images_folder(f"the folder of COCO {split} images"), split)
    metric = request.metric or "vqa"
    rows = Rows(str(request.path))
    for index, raw in enumerate(data["questions"]):
        with rows.row(request.source(index)) as row:
            item = expect_object(raw, "question")
            row.id = text_id(item.get("question_id"), "question_id")
            question = question_text(item.get("question"))
            image_id = coco_image_id(item)
            image = rows.image_path(os.path.join(images, f"COCO_{split}_{image_id:012d}.jpg"))
            note = by_question.get(item["question_id"])
            if note is None:
                raise RowProblem("no answers", f"no annotation for question_id {row.id} in {annotations_path.name}")
            extra = _rest(item, ("question_id", "question"))
            for key in ("answer_type", "question_type", "multiple_choice_answer"):
                if key in note:
                    extra[key] = note[key]
            answers = answer_list(note.get("answers"), "answers", dicts=True)
            source = request.source(index)
            rows.add(Example(row.id, image, question, answers, None, metric, source, extra))
    return rows


# --- A-OKVQA -----------------------------------------------------------------------------------


def read_aokvqa(request: Request, data: Any, *, multiple_choice: bool) -> Rows:
    """A-OKVQA: ``aokvqa_v1p0_{split}.json``, a list of questions.

    Rows are ``{question_id, image_id, question, choices, correct_choice_idx,
    direct_answers, rationales, difficult_direct_answer}``; images are
    ``{images}/{split}2017/{image_id:012d}.jpg`` (``images`` may also be the split's folder).
    Multiple choice (``"aokvqa-mc"``): the answer is the correct choice, choices kept,
    metric ``"choice"``. Direct answer (``"aokvqa-da"``, ``"aokvqa"``): the ten direct
    answers, no choices (they stay in ``extra``), metric ``"direct-answer"`` (A-OKVQA's own
    score: no answer processing, no leave-one-out, unlike VQAv2's).
    """
    if not isinstance(data, list):
        raise DatasetError(f"{str(request.path)!r} is not an A-OKVQA file: expected a JSON list of questions.")
    split = request.split
    if split is None:
        match = _AOKVQA_FILE.search(request.path.name)
        if match is None:
            raise DatasetError(
                f"Cannot tell the A-OKVQA split from the file name {request.path.name!r} (expected "
                "aokvqa_v1p0_{split}.json); pass split= ('train', 'val' or 'test')."
            )
        split = match.group(1)
    key = "correct_choice_idx" if multiple_choice else "direct_answers"
    if data and not any(isinstance(item, dict) and key in item for item in data):
        raise _no_labels(request, f"no row has {key!r}")
    images = _inside(request.images_folder(f"the COCO 2017 images folder (with {split}2017/ in it)"), f"{split}2017")
    metric = request.metric or ("choice" if multiple_choice else "direct-answer")
    rows = Rows(str(request.path))
    for index, raw in enumerate(data):
        with rows.row(request.source(index)) as row:
            item = expect_object(raw)
            row.id = text_id(item.get("question_id"), "question_id")
            question = question_text(item.get("question"))
            image_id = coco_image_id(item)
            image = rows.image_path(os.path.join(images, f"{image_id:012d}.jpg"))
            if multiple_choice:
                choices = text_list(item.get("choices"), "choices")
                choice = item.get("correct_choice_idx")
                if not isinstance(choice, int) or isinstance(choice, bool) or not 0 <= choice < len(choices):
                    raise RowProblem(
                        "unknown choice index", f"'correct_choice_idx' is {choice!r} for {len(choices)} choices"
                    )
                answers: tuple[str, ...] = (choices[choice],)
                extra = _rest(item, ("question_id", "question", "choices", "correct_choice_idx"))
                example = Example(row.id, image, question, answers, choices, metric, request.source(index), extra)
            else:
                answers = answer_list(item.get("direct_answers"), "direct_answers")
                extra = _rest(item, ("question_id", "question", "direct_answers"))
                example = Example(row.id, image, question, answers, None, metric, request.source(index), extra)
            rows.add(example)
    return rows


# --- GQA ---------------------------------------------------------------------------------------


def read_gqa(request: Request, data: Any) -> Rows:
    """GQA: a questions file, ``{question_id: {imageId, question, answer, fullAnswer, types, ...}}``.

    Images are ``{images}/{imageId}.jpg``; the answer is ``answer``; metric ``"exact"``.
    """
    if not isinstance(data, dict):
        raise DatasetError(f"{str(request.path)!r} is not a GQA questions file: expected an object of questions.")
    if data and not any(isinstance(item, dict) and "answer" in item for item in data.values()):
        raise _no_labels(request, "no question has an 'answer'")
    images = request.images_folder("GQA's images folder (the one with <imageId>.jpg files)")
    metric = request.metric or "exact"
    rows = Rows(str(request.path))
    for index, (key, raw) in enumerate(data.items()):
        with rows.row(request.source(index)) as row:
            row.id = key
            item = expect_object(raw, "question")
            question = question_text(item.get("question"))
            image_id = item.get("imageId")
            if not isinstance(image_id, (str, int)) or isinstance(image_id, bool) or str(image_id) == "":
                raise RowProblem("bad image", f"'imageId' must be a string, got {image_id!r}")
            image = rows.image_path(os.path.join(images, f"{image_id}.jpg"))
            answers = answer_list(item.get("answer"), "answer")
            extra = _rest(item, ("question", "answer"))
            rows.add(Example(key, image, question, answers, None, metric, request.source(index), extra))
    return rows


# --- TallyQA -----------------------------------------------------------------------------------


def read_tallyqa(request: Request, data: Any) -> Rows:
    """TallyQA: a list of ``{image, answer, question, question_id, image_id, issimple, data_source}``.

    ``image`` is relative to ``images`` (e.g. ``VG_100K/2.jpg``); the answer is an integer;
    metric ``"count"``. ``split="simple"`` or ``"complex"`` keeps the test split's simple or
    complex questions (``issimple``).
    """
    if not isinstance(data, list):
        raise DatasetError(f"{str(request.path)!r} is not a TallyQA file: expected a JSON list of questions.")
    wanted: bool | None = None
    if request.split is not None:
        if request.split not in _TALLYQA_SPLITS:
            raise DatasetError(f"TallyQA's split= is 'simple' or 'complex' (or nothing), got {request.split!r}.")
        lacking = sum(1 for item in data if not isinstance(item, dict) or "issimple" not in item)
        if lacking:
            raise DatasetError(
                f"split={request.split!r} needs the 'issimple' field, and {lacking} of {len(data)} rows of "
                f"{str(request.path)!r} lack it (only TallyQA's test.json has it); load without split=."
            )
        wanted = request.split == "simple"
    images = request.images_folder("the folder TallyQA's image paths are relative to (with VG_100K/, train2014/ ...)")
    metric = request.metric or "count"
    rows = Rows(str(request.path))
    for index, raw in enumerate(data):
        if wanted is not None and isinstance(raw, dict) and raw.get("issimple") is (not wanted):
            continue  # a question of the other split, left out as asked (not a bad row)
        with rows.row(request.source(index)) as row:
            item = expect_object(raw)
            row.id = text_id(item.get("question_id"), "question_id")
            if wanted is not None and not isinstance(item.get("issimple"), bool):
                raise RowProblem("bad field", f"'issimple' must be true or false, got {item.get('issimple')!r}")
            question = question_text(item.get("question"))
            image = rows.image(images, item.get("image"))
            count = item.get("answer")
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise RowProblem("bad answers", f"'answer' must be a count (an integer of 0 or more), got {count!r}")
            extra = _rest(item, ("question_id", "question", "image", "answer"))
            rows.add(Example(row.id, image, question, (str(count),), None, metric, request.source(index), extra))
    return rows


# --- CLEVR -------------------------------------------------------------------------------------


def read_clevr(request: Request, data: Any) -> Rows:
    """CLEVR: ``{"info": ..., "questions": [{image_filename, question, answer, question_index, split}]}``.

    Images are ``{images}/{image_filename}``, else ``{images}/{split}/{image_filename}``
    (``split=`` or the row's ``split``). The id is ``question_index`` (the row's place in
    the list when it has none). Metric ``"count"`` when every answer is a whole
    number, else ``"exact"``.
    """
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        raise DatasetError(f"{str(request.path)!r} is not a CLEVR questions file: it has no 'questions' list.")
    questions = data["questions"]
    labelled = [item["answer"] for item in questions if isinstance(item, dict) and "answer" in item]
    if questions and not labelled:
        raise _no_labels(request, "no question has an 'answer'")
    images = request.images_folder("CLEVR's images folder (with the PNG files, or their split's folder)")
    metric = request.metric or ("count" if labelled and all(is_integer(answer) for answer in labelled) else "exact")
    rows = Rows(str(request.path))
    for index, raw in enumerate(questions):
        with rows.row(request.source(index)) as row:
            item = expect_object(raw, "question")
            row.id = text_id(item.get("question_index", index), "question_index")
            question = question_text(item.get("question"))
            name = item.get("image_filename")
            split = request.split or item.get("split")
            if isinstance(name, str) and isinstance(split, str) and not rows.has_image(os.path.join(images, name)):
                image = rows.image(os.path.join(images, split), name, "image_filename")
            else:
                image = rows.image(images, name, "image_filename")
            answers = answer_list(item.get("answer"), "answer")
            extra = _rest(item, ("question_index", "question", "answer"))
            rows.add(Example(row.id, image, question, answers, None, metric, request.source(index), extra))
    return rows


# --- OctoTools ---------------------------------------------------------------------------------


def read_octotools(request: Request, data: Any) -> Rows:
    """OctoTools' task files (e.g. its VQAv2 and CLEVR-Math slices): a list of rows.

    Rows are ``{pid, question, answer, answer_gt (optional: the human answers), image}``,
    ``image`` relative to the JSON file (or to ``images=``). Answers are ``answer_gt`` when
    given, else ``answer``. Metric ``"vqa"`` when rows have ``answer_gt`` lists, else
    ``"count"`` when every answer is a whole number, else ``"exact"``.
    """
    if not isinstance(data, list):
        raise DatasetError(f"{str(request.path)!r} is not an OctoTools task file: expected a JSON list.")
    rows_in = [item for item in data if isinstance(item, dict)]
    if request.metric is not None:
        metric = request.metric
    elif any(isinstance(item.get("answer_gt"), list) for item in rows_in):
        metric = "vqa"
    elif rows_in and all(is_integer(item.get("answer")) for item in rows_in):
        metric = "count"
    else:
        metric = "exact"
    base = request.images or folder(request.path.parent, "folder of the task file")
    rows = Rows(str(request.path))
    for index, raw in enumerate(data):
        with rows.row(request.source(index)) as row:
            item = expect_object(raw)
            row.id = text_id(item.get("pid"), "pid")
            question = question_text(item.get("question"))
            image = rows.image(base, item.get("image"))
            if "answer_gt" in item:
                answers = answer_list(item["answer_gt"], "answer_gt")
                extra = _rest(item, ("pid", "question", "image", "answer_gt"))
            else:
                answers = answer_list(item.get("answer"), "answer")
                extra = _rest(item, ("pid", "question", "image", "answer"))
            rows.add(Example(row.id, image, question, answers, None, metric, request.source(index), extra))
    return rows
