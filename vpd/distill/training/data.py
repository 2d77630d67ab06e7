"""Training rows, the two tasks of step-by-step distillation, and the batch collator.

A row of the data engine's export (``train.jsonl``: ``id``, ``image``, ``question``,
``answer``, ``rationale``) gives one or two **tasks** (Hsieh et al., 2023, "Distilling
step-by-step", as VPD uses it):

* ``label``: the question with :data:`ANSWER_INSTRUCTION`; the target is the answer;
* ``rationale`` (rows with a rationale only): the question with
  :data:`EXPLAIN_INSTRUCTION`; the target is the rationale, which ends with the answer.

:class:`VisionChatCollator` turns tasks into a batch for a Hugging Face vision-language
model with its processor: the conversation goes through the model's own chat template
(user turn: the image and the prompt; assistant turn: the target), the processor expands
the image tokens, padding is on the right, and the labels are the input ids with every
token that is not the assistant's reply masked (-100): the prompt, the image tokens and
the padding add nothing to the loss. ``task`` (0 label, 1 rationale) travels with the
batch so the loss can be split per task.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vpd.errors import DatasetError

__all__ = [
    "ANSWER_INSTRUCTION",
    "EXPLAIN_INSTRUCTION",
    "IGNORE_INDEX",
    "TASKS",
    "Task",
    "TrainingRow",
    "VisionChatCollator",
    "conversation_texts",
    "uses_chat_template",
    "load_rows",
    "reply_labels",
    "tasks_of",
]

ANSWER_INSTRUCTION = "Answer with a single word or phrase."
EXPLAIN_INSTRUCTION = "Explain the answer step by step, then give it."
IGNORE_INDEX = -100
TASKS: tuple[str, str] = ("label", "rationale")

TaskKind = Literal["label", "rationale"]


@dataclass(frozen=True)
class TrainingRow:
    """One question of a training set.

    Attributes:
        id: The question's id.
        image: The image file.
        question: The question.
        answer: The answer to learn.
        rationale: The rationale ending in the answer, or None (a label-only row).
        source: Where the row came from (``file:line`` or ``name#index``).
    """

    id: str
    image: Path
    question: str
    answer: str
    rationale: str | None = None
    source: str = ""


@dataclass(frozen=True)
class Task:
    """One training sequence: a prompt about an image and the target the model learns.

    Attributes:
        kind: ``"label"`` or ``"rationale"``.
        row: The row it comes from.
        prompt: The user's text (the question and the task's instruction).
        target: The assistant's reply to learn.
    """

    kind: TaskKind
    row: TrainingRow
    prompt: str
    target: str


def prompt_text(question: str, instruction: str) -> str:
    """The user's text of a task: the question, then the instruction on its own line."""
    return f"{question.strip()}\n{instruction}"


def tasks_of(
    rows: Iterable[TrainingRow],
    *,
    answer_instruction: str = ANSWER_INSTRUCTION,
    explain_instruction: str = EXPLAIN_INSTRUCTION,
    rationales: bool = True,
) -> list[Task]:
    """The tasks of ``rows``, row by row: each row's label task, then its rationale task if it has one.

    Args:
        rows: The training rows.
        answer_instruction: Appended to the question of label tasks.
        explain_instruction: Appended to the question of rationale tasks.
        rationales: False keeps only the label tasks (plain answer fine-tuning).
    """
    tasks: list[Task] = []
    for row in rows:
        tasks.append(Task("label", row, prompt_text(row.question, answer_instruction), row.answer))
        if rationales and row.rationale is not None:
            tasks.append(Task("rationale", row, prompt_text(row.question, explain_instruction), row.rationale))
    return tasks


def _row(raw: Any, where: str, base: Path | None) -> TrainingRow:
    if not isinstance(raw, Mapping):
        raise DatasetError(f"{where}: a training row must be a JSON object, got {type(raw).__name__}.")
    missing = [key for key in ("id", "image", "question", "answer") if raw.get(key) in (None, "")]
    if missing:
        raise DatasetError(
            f"{where}: the row has no {', '.join(missing)}; every row needs id, image, question, answer."
        )
    rationale = raw.get("rationale")
    if rationale is not None and (not isinstance(rationale, str) or not rationale.strip()):
        raise DatasetError(f"{where}: rationale must be a non-empty string or null, got {rationale!r}.")
    image = Path(str(raw["image"]))
    if not image.is_absolute() and base is not None:
        image = base / image
    if not image.is_file():
        raise DatasetError(f"{where} (id {raw['id']!r}): the image {image} does not exist.")
    return TrainingRow(
        id=str(raw["id"]),
        image=image,
        question=str(raw["question"]),
        answer=str(raw["answer"]),
        rationale=rationale,
        source=where,
    )


def load_rows(data: str | os.PathLike[str] | Sequence[Mapping[str, Any]] | Any) -> list[TrainingRow]:
    """The rows of a training set.

    Args:
        data: The export folder of ``vpd export`` (its ``train.jsonl``), a ``train.jsonl``
            file (image paths relative to it are resolved), a Hugging Face dataset with the
            same columns (``image`` a file path, as the export writes it), or a list of row dicts.

    Raises:
        DatasetError: No such file, a bad row (named by line or index, with what to fix), a
            missing image, a duplicate id, or no rows at all.
    """
    rows: list[TrainingRow] = []
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.is_dir():
            path = path / "train.jsonl"
        if not path.is_file():
            raise DatasetError(f"No training set at {path}; make one with `vpd export RUN_DIR --out DIR`.")
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    raw = json.loads(line)
                except ValueError as exc:
                    raise DatasetError(f"{path}:{number}: not a JSON object ({exc}).") from None
                rows.append(_row(raw, f"{path.name}:{number}", path.parent))
    else:
        for index, raw in enumerate(data):
            rows.append(_row(raw, f"row {index}", None))
    if not rows:
        raise DatasetError(f"The training set {data!r} has no rows.")
    seen: dict[str, str] = {}
    for row in rows:
        if row.id in seen:
            raise DatasetError(
                f"Two training rows have id {row.id!r} ({seen[row.id]} and {row.source}); ids must be unique."
            )
        seen[row.id] = row.source
    return rows


def uses_chat_template(processor: Any) -> bool:
    """Whether the processor's chat template lays a conversation out as the prompt, then the reply.

    Probed once with a placeholder question and reply: the layout is decided by the
    template, never by the text of one row, so training and :class:`Student` agree.
    """
    tokenizer = getattr(processor, "tokenizer", processor)
    if not (getattr(processor, "chat_template", None) or getattr(tokenizer, "chat_template", None)):
        return False
    user = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Question?"}]}
    reply = {"role": "assistant", "content": [{"type": "text", "text": "Answer."}]}
    try:
        text = processor.apply_chat_template([user], add_generation_prompt=True, tokenize=False)
        whole = processor.apply_chat_template([user, reply], tokenize=False)
    except (ValueError, TypeError, KeyError):  # e.g. only the tokenizer has a template
        return False
    return isinstance(text, str) and isinstance(whole, str) and whole.startswith(text)


def conversation_texts(
    processor: Any, prompt: str, target: str | None = None, *, templated: bool | None = None
) -> tuple[str, str]:
    """The text the model sees: (the prompt up to where its reply starts, the whole conversation).

    The user's turn is the image and ``prompt``; the assistant's turn is ``target`` (the
    whole conversation is the prompt when ``target`` is None, as at inference). The model's
    own chat template lays them out (:func:`uses_chat_template`); a model without a usable
    one gets a plain layout: the image token, the prompt, a newline, the reply and the
    end-of-sequence token. Training and :class:`Student` use this one function, so the
    student is asked exactly as it was taught.

    Args:
        processor: The model's processor.
        prompt: The user's text.
        target: The reply, or None for the prompt alone.
        templated: :func:`uses_chat_template` of the processor, when the caller knows it.

    Raises:
        DatasetError: The template rewrites this reply so that the prompt is not its prefix.
    """
    if templated is None:
        templated = uses_chat_template(processor)
    if templated:
        user = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}
        text = processor.apply_chat_template([user], add_generation_prompt=True, tokenize=False)
        if target is None:
            return text, text
        reply = {"role": "assistant", "content": [{"type": "text", "text": target}]}
        whole = processor.apply_chat_template([user, reply], tokenize=False)
        if not whole.startswith(text):
            raise DatasetError(
                "The chat template lays this reply out so that the prompt is not its prefix (it rewrites the "
                f"conversation around {target[:40]!r}); the labels cannot be placed. Simplify the target text."
            )
        return text, whole
    tokenizer = getattr(processor, "tokenizer", processor)
    image_token = getattr(processor, "image_token", "") or ""
    text = f"{image_token}{prompt}\n"
    return text, text if target is None else text + target + (tokenizer.eos_token or "")


def reply_labels(
    tokenizer: Any,
    input_ids: Any,
    attention_mask: Any,
    prompts: Sequence[str],
    wholes: Sequence[str],
    names: Sequence[str],
) -> Any:
    """Labels for padded sequences: each reply's tokens, everything else :data:`IGNORE_INDEX`.

    The text after the prompt is the sequence's last tokens: they are counted with the
    tokenizer alone (no image tokens there). The labels cover the reply up to its
    end-of-turn token, not the whitespace a template puts after it.

    Raises:
        DatasetError: A reply whose tokens differ in context (the tokenizer merges across
            the prompt's end), or one that covers the whole sequence; named by ``names``.
    """
    import torch

    labels = torch.full_like(input_ids, IGNORE_INDEX)
    # Two tokenizer calls per batch, not two per sequence.
    suffixes = tokenizer([w[len(p) :] for p, w in zip(prompts, wholes, strict=True)], add_special_tokens=False)
    stripped = tokenizer([w[len(p) :].rstrip() for p, w in zip(prompts, wholes, strict=True)], add_special_tokens=False)
    for i in range(len(prompts)):
        # The sequence ends after its last real token, whichever side the processor padded.
        real = attention_mask[i].nonzero()
        end = int(real[-1]) + 1 if len(real) else 0
        first = int(real[0]) if len(real) else 0
        suffix = suffixes["input_ids"][i]
        reply = stripped["input_ids"][i]
        if not reply or list(suffix[: len(reply)]) != list(reply):
            reply = suffix
        start = end - len(suffix)
        if start <= first:
            raise DatasetError(f"The {names[i]}: the reply covers the whole sequence.")
        if input_ids[i, start:end].tolist() != list(suffix):
            raise DatasetError(
                f"The {names[i]}: the reply's tokens differ in context (the tokenizer merges across the "
                "prompt's end); the labels cannot be placed exactly."
            )
        labels[i, start : start + len(reply)] = input_ids[i, start : start + len(reply)]
    return labels


class VisionChatCollator:
    """Batches :class:`Task` s for a vision-language model, with the labels masked (module docstring).

    Args:
        processor: The model's processor (``AutoProcessor``): a tokenizer, an image
            processor and, ideally, a chat template.
        max_length: Sequences longer than this are refused (a clear error rather than a
            truncated image or a target cut off); None for no limit.
    """

    def __init__(self, processor: Any, *, max_length: int | None = None) -> None:
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        # Training pads on the right: the labels line up with the text from position 0.
        self.tokenizer.padding_side = "right"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.max_length = max_length
        self.templated = uses_chat_template(processor)

    def texts(self, task: Task) -> tuple[str, str]:
        """The prompt (up to where the reply starts) and the whole conversation, as text."""
        return conversation_texts(self.processor, task.prompt, task.target, templated=self.templated)

    def __call__(self, tasks: Sequence[Task]) -> dict[str, Any]:
        """The batch: the processor's tensors, ``labels`` (reply tokens only) and ``task`` (0 label, 1 rationale)."""
        import torch
        from PIL import Image

        if not tasks:
            raise DatasetError("Cannot make a batch of no tasks.")
        images, prompts, wholes = [], [], []
        for task in tasks:
            with Image.open(task.row.image) as image:
                images.append(image.convert("RGB"))
            prompt, whole = self.texts(task)
            prompts.append(prompt)
            wholes.append(whole)
        batch = self.processor(images=images, text=wholes, padding=True, return_tensors="pt")
        names = [f"{task.kind} task of row {task.row.id!r}" for task in tasks]
        labels = reply_labels(self.tokenizer, batch["input_ids"], batch["attention_mask"], prompts, wholes, names)
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        if self.max_length is not None and batch["input_ids"].shape[1] > self.max_length:
            longest = max(range(len(tasks)), key=lambda i: lengths[i])
            raise DatasetError(
                f"Row {tasks[longest].row.id!r} ({tasks[longest].kind} task) is {int(lengths[longest])} tokens, "
                f"over max_length={self.max_length}; raise max_length or shorten the rationale."
            )
        batch["labels"] = labels
        batch["task"] = torch.tensor([TASKS.index(task.kind) for task in tasks])
        return dict(batch)
