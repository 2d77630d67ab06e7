"""``vpd ask --student DIR IMAGE QUESTION [--explain]``: ask a distilled student.

One forward pass, no programs: the adapter ``vpd train`` wrote, on its base model
(:class:`vpd.distill.Student`).
"""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Add the ``ask`` subcommand to the ``vpd`` parser's subparsers."""
    parser = sub.add_parser(
        "ask",
        help="answer a question with a distilled student model (one forward pass)",
        description="Answer a question about an image with a student trained by `vpd train`.",
    )
    parser.add_argument("image", help="the image file")
    parser.add_argument("question", help="the question")
    parser.add_argument("--student", required=True, metavar="DIR", help="the --out folder of `vpd train`")
    parser.add_argument("--base", metavar="MODEL", help="the base model (default: the one the adapter names)")
    parser.add_argument("--explain", action="store_true", help="answer with the rationale that leads to it")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="generation limit")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1...")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``vpd ask``; returns 0, or 3 when the student stated no answer."""
    from vpd.distill.student import Student

    student = Student.load(args.base, args.student, device=args.device)
    reply = student.ask(args.image, args.question, explain=args.explain, max_new_tokens=args.max_new_tokens)
    if args.json:
        out.write(
            json.dumps(
                {
                    "question": reply.question,
                    "answer": reply.answer,
                    "rationale": reply.rationale,
                    "tokens": reply.tokens,
                }
            )
            + "\n"
        )
    else:
        if reply.rationale is not None:
            out.write(reply.rationale + "\n")
        out.write(f"answer: {reply.answer if reply.answer is not None else '(none stated)'}\n")
    return 0 if reply.answer is not None else 3
