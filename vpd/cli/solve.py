"""``vpd solve IMAGE QUESTION``: answer a question from the command line.

Prints the chosen program with line numbers, what each tool call returned, the other
candidates and their votes, where the time went, and the answer (or everything as JSON).
Progress goes to stderr so that stdout stays clean for ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from vpd.cli.options import add_llm_options, add_toolkit_option, toolkit_from_arg
from vpd.errors import InvalidArgumentError

if TYPE_CHECKING:
    from vpd.programs.library import ExampleLibrary
    from vpd.solve import Solution
    from vpd.tools.toolkit import Toolkit

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Add the ``solve`` subcommand to the ``vpd`` parser's subparsers."""
    solve = sub.add_parser(
        "solve",
        help="answer a question about an image with programs written by an LLM",
        description="Answer a question about an image: an LLM writes k programs, the sandbox runs them, "
        "and the answers are voted on.",
    )
    solve.add_argument("image", help="path of the image")
    solve.add_argument("question", help="the question, in quotes")
    solve.add_argument("--k", type=int, default=5, help="programs to sample (default 5)")
    add_llm_options(solve)
    add_toolkit_option(solve)
    solve.add_argument(
        "--examples",
        metavar="PATH",
        help="worked examples for the prompt: a `vpd synthesize` run directory (its verified programs) or a TOML "
        "file or folder of examples (default: the built-in ones)",
    )
    solve.add_argument(
        "--n-examples", type=int, default=4, help="worked examples in the prompt (default 4; 0 for the API only)"
    )
    solve.add_argument(
        "--prompt",
        metavar="FILE",
        help="your own prompt: a ViperGPT prompt file (INSERT_QUERY_HERE) or a template with {question} "
        "(and optionally {api}, {examples})",
    )
    solve.add_argument("--temperature", type=float, default=0.7, help="sampling temperature of samples 1..k-1")
    solve.add_argument("--seed", type=int, default=0, help="base sampling seed")
    solve.add_argument("--timeout", type=float, default=None, help="seconds per program run")
    solve.add_argument("--no-cache", action="store_true", help="do not read or write the completion cache")
    solve.add_argument("--json", action="store_true", help="print the whole solution as JSON")
    solve.add_argument("--html", metavar="FILE", help="also write a self-contained HTML view of the solution")
    solve.add_argument("--quiet", action="store_true", help="no progress messages on stderr")
    solve.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``vpd solve``; returns the exit code (0 answered, 3 no answer)."""
    from vpd.programs.sandbox import SandboxLimits
    from vpd.solve import solve
    from vpd.tools.toolkit import current_toolkit

    started = time.perf_counter()

    def progress(stage: str, message: str) -> None:
        if not args.quiet:
            print(f"[vpd {time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    if args.timeout is not None and args.timeout <= 0:
        raise InvalidArgumentError("--timeout must be a positive number of seconds.")
    limits = SandboxLimits(timeout=args.timeout) if args.timeout else None
    # Without --toolkit: the current toolkit (VPD_* environment, or one set with vpd.use_toolkit).
    toolkit = toolkit_from_arg(args.toolkit) if args.toolkit else current_toolkit()
    examples = _examples(args.examples, toolkit) if args.examples else None
    solution = solve(
        args.image,
        args.question,
        k=args.k,
        toolkit=toolkit,
        examples=examples,
        n_examples=args.n_examples,
        llm=args.llm,
        api_base=args.api_base,
        api_key=args.api_key,
        temperature=args.temperature,
        seed=args.seed,
        cache=False if args.no_cache else None,
        limits=limits,
        progress=progress,
        prompt=args.prompt,
    )
    if args.json:
        json.dump(solution.to_dict(), out, indent=2, ensure_ascii=False)
        out.write("\n")
    else:
        from vpd.render.text import format_solution

        out.write(format_solution(solution))
    out.flush()
    if args.html:  # after the answer is out: a bad path must not cost the answer
        _write_html(solution, args.html)
        progress("html", f"wrote {args.html}")
    return 0 if solution.ok else 3


def _examples(path: str, toolkit: Toolkit) -> ExampleLibrary:
    """The library ``--examples`` names: a synthesis run's verified programs, or TOML examples."""
    from pathlib import Path

    from vpd.programs.library import ExampleLibrary

    where = Path(path).expanduser()
    if where.suffix == ".jsonl" or (where.is_dir() and (where / "records.jsonl").exists()):
        return ExampleLibrary.from_run(where, models=toolkit.models, tools=toolkit.tools)
    return ExampleLibrary.from_path(where, models=toolkit.models, tools=toolkit.tools)


def _write_html(solution: Solution, path: str) -> None:
    page = (
        '<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, '
        'initial-scale=1"><title>vpd solve</title></head>'
        # vpd-page: the view follows the system's dark theme, as the vpd show pages do
        '<body class="vpd-page" style="margin: 8px; background: var(--vpd-page)">'
        + solution._repr_html_()
        + "</body></html>"
    )
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(page)
    except OSError as exc:
        raise InvalidArgumentError(f"Cannot write the HTML view to {path}: {exc}") from exc
