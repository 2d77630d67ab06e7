"""Where the time of ``vpd solve`` goes, for k=1 and k=5, side by side in one run.

The demo question on the demo image with the offline toolkit and the embedded local model
(no network): model load, prompt evaluation, generation speed, tool time and sandbox time.
The completion cache is off (every sample is generated) and each k starts with a cold
prompt (no KV-cache reuse from the previous k) and an empty tool-result cache. The k
samples of one question share the prompt's evaluation (llama.cpp keeps the evaluated
prompt), identical programs run once, and the programs share tool results through the
result cache, so tool time at k=5 stays far under 5x that of k=1.

    python benchmarks/solve.py                      # the 1.5B model (about 2 minutes on 2 cores)
    python benchmarks/solve.py --llm local:0.5b     # the smaller model
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import vpd
from vpd.solve import Solution, resolve_llm

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "examples" / "images" / "coffee.jpg"
QUESTION = "How many cups are there?"
FOLLOW_UP = "Is there a dog in the picture?"


def _row(label: str, values: list[str]) -> str:
    return f"  {label:<34}" + "".join(f"{v:>18}" for v in values)


def _speed(tokens: int, seconds: float) -> str:
    return f"{tokens / seconds:.1f} tok/s" if seconds > 0 and tokens else "-"


def _tool_calls(solution: Solution) -> str:
    runs = {id(c.execution): c.execution for c in solution.candidates if c.execution is not None}
    calls = [call for e in runs.values() for call in e.trace.tool_calls]
    return f"{len(calls)} ({sum(call.cache_hit for call in calls)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm", default="local", help="the model (default: the embedded 1.5B)")
    parser.add_argument("--image", default=str(IMAGE))
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--ks", default="1,5", help="comma-separated k values")
    args = parser.parse_args(argv)
    ks = [int(k) for k in args.ks.split(",")]

    base = vpd.Toolkit.offline()
    load_started = time.perf_counter()
    toolkit, writer = resolve_llm(base, args.llm)
    writer_load = getattr(writer, "load", None)
    if callable(writer_load):
        writer_load()
    load_seconds = time.perf_counter() - load_started
    # Tools and the sandbox start once before timing, as in a long-running process.
    vpd.ImagePatch(args.image, toolkit=toolkit).find("cup")
    vpd.ImagePatch(args.image, toolkit=toolkit).ocr()
    vpd.run_program("def execute_command(image):\n    return 1\n", args.image, toolkit=toolkit)

    solutions: list[Solution] = []
    for k in ks:
        # Another prompt in between, so no k starts with the previous one's prompt in the KV cache.
        writer.generate([{"role": "user", "content": f"Say {k}."}], max_tokens=1)
        fresh = toolkit.replace()
        if fresh.cache is not None:
            fresh.cache.clear()
        solutions.append(
            vpd.solve(args.image, args.question, k=k, toolkit=fresh, llm=writer, cache=False)  # type: ignore[arg-type]
        )

    print(f"vpd solve: {args.question!r} on {Path(args.image).name}, model {args.llm}, offline toolkit")
    print(f"  model load (first use in this process): {load_seconds:.2f} s; CPUs: {os.cpu_count()}\n")
    print(_row("", [f"k={k}" for k in ks]))
    print("  " + "-" * (34 + 18 * len(ks)))
    rows: dict[str, list[str]] = {}
    for s in solutions:
        attempts = [a.completion for c in s.candidates for a in c.sample.attempts]
        prompt_tokens = sum(c.prompt_tokens or 0 for c in attempts)
        generated = sum(c.completion_tokens or 0 for c in attempts)
        first = [c.first_token_seconds for c in attempts if c.first_token_seconds is not None]
        prompt_seconds = sum(first)
        generation_seconds = sum(c.seconds for c in attempts) - prompt_seconds
        first_prompt = attempts[0] if attempts else None
        values = {
            "answer (votes)": f"{s.answer} ({s.votes.get(s.answer or '', 0)}/{len(s.candidates)})",
            "LLM requests (incl. repairs)": str(len(attempts)),
            "LLM wall time": f"{s.timings.llm:.2f} s",
            "prompt tokens (all requests)": str(prompt_tokens),
            "prompt evaluation": f"{prompt_seconds:.2f} s",
            "  first request": (
                _speed(first_prompt.prompt_tokens or 0, first_prompt.first_token_seconds or 0) if first_prompt else "-"
            ),
            "generated tokens": str(generated),
            "generation": f"{generation_seconds:.2f} s",
            "  speed": _speed(generated, generation_seconds),
            "tool time": f"{s.timings.tools:.3f} s",
            "sandbox time (runs minus tools)": f"{s.timings.sandbox:.3f} s",
            "distinct programs run": str(len({id(c.execution) for c in s.candidates if c.execution})),
            "tool calls (from the result cache)": _tool_calls(s),
            "total": f"{s.timings.total:.2f} s",
        }
        for key, value in values.items():
            rows.setdefault(key, []).append(value)
    for key, values in rows.items():
        print(_row(key, values))
    if len(solutions) >= 2 and solutions[0].timings.tools > 0:
        k1, kn = solutions[0], solutions[-1]
        ratio = kn.timings.tools / k1.timings.tools
        print(
            f"\nTool time at k={ks[-1]} is {ratio:.2f}x that of k={ks[0]} "
            f"(identical tool calls of the k programs come from the result cache)."
        )
    # Another question right after: its prompt shares the system prompt's batches with the last one.
    follow_up = vpd.solve(args.image, FOLLOW_UP, k=1, toolkit=toolkit.replace(), llm=writer, cache=False)  # type: ignore[arg-type]
    attempt = follow_up.candidates[0].sample.attempts[0].completion
    print(
        f"\nA different question next ({FOLLOW_UP!r}, k=1): prompt {attempt.prompt_tokens} tokens, first token after "
        f"{attempt.first_token_seconds or 0:.2f} s (the shared system-prompt batches are kept), total "
        f"{follow_up.timings.total:.2f} s, answer {follow_up.answer!r}"
    )
    print(f"Peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
