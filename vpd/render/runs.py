"""Synthesis and evaluation runs, read for viewing: per-example outcomes, summaries, comparisons.

A run is a directory the pipeline wrote (see :mod:`vpd.distill.runs`):

* a **synthesis** run (``vpd synthesize``): ``run.json`` of kind ``synthesis`` and
  ``records.jsonl``, one record per example with its k candidate programs and their traces;
* an **evaluation** system (``vpd eval``): ``run.json`` of kind ``eval`` and
  ``predictions.jsonl``, one prediction per question with its per-question score;
* an **evaluation** folder: the folder ``vpd eval --out`` wrote, holding one system per
  subfolder; it opens as all of its systems, side by side.

:func:`load_runs` reads them into :class:`Run` objects; ``vpd show RUN [RUN...]``
(:func:`vpd.render.run_report.write_run_report`) lays them out, and a :class:`Run` shows
itself in a notebook. Reading only: nothing here imports the pipeline.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from vpd.errors import TraceFileError
from vpd.render.html import esc, stylesheet
from vpd.traces.records import read_records

__all__ = [
    "EXAMPLE_OUTCOMES",
    "ComparedRow",
    "Example",
    "Run",
    "RunOutcome",
    "compare_rows",
    "load_run",
    "load_runs",
    "render_runs",
    "summary_html",
    "verified_chart",
]

#: What became of an example in a run, in the order they are shown.
#: Synthesis: ``verified`` (a program got it right), ``wrong`` (programs answered, none
#: right), ``failed`` (no program answered), ``error`` (the example itself failed, e.g. its
#: image). Evaluation: ``correct`` (score ≥ the run's threshold), ``partial`` (some
#: credit: VQA's 0.3, 0.6), ``wrong``, ``no-answer``, ``error``.
EXAMPLE_OUTCOMES = ("verified", "correct", "partial", "wrong", "failed", "no-answer", "error")

#: Score at or above which an evaluation answer counts as correct (synthesis's default).
CORRECT_SCORE = 0.9


@dataclass(frozen=True)
class RunOutcome:
    """One example in one run.

    Attributes:
        outcome: See :data:`EXAMPLE_OUTCOMES`.
        score: The metric's score of the answer that counts (the chosen program, the
            prediction), or None.
        prediction: That answer, as text.
        error: Why there is none (the example's or the run's error), or None.
        candidates: Synthesis: each candidate's outcome (``correct``, ``wrong``,
            ``no-code``, an error kind...), in sample order.
        chosen: Synthesis: the index of the chosen candidate.
        record: The record as the run wrote it.
    """

    outcome: str
    score: float | None
    prediction: str | None
    error: str | None
    candidates: tuple[str, ...] = ()
    chosen: int | None = None
    record: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Example:
    """A question as the runs saw it: its id, text, image and references."""

    id: str
    question: str
    image: str | None
    references: tuple[str, ...]
    metric: str | None


@dataclass
class Run:
    """One synthesis run or evaluation system, read for viewing.

    Attributes:
        name: Its name (the folder's; an evaluation system's own name).
        kind: ``"synthesis"`` or ``"eval"``.
        path: Its folder.
        config: Its ``run.json`` configuration.
        examples: The examples in the order the run wrote them.
        outcomes: What became of each, by example id.
    """

    name: str
    kind: str
    path: Path
    config: dict[str, Any]
    examples: list[Example]
    outcomes: dict[str, RunOutcome]

    @property
    def k(self) -> int:
        """Synthesis: the most candidates an example has (0 for an evaluation)."""
        return max((len(o.candidates) for o in self.outcomes.values()), default=0)

    def counts(self) -> dict[str, int]:
        """Examples per outcome, in :data:`EXAMPLE_OUTCOMES` order."""
        found = Counter(o.outcome for o in self.outcomes.values())
        return {name: found[name] for name in EXAMPLE_OUTCOMES if found[name]}

    def candidate_counts(self) -> dict[str, int]:
        """Synthesis: candidates per outcome, most common first."""
        found = Counter(c for o in self.outcomes.values() for c in o.candidates)
        return dict(found.most_common())

    def verified_at(self) -> list[int]:
        """Synthesis: ``verified_at()[j - 1]`` examples have a correct program among their first j samples."""
        k = self.k
        at = [0] * k
        for outcome in self.outcomes.values():
            first = next((i for i, c in enumerate(outcome.candidates) if c == "correct"), None)
            for j in range(first if first is not None else k, k):
                at[j] += 1
        return at

    def accuracy(self) -> float | None:
        """The mean score over the examples (an error scores 0), or None without examples."""
        if not self.outcomes:
            return None
        return sum(o.score or 0.0 for o in self.outcomes.values()) / len(self.outcomes)

    def summary(self) -> dict[str, Any]:
        """What the run's summary bar shows (JSON-safe)."""
        data: dict[str, Any] = {
            "examples": len(self.outcomes),
            "outcomes": self.counts(),
            "accuracy": self.accuracy(),
        }
        if self.kind == "synthesis":
            data.update(candidates=self.candidate_counts(), verified_at=self.verified_at(), k=self.k)
        else:
            records = [o.record for o in self.outcomes.values()]
            seconds = [float(r["seconds"]) for r in records if isinstance(r.get("seconds"), (int, float))]
            tokens = [float(r["tokens"]) for r in records if isinstance(r.get("tokens"), (int, float))]
            data.update(
                seconds=sum(seconds) / len(seconds) if seconds else None,
                tokens=sum(tokens) / len(tokens) if tokens else None,
            )
        return data

    def _repr_html_(self) -> str:
        """Notebook view: the summary and a browsable table (see :func:`vpd.render.run_report.render_runs`)."""
        return render_runs([self])

    def __repr__(self) -> str:
        counts = ", ".join(f"{name} {count}" for name, count in self.counts().items())
        return f"Run({self.name!r}, {self.kind}, {len(self.outcomes)} examples: {counts or 'none'})"


def load_runs(paths: Iterable[str | os.PathLike[str]]) -> list[Run]:
    """Read runs (see the module docstring); an evaluation folder gives all of its systems.

    Raises:
        TraceFileError: A path is not a run, or its files are not what the pipeline writes
            (the message names the file and what to do).
    """
    runs: list[Run] = []
    for path in paths:
        folders = _run_folders(Path(path))
        if not folders:
            raise TraceFileError(
                f"{path} is not a run: expected a folder written by vpd synthesize or vpd eval (with run.json and "
                "records.jsonl or predictions.jsonl), or vpd eval's output folder. For files of traces, pass "
                "the .jsonl files themselves."
            )
        runs.extend(load_run(folder) for folder in folders)
    names = Counter(run.name for run in runs)
    for run in runs:  # two runs called "teacher" (from two evaluation folders) get their parents' names
        if names[run.name] > 1:
            run.name = f"{run.path.parent.name}/{run.name}"
    return runs


def load_run(path: str | os.PathLike[str]) -> Run:
    """Read one run folder (a synthesis run or one evaluation system).

    Raises:
        TraceFileError: It is not one, or a file is malformed.
    """
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    config_path = folder / "run.json"
    try:
        meta = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TraceFileError(f"{folder} has no run.json: it is not a run folder written by vpd.") from None
    except (OSError, ValueError) as exc:
        raise TraceFileError(f"{config_path}: cannot read it ({exc}).") from None
    kind = meta.get("kind") if isinstance(meta, dict) else None
    raw_config = meta.get("config") if isinstance(meta, dict) else None
    config: dict[str, Any] = raw_config if isinstance(raw_config, dict) else {}
    if kind == "synthesis":
        records = read_records(folder / "records.jsonl")
        rows = [(_example(r, n), _synthesis_outcome(r)) for n, r in enumerate(records, 1)]  # verdicts included
    elif kind == "eval":
        records = read_records(folder / "predictions.jsonl")
        rows = [(_example(r, n), _eval_outcome(r)) for n, r in enumerate(records, 1)]
    else:
        raise TraceFileError(f"{config_path}: a run of kind {kind!r}; vpd show opens 'synthesis' and 'eval' runs.")
    examples: list[Example] = []
    outcomes: dict[str, RunOutcome] = {}
    for example, outcome in rows:
        if example.id not in outcomes:
            examples.append(example)
        outcomes[example.id] = outcome  # a resumed run's later record of an example wins
    return Run(folder.resolve().name, str(kind), folder, config, examples, outcomes)


def _run_folders(path: Path) -> list[Path]:
    if path.is_file() and path.name in ("records.jsonl", "predictions.jsonl", "run.json"):
        path = path.parent
    if not path.is_dir():
        return []
    if (path / "run.json").is_file():
        return [path]
    # vpd eval's output: one system per subfolder (with summary.json beside them)
    return sorted(p for p in path.iterdir() if p.is_dir() and (p / "run.json").is_file() and _kind(p) == "eval")


def _kind(folder: Path) -> str | None:
    try:
        meta = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta.get("kind") if isinstance(meta, dict) else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _example(record: dict[str, Any], position: int) -> Example:
    references = record.get("references")
    refs = [str(r) for r in references] if isinstance(references, list) else []
    ident = record.get("id")
    return Example(
        # A record without an id is its own example (never merged with another such record).
        id=str(ident) if ident is not None else f"(no id: record {position})",
        question=str(record.get("question") or ""),
        image=record.get("image") if isinstance(record.get("image"), str) else None,
        references=tuple(dict.fromkeys(refs)),  # VQA's ten answers, each once
        metric=record.get("metric") if isinstance(record.get("metric"), str) else None,
    )


def score_of(value: Any) -> float | None:
    """A record's score as a finite float, or None (a missing, non-numeric, huge or NaN score)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _synthesis_outcome(record: dict[str, Any]) -> RunOutcome:
    listed = record.get("candidates")
    candidates = [c for c in (listed if isinstance(listed, list) else []) if isinstance(c, dict)]
    kinds = tuple(str(c.get("outcome")) for c in candidates)
    chosen = record.get("chosen") if isinstance(record.get("chosen"), int) else None
    answered = [c for c in candidates if c.get("outcome") in ("correct", "wrong")]
    shown = next((c for c in candidates if c.get("index") == chosen), None) if chosen is not None else None
    if shown is None and answered:
        shown = max(answered, key=lambda c: score_of(c.get("score")) or 0.0)
    error = _text(record.get("error"))
    if record.get("verified"):
        outcome = "verified"
    elif error is not None:
        outcome = "error"
    else:
        outcome = "wrong" if answered else "failed"
    if outcome == "failed" and candidates:
        error = "; ".join(dict.fromkeys(f"{k}" for k in kinds))
    return RunOutcome(
        outcome=outcome,
        score=score_of(record.get("score")),
        prediction=_text(shown.get("prediction")) if shown else None,
        error=error,
        candidates=kinds,
        chosen=chosen,
        record=record,
    )


def _eval_outcome(record: dict[str, Any]) -> RunOutcome:
    score = score_of(record.get("score"))
    prediction = _text(record.get("prediction"))
    error = _text(record.get("error"))
    if error is not None:
        outcome = "error"
    elif prediction is None:
        outcome = "no-answer"
    elif score is not None and score >= CORRECT_SCORE:
        outcome = "correct"
    elif score:
        outcome = "partial"
    else:
        outcome = "wrong"
    return RunOutcome(outcome=outcome, score=score, prediction=prediction, error=error, record=record)


class ComparedRow(NamedTuple):
    """One example across runs (see :func:`compare_rows`).

    Attributes:
        example: The example (as the first run that has it saw it).
        outcomes: Each run's outcome on it, None where a run lacks it.
        differ: Whether the runs differ on it.
        questions: The different questions the runs asked under this id, when they are not
            all the same (runs of different data matched by id): empty otherwise.
    """

    example: Example
    outcomes: list[RunOutcome | None]
    differ: bool
    questions: tuple[str, ...] = ()


def compare_rows(runs: Sequence[Run]) -> list[ComparedRow]:
    """Every example of the runs, each run's outcome on it, and whether the runs differ on it.

    Examples come in the first run's order, then the others' new ones, matched by id. Runs
    differ on an example when their scores (no score counts as 0) or their answers do, when
    one lacks it, or when they asked different questions under its id.
    """
    examples: dict[str, list[Example]] = {}
    for run in runs:
        for example in run.examples:
            examples.setdefault(example.id, []).append(example)
    rows = []
    for ident, seen in examples.items():
        outcomes = [run.outcomes.get(ident) for run in runs]
        keys = {None if o is None else (o.score or 0.0, (o.prediction or "").strip().lower()) for o in outcomes}
        questions = tuple(dict.fromkeys(e.question for e in seen))
        mismatch = questions if len(questions) > 1 else ()
        rows.append(ComparedRow(seen[0], outcomes, len(runs) > 1 and (len(keys) > 1 or bool(mismatch)), mismatch))
    return rows


# -- the notebook view -------------------------------------------------------------------------

_MARK = {
    "verified": ("✓", "vpd-ok"),
    "correct": ("✓", "vpd-ok"),
    "partial": ("½", "vpd-warn"),
    "wrong": ("✗", "vpd-bad"),
    "failed": ("!", "vpd-bad"),
    "no-answer": ("\u2013", "vpd-warn"),
    "error": ("!", "vpd-bad"),
}


def summary_html(run: Run) -> str:
    """A run's summary bar (static HTML): outcomes, accuracy, candidates, verified@k chart."""
    summary = run.summary()
    parts = [f"<b>{esc(run.name)}</b> <span class='vpd-muted'>{esc(run.kind)}</span>"]
    parts.append(f"<span>{summary['examples']} examples</span>")
    for name, count in summary["outcomes"].items():
        cls = _MARK.get(name, ("", "vpd-muted"))[1]
        parts.append(f'<span class="vpd-badge {cls}">{esc(name)} {count}</span>')
    if summary["accuracy"] is not None:
        parts.append(f"<span>score {summary['accuracy'] * 100:.1f}%</span>")
    if run.kind == "synthesis" and summary["candidates"]:
        cands = " · ".join(f"{esc(k)} {v}" for k, v in summary["candidates"].items())
        parts.append(f'<span class="vpd-muted">candidates: {cands}</span>')
    chart = verified_chart(summary.get("verified_at") or [], summary["examples"])
    return f'<div class="vpd-facts">{"".join(parts)}</div>{chart}'


def verified_chart(verified_at: Sequence[int], examples: int, width: int = 260, height: int = 64) -> str:
    """An inline SVG bar chart of the verified share at k = 1…K (empty without candidates)."""
    if not verified_at or not examples:
        return ""
    k = len(verified_at)
    pad, top = 26, 14
    bar = (width - pad - 6) / k
    parts = [
        f'<svg class="vpd-chart" role="img" width="{width}" height="{height + 16}" viewBox="0 0 {width} {height + 16}">'
        f"<title>verified share at k = 1..{k}: "
        + ", ".join(f"k={j} {c / examples:.0%}" for j, c in enumerate(verified_at, 1))
        + "</title>"
    ]
    for j, count in enumerate(verified_at):
        share = count / examples
        h = max(1.0, share * (height - top))
        x = pad + j * bar
        y = height - h
        parts.append(f'<rect x="{x + 2:.1f}" y="{y:.1f}" width="{bar - 4:.1f}" height="{h:.1f}" class="vpd-bar"/>')
        parts.append(f'<text x="{x + bar / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle">{share:.0%}</text>')
        parts.append(f'<text x="{x + bar / 2:.1f}" y="{height + 12}" text-anchor="middle">{j + 1}</text>')
    parts.append(f'<text x="0" y="{height + 12}">k</text></svg>')
    return "".join(parts)


def render_runs(runs: Sequence[Run], *, limit: int = 100) -> str:
    """Notebook HTML of runs: each run's summary and chart, then a table of the first examples.

    The table has the first ``limit`` examples (those the runs differ on first, when several
    are compared) with each run's outcome, answer and score; the rest are counted, and
    ``vpd show`` browses all of them.
    """
    rows = compare_rows(runs)
    if len(runs) > 1:
        rows.sort(key=lambda row: not row[2])
    head = "".join(f'<div class="vpd-run">{summary_html(run)}</div>' for run in runs)
    names = "".join(f"<th>{esc(run.name)}</th>" for run in runs)
    body = []
    for example, outcomes, differ, questions in rows[:limit]:
        cells = []
        for outcome in outcomes:
            if outcome is None:
                cells.append('<td class="vpd-muted">not in this run</td>')
                continue
            mark, cls = _MARK.get(outcome.outcome, ("?", "vpd-muted"))
            score = "" if outcome.score is None else f" {outcome.score:.2f}"
            answer = esc(outcome.prediction) if outcome.prediction is not None else esc(outcome.error or "")
            strip = "".join(
                f'<span class="vpd-cand vpd-c-{esc(c)}" title="{esc(c)}"></span>' for c in outcome.candidates
            )
            cells.append(
                f'<td><span class="vpd-badge {cls}" title="{esc(outcome.outcome)}">{mark}{score}</span> '
                f"<code>{answer}</code> {strip}</td>"
            )
        refs = esc(", ".join(example.references[:5]))
        cls = ' class="vpd-differ"' if differ else ""
        asked = esc(example.question) + (
            f' <span class="vpd-badge vpd-warn" title="{esc(" | ".join(q[:300] for q in questions))}">'
            "different questions</span>"
            if questions
            else ""
        )
        body.append(f"<tr{cls}><td>{esc(example.id)}</td><td>{asked}</td>{''.join(cells)}"
                    f'<td class="vpd-muted">{refs}</td></tr>')  # fmt: skip
    more = len(rows) - limit
    tail = (
        f'<div class="vpd-muted">… {more} more examples: <code>vpd show {esc(" ".join(str(r.path) for r in runs))}'
        "</code> browses all of them.</div>"
        if more > 0
        else ""
    )
    table = (
        f'<table class="vpd-cands vpd-runs"><tr><th>id</th><th>question</th>{names}<th>references</th></tr>'
        f"{''.join(body)}</table>"
    )
    return f'<div class="vpd"><style>{stylesheet()}</style>{head}{table}{tail}</div>'
