"""The records of a benchmark: :class:`Example`, :class:`BadRow` and :class:`Dataset`.

An :class:`Example` is one question about one image with its reference answers and the
name of the metric that scores it (a key of :data:`vpd.distill.metrics.METRICS`, which maps
the names to the functions). Images are referenced by path only: nothing here reads pixels.

A :class:`Dataset` is what :func:`~vpd.distill.datasets.load_dataset` returns: the examples
in file order and the rows it could not use (:class:`BadRow`), so that nothing is dropped
without a trace.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from vpd.distill.metrics import METRICS
from vpd.errors import DatasetError

__all__ = ["BadRow", "Dataset", "Example"]

#: The keys of :meth:`Example.to_json`.
_JSON_KEYS = ("id", "image", "question", "answers", "choices", "metric", "source", "extra")


def _texts(value: Any, what: str) -> tuple[str, ...]:
    """A tuple of non-empty strings from a list or tuple of them, else DatasetError naming ``what``."""
    if not isinstance(value, (list, tuple)):
        raise DatasetError(f"bad {what}: expected a list of strings, got {type(value).__name__}")
    if all(isinstance(item, str) and item.strip() for item in value):
        return tuple(value)  # the usual case, checked in one pass
    for number, item in enumerate(value, start=1):
        if not isinstance(item, str):
            raise DatasetError(f"bad {what}: item {number} is {type(item).__name__}, not a string")
        if not item.strip():
            raise DatasetError(f"bad {what}: item {number} is empty")
    return tuple(value)


@dataclass(frozen=True)
class Example:
    """One question about one image, with its reference answers.

    The constructor checks every field (a reader turns its :class:`DatasetError` into a
    :class:`BadRow`); it does not look at the image file.

    Attributes:
        id: The question's id in its dataset (numbers written as strings).
        image: The image file: an absolute path, normalised (no ``..``).
        question: The question, as given.
        answers: The reference answers, at least one (numbers written as strings; VQAv2
            has the ten human answers, duplicates included).
        choices: The options shown for a multiple-choice question, else None.
        metric: How an answer is scored, one of :data:`METRICS`.
        source: Where the row came from: ``file:line`` (JSONL) or ``file#index`` (JSON).
        extra: The dataset's other fields, as given (read-only), e.g. VQAv2's
            ``answer_type`` or GQA's ``types``.
    """

    id: str
    image: Path
    question: str
    answers: tuple[str, ...]
    choices: tuple[str, ...] | None = None
    metric: str = "exact"
    source: str = ""
    # Excluded from the hash: the fields are frozen, the extra's values may be lists.
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise DatasetError(f"bad id: expected a non-empty string, got {self.id!r}")
        if isinstance(self.image, str):
            object.__setattr__(self, "image", Path(self.image))
        if not isinstance(self.image, Path):
            raise DatasetError(f"bad image: expected a path, got {type(self.image).__name__}")
        if not self.image.is_absolute():
            raise DatasetError(f"bad image: {str(self.image)!r} is not an absolute path")
        # Lexically (no symlinks followed: a linked file keeps its name and suffix).
        text = os.fspath(self.image)
        normal = os.path.normpath(text)
        if normal != text:
            object.__setattr__(self, "image", Path(normal))
        if not isinstance(self.question, str):
            raise DatasetError(f"bad question: expected a string, got {type(self.question).__name__}")
        if not self.question.strip():
            raise DatasetError("bad question: it is empty")
        answers = _texts(self.answers, "answers")
        if not answers:
            raise DatasetError("no answers: the list of reference answers is empty")
        object.__setattr__(self, "answers", answers)
        if self.choices is not None:
            choices = _texts(self.choices, "choices")
            if not choices:
                raise DatasetError("bad choices: the list is empty (write null for an open question)")
            object.__setattr__(self, "choices", choices)
        if self.metric not in METRICS:
            raise DatasetError(f"bad metric: {self.metric!r} is not one of {', '.join(METRICS)}")
        if self.metric in ("vqa", "direct-answer") and len(self.answers) < 2:
            # The leave-one-out formula gives every prediction 0 against one answer.
            raise DatasetError(
                f"one reference answer for metric {self.metric!r}: VQA accuracy needs the human answers "
                "(ten in VQAv2); give them all, or load with metric='exact'"
            )
        if self.metric == "choice":
            if self.choices is None:
                raise DatasetError("bad choices: metric 'choice' needs the choices")
            missing = [answer for answer in self.answers if answer not in self.choices]
            if missing:
                raise DatasetError(f"answer not among the choices: {missing[0]!r} is not one of {list(self.choices)}")
        if not isinstance(self.source, str):
            raise DatasetError(f"bad source: expected a string, got {type(self.source).__name__}")
        if not isinstance(self.extra, Mapping) or not all(isinstance(key, str) for key in self.extra):
            raise DatasetError("bad extra: expected a mapping with string keys")
        # A copy behind a read-only view: the caller's dict cannot change the record later.
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    def __reduce__(self) -> tuple[Any, ...]:
        # A mappingproxy cannot be pickled: rebuild from a plain dict (process pools send examples).
        fields = (self.id, self.image, self.question, self.answers, self.choices, self.metric, self.source)
        return (Example, (*fields, dict(self.extra)))

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data (:meth:`from_json` reads it back); the image path stays absolute."""
        return {
            "id": self.id,
            "image": str(self.image),
            "question": self.question,
            "answers": list(self.answers),
            "choices": None if self.choices is None else list(self.choices),
            "metric": self.metric,
            "source": self.source,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Example:
        """Read back what :meth:`to_json` wrote.

        Raises:
            DatasetError: A key is missing or unknown, or a field is invalid.
        """
        if not isinstance(data, Mapping):
            raise DatasetError(f"An example is a JSON object, got {type(data).__name__}.")
        missing = [key for key in ("id", "image", "question", "answers", "metric") if key not in data]
        unknown = sorted(set(data) - set(_JSON_KEYS))
        if missing or unknown:
            problem = f"missing {missing}" if missing else f"unknown keys {unknown}"
            raise DatasetError(f"Not an example written by Example.to_json(): {problem}.")
        return cls(
            id=data["id"],
            image=data["image"],
            question=data["question"],
            answers=data["answers"],
            choices=data.get("choices"),
            metric=data["metric"],
            source=data.get("source", ""),
            extra=data.get("extra") or {},
        )


@dataclass(frozen=True)
class BadRow:
    """A row of a dataset file that could not become an :class:`Example`.

    Attributes:
        source: Where it is: ``file:line`` (JSONL) or ``file#index`` (JSON).
        id: Its id, when it could be read.
        reason: What is wrong with it.
    """

    source: str
    id: str | None
    reason: str

    def __str__(self) -> str:
        named = f" (id {self.id!r})" if self.id is not None else ""
        return f"{self.source}{named}: {self.reason}"


@dataclass(frozen=True, repr=False)
class Dataset:
    """The examples of a benchmark, in file order, and the rows that were skipped.

    Attributes:
        name: A short name (load_dataset's default: the file's stem).
        examples: The examples; ids are unique.
        skipped: The rows that could not be read (each with its place and reason).
    """

    name: str
    examples: tuple[Example, ...]
    skipped: tuple[BadRow, ...] = ()
    _by_id: Mapping[str, Example] = field(init=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "examples", tuple(self.examples))
        object.__setattr__(self, "skipped", tuple(self.skipped))
        by_id: dict[str, Example] = {}
        for example in self.examples:
            if example.id in by_id:
                raise DatasetError(
                    f"Dataset {self.name!r} has two examples with id {example.id!r} "
                    f"({by_id[example.id].source} and {example.source}); ids must be unique."
                )
            by_id[example.id] = example
        object.__setattr__(self, "_by_id", MappingProxyType(by_id))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Dataset, (self.name, self.examples, self.skipped))  # the index is rebuilt, not pickled

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, {len(self.examples)} examples, {len(self.skipped)} skipped)"

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    def __getitem__(self, index: int) -> Example:
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError(f"Dataset indices are integers, not {type(index).__name__}; use by_id() for ids.")
        return self.examples[index]

    def by_id(self, id: str) -> Example:
        """The example with this id.

        Raises:
            DatasetError: No example has it.
        """
        try:
            return self._by_id[id]
        except KeyError:
            raise DatasetError(f"Dataset {self.name!r} has no example with id {id!r}.") from None

    def limit(self, n: int) -> Dataset:
        """The first ``n`` examples (the skipped rows are kept, to stay visible)."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise DatasetError(f"limit() takes a count of examples (0 or more), got {n!r}.")
        return Dataset(self.name, self.examples[:n], self.skipped)

    def split_by_image(self, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
        """Two disjoint datasets; all the questions about one image land on the same side.

        The images are shuffled with ``seed`` and the first ``round(fraction * images)`` go
        to the first dataset, so it gets about ``fraction`` of the questions. The result
        depends only on the images' paths relative to their common folder and the seed,
        not on the order of the rows or on where the data sits. Each side keeps file order;
        the skipped rows stay with this dataset.

        Args:
            fraction: The share of the images for the first dataset, between 0 and 1.
            seed: The shuffle's seed.

        Returns:
            The two datasets, named ``name[:fraction]`` and ``name[fraction:]``.
        """
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise DatasetError(f"split_by_image() takes a fraction between 0 and 1, got {fraction!r}.")
        images = sorted({example.image for example in self.examples})
        if images:
            # Relative to the common folder, so the split is the same wherever the data sits.
            root = os.path.commonpath([str(path.parent) for path in images])
            by_key = {Path(os.path.relpath(path, root)).as_posix(): path for path in images}
            keys = sorted(by_key)
            random.Random(seed).shuffle(keys)
            first_images = {by_key[key] for key in keys[: round(fraction * len(keys))]}
        else:
            first_images = set()
        first = tuple(example for example in self.examples if example.image in first_images)
        second = tuple(example for example in self.examples if example.image not in first_images)
        return Dataset(f"{self.name}[:{fraction:g}]", first), Dataset(f"{self.name}[{fraction:g}:]", second)

    def save_jsonl(self, path: str | os.PathLike[str]) -> Path:
        """Write the examples in vpd's JSONL format (:func:`~vpd.distill.datasets.load_dataset` reads it).

        Image paths are written relative to the output file's folder, so the file and its
        images move together. Each line is ``{"id", "image", "question", "answers",
        "choices" (when set), "metric", "extra" (when not empty)}``. The file is written
        whole and then moved into place, so a crash never leaves half a file.

        Args:
            path: The file to write (its folder is created).

        Returns:
            The file written.

        Raises:
            DatasetError: The file cannot be written, or an extra field is not JSON.
        """
        out = Path(path)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            folder = out.parent.resolve()
            lines = []
            for example in self.examples:
                row: dict[str, Any] = {
                    "id": example.id,
                    "image": Path(os.path.relpath(example.image, folder)).as_posix(),
                    "question": example.question,
                    "answers": list(example.answers),
                }
                if example.choices is not None:
                    row["choices"] = list(example.choices)
                row["metric"] = example.metric
                if example.extra:
                    row["extra"] = dict(example.extra)
                try:
                    lines.append(json.dumps(row, ensure_ascii=False, allow_nan=False))
                except (TypeError, ValueError) as exc:
                    raise DatasetError(
                        f"Example {example.id!r} ({example.source}) has an extra field that is not JSON ({exc}); "
                        "drop or convert it before saving."
                    ) from None
            partial = out.with_name(out.name + ".partial")
            partial.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
            os.replace(partial, out)
        except OSError as exc:
            raise DatasetError(f"Cannot write {str(out)!r}: {exc.strerror or exc}.") from None
        return out
