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

if TYPE_CHECKING:
    from vpd.programs.trace import Trace
    from vpd.solve import Solution

__all__ = ["add_parser", "format_solution"]


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
    solve.add_argument(
        "--llm",
        metavar="MODEL",
        help="litellm model string (openai/gpt-4o-mini, ollama/qwen2.5-coder, openai/<alias> with --api-base), "
        "'local', 'local:0.5b' or a .gguf path (default: VPD_LLM, else the embedded local model)",
    )
    solve.add_argument("--api-base", metavar="URL", help="OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1")
    solve.add_argument("--api-key", metavar="KEY", help="key for it (default: the provider's environment variable)")
    solve.add_argument(
        "--toolkit", metavar="offline|hub|auto|FILE", help="tools: a preset or a TOML file (default: VPD_* env)"
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
    from vpd.cli import _toolkit_from_arg
    from vpd.errors import InvalidArgumentError
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
    toolkit = _toolkit_from_arg(args.toolkit) if args.toolkit else current_toolkit()
    solution = solve(
        args.image,
        args.question,
        k=args.k,
        toolkit=toolkit,
        llm=args.llm,
        api_base=args.api_base,
        api_key=args.api_key,
        temperature=args.temperature,
        seed=args.seed,
        cache=False if args.no_cache else None,
        limits=limits,
        progress=progress,
    )
    if args.html:
        _write_html(solution, args.image, args.html)
        progress("html", f"wrote {args.html}")
    if args.json:
        json.dump(solution.to_dict(), out, indent=2, ensure_ascii=False)
        out.write("\n")
    else:
        out.write(format_solution(solution))
    return 0 if solution.ok else 3


def _write_html(solution: Solution, image: str, path: str) -> None:
    try:
        from vpd.render import solution_html  # type: ignore[attr-defined]
    except ImportError:  # the renderer ships with the notebook views
        from vpd.errors import ConfigError

        raise ConfigError("HTML output needs vpd.render, which this installation lacks.") from None
    with open(path, "w", encoding="utf-8") as f:
        f.write(solution_html(solution, image=image))


def format_solution(solution: Solution, *, width: int = 100) -> str:
    """The terminal view of a solution: program, trace, candidates, timings, answer."""
    lines: list[str] = [f"Question: {_clip(solution.question, width)}", f"Model:    {_clip(solution.model, width)}"]
    chosen = next((c for c in solution.candidates if c.chosen), None)
    if solution.program is not None and chosen is not None:
        lines += ["", f"Program (sample {chosen.index}, {chosen.votes} of {len(solution.candidates)} votes):"]
        lines += [f"  {n:>3}  {text}" for n, text in enumerate(solution.program.splitlines(), 1)]
    if solution.trace is not None:
        lines += ["", "Trace:"]
        lines += [f"  {line}" for line in trace_lines(solution.trace, width=width - 2)]
    lines += ["", "Candidates:"]
    for c in solution.candidates:
        mark = "  <- chosen" if c.chosen else ""
        if c.answer is not None:
            lines.append(
                f"  #{c.index}  answer {_clip(c.answer, 40)!r} ({c.votes} vote{'s' if c.votes != 1 else ''}){mark}"
            )
        else:
            lines.append(f"  #{c.index}  {_clip(c.error or 'no answer', width - 8)}")
    t = solution.timings
    tokens = f"{t.prompt_tokens} prompt + {t.completion_tokens} generated tokens"
    cached = f", {t.cached_replies} cached" if t.cached_replies else ""
    lines += [
        "",
        f"Time: total {t.total:.2f} s | model load {t.load:.2f} s | LLM {t.llm:.2f} s ({tokens}{cached}) | "
        f"tools {t.tools:.2f} s | sandbox {t.sandbox:.3f} s",
    ]
    if solution.source == "fallback":
        lines.append("No program answered; the answer comes from the VQA model directly.")
    if solution.answer is None:
        lines += ["", f"No answer: {_clip(solution.error or 'unknown reason', 4 * width)}"]
    else:
        lines += ["", f"Answer: {solution.answer}"]
    return "\n".join(lines) + "\n"


def trace_lines(trace: Trace, *, width: int = 98) -> list[str]:
    """One line per traced event: tool calls with inputs and outputs, assignments, prints."""
    from vpd.programs.trace import Assignment, PrintOutput, ToolCall

    lines = []
    for event in trace.events:
        where = f"line {event.line:>2}" if event.line is not None else "line  ?"
        if isinstance(event, ToolCall):
            inputs = ", ".join(f"{k}={_value(v)}" for k, v in (event.inputs or {}).items())
            result = f"error: {event.error}" if event.error else _value(event.output)
            hit = ", cached" if event.cache_hit else ""
            text = f"{event.operation}({inputs}) -> {result}  [{event.backend}, {event.seconds * 1000:.0f} ms{hit}]"
        elif isinstance(event, Assignment):
            text = f"{event.name} = {event.value}"
        elif isinstance(event, PrintOutput):
            text = f"print: {event.text.rstrip()}"
        else:  # pragma: no cover - future event kinds
            text = type(event).__name__
        lines.append(_clip(f"{where}  {text}", width))
    if trace.truncated:
        lines.append(f"... {trace.dropped_events} more events were not recorded")
    if trace.error is not None:
        lines.append(_clip(f"error ({trace.error.kind}): {trace.error.message}", width))
    return lines


def _value(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return _clip(text, 60)


def _clip(text: str, width: int) -> str:
    text = " ".join(str(text).split()) if "\n" in str(text) else str(text)
    return text if len(text) <= width else text[: width - 3] + "..."
