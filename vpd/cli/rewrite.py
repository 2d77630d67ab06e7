"""``vpd rewrite RUN_DIR``: rationales for the verified programs of a synthesis run.

Writes ``RUN_DIR/rationales.jsonl`` (one line per verified question: the rationale, its
problems, whether it is accepted); rerunning resumes. ``--template`` writes deterministic
rationales offline; otherwise an LLM (``--llm``, ``--api-base``; default: the toolkit's, or
the embedded model) rewrites each execution trace with a few-shot prompt.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from vpd.cli.options import add_llm_options

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Add the ``rewrite`` subcommand to the ``vpd`` parser's subparsers."""
    parser = sub.add_parser(
        "rewrite",
        help="rewrite the verified programs of a synthesis run into rationales",
        description="For each verified question of a `vpd synthesize` run, rewrite the chosen program's execution "
        "trace into a chain-of-thought rationale, check it, and append it to RUN_DIR/rationales.jsonl. "
        "Rerun to resume.",
    )
    parser.add_argument("run_dir", help="the run directory of `vpd synthesize`")
    parser.add_argument("--template", action="store_true", help="deterministic rationales, no LLM")
    add_llm_options(parser)
    parser.add_argument("--limit", type=int, metavar="N", help="at most N new rationales")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``vpd rewrite``; returns the exit code (0 done)."""
    from vpd.distill.rewriter import LLMRewriter, Rewriter, TemplateRewriter, rewrite_run

    rewriter: Rewriter
    if args.template:
        rewriter = TemplateRewriter()
    else:
        from vpd.solve import resolve_llm
        from vpd.tools.toolkit import current_toolkit

        _, writer = resolve_llm(current_toolkit(), args.llm, api_base=args.api_base, api_key=args.api_key)
        rewriter = LLMRewriter(writer)

    def progress(done: int, total: int) -> None:
        if not args.quiet:
            print(f"[vpd rewrite] {done}/{total}", file=sys.stderr, flush=True)

    summary = rewrite_run(args.run_dir, rewriter, limit=args.limit, progress=progress)
    out.write(
        f"rationales: {summary.accepted} accepted, {summary.rejected} rejected (see their problems); "
        f"{summary.unverified} questions without a verified program keep only their label; "
        f"{summary.written} written now\n"
    )
    return 0
