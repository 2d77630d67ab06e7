"""``vpd train-writer RUN_DIR... --base MODEL --out DIR``: distil a program writer.

LoRA on a text LLM from the verified programs of ``vpd synthesize`` runs
(:func:`vpd.distill.training.writer.train_writer`); then ``vpd solve --llm DIR`` writes
programs with it. The base may be a hub id, a folder or a ``.gguf`` file.
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from vpd.cli.train import add_train_options, config_from_args, number

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Add the ``train-writer`` subcommand to the ``vpd`` parser's subparsers."""
    parser = sub.add_parser(
        "train-writer",
        help="fine-tune a text LLM to write the programs synthesis verified (LoRA)",
        description="Fine-tune a causal LM with LoRA on the verified (question -> program) pairs of synthesis "
        "runs, prompted as `vpd solve` prompts it; then `vpd solve --llm DIR` uses it. Rerun to resume.",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories of `vpd synthesize`")
    parser.add_argument("--base", required=True, metavar="MODEL", help="hub id, folder or .gguf file")
    parser.add_argument("--out", required=True, metavar="DIR", help="where the adapter and checkpoints go")
    parser.add_argument(
        "--n-examples", type=int, default=4, help="worked examples per prompt; solve with the same (default 4)"
    )
    add_train_options(parser, rationale=False)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``vpd train-writer``; returns the exit code (0 done)."""
    from vpd.distill.training.writer import train_writer

    result = train_writer(
        args.runs,
        args.base,
        args.out,
        config_from_args(args),
        n_examples=args.n_examples,
        resume=False if args.restart else None,
        progress=not args.quiet,
    )
    held = ""
    if result.eval:
        held = f"; held out {result.eval_rows} programs: eval loss {number(result.eval.get('eval_loss'))}"
    out.write(
        f"trained {result.steps} steps on {result.train_rows} verified programs in {result.seconds:.0f} s; "
        f"loss {number(result.loss)}{held}\n"
        f"writer: {result.path} (vpd solve --llm {result.path} --n-examples {args.n_examples})\n"
    )
    return 0
