"""Program synthesis for distillation: k programs per labelled question, run, verified, kept.

For each example of a dataset, :func:`synthesize` samples ``k`` programs with the solve
machinery (:class:`vpd.solve.Solver`: the prompt with the nearest worked examples, the
completion cache, self-repair; identical programs run once, concurrently, sharing tool
results), scores each program's answer with the dataset's official metric
(:mod:`vpd.distill.metrics`) and keeps the correct ones. One line per finished example goes
to ``RUN_DIR/records.jsonl`` (see :mod:`vpd.distill.runs` for why it is crash-safe), with
every candidate: its program, its trace (the records-layer format), what became of it.

**Outcomes** of a candidate: ``correct`` / ``wrong`` (it answered; scored against the
labels), ``no-answer`` (it ran and returned None), ``no-code`` (the model wrote no valid
program, even after repairs: the generation error says why), or the kind of its run's
error (``runtime``, ``timeout``, ``static-check``, ``memory``, ``violation``, ``tool``...).

**Scoring**: a program's answer becomes the prediction string with
:func:`vpd.traces.normalize_answer` (``True`` -> ``"yes"``, ``2.0`` -> ``"2"``, text
stripped and lower-cased), then the metric scores it exactly as the benchmark's script
does. A candidate is correct when its score is at least ``min_score`` (default 0.9: with
VQA's ten human answers, at least three annotators gave it).

**The chosen program** of a verified example: the correct candidate with the highest
score, then the answer most candidates agree on, then the earliest sample (sample 0 is
the greedy one).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vpd.distill.metrics import score
from vpd.distill.runs import RunDirectory
from vpd.errors import ImageError, InvalidArgumentError
from vpd.traces.answers import normalize_answer
from vpd.traces.files import SYNTHESIS_VERSION

if TYPE_CHECKING:
    from vpd.distill.datasets import Dataset, Example
    from vpd.programs.completions import CompletionCache
    from vpd.programs.library import ExampleLibrary
    from vpd.programs.sandbox import Sandbox, SandboxLimits
    from vpd.solve import Candidate, Solver
    from vpd.tools.protocols import TextGenerator
    from vpd.tools.toolkit import Toolkit

__all__ = ["RECORD_VERSION", "SynthesisProgress", "SynthesisSummary", "summarize", "synthesize"]

#: The version of a synthesis record (one line of ``records.jsonl``; ``vpd show`` reads them).
RECORD_VERSION = SYNTHESIS_VERSION
#: The configuration keys that must match for a run directory to be resumed.
_IDENTITY = (
    "dataset",
    "k",
    "temperature",
    "max_repairs",
    "n_examples",
    "seed",
    "timeout",
    "min_score",
    "model",
    "toolkit",
)


@dataclass(frozen=True)
class SynthesisProgress:
    """Where a synthesis run stands (passed to the ``progress`` callback after each example).

    Attributes:
        done: Examples finished, this run and earlier ones.
        total: Examples the run covers.
        verified: Finished examples with a correct program.
        started: When this process started (``time.monotonic()``).
        done_here: Examples finished by this process (for the rate).
        outcomes: Candidates per outcome so far.
    """

    done: int
    total: int
    verified: int
    started: float
    done_here: int
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Examples per second in this process."""
        elapsed = time.monotonic() - self.started
        return self.done_here / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate (None before the first example)."""
        rate = self.rate
        return (self.total - self.done) / rate if rate > 0 else None


@dataclass(frozen=True)
class SynthesisSummary:
    """What a run directory holds (:func:`summarize`).

    Attributes:
        examples: Finished examples.
        verified: Those with a correct program.
        verified_at: ``verified_at[j - 1]``: examples with a correct program among their
            first ``j`` samples (the paper's "k = 1...5" figure).
        outcomes: Candidates per outcome.
        errors: Examples that could not be tried (their image could not be read...).
        tool_seconds: Time tools spent, over every program.
        llm_seconds: Wall time of program generation, summed over examples.
        prompt_tokens: Prompt tokens of every reply used (cached replies included).
        completion_tokens: Tokens generated, likewise.
        cached_replies: Replies served from the completion cache.
        seconds: Wall time per example, summed.
    """

    examples: int = 0
    verified: int = 0
    verified_at: tuple[int, ...] = ()
    outcomes: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    tool_seconds: float = 0.0
    llm_seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_replies: int = 0
    seconds: float = 0.0

    @property
    def verified_share(self) -> float:
        """The share of examples with a correct program."""
        return self.verified / self.examples if self.examples else 0.0

    def table(self) -> str:
        """The summary as text (what ``vpd synthesize`` prints at the end)."""
        lines = [f"examples: {self.examples}   verified: {self.verified} ({100 * self.verified_share:.1f}%)"]
        if self.verified_at:
            lines.append("verified share with the first k samples:")
            for j, count in enumerate(self.verified_at, start=1):
                share = count / self.examples if self.examples else 0.0
                lines.append(f"  k = {j}: {count:5d}  {100 * share:5.1f}%  {'#' * round(40 * share)}")
        if self.outcomes:
            lines.append("candidates: " + ", ".join(f"{kind} {n}" for kind, n in sorted(self.outcomes.items())))
        if self.errors:
            lines.append(f"examples not tried (see their records' error): {self.errors}")
        lines.append(
            f"time per example: {self.seconds / max(1, self.examples):.2f} s; tools {self.tool_seconds:.1f} s, "
            f"LLM {self.llm_seconds:.1f} s in all; tokens {self.prompt_tokens} prompt + {self.completion_tokens} "
            f"generated; cached replies {self.cached_replies}"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (``summary.json``)."""
        return {**dataclasses.asdict(self), "verified_share": self.verified_share}


def synthesize(
    dataset: Dataset,
    out: str | Path,
    *,
    k: int = 5,
    llm: TextGenerator | str | None = None,
    api_base: str | None = None,
    api_key: str | None = None,
    toolkit: Toolkit | None = None,
    examples: ExampleLibrary | None = None,
    temperature: float = 0.7,
    max_repairs: int = 2,
    n_examples: int = 4,
    seed: int = 0,
    limits: SandboxLimits | None = None,
    min_score: float = 0.9,
    limit: int | None = None,
    jobs: int = 2,
    cache: CompletionCache | bool | None = None,
    sandbox: Sandbox | None = None,
    progress: Callable[[SynthesisProgress], None] | None = None,
) -> SynthesisSummary:
    """Sample, run and verify ``k`` programs per example; append a record per example to ``out``.

    Rerunning with the same ``out`` resumes: finished examples are skipped. The run's
    configuration is stored in ``out/run.json``; resuming with another one is an error.

    Args:
        dataset: The labelled questions (:func:`vpd.distill.load_dataset`).
        out: The run directory.
        k: Programs sampled per question (the paper samples 5).
        llm, api_base, api_key: The model that writes programs (as :func:`vpd.solve`).
        toolkit: The vision tools (default: the current toolkit).
        examples: Worked examples for the prompt (default: the built-in library).
        temperature, max_repairs, n_examples, seed, cache: As :func:`vpd.solve`.
        limits: Sandbox limits per program.
        min_score: The metric score from which a program counts as correct.
        limit: Only the first ``limit`` examples of the dataset.
        jobs: Examples worked on at once (their programs run concurrently in any case).
        sandbox: The sandbox (default: the process-wide one).
        progress: Called after each finished example.

    Returns:
        The summary of everything in the run directory, earlier runs included; it is also
        written to ``out/summary.json`` and ``out/summary.txt``.

    Raises:
        InvalidArgumentError: A bad argument.
        ConfigError: ``out`` holds a run with another configuration, or another process works in it.
        BackendUnavailable, BackendError: The LLM cannot be reached (finished examples are kept).
    """
    from vpd.programs.sandbox import SandboxLimits
    from vpd.solve import Solver

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InvalidArgumentError(f"jobs must be a positive integer, got {jobs!r}.")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidArgumentError(f"limit must be a positive integer, got {limit!r}.")
    if isinstance(min_score, bool) or not isinstance(min_score, (int, float)) or not 0 < min_score <= 1:
        raise InvalidArgumentError(f"min_score must be a number in (0, 1], got {min_score!r}.")
    chosen_examples = list(dataset)[:limit] if limit is not None else list(dataset)
    limits = limits or SandboxLimits()
    with RunDirectory(out, "synthesis") as run_dir:
        chosen_ids = {example.id for example in chosen_examples}
        earlier = [record for record in run_dir.records() if str(record.get("id")) in chosen_ids]
        done = {str(record.get("id")) for record in earlier}
        solver = Solver(
            k=k,
            toolkit=toolkit,
            llm=llm,
            api_base=api_base,
            api_key=api_key,
            temperature=temperature,
            max_repairs=max_repairs,
            examples=examples,
            n_examples=n_examples,
            cache=cache,
            seed=seed,
            limits=limits,
            sandbox=sandbox,
        )
        config = {
            "dataset": dataset.name,
            "k": k,
            "temperature": temperature,
            "max_repairs": max_repairs,
            "n_examples": n_examples,
            "seed": seed,
            "timeout": limits.timeout,
            "min_score": min_score,
            "model": solver.model,
            "toolkit": repr(solver.toolkit),
            "model_name": solver.model_name,
            "examples": "built-in" if examples is None else f"{len(examples)} examples",
        }
        run_dir.settle_config(config, identity=_IDENTITY)
        pending = [example for example in chosen_examples if example.id not in done]
        _run(
            run_dir,
            solver,
            pending,
            len(chosen_examples),
            earlier,
            min_score,
            jobs,
            progress,
        )
        summary = summarize(run_dir.records(), k=k)
    _write_summary(Path(out), summary)
    return summary


def _run(
    run_dir: RunDirectory,
    solver: Solver,
    pending: Sequence[Example],
    total: int,
    earlier: Sequence[dict[str, Any]],
    min_score: float,
    jobs: int,
    progress: Callable[[SynthesisProgress], None] | None,
) -> None:
    lock = threading.Lock()
    started = time.monotonic()
    # The counts start from the finished examples, so a resumed run reports the whole run.
    state = {"done": len(earlier), "here": 0, "verified": sum(bool(r.get("verified")) for r in earlier)}
    outcomes: Counter[str] = Counter(
        str(c.get("outcome")) for r in earlier for c in r.get("candidates") or () if isinstance(c, dict)
    )

    def work(example: Example) -> None:
        record = synthesis_record(example, solver, min_score)
        with lock:
            run_dir.append(record)
            state["done"] += 1
            state["here"] += 1
            state["verified"] += bool(record["verified"])
            outcomes.update(c["outcome"] for c in record["candidates"])
            snapshot = SynthesisProgress(
                state["done"], total, state["verified"], started, state["here"], dict(outcomes)
            )
        if progress is not None:
            progress(snapshot)

    # A bounded number of examples in flight; the first failure of the LLM stops the run
    # after the examples in flight are written (rerunning resumes).
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="vpd-synthesis") as pool:
        queue = iter(pending)
        running: set[Future[None]] = set()
        failure: BaseException | None = None
        while True:
            while failure is None and len(running) < jobs:
                example = next(queue, None)
                if example is None:
                    break
                running.add(pool.submit(work, example))
            if not running:
                break
            finished, running = wait(running, return_when=FIRST_EXCEPTION)
            for future in finished:
                if future.exception() is not None and failure is None:
                    failure = future.exception()
        if failure is not None:
            raise failure


def synthesis_record(example: Example, solver: Solver, min_score: float) -> dict[str, Any]:
    """Try one example: its record (``records.jsonl`` line), whatever became of its programs."""
    started = time.perf_counter()
    base = {
        "version": RECORD_VERSION,
        "id": example.id,
        "question": example.question,
        "image": str(example.image),
        "references": list(example.answers),
        "choices": list(example.choices) if example.choices is not None else None,
        "metric": example.metric,
        "source": example.source,
    }
    try:
        solution = solver.solve(example.image, example.question, fallback=False, choices=example.choices)
    except ImageError as exc:  # the data's problem, recorded once (not retried on resume)
        return {**base, "error": f"ImageError: {exc}", "candidates": [], "chosen": None, "score": None,
                "verified": False, "seconds": time.perf_counter() - started}  # fmt: skip
    candidates = [_candidate(c, example, min_score) for c in solution.candidates]
    correct = [c for c in candidates if c["outcome"] == "correct"]
    agreement = Counter(c["prediction"] for c in candidates if c["prediction"] is not None)
    chosen = min(correct, key=lambda c: (-c["score"], -agreement[c["prediction"]], c["index"]), default=None)
    scores = [c["score"] for c in candidates if c["score"] is not None]
    return {
        **base,
        "error": None,
        "image_sha256": solution.image.sha256 if solution.image is not None else None,
        "candidates": candidates,
        "chosen": chosen["index"] if chosen is not None else None,
        "score": max(scores) if scores else None,
        "verified": chosen is not None,
        "model": solution.model_name,
        "seconds": time.perf_counter() - started,
        "timings": dataclasses.asdict(solution.timings),
    }


def _candidate(candidate: Candidate, example: Example, min_score: float) -> dict[str, Any]:
    sample, execution = candidate.sample, candidate.execution
    prediction: str | None = None
    value: float | None = None
    if sample.program is None:
        outcome, error = "no-code", sample.error
    elif execution is None:  # cannot happen: every valid program runs; kept honest all the same
        outcome, error = "worker-crash", "the program was not run"
    elif execution.error is not None:
        outcome, error = execution.error.kind, execution.error.message
    else:
        prediction = normalize_answer(execution.answer)
        if prediction is None:
            outcome, error = "no-answer", "the program returned None"
        else:
            value = score(example.metric, prediction, example.answers)
            outcome, error = ("correct" if value >= min_score else "wrong"), None
    return {
        "index": sample.index,
        "temperature": sample.temperature,
        "program": sample.program,
        "outcome": outcome,
        "error": error,
        "prediction": prediction,
        "score": value,
        "prompt_tokens": sample.prompt_tokens,
        "completion_tokens": sample.completion_tokens,
        "cached": all(a.completion.cached for a in sample.attempts) if sample.attempts else False,
        "trace": execution.trace.to_dict() if execution is not None else None,
    }


def summarize(records: Sequence[dict[str, Any]], *, k: int | None = None) -> SynthesisSummary:
    """The summary of synthesis records (a run directory's ``records.jsonl``).

    Args:
        records: The records.
        k: Samples per example (default: the most candidates any record has).
    """
    k = k or max((len(r.get("candidates") or []) for r in records), default=0)
    verified_at = [0] * k
    outcomes: Counter[str] = Counter()
    totals = Counter[str]()
    verified = errors = 0
    seconds = 0.0
    for record in records:
        candidates = record.get("candidates") or []
        verified += bool(record.get("verified"))
        errors += record.get("error") is not None
        seconds += float(record.get("seconds") or 0.0)
        outcomes.update(str(c.get("outcome")) for c in candidates)
        first_correct = min((int(c["index"]) for c in candidates if c.get("outcome") == "correct"), default=None)
        if first_correct is not None:
            for j in range(first_correct, k):
                verified_at[j] += 1
        timings = record.get("timings") or {}
        for key in ("tools", "llm", "prompt_tokens", "completion_tokens", "cached_replies"):
            totals[key] += timings.get(key) or 0
    return SynthesisSummary(
        examples=len(records),
        verified=verified,
        verified_at=tuple(verified_at),
        outcomes=dict(outcomes),
        errors=errors,
        tool_seconds=float(totals["tools"]),
        llm_seconds=float(totals["llm"]),
        prompt_tokens=int(totals["prompt_tokens"]),
        completion_tokens=int(totals["completion_tokens"]),
        cached_replies=int(totals["cached_replies"]),
        seconds=seconds,
    )


def _write_summary(out: Path, summary: SynthesisSummary) -> None:
    import json

    (out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    (out / "summary.txt").write_text(summary.table() + "\n", encoding="utf-8")
    _plot_verified_at(out / "verified_at_k.png", summary)


def _plot_verified_at(path: Path, summary: SynthesisSummary) -> None:
    """The verified share at k = 1...K as a bar chart (PNG), drawn with Pillow."""
    from PIL import Image, ImageDraw

    k = len(summary.verified_at)
    if not k or not summary.examples:
        return
    width, height, margin = 80 + 70 * k, 260, 40
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((margin, 8), "verified share with the first k samples", fill="black")
    base = height - margin
    draw.line((margin, base, width - 20, base), fill="black")
    for j, count in enumerate(summary.verified_at, start=1):
        share = count / summary.examples
        x0 = margin + 20 + 70 * (j - 1)
        top = base - int(share * (base - 40))
        draw.rectangle((x0, top, x0 + 40, base), fill=(70, 120, 200))
        draw.text((x0 + 4, top - 14), f"{100 * share:.0f}%", fill="black")
        draw.text((x0 + 10, base + 6), f"k={j}", fill="black")
    image.save(path)
