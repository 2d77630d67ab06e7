"""``vpd eval``: the benchmark's official metric for the program pipeline (teacher) and students.

Each evaluated system gets a run directory ``OUT/<system>/`` (``run.json``,
``predictions.jsonl``: one line per question with the prediction, its score, the time and
the tokens), resumable and crash-safe like synthesis. ``OUT/summary.json`` and
``OUT/summary.md`` compare every system in ``OUT`` **on the questions they all answered**,
so "teacher vs student" and "before vs after distillation" are one table.

* The **teacher** is :class:`vpd.solve.Solver` (k programs, vote); its completion cache and
  the toolkit's result cache make a second evaluation of the same data cheap. Its lines
  also hold the chosen program and its trace, which ``vpd show OUT`` draws.
* A **student** is :class:`vpd.distill.student.Student`, asked in batches.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vpd.distill.datasets import Dataset, Example
from vpd.distill.metrics import score
from vpd.distill.runs import CONFIG, RunDirectory, read_records
from vpd.errors import InvalidArgumentError, VPDError

if TYPE_CHECKING:
    from vpd.distill.student import Student
    from vpd.solve import Solver

__all__ = ["PREDICTIONS", "SystemSummary", "evaluate", "summarize_eval"]

PREDICTIONS = "predictions.jsonl"
EVAL_VERSION = "vpd.eval/1"


@dataclass(frozen=True)
class SystemSummary:
    """One system's results on the questions every system in the folder answered.

    Attributes:
        system: Its name (the subfolder).
        description: What it is (the model, the adapter, k...).
        questions: Questions counted.
        accuracy: Mean score with each question's metric.
        answered: Share of questions with an answer.
        seconds: Mean seconds per question.
        tokens: Mean tokens per question (prompt + generated).
        errors: Questions whose image or model failed (scored 0).
    """

    system: str
    description: str
    questions: int
    accuracy: float
    answered: float
    seconds: float
    tokens: float
    errors: int

    def to_dict(self) -> dict[str, Any]:
        """As JSON."""
        return dict(self.__dict__)


def _base(example: Example) -> dict[str, Any]:
    return {
        "version": EVAL_VERSION,
        "id": example.id,
        "question": example.question,
        "image": str(example.image),
        "references": list(example.answers),
        "metric": example.metric,
    }


def _scored(record: dict[str, Any], example: Example, prediction: str | None) -> dict[str, Any]:
    record["prediction"] = prediction
    record["score"] = score(example.metric, prediction, example.answers) if prediction is not None else 0.0
    return record


def _teacher_records(solver: Solver, examples: Sequence[Example]) -> list[dict[str, Any]]:
    from vpd.traces.answers import normalize_answer

    records = []
    for example in examples:
        record = _base(example)
        started = time.perf_counter()
        try:
            solution = solver.solve(example.image, example.question, choices=example.choices)
        except VPDError as exc:  # a bad image fails its question, not the evaluation
            record.update(error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - started, tokens=0)
            records.append(_scored(record, example, None))
            continue
        timings = solution.timings
        record.update(
            program=solution.program,
            source=solution.source,
            votes=solution.votes,
            error=solution.error,
            seconds=timings.total,
            tokens=timings.prompt_tokens + timings.completion_tokens,
            cached_replies=timings.cached_replies,
            # What the chosen program did, so `vpd show` draws the teacher's trace beside a student's answer.
            trace=solution.trace.to_dict() if solution.trace is not None else None,
        )
        answer = normalize_answer(solution.answer) if solution.answer is not None else None
        records.append(_scored(record, example, answer))
    return records


def _student_records(student: Student, examples: Sequence[Example], explain: bool) -> list[dict[str, Any]]:
    from vpd.traces.answers import normalize_answer

    try:
        replies = student.answer(
            [e.image for e in examples], [e.question for e in examples], explain=explain, batch_size=len(examples)
        )
    except VPDError as exc:
        if len(examples) == 1:  # this question's image (or the model) failed: scored 0, recorded
            record = _base(examples[0])
            record.update(error=f"{type(exc).__name__}: {exc}", seconds=0.0, tokens=0)
            return [_scored(record, examples[0], None)]
        # One bad image must not fail its batch: ask one by one to find it.
        return [record for example in examples for record in _student_records(student, [example], explain)]
    records = []
    for example, reply in zip(examples, replies, strict=True):
        record = _base(example)
        record.update(
            text=reply.text,
            rationale=reply.rationale,
            error=None,
            seconds=reply.seconds,
            tokens=reply.prompt_tokens + reply.tokens,  # as the teacher's: prompt and generated
        )
        answer = normalize_answer(reply.answer) if reply.answer is not None else None
        records.append(_scored(record, example, answer))
    return records


def describe(system: Student | Solver) -> dict[str, Any]:
    """What identifies a system's predictions (a resumed evaluation must match it)."""
    from vpd.distill.student import Student

    if isinstance(system, Student):
        weights = system.adapter / "adapter_model.safetensors" if system.adapter else None
        # The weights' digest: a student retrained into the same folder is another system.
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16] if weights and weights.is_file() else None
        return {
            "kind": "student",
            "base": system.base,
            "adapter": str(system.adapter) if system.adapter else None,
            "adapter_sha256": digest,
        }
    return {
        "kind": "teacher",
        "model": system.model,
        "model_name": system.model_name,
        "k": system.k,
        "toolkit": repr(system.toolkit),
        "n_examples": system.config.examples,
        "timeout": system.limits.timeout if system.limits is not None else None,
    }


def evaluate(
    dataset: Dataset,
    out: str | os.PathLike[str],
    system: Student | Solver,
    *,
    name: str | None = None,
    limit: int | None = None,
    explain: bool = False,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> list[SystemSummary]:
    """Answer ``dataset``'s questions with ``system``, score them, and summarise the folder.

    Args:
        dataset: The questions with their references (:func:`load_dataset`).
        out: The evaluation folder; this system's predictions go to ``out/<name>/``.
        system: A :class:`~vpd.solve.Solver` (the teacher) or a :class:`~vpd.distill.student.Student`.
        name: The subfolder (default ``"teacher"`` or ``"student"``).
        limit: Only the first ``limit`` questions.
        explain: Students answer with their explanation (its final answer is scored).
        batch_size: Questions per student batch (and per write).
        progress: Called with (done, total) after each batch.

    Returns:
        Every system in ``out``, on the questions all of them answered (:func:`summarize_eval`).

    Raises:
        ConfigError: ``out/<name>`` holds predictions of another system, or is in use.
        InvalidArgumentError: A bad argument.
    """
    from vpd.distill.student import Student

    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidArgumentError(f"limit must be a positive integer, got {limit!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}.")
    is_student = isinstance(system, Student)
    name = name or ("student" if is_student else "teacher")
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise InvalidArgumentError(f"name must be letters, digits, '-', '_' or '.', got {name!r}.")
    examples = list(dataset)[:limit] if limit is not None else list(dataset)
    with RunDirectory(Path(out) / name, "eval") as run_dir:
        identity = {**describe(system), "explain": explain, "dataset": dataset.name}
        run_dir.settle_config(identity, identity=tuple(identity))
        done = {str(r.get("id")) for r in run_dir.records(PREDICTIONS)}
        pending = [e for e in examples if e.id not in done]
        finished = len(examples) - len(pending)
        step = batch_size if is_student else 1
        for start in range(0, len(pending), step):
            chunk = pending[start : start + step]
            if isinstance(system, Student):
                records = _student_records(system, chunk, explain)
            else:
                records = _teacher_records(system, chunk)
            for record in records:
                run_dir.append(record, PREDICTIONS)
            finished += len(chunk)
            if progress is not None:
                progress(finished, len(examples))
    summaries = summarize_eval(out)
    write_summary(out, summaries)
    return summaries


def summarize_eval(out: str | os.PathLike[str]) -> list[SystemSummary]:
    """Every system evaluated in ``out``, counted on the questions all of them answered."""
    folder = Path(out)
    systems: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {}
    for path in sorted(folder.glob(f"*/{PREDICTIONS}")):
        try:
            stored = json.loads((path.parent / CONFIG).read_text(encoding="utf-8")).get("config", {})
        except (OSError, ValueError):
            stored = {}
        records = {str(r.get("id")): r for r in read_records(path)}
        systems[path.parent.name] = (_description(stored), records)
    if not systems:
        return []
    common = set.intersection(*(set(records) for _, records in systems.values()))
    result = []
    for system, (description, records) in systems.items():
        rows = [records[i] for i in sorted(common)]
        count = len(rows)

        def mean(values: list[float]) -> float:
            return statistics.fmean(values) if values else 0.0

        result.append(
            SystemSummary(
                system=system,
                description=description,
                questions=count,
                accuracy=mean([float(r.get("score") or 0.0) for r in rows]),
                answered=mean([float(r.get("prediction") is not None) for r in rows]),
                seconds=mean([float(r.get("seconds") or 0.0) for r in rows]),
                tokens=mean([float(r.get("tokens") or 0) for r in rows]),
                errors=sum(r.get("error") is not None and r.get("prediction") is None for r in rows),
            )
        )
    return result


def _description(config: dict[str, Any]) -> str:
    if config.get("kind") == "student":
        adapter = config.get("adapter")
        return f"student {config.get('base')}" + (f" + {adapter}" if adapter else " (no adapter)")
    if config.get("kind") == "teacher":
        return f"programs by {config.get('model_name') or config.get('model')}, k = {config.get('k')}"
    return "?"


def summary_table(summaries: Sequence[SystemSummary]) -> str:
    """The systems side by side, as a Markdown table."""
    lines = [
        "| system | questions | accuracy | answered | s / question | tokens / question | errors | what |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s.system} | {s.questions} | {100 * s.accuracy:.1f}% | {100 * s.answered:.1f}% | {s.seconds:.2f} | "
            f"{s.tokens:.0f} | {s.errors} | {s.description} |"
        )
    return "\n".join(lines)


def write_summary(out: str | os.PathLike[str], summaries: Sequence[SystemSummary]) -> None:
    """``summary.json`` and ``summary.md`` in ``out``."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(
        json.dumps([s.to_dict() for s in summaries], indent=2) + "\n", encoding="utf-8"
    )
    note = "Counted on the questions every system answered; accuracy with each question's official metric.\n"
    (folder / "summary.md").write_text(summary_table(summaries) + "\n\n" + note, encoding="utf-8")
