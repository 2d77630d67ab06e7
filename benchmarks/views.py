"""What the trace views cost: counting which lines ran, and building the ``vpd show`` pages.

1. **Line counting**: a program's statements are counted as they start (a list increment
   the compiler inserts, :data:`vpd.programs.policy.LINE_COUNTS`). The same programs are
   compiled by the real policy with and without that pass and run side by side (outside
   the sandbox, so only the program's own code is timed): a hot loop, and a typical
   short program shape.
2. **Pages**: ``vpd show`` of N synthetic traces (the trace report) and of a synthesis
   run of N examples with 2 candidates each (the run report): build time and file size.
   How fast Chromium opens them is measured by ``tests/test_views_browser.py`` and
   ``tests/test_report_browser.py`` (printed with ``-s``).

Run: ``python benchmarks/views.py [--examples 10000]``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support import synthetic_trace, write_images

from vpd.programs import policy
from vpd.render import load_runs, write_report, write_run_report
from vpd.traces import TraceRecord

HOT = "def f():\n    t = 0\n    for i in range(200000):\n        t += i\n    return t\n"
SHORT = (
    "def f():\n    items = [1, 2, 3, 4]\n    total = 0\n    for x in items:\n        if x > 2:\n"
    "            total += x\n    names = [str(x) for x in items]\n    return total, names\n"
)


def _compiled(source: str, counted: bool) -> Any:
    original = policy._LineCounter.visit
    if not counted:
        policy._LineCounter.visit = lambda self, node: node  # type: ignore[method-assign]
    try:
        policy.compile_program.cache_clear()
        compiled = policy.compile_program(source)
    finally:
        policy._LineCounter.visit = original  # type: ignore[method-assign]
        policy.compile_program.cache_clear()
    assert compiled.code is not None, compiled.errors
    return compiled.code


def _scope(code: Any) -> dict[str, Any]:
    from RestrictedPython.Guards import guarded_iter_unpack_sequence

    scope: dict[str, Any] = {
        "__builtins__": {"range": range, "str": str},
        "_getiter_": iter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_inplacevar_": lambda op, x, y: x + y,
        policy.ASSIGN_HOOK: lambda line, name, value: value,
        policy.LOST_COUNTER: [0],
        policy.RECURSION_ERROR: RecursionError,
        policy.LINE_COUNTS: [0] * 20,
        policy.RETURN_LINE: [None],
    }
    exec(code, scope)
    return scope


def _side_by_side(source: str, repeat: int, rounds: int = 7) -> tuple[float, float]:
    """Best time per call without and with counting, measured alternately (a shared machine drifts)."""
    functions = [_scope(_compiled(source, counted))["f"] for counted in (False, True)]
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for which, function in enumerate(functions):
            start = time.perf_counter()
            for _ in range(repeat):
                function()
            best[which] = min(best[which], (time.perf_counter() - start) / repeat)
    return best[0], best[1]


def line_counting() -> None:
    print("Line counting (best of 7, alternating; the program's own code only)")
    print(f"  {'program':<28} {'without':>10} {'with':>10} {'added':>8}")
    for name, source, repeat in (("hot loop, 200k iterations", HOT, 1), ("short program", SHORT, 20000)):
        plain, counted = _side_by_side(source, repeat)
        unit, scale = ("ms", 1e3) if plain > 1e-3 else ("us", 1e6)
        print(f"  {name:<28} {plain * scale:>7.2f} {unit} {counted * scale:>7.2f} {unit} {counted / plain - 1:>7.0%}")


def _synthesis_run(folder: Path, examples: int, images: list[tuple[str, str]]) -> Path:
    rng = random.Random(5)
    run = folder / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"kind": "synthesis", "config": {"k": 2}}))
    with (run / "records.jsonl").open("w", encoding="utf-8") as out:
        for i in range(examples):
            name, sha = images[i % len(images)]
            candidates = []
            for j in range(2):
                trace = synthetic_trace(i * 2 + j, rng, sha256=sha)
                outcome = trace.error.kind if trace.error else rng.choice(["correct", "wrong"])
                candidates.append({"index": j, "outcome": outcome, "trace": trace.to_dict(), "program": trace.program,
                                   "prediction": None if trace.error else str(trace.answer), "score": 0.0})  # fmt: skip
            verified = any(c["outcome"] == "correct" for c in candidates)
            record = {"id": str(i), "question": f"Question {i}?", "image": str(folder / "images" / name),
                      "references": ["yes"], "candidates": candidates, "verified": verified, "error": None}  # fmt: skip
            out.write(json.dumps(record) + "\n")
    return run


def pages(examples: int) -> None:
    print(f"\nvpd show pages ({examples} traces / examples, 50 distinct images)")
    print(f"  {'page':<36} {'build':>8} {'size':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        images = write_images(folder / "images")
        rng = random.Random(7)
        records = [
            TraceRecord(
                trace=synthetic_trace(i, rng, sha256=images[i % len(images)][1]),
                id=str(i),
                source=f"t:{i}",
                image_path=folder / "images" / images[i % len(images)][0],
            )
            for i in range(examples)
        ]
        start = time.perf_counter()
        stats = write_report(records, folder / "traces.html")
        print(f"  {'trace report':<36} {time.perf_counter() - start:>6.1f} s {stats.bytes / 1e6:>6.1f} MB")
        run = _synthesis_run(folder, examples, images)
        start = time.perf_counter()
        loaded = load_runs([run])
        read = time.perf_counter() - start
        report = write_run_report(loaded, folder / "run.html")
        label = f"run report, k = 2 (reading {read:.1f} s)"
        print(f"  {label:<36} {time.perf_counter() - start:>6.1f} s {report.bytes / 1e6:>6.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    args = parser.parse_args()
    line_counting()
    pages(args.examples)


if __name__ == "__main__":
    main()
