"""Verified programs as worked examples, and typed voting: what each does to accuracy.

Reads a finished ``vpd synthesize`` run and its dataset, and measures two things.

1. **Worked examples.** The dataset is split by image: the images of the run's questions
   form the synthesis side, and questions about the *other* images (none of them seen by
   the run, so no question or picture leaks) are answered twice with ``vpd.solve``, once
   with the worked examples shipped with vpd and once with the run's verified programs
   (``ExampleLibrary.from_run``). Printed: the share of questions with a program answer,
   accuracy with the dataset's metric, and time per question.
2. **Typed voting.** Every question of the run has k sampled answers; they are voted with
   and without the type check (``vote(answers, question)``: a yes/no question answered
   with a colour, a counting question answered with text, a "what" question answered
   yes/no lose their vote), at k = 3 and k = K, and the winner is scored. The same is done
   on the held-out answers when ``--k`` is above 1.

    python benchmarks/verified_examples.py --run runs/vqav2-mini-k5        # embedded model
    python benchmarks/verified_examples.py --run RUN --n 60 --k 1 --llm openai/gpt-4o-mini

The data defaults to ``../shared/data/vqav2-mini/data.json`` beside the checkout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vpd.distill import Dataset, load_dataset, score
from vpd.distill.runs import read_records
from vpd.programs.library import ExampleLibrary
from vpd.solve import Solver
from vpd.tools.config import ToolkitConfig
from vpd.tools.toolkit import Toolkit
from vpd.traces.answers import vote

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "vqav2-mini" / "data.json"


def held_out(data: Dataset, records: Sequence[dict[str, Any]]) -> Dataset:
    """The questions about images none of the run's questions is about."""
    seen_ids = {record["id"] for record in records}
    seen_images = {example.image for example in data.examples if example.id in seen_ids}
    rest = tuple(example for example in data.examples if example.image not in seen_images)
    return Dataset(f"{data.name} (held out)", rest)


def voted_accuracy(rows: Sequence[tuple[str, str, Sequence[str], Sequence[str | None]]], k: int, typed: bool) -> float:
    """Mean score of the vote over the first ``k`` answers of each (question, metric, references, answers) row."""
    scores = []
    for question, metric, references, answers in rows:
        winner, _ = vote(list(answers[:k]), question if typed else None)
        scores.append(0.0 if winner is None else score(metric, winner, references))
    return statistics.fmean(scores) if scores else float("nan")


def typed_voting_table(
    title: str, rows: Sequence[tuple[str, str, Sequence[str], Sequence[str | None]]], ks: Sequence[int]
) -> str:
    lines = [f"{title} ({len(rows)} questions)", f"{'k':>3}  {'plain vote':>10}  {'typed vote':>10}  {'change':>7}"]
    for k in ks:
        plain, typed = voted_accuracy(rows, k, False), voted_accuracy(rows, k, True)
        lines.append(f"{k:>3}  {plain:>10.1%}  {typed:>10.1%}  {(typed - plain) * 100:>+6.1f}p")
    return "\n".join(lines)


def solve_all(solver: Solver, data: Dataset, label: str) -> dict[str, Any]:
    """Answer every question; returns per-question rows and the totals."""
    rows = []
    started = time.perf_counter()
    for i, example in enumerate(data.examples, 1):
        solution = solver.solve(example.image, example.question, fallback=False)
        answers = [c.answer for c in solution.candidates]
        value = 0.0 if solution.answer is None else score(example.metric, solution.answer, example.answers)
        rows.append(
            {
                "id": example.id,
                "question": example.question,
                "answer": solution.answer,
                "score": value,
                "answers": answers,
                "program_answered": solution.source == "program",
                "seconds": solution.timings.total,
            }
        )
        mean = statistics.fmean(r["score"] for r in rows)
        print(f"  [{label}] {i}/{len(data)}  accuracy so far {mean:.1%}", flush=True)
    return {"rows": rows, "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, type=Path, help="a finished vpd synthesize run directory")
    parser.add_argument("--data", type=Path, default=DATA, help="the run's dataset (default: vqav2-mini)")
    parser.add_argument("--n", type=int, default=60, help="held-out questions to answer (default 60)")
    parser.add_argument("--k", type=int, default=1, help="programs per held-out question (default 1)")
    parser.add_argument("--llm", default=None, help="the program writer (default: the embedded model)")
    parser.add_argument("--api-base", default=None)
    parser.add_argument("--toolkit", default="offline")
    parser.add_argument("--json", type=Path, default=None, help="also write every answer here")
    args = parser.parse_args()

    data = load_dataset(args.data)
    records = list(read_records(args.run / "records.jsonl"))
    if not records:
        raise SystemExit(f"{args.run} has no finished questions.")
    run_k = max(len(r["candidates"]) for r in records)

    vote_rows = [
        (r["question"], r["metric"], r["references"], [c["prediction"] for c in r["candidates"]])
        for r in records
        if r["candidates"]
    ]
    print(
        typed_voting_table(f"Typed voting on the run's k = {run_k} samples", vote_rows, sorted({min(3, run_k), run_k}))
    )
    print()

    rest = held_out(data, records).limit(args.n)
    if not rest:
        raise SystemExit(f"No held-out questions: every image of {args.data} has questions in the run.")
    verified = ExampleLibrary.from_run(args.run)
    print(
        f"Worked examples: {len(verified)} verified programs from {len(records)} questions; "
        f"{len(rest)} held-out questions on images the run never saw, k = {args.k}"
    )
    toolkit = Toolkit(ToolkitConfig(preset=args.toolkit))
    results = {}
    for label, library in (("built-in", None), ("verified", verified)):
        solver = Solver(k=args.k, toolkit=toolkit, llm=args.llm, api_base=args.api_base, examples=library)
        results[label] = solve_all(solver, rest, label)

    print()
    print(f"{'examples':<10}  {'program answered':>16}  {'accuracy':>8}  {'s/question':>10}")
    for label, result in results.items():
        rows = result["rows"]
        answered = sum(r["program_answered"] for r in rows) / len(rows)
        accuracy = statistics.fmean(r["score"] for r in rows)
        print(f"{label:<10}  {answered:>16.1%}  {accuracy:>8.1%}  {result['seconds'] / len(rows):>10.1f}")
    if args.k > 1:
        for label, result in results.items():
            held = [
                (e.question, e.metric, e.answers, r["answers"])
                for e, r in zip(rest.examples, result["rows"], strict=True)
            ]
            print()
            print(typed_voting_table(f"Typed voting on held-out answers ({label} examples)", held, [args.k]))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
