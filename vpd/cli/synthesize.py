"""``vpd synthesize DATA --out RUN_DIR``: k programs per labelled question, run and verified.

Writes ``RUN_DIR/records.jsonl`` (one line per finished example), ``run.json`` (the
configuration), and at the end ``summary.json``, ``summary.txt`` and ``verified_at_k.png``.
Rerunning the same command resumes. Progress (rate, ETA, verified share, outcome counts)
goes to stderr; the summary table to stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from vpd.cli.options import (
    add_dataset_options,
    add_llm_options,
    add_toolkit_option,
    dataset_from_args,
    toolkit_from_arg,
)
from vpd.errors import InvalidArgumentError

if TYPE_CHECKING:
    from vpd.distill.synthesis import SynthesisProgress

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Add the ``synthesize`` subcommand to the ``vpd`` parser's subparsers."""
    parser = sub.add_parser(
        "synthesize",
        help="sample k programs per labelled question, run them, keep the correct ones",
        description="Program synthesis for distillation: for each question of a dataset an LLM writes k programs, "
        "the sandbox runs them, each answer is scored with the dataset's official metric, and a correct program "
        "is kept. Rerun the same command to resume.",
    )
    add_dataset_options(parser)
    parser.add_argument(
        "--out", required=True, metavar="RUN_DIR", help="the run directory (created; resumed if it exists)"
    )
    parser.add_argument("--k", type=int, default=5, help="programs sampled per question (default 5, as the paper)")
    add_llm_options(parser)
    add_toolkit_option(parser)
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N questions")
    parser.add_argument("--jobs", type=int, default=2, help="questions worked on at once (default 2)")
    parser.add_argument("--temperature", type=float, default=0.7, help="sampling temperature of samples 1..k-1")
    parser.add_argument("--seed", type=int, default=0, help="base sampling seed")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per program run")
    parser.add_argument("--min-score", type=float, default=0.9, help="metric score from which an answer is correct")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the completion cache")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``vpd synthesize``; returns the exit code (0 done)."""
    from vpd.distill.synthesis import synthesize
    from vpd.programs.sandbox import SandboxLimits
    from vpd.tools.toolkit import current_toolkit

    if args.timeout is not None and args.timeout <= 0:
        raise InvalidArgumentError("--timeout must be a positive number of seconds.")
    dataset = dataset_from_args(args)
    toolkit = toolkit_from_arg(args.toolkit) if args.toolkit else current_toolkit()
    bar = _ProgressBar(sys.stderr, quiet=args.quiet)
    summary = synthesize(
        dataset,
        args.out,
        k=args.k,
        llm=args.llm,
        api_base=args.api_base,
        api_key=args.api_key,
        toolkit=toolkit,
        temperature=args.temperature,
        seed=args.seed,
        limits=SandboxLimits(timeout=args.timeout) if args.timeout else None,
        min_score=args.min_score,
        limit=args.limit,
        jobs=args.jobs,
        cache=False if args.no_cache else None,
        progress=bar.update,
    )
    bar.finish()
    out.write(summary.table() + "\n")
    out.write(f"records: {args.out}/records.jsonl\n")
    out.flush()
    return 0


class _ProgressBar:
    """One line on stderr, rewritten after each example (a plain line per example when not a terminal)."""

    def __init__(self, stream: TextIO, *, quiet: bool) -> None:
        self._stream = stream
        self._quiet = quiet
        self._live = stream.isatty()
        self._last = 0.0

    def update(self, state: SynthesisProgress) -> None:
        if self._quiet:
            return
        now = time.monotonic()
        if not self._live and now - self._last < 5 and state.done < state.total:
            return  # logs get a line every few seconds, not one per example
        self._last = now
        width = 24
        filled = round(width * state.done / state.total) if state.total else width
        eta = f"{state.eta / 60:.1f} min" if state.eta is not None else "?"
        failed = {kind: n for kind, n in state.outcomes.items() if kind not in ("correct", "wrong")}
        text = (
            f"[{'#' * filled}{'.' * (width - filled)}] {state.done}/{state.total}  "
            f"verified {state.verified} ({100 * state.verified / max(1, state.done):.0f}%)  "
            f"{state.rate * 60:.1f}/min  eta {eta}"
            + (f"  failures: {', '.join(f'{k} {n}' for k, n in sorted(failed.items()))}" if failed else "")
        )
        self._stream.write(("\r" + text + "\x1b[K") if self._live else text + "\n")
        self._stream.flush()

    def finish(self) -> None:
        if self._live and not self._quiet:
            self._stream.write("\n")
            self._stream.flush()
