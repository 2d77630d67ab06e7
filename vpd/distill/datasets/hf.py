"""A Hugging Face ``datasets.Dataset`` as a vpd :class:`Dataset`: :func:`from_hf`.

``datasets`` is imported here, when called (``import vpd`` stays light). Images are kept
as files: an image column's bytes are written once into ``images_dir``, named by their
content hash, and never decoded.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vpd.distill.datasets._rows import (
    ON_BAD,
    RowProblem,
    Rows,
    answer_list,
    question_text,
    text_id,
    text_list,
)
from vpd.distill.datasets.example import Dataset, Example
from vpd.distill.metrics import METRICS
from vpd.errors import DatasetError

__all__ = ["from_hf"]

#: File signatures of the image formats written from bytes (the bytes are never decoded).
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"GIF87a", ".gif"),
    (b"GIF89a", ".gif"),
    (b"BM", ".bmp"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
)
_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp")


def from_hf(
    dataset: Any,
    *,
    images_dir: str | os.PathLike[str],
    id_field: str | None = "id",
    image_field: str = "image",
    question_field: str = "question",
    answers_field: str = "answers",
    choices_field: str | None = None,
    metric: str = "vqa",
    name: str | None = None,
    on_bad: str = "skip",
) -> Dataset:
    """Read a Hugging Face ``datasets.Dataset`` (one split) into a vpd :class:`Dataset`.

    The image column may hold the ``Image`` feature (read undecoded: its bytes are
    written once to ``images_dir/<sha256>.<ext>``, or its file is used when the path is
    an existing absolute one), a PIL image (written once as PNG, named by a hash of its
    pixels), ``{"path", "bytes"}`` dicts, or path strings (relative ones are relative to
    ``images_dir``). The answers column may hold a list of strings, one string or number,
    or VQAv2-style ``[{"answer": ...}]``. Other columns, except images, go to ``extra``.

    Args:
        dataset: A ``datasets.Dataset`` (for a ``DatasetDict``, pick a split first).
        images_dir: Where images given as bytes or PIL images are written, and where
            relative paths are resolved (created when needed).
        id_field: The id column; None numbers the rows ``0, 1, ...``.
        image_field: The image column.
        question_field: The question column.
        answers_field: The reference answers column.
        choices_field: The multiple-choice options column, if any.
        metric: The metric of every example (one of :data:`METRICS`).
        name: The dataset's name (default: the dataset's own name and split, else ``"hf"``).
        on_bad: ``"skip"`` or ``"raise"``, as in :func:`load_dataset`.

    Returns:
        The examples, in the dataset's order, with sources ``name#index``.

    Raises:
        DatasetError: ``datasets`` is not installed, a column is missing, an argument is
            invalid, or (with ``on_bad="raise"``) some rows are bad.
    """
    try:
        import datasets
    except ImportError:
        raise DatasetError("Reading a Hugging Face dataset needs the datasets library: pip install datasets") from None
    if on_bad not in ON_BAD:
        raise DatasetError(f"on_bad is 'skip' or 'raise', got {on_bad!r}.")
    if metric not in METRICS:
        raise DatasetError(f"Unknown metric {metric!r}; choose one of {', '.join(METRICS)}.")
    if isinstance(dataset, datasets.DatasetDict):
        raise DatasetError(f"from_hf() reads one split; pass one of {sorted(dataset)} (e.g. dataset['validation']).")
    if not isinstance(dataset, datasets.Dataset):
        raise DatasetError(
            f"from_hf() reads a datasets.Dataset, got {type(dataset).__name__}; for a list of rows use "
            "datasets.Dataset.from_list(rows)."
        )
    wanted = [id_field, image_field, question_field, answers_field, choices_field]
    missing = [column for column in wanted if column is not None and column not in dataset.column_names]
    if missing:
        raise DatasetError(
            f"The dataset has no column {missing[0]!r} (its columns: {', '.join(dataset.column_names)}); "
            "name the right one with id_field=, image_field=, question_field=, answers_field= or choices_field=."
        )
    features = dataset.features
    media = {
        column
        for column, feature in features.items()
        if type(feature).__name__ in ("Image", "Audio", "Video") and column != image_field
    }
    if isinstance(features.get(image_field), datasets.Image):
        # The file's bytes as stored, not decoded pixels: images are referenced by path only.
        dataset = dataset.cast_column(image_field, datasets.Image(decode=False))
    label = name or _hf_name(dataset)
    images = Path(images_dir).expanduser().resolve()
    rows = Rows(f"the Hugging Face dataset {label!r}")
    written: dict[str, Path] = {}
    used = {id_field, image_field, question_field, answers_field, choices_field}
    try:
        for index, item in enumerate(dataset):
            source = f"{label}#{index}"
            with rows.row(source) as row:
                row.id = str(index) if id_field is None else text_id(item.get(id_field), id_field)
                question = question_text(item.get(question_field), question_field)
                image = _image(rows, item.get(image_field), images, written)
                answers = answer_list(item.get(answers_field), answers_field, dicts=True)
                choices = None
                if choices_field is not None and item.get(choices_field) is not None:
                    choices = text_list(item[choices_field], choices_field)
                extra = {key: value for key, value in item.items() if key not in used and key not in media}
                rows.add(Example(row.id, image, question, answers, choices, metric, source, extra))
    except OSError as exc:
        raise DatasetError(f"Cannot write images into {str(images)!r}: {exc.strerror or exc}.") from None
    return rows.finish(label, on_bad, stacklevel=2)


def _hf_name(dataset: Any) -> str:
    info = getattr(dataset, "info", None)
    base = getattr(info, "dataset_name", None) or getattr(info, "builder_name", None) or "hf"
    split = getattr(dataset, "split", None)
    return f"{base}/{split}" if split else str(base)


def _image(rows: Rows, value: Any, images: Path, written: dict[str, Path]) -> Path:
    """The file of one image cell: an existing path, or bytes / a PIL image written once by content hash."""
    if isinstance(value, (str, os.PathLike)):
        return rows.image(images, os.fspath(value))
    if isinstance(value, dict):
        path, data = value.get("path"), value.get("bytes")
        if isinstance(path, str) and Path(path).is_absolute() and Path(path).is_file():
            return rows.image_path(Path(path))
        if isinstance(data, (bytes, bytearray)) and data:
            return _write(bytes(data), _suffix(bytes(data), path), images, written)
        if isinstance(path, str) and path:
            return rows.image(images, path)
        raise RowProblem("bad image", "the image cell has neither bytes nor a path")
    if hasattr(value, "tobytes") and hasattr(value, "save") and hasattr(value, "mode"):
        return _write_pil(value, images, written)
    found = "nothing" if value is None else type(value).__name__
    raise RowProblem("bad image", f"expected an image, a path or a {{'path', 'bytes'}} dict, got {found}")


def _suffix(data: bytes, path: Any) -> str:
    if isinstance(path, str) and Path(path).suffix.lower() in _SUFFIXES:
        return Path(path).suffix.lower()
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    for signature, suffix in _SIGNATURES:
        if data.startswith(signature):
            return suffix
    raise RowProblem("bad image", "its bytes are not a PNG, JPEG, GIF, BMP, TIFF or WebP file")


def _write(data: bytes, suffix: str, images: Path, written: dict[str, Path]) -> Path:
    digest = hashlib.sha256(data).hexdigest()
    return _store(digest + suffix, lambda target: target.write_bytes(data), images, written)


def _write_pil(image: Any, images: Path, written: dict[str, Path]) -> Path:
    # Hash the pixels (already in memory), so an image written before is found without encoding it.
    digest = hashlib.sha256(f"{image.mode}:{image.size}:".encode())
    digest.update(image.tobytes())
    return _store(digest.hexdigest() + ".png", lambda target: image.save(target, format="PNG"), images, written)


def _store(filename: str, write: Callable[[Path], object], images: Path, written: dict[str, Path]) -> Path:
    """``images/filename``, written (then moved into place, so a crash leaves no half file) unless present.

    An OSError goes up as it is: :func:`from_hf` stops on it, rather than mark every row bad.
    """
    if filename in written:
        return written[filename]
    target = images / filename
    if not target.is_file():
        images.mkdir(parents=True, exist_ok=True)
        partial = images / f".{filename}.partial"
        write(partial)
        os.replace(partial, target)
    written[filename] = target
    return target
