"""``vpd eval DATA --out DIR (--teacher [solve options] | --student DIR ...)``: score systems side by side.

Each system's predictions go to ``DIR/<system>/predictions.jsonl`` (resumable); the
summary (``DIR/summary.md`` and ``summary.json``) compares every system in DIR on the
questions all of them answered. See :mod:`vpd.distill.evaluate`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from vpd.cli.options import (
    add_dataset_options,
    add_llm_options,
    add_toolkit_option,
    dataset_from_args,
    toolkit_from_arg,
)
from vpd.errors import InvalidArgumentError

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Add the ``eval`` subcommand to the ``vpd`` parser's subparsers."""
    parser = sub.add_parser(
        "eval",
        help="score the program pipeline (teacher) and distilled students on a labelled dataset",
        description="Answer a labelled dataset's questions with the program pipeline (--teacher) and/or students "
        "(--student, repeatable: an adapter folder of `vpd train`, or a plain model for a before-distillation "
        "baseline), score them with the dataset's official metric, and print them side by side. Rerun to resume.",
    )
    add_dataset_options(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="the evaluation folder (one subfolder per system)")
    parser.add_argument("--teacher", action="store_true", help="evaluate the program pipeline (vpd solve)")
    parser.add_argument(
        "--student", action="append", default=[], metavar="DIR|MODEL", help="a `vpd train` folder, or a base model"
    )
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N questions")
    parser.add_argument("--explain", action="store_true", help="students explain; their final answer is scored")
    parser.add_argument("--batch-size", type=int, default=8, help="questions per student batch (default 8)")
    parser.add_argument("--device", default="auto", help="students' device: auto, cpu, cuda...")
    teacher = parser.add_argument_group("teacher", "how the program pipeline runs (as vpd solve)")
    teacher.add_argument("--k", type=int, default=1, help="programs per question, voted (default 1)")
    add_llm_options(teacher)
    add_toolkit_option(teacher)
    teacher.add_argument("--n-examples", type=int, default=4, help="worked examples in the prompt (default 4)")
    teacher.add_argument("--timeout", type=float, default=None, help="seconds per program run")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.set_defaults(func=run)


def student_name(source: str) -> str:
    """The subfolder of a student: ``student-<folder>`` for an adapter, ``base-<name>`` for a plain model."""
    path = Path(source)
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in (path.name or str(source))).strip("-.") or "model"
    if not (path / "adapter_config.json").is_file():
        return f"base-{stem}"
    return stem if stem.startswith("student") else f"student-{stem}"


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``vpd eval``; returns the exit code (0 done)."""
    from vpd.distill.evaluate import evaluate, summary_table

    if not args.teacher and not args.student:
        raise InvalidArgumentError("Nothing to evaluate: pass --teacher and/or --student DIR.")
    names = [student_name(s) for s in args.student]
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"Two --student values share a folder name ({', '.join(names)}); rename one.")
    dataset = dataset_from_args(args)

    def progress(label: str) -> Any:
        def show(done: int, total: int) -> None:
            if not args.quiet:
                print(f"[vpd eval] {label}: {done}/{total}", file=sys.stderr, flush=True)

        return show

    summaries = []
    if args.teacher:
        from vpd.programs.sandbox import SandboxLimits
        from vpd.solve import Solver
        from vpd.tools.toolkit import current_toolkit

        solver = Solver(
            k=args.k,
            toolkit=toolkit_from_arg(args.toolkit) if args.toolkit else current_toolkit(),
            llm=args.llm,
            api_base=args.api_base,
            api_key=args.api_key,
            n_examples=args.n_examples,
            limits=SandboxLimits(timeout=args.timeout) if args.timeout else None,
        )
        summaries = evaluate(dataset, args.out, solver, limit=args.limit, progress=progress("teacher"))
    for source, name in zip(args.student, names, strict=True):
        from vpd.distill.student import Student

        adapter = (Path(source) / "adapter_config.json").is_file()
        student = (
            Student.load(adapter=source, device=args.device) if adapter else Student.load(source, device=args.device)
        )
        summaries = evaluate(
            dataset,
            args.out,
            student,
            name=name,
            limit=args.limit,
            explain=args.explain,
            batch_size=args.batch_size,
            progress=progress(name),
        )
    out.write(summary_table(summaries) + "\n")
    out.write(f"predictions: {args.out}/<system>/predictions.jsonl; summary: {args.out}/summary.md\n")
    return 0
