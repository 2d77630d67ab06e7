"""``vpd export RUN_DIR --out DIR``: the training set of a distillation run.

Writes ``DIR/train.jsonl`` (rationale rows and label-only rows), ``DIR/hf/`` (a Hugging
Face dataset, unless ``--no-hf``) and ``DIR/README.md`` (a dataset card); see
:mod:`vpd.distill.export`.
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Add the ``export`` subcommand to the ``vpd`` parser's subparsers."""
    parser = sub.add_parser(
        "export",
        help="write the training set of a synthesis run (JSONL, a Hugging Face dataset, a dataset card)",
        description="Write the training set of a `vpd synthesize` (and `vpd rewrite`) run: rows with a verified "
        "rationale, and label-only rows for the other questions.",
    )
    parser.add_argument("run_dir", help="the run directory of `vpd synthesize`")
    parser.add_argument("--out", required=True, metavar="DIR", help="the folder to write")
    parser.add_argument("--no-hf", action="store_true", help="no Hugging Face dataset (JSONL and card only)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``vpd export``; returns the exit code (0 done)."""
    from vpd.distill.export import export_run

    summary = export_run(args.run_dir, args.out, hf=not args.no_hf)
    out.write(
        f"{summary.rows} rows: {summary.with_rationale} with a rationale, {summary.label_only} label-only "
        f"({summary.rejected} rationales rejected, {summary.not_rewritten} not rewritten); "
        f"{summary.left_out} left out. Wrote {summary.path}/train.jsonl"
        + ("" if args.no_hf else f", {summary.path}/hf")
        + f" and {summary.path}/README.md\n"
    )
    return 0
