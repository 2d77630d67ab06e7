"""The training set of a distillation run: rationale rows and label-only rows.

:func:`export_run` reads a synthesis run directory (``records.jsonl``, and
``rationales.jsonl`` from :func:`~vpd.distill.rewriter.rewrite_run`) and writes:

* ``train.jsonl``: one object per question: ``id``, ``image`` (the image file's absolute
  path), ``question``, ``answer`` and ``rationale``. Questions with an accepted rationale
  give the chosen program's answer and the rationale; the others (no verified program, or
  a rejected rationale) are **label-only** rows (``rationale: null``) with the most common
  reference answer, as VPD keeps them for the answer loss.
* ``hf/``: the same rows as a Hugging Face dataset (``datasets.load_from_disk``), unless
  ``hf=False``; needs ``pip install 'vpd[distill]'``.
* ``README.md``: a dataset card with the counts, the source run's configuration and the
  conventions (boxes in rationales are ``[x0, y0, x1, y1]``, top-left origin, fractions
  of the image's width and height).

Questions whose image could not be read during synthesis (a record with ``error``) are
left out and counted in the card.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vpd.distill.rewriter import RATIONALES
from vpd.distill.runs import CONFIG, RECORDS, read_records
from vpd.errors import ConfigError

__all__ = ["ExportSummary", "export_run"]


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_run` wrote.

    Attributes:
        rows: Rows written.
        with_rationale: Rows with a rationale.
        label_only: Rows without one (no verified program, or a rejected rationale).
        rejected: Of those, questions whose rationale was rejected.
        not_rewritten: Verified questions without a rationale record (``vpd rewrite`` not run on them).
        left_out: Questions left out (their image could not be read).
        path: The output folder.
    """

    rows: int
    with_rationale: int
    label_only: int
    rejected: int
    not_rewritten: int
    left_out: int
    path: Path


def export_run(run_dir: str | os.PathLike[str], out: str | os.PathLike[str], *, hf: bool = True) -> ExportSummary:
    """Write the training set of a synthesis run (see the module docstring).

    Args:
        run_dir: A ``vpd synthesize`` run directory.
        out: The folder to write (created; its ``train.jsonl``, ``hf/`` and ``README.md`` are replaced).
        hf: Also write the Hugging Face dataset.

    Raises:
        ConfigError: ``run_dir`` has no synthesis records, or ``datasets`` is missing with ``hf=True``.
    """
    source = Path(run_dir)
    if not (source / RECORDS).exists():
        raise ConfigError(f"No synthesis records in {source} ({RECORDS} is missing); run `vpd synthesize` first.")
    records = read_records(source / RECORDS)
    rationales = {str(r.get("id")): r for r in read_records(source / RATIONALES)}
    rows: list[dict[str, Any]] = []
    rejected = not_rewritten = left_out = 0
    for record in records:
        if record.get("error") is not None:
            left_out += 1
            continue
        rationale = rationales.get(str(record.get("id")))
        answer, text = _label(record), None
        if record.get("verified"):
            if rationale is None:
                not_rewritten += 1
            elif rationale.get("accepted"):
                answer, text = str(rationale.get("answer")), str(rationale.get("rationale"))
            else:
                rejected += 1
        rows.append(
            {
                "id": str(record.get("id")),
                "image": str(record.get("image")),
                "question": record.get("question"),
                "answer": answer,
                "rationale": text,
            }
        )
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    with open(target / "train.jsonl.tmp", "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(target / "train.jsonl.tmp", target / "train.jsonl")
    if hf:
        _save_hf(rows, target / "hf")
    with_rationale = sum(row["rationale"] is not None for row in rows)
    summary = ExportSummary(
        len(rows), with_rationale, len(rows) - with_rationale, rejected, not_rewritten, left_out, target
    )
    (target / "README.md").write_text(_card(summary, source, rows, hf), encoding="utf-8")
    return summary


def _label(record: dict[str, Any]) -> str:
    """The answer of a label-only row: the most common reference (the first of a tie)."""
    references = [str(r) for r in record.get("references") or []]
    if not references:
        return ""
    counts = Counter(references)
    return max(references, key=lambda r: (counts[r], -references.index(r)))


def _save_hf(rows: list[dict[str, Any]], path: Path) -> None:
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            "Writing the Hugging Face dataset needs the datasets package: pip install 'vpd[distill]' "
            "(or export with hf=False / --no-hf for the JSONL only)."
        ) from None
    features = datasets.Features({key: datasets.Value("string") for key in ("id", "image", "question", "answer")})
    features["rationale"] = datasets.Value("string")
    dataset = datasets.Dataset.from_list(rows, features=features)
    dataset.save_to_disk(str(path))


def _card(summary: ExportSummary, source: Path, rows: list[dict[str, Any]], hf: bool) -> str:
    try:
        stored = json.loads((source / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stored = {}
    config = stored.get("config", {})
    versions = stored.get("versions", {})
    lines = [
        "# Visual program distillation training set",
        "",
        f"Made by vpd from the synthesis run `{source}` (dataset `{config.get('dataset', '?')}`).",
        "",
        "| rows | with a rationale | label-only | of which: rationale rejected | not rewritten | left out |",
        "|---|---|---|---|---|---|",
        f"| {summary.rows} | {summary.with_rationale} | {summary.label_only} | {summary.rejected} | "
        f"{summary.not_rewritten} | {summary.left_out} |",
        "",
        "## Files",
        "",
        "- `train.jsonl`: one object per question: `id`, `image` (the image's path), `question`, `answer`, "
        "`rationale` (null on label-only rows).",
    ]
    if hf:
        lines.append("- `hf/`: the same rows, for `datasets.load_from_disk`.")
    lines += [
        "",
        "## How it was made",
        "",
        f"- Programs: {config.get('k', '?')} sampled per question by "
        f"`{config.get('model_name') or config.get('model')}`, temperature {config.get('temperature', '?')}, "
        f"seed {config.get('seed', '?')}, run with "
        f"`{config.get('toolkit', '?')}`; a program is correct when the dataset's official metric scores its "
        f"answer at least {config.get('min_score', '?')}.",
        "- Rows with a rationale: the chosen correct program's execution trace, rewritten and checked "
        "(it ends with the answer, keeps the evidence, shows no code). Label-only rows: the most common "
        "reference answer.",
        "- Boxes in rationales are `[x0, y0, x1, y1]` with the origin at the image's top-left corner, as "
        "fractions of its width and height.",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in versions.items()) or 'unknown'}.",
        "",
        "The images and questions keep the terms of the dataset they come from.",
        "",
    ]
    return "\n".join(lines)
