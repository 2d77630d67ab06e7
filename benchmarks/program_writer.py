"""A distilled program writer against its base, on questions about images the training never saw.

Reads a ``vpd synthesize`` run, the writer ``vpd train-writer`` tuned on it, and the run's
dataset. The questions about images none of the run's questions is about are answered
twice with ``vpd.solve``: once with the base model and once with the tuned writer, both
run by the ``transformers`` backend in the same dtype, with the same prompt (the
``n_examples`` the writer was trained with), k = 1, greedy, no repairs and no fallback, so
every number is the writer's own. Printed per writer:

* valid program: the reply was a program that passed vpd's checks;
* ran: it ran to an answer without an error;
* accuracy with the dataset's metric (a question without an answer scores 0);
* seconds per question (LLM and tools) and tokens written;

and the writer's training cost from its ``vpd_train.json``.

    vpd train-writer runs/vqav2-mini-k5 --base qwen2.5-coder-0.5b.gguf --out runs/writer --precision bf16
    python benchmarks/program_writer.py --run runs/vqav2-mini-k5 --writer runs/writer --n 40

The data defaults to ``../shared/data/vqav2-mini/data.json`` beside the checkout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from verified_examples import DATA, held_out

from vpd.distill import Dataset, load_dataset, score
from vpd.distill.runs import read_records
from vpd.solve import Solver
from vpd.tools.backends.transformers_llm import TransformersChat
from vpd.tools.config import ToolkitConfig
from vpd.tools.toolkit import Toolkit


def answer_all(solver: Solver, data: Dataset, label: str) -> list[dict[str, Any]]:
    """Answer every question with one program; a row per question."""
    rows = []
    for i, example in enumerate(data.examples, 1):
        started = time.perf_counter()
        solution = solver.solve(example.image, example.question, fallback=False)
        candidate = solution.candidates[0] if solution.candidates else None
        valid = candidate is not None and candidate.sample.ok
        ran = valid and candidate.execution is not None and candidate.execution.ok and candidate.answer is not None
        rows.append(
            {
                "id": example.id,
                "question": example.question,
                "valid": valid,
                "ran": ran,
                "answer": solution.answer,
                "score": 0.0 if solution.answer is None else score(example.metric, solution.answer, example.answers),
                "error": None if candidate is None or ran else (candidate.sample.error or str(solution.error)),
                "program": None if candidate is None else candidate.sample.program,
                "seconds": time.perf_counter() - started,
                "llm_seconds": solution.timings.llm,
                "tool_seconds": solution.timings.tools,
                "completion_tokens": solution.timings.completion_tokens,
            }
        )
        accuracy, valid = statistics.fmean(r["score"] for r in rows), sum(r["valid"] for r in rows)
        print(f"  [{label}] {i}/{len(data)}  valid {valid}  accuracy {accuracy:.1%}", flush=True)
    return rows


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        f"{'writer':<8}  {'questions':>9}  {'valid program':>13}  {'ran':>6}  {'accuracy':>8}  "
        f"{'s/question':>10}  {'LLM s':>6}  {'tokens':>6}"
    ]
    for label, rows in results.items():
        n = len(rows)

        def mean(key: str, rows: list[dict[str, Any]] = rows) -> float:
            return statistics.fmean(float(r[key]) for r in rows)

        lines.append(
            f"{label:<8}  {n:>9}  {mean('valid'):>13.1%}  {mean('ran'):>6.1%}  {mean('score'):>8.1%}  "
            f"{mean('seconds'):>10.1f}  {mean('llm_seconds'):>6.1f}  {mean('completion_tokens'):>6.0f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, type=Path, help="the synthesis run the writer was trained on")
    parser.add_argument("--writer", required=True, type=Path, help="the folder `vpd train-writer` wrote")
    parser.add_argument("--data", type=Path, default=DATA, help="the run's dataset (default: vqav2-mini)")
    parser.add_argument("--n", type=int, default=40, help="held-out questions (default 40)")
    parser.add_argument("--dtype", default="bfloat16", help="both writers' dtype (default bfloat16)")
    parser.add_argument("--toolkit", default="offline")
    parser.add_argument("--json", type=Path, default=None, help="also write every answer here")
    args = parser.parse_args()

    record = json.loads((args.writer / "vpd_train.json").read_text())
    if not record.get("finished"):
        raise SystemExit(f"{args.writer} is not a finished writer: rerun `vpd train-writer` to finish it.")
    n_examples = int(record["identity"]["n_examples"])
    records = list(read_records(args.run / "records.jsonl"))
    rest = held_out(load_dataset(args.data), records).limit(args.n)
    print(
        f"Writer: {record['train_rows']} verified programs of {args.run}, {record['steps']} steps in "
        f"{record['seconds'] / 60:.1f} min on this machine; base {record['base']}.\n"
        f"{len(rest)} held-out questions on images the run never saw; n_examples = {n_examples}, "
        f"k = 1, greedy, no repairs, {args.dtype}."
    )
    toolkit = Toolkit(ToolkitConfig(preset=args.toolkit))
    results: dict[str, list[dict[str, Any]]] = {}
    for label, model in (("base", record["base"]), ("tuned", str(args.writer))):
        writer = TransformersChat(model, dtype=args.dtype)
        solver = Solver(k=1, toolkit=toolkit, llm=writer, max_repairs=0, n_examples=n_examples, cache=False)
        results[label] = answer_all(solver, rest, label)
    print()
    print(table(results))
    base, tuned = ({r["id"]: r["score"] for r in results[k]} for k in ("base", "tuned"))
    better = sum(tuned[i] > base[i] for i in base)
    worse = sum(tuned[i] < base[i] for i in base)
    print(f"\nPer question: tuned better on {better}, worse on {worse}, the same on {len(base) - better - worse}.")
    if args.json is not None:
        args.json.write_text(json.dumps({"training": record, "results": results}, indent=1, default=str))


if __name__ == "__main__":
    main()
