"""What isolation and tracing cost: plain ``exec`` vs RestrictedPython vs ``vpd.run_program``.

Side by side in one run, on the same machine, with the same zero-cost fake tools:

* **plain exec**: what ViperGPT does: ``exec`` of a cached code object in a fresh scope,
  ``ImagePatch`` calling the toolkit in-process (no isolation, no trace);
* **RestrictedPython**: ``compile_restricted`` (cached) and RestrictedPython's own
  ``safe_globals`` and guards, same in-process toolkit (no isolation, no trace);
* **vpd.run_program**: the real thing: static check, a worker forked from the zygote,
  tool calls served over a socket by the host and traced there, assignments traced.

The tools are a fake detector returning one fixed box and a user tool ``ping(i)`` returning
its argument; the toolkit is built with ``cache=False``, so the result cache is OFF and every
call really goes through the toolkit to the backend (in-process direct cost printed first:
the toolkit's own bookkeeping, identical in all three modes). The modes are interleaved
(a, b, c, a, b, c...) so machine noise hits all three alike; wall times are medians. The
fixed cost per program is the 2-call program's median; the marginal cost per tool call is
the slope over programs making 1, 10, 100 and 1000 calls (Theil-Sen: the median of the
pairwise slopes, robust to one noisy point). Peak memory: the host's ru_maxrss, and the
zygote's and a running worker's RSS/PSS from /proc.

    python benchmarks/sandbox.py            # about 25 seconds on 2 cores
    python benchmarks/sandbox.py --quick    # about 10 seconds, noisier

The machine should be otherwise idle: other load inflates the sandbox's numbers far more
than plain exec's (every tool call is a round trip between two processes). The CPU table
and the 10th percentiles are the figures least disturbed by other load.
"""

from __future__ import annotations

import argparse
import gc
import operator
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image

import vpd
from vpd.tools.backend import Availability, Backend
from vpd.tools.toolkit import use_toolkit
from vpd.tools.types import Detection
from vpd.tools.user_tools import ToolRegistry

# -- the targets from the issue (2-core machine) -------------------------------------------
TARGET_FIXED_MS = 3.0  # isolated, traced execution over plain exec, per program
TARGET_CALL_US = 75.0  # each traced tool call over a direct call

# -- programs -----------------------------------------------------------------------------------
SMALL = """def execute_command(image):
    image_patch = ImagePatch(image)
    cats = image_patch.find("cat")
    if image_patch.exists("dog"):
        return len(cats)
    return 0
"""


def patch_loop(n: int) -> str:
    """A program making ``n`` ``ImagePatch.exists`` calls (plus its loop's assignments)."""
    return f"""def execute_command(image):
    image_patch = ImagePatch(image)
    count = 0
    for i in range({n}):
        if image_patch.exists("cat"):
            count += 1
    return count
"""


def tool_loop(n: int) -> str:
    """A program making ``n`` calls of the user tool ``ping``."""
    return f"""def execute_command(image):
    total = 0
    for i in range({n}):
        total += ping(i)
    return total
"""


# -- zero-cost tools ------------------------------------------------------------------------------
class ZeroDetector(Backend):
    """Finds every query at one fixed box; costs a few microseconds."""

    capability = "detect"
    name = "zero"
    description = "zero-cost fake detector for benchmarks"

    @classmethod
    def check_available(cls, model: str | None = None) -> Availability:
        """Always available."""
        return Availability(True, "benchmark fake")

    def detect(self, images: Sequence[Any], queries: Sequence[Sequence[str]]) -> list[list[Detection]]:
        """One detection per query and image."""
        return [[Detection((10.0, 10.0, 90.0, 90.0), 0.9, q, None) for q in names] for names in queries]


def make_toolkit() -> vpd.Toolkit:
    """A toolkit with the fake detector and ``ping``, result cache off (every call runs)."""
    registry = ToolRegistry()

    @vpd.tool(registry=registry)
    def ping(x: int) -> int:
        """Return ``x`` (a tool that does nothing).

        Args:
            x: Any integer.

        Returns:
            ``x``.
        """
        return x

    return vpd.Toolkit(
        detect=ZeroDetector(),
        segment=None,
        depth=None,
        ocr=None,
        vqa=None,
        match=None,
        llm=None,
        cache=False,
        tools=registry,
    )


# -- the three ways to run a program ------------------------------------------------------------
Runner = Callable[[str], Any]


def plain_runner(toolkit: vpd.Toolkit, image: vpd.ImageData) -> Runner:
    """ViperGPT: exec the (cached) code in a fresh scope, tools called in-process."""
    import vpd.helpers as helpers

    base: dict[str, Any] = {"ImagePatch": vpd.ImagePatch, **{n: getattr(helpers, n) for n in helpers.HELPER_API}}
    base["ping"] = lambda *a, **k: toolkit.call_tool("ping", *a, **k)
    codes: dict[str, Any] = {}

    def run(source: str) -> Any:
        code = codes.get(source)
        if code is None:
            code = codes[source] = compile(source, "<program>", "exec")
        scope = dict(base)
        exec(code, scope)
        return scope["execute_command"](image)

    return run


def restricted_runner(toolkit: vpd.Toolkit, image: vpd.ImageData) -> Runner:
    """RestrictedPython in-process: its compiler (cached), safe_globals and standard guards."""
    from RestrictedPython import compile_restricted, safe_globals
    from RestrictedPython.Guards import (
        full_write_guard,
        guarded_iter_unpack_sequence,
        guarded_unpack_sequence,
        safer_getattr,
    )

    import vpd.helpers as helpers

    inplace = {"+=": operator.add, "-=": operator.sub, "*=": operator.mul, "/=": operator.truediv}

    def inplacevar(op: str, x: Any, y: Any) -> Any:
        return inplace[op](x, y)

    base: dict[str, Any] = dict(safe_globals)
    base.update(
        _getattr_=safer_getattr,
        _getitem_=operator.getitem,
        _getiter_=iter,
        _write_=full_write_guard,
        _inplacevar_=inplacevar,
        _iter_unpack_sequence_=guarded_iter_unpack_sequence,
        _unpack_sequence_=guarded_unpack_sequence,
        ImagePatch=vpd.ImagePatch,
        ping=lambda *a, **k: toolkit.call_tool("ping", *a, **k),
        **{n: getattr(helpers, n) for n in helpers.HELPER_API},
    )
    codes: dict[str, Any] = {}

    def run(source: str) -> Any:
        code = codes.get(source)
        if code is None:
            code = codes[source] = compile_restricted(source, "<program>", "exec")
        scope = dict(base)
        exec(code, scope)
        return scope["execute_command"](image)

    return run


def sandbox_runner(toolkit: vpd.Toolkit, image: vpd.ImageData, sandbox: vpd.Sandbox) -> Runner:
    """``vpd.run_program`` on a warm sandbox; a failed run stops the benchmark."""

    def run(source: str) -> Any:
        execution = vpd.run_program(source, image, toolkit=toolkit, sandbox=sandbox)
        if execution.error is not None:
            raise SystemExit(f"run_program failed: {execution.error}")
        return execution.answer

    return run


#: Per mode: median wall seconds, mean CPU seconds per run, 10th percentile of wall seconds.
Stats = tuple[dict[str, float], dict[str, float], dict[str, float]]


# -- measuring -------------------------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK")


def zygote_cpu(pid: int | None) -> float:
    """CPU seconds of the zygote and of the workers it has reaped (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / _TICK  # utime, stime, cutime, cstime


def interleaved(runners: dict[str, Runner], sources: Callable[[int], str], repeats: int, zygote: int | None) -> Stats:
    """Median wall seconds of each runner, mean CPU seconds per run, and the 10th percentile of wall time.

    The runners alternate so machine noise hits all alike. CPU is less sensitive to other
    load than wall time: the host's CPU per runner (this process, all threads) and, under
    ``"zygote+workers"``, the CPU of the zygote and its workers per sandbox run.
    """
    times: dict[str, list[float]] = {name: [] for name in runners}
    cpu: dict[str, float] = dict.fromkeys(runners, 0.0)
    gc.collect()
    before = zygote_cpu(zygote)
    for i in range(repeats):
        source = sources(i)
        for name, run in runners.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            run(source)
            times[name].append(time.perf_counter() - start)
            cpu[name] += time.process_time() - start_cpu
    per_run = {name: value / repeats for name, value in cpu.items()}
    if zygote is not None:
        time.sleep(0.05)  # let the zygote reap the last worker
        per_run["zygote+workers"] = (zygote_cpu(zygote) - before) / repeats
    medians = {name: statistics.median(values) for name, values in times.items()}
    p10 = {name: sorted(values)[len(values) // 10] for name, values in times.items()}
    return medians, per_run, p10


def _constant(source: str) -> Callable[[int], str]:
    """The same program for every repetition."""
    return lambda i: source


def slope(points: Sequence[tuple[int, float]]) -> tuple[float, float]:
    """Robust (slope, intercept) of seconds against tool calls (Theil-Sen: one noisy point cannot skew it)."""
    pairs = [(y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points) for x2, y2 in points[i + 1 :] if x2 != x1]
    b = statistics.median(pairs)
    return b, statistics.median(y - b * x for x, y in points)


def direct_call_cost(toolkit: vpd.Toolkit, image: vpd.ImageData, repeats: int = 2000) -> tuple[float, float]:
    """Seconds per in-process ``exists`` call and per ``call_tool('ping')`` (the tools' own cost)."""
    box = (0, 0, image.width, image.height)
    out = []
    for fn in (lambda: toolkit.exists(image, box, "cat"), lambda: toolkit.call_tool("ping", 1)):
        fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        out.append((time.perf_counter() - start) / repeats)
    return out[0], out[1]


# -- memory ------------------------------------------------------------------------------------------
def proc_memory(pid: int) -> dict[str, float]:
    """RSS, peak RSS, PSS and private memory of a process, in MiB (what /proc lets us read)."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(rest.split()[0]) / 1024
    except OSError:
        return out
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            private = 0
            for line in f:
                key, _, rest = line.partition(":")
                if key == "Pss":
                    out["Pss"] = int(rest.split()[0]) / 1024
                elif key in ("Private_Clean", "Private_Dirty"):
                    private += int(rest.split()[0])
            out["Private"] = private / 1024
    except OSError:
        pass
    return out


def children(pid: int) -> list[int]:
    """Child process ids of ``pid``."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def worker_memory(zygote: int, run: Callable[[], Any]) -> dict[str, float]:
    """Peak memory of the worker(s) the zygote forks while ``run()`` runs (sampled)."""
    peak: dict[str, float] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for child in children(zygote):
                for key, value in proc_memory(child).items():
                    peak[key] = max(peak.get(key, 0.0), value)
            time.sleep(0.0005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        run()
    finally:
        done.set()
        thread.join()
    return peak


def host_maxrss_mib() -> float:
    """Peak RSS of this (host) process in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- printing ------------------------------------------------------------------------------------------
def fmt(seconds: float) -> str:
    """Seconds as a readable duration."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:8.1f} µs"
    return f"{seconds * 1e3:8.3f} ms"


def verdict(ok: bool) -> str:
    """PASS or MISS."""
    return "PASS" if ok else "MISS"


MODES = ("plain exec", "RestrictedPython", "vpd.run_program")


def print_wall(rows: list[tuple[str, dict[str, float]] | None]) -> None:
    """One row per program: the three modes and the sandbox's overhead over plain exec (None: a rule)."""
    header = f"  {'program':<30}" + "".join(f"{m:>19}" for m in MODES) + f"{'sandbox - exec':>17}"
    print(header)
    print("  " + "-" * (len(header) - 2))
    for row in rows:
        if row is None:
            print("  " + "-" * (len(header) - 2))
            continue
        label, wall = row
        cells = "".join(f"{fmt(wall[m]):>19}" for m in MODES)
        print(f"  {label:<30}{cells}{fmt(wall[MODES[2]] - wall[MODES[0]]):>17}")


def print_cpu(rows: list[tuple[str, dict[str, float]]]) -> None:
    """CPU per program: in-process modes, and the sandbox's host and zygote+workers parts."""
    columns = (*MODES[:2], "run_program host", "zygote+workers", "sandbox - exec")
    header = f"  {'program':<30}" + "".join(f"{c:>19}" for c in columns)
    print(header)
    print("  " + "-" * (len(header) - 2))
    for label, cpu in rows:
        total = cpu[MODES[2]] + cpu["zygote+workers"]
        cells = [cpu[MODES[0]], cpu[MODES[1]], cpu[MODES[2]], cpu["zygote+workers"], total - cpu[MODES[0]]]
        print(f"  {label:<30}" + "".join(f"{fmt(c):>19}" for c in cells))


def fit(results: dict[int, Stats], part: int) -> tuple[dict[str, float], dict[str, float]]:
    """Per-call slope and intercept of each column over the programs of one family."""
    keys = results[next(iter(results))][part]
    lines = {k: slope([(n, stats[part][k]) for n, stats in results.items()]) for k in keys}
    return {k: v[0] for k, v in lines.items()}, {k: v[1] for k, v in lines.items()}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (noisier, ~15 s)")
    args = parser.parse_args(argv)
    small_repeats = 60 if args.quick else 300
    fresh_repeats = 20 if args.quick else 100
    loop_repeats = {1: 30, 10: 20, 100: 8, 1000: 3} if args.quick else {1: 150, 10: 80, 100: 25, 1000: 10}
    batch = 50
    started = time.perf_counter()

    rss_before = host_maxrss_mib()
    toolkit = make_toolkit()
    image = vpd.load_image(Image.new("RGB", (640, 480), (120, 120, 120)))
    sandbox = vpd.Sandbox()  # one per process (module-level in a real service), warmed up below
    runners = {
        MODES[0]: plain_runner(toolkit, image),
        MODES[1]: restricted_runner(toolkit, image),
        MODES[2]: sandbox_runner(toolkit, image, sandbox),
    }
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load} (before)")
    print("tools: fake detector (one box) + user tool ping(i); result cache OFF, so every call reaches the backend")

    with use_toolkit(toolkit):
        # Same answers everywhere (a benchmark of a broken run measures nothing), then warm up.
        programs = [SMALL, *(patch_loop(n) for n in (1, 10)), *(tool_loop(n) for n in (1, 10))]
        for source in programs:
            answers = {name: run(source) for name, run in runners.items()}
            if len({repr(a) for a in answers.values()}) != 1:
                raise SystemExit(f"the modes disagree: {answers}")
        sandbox.close()
        cold = time.perf_counter()
        runners[MODES[2]](SMALL)
        cold = time.perf_counter() - cold
        # The zygote's pid, for its CPU time and memory (a benchmark may peek at a private attribute).
        process = getattr(sandbox, "_process", None)
        zygote = process.pid if process is not None else None
        for source in programs * 10:
            for run in runners.values():
                run(source)
        exists_cost, ping_cost = direct_call_cost(toolkit, image)
        print(
            f"direct in-process calls: toolkit.exists {fmt(exists_cost).strip()}, "
            f"call_tool('ping') {fmt(ping_cost).strip()}; sandbox cold start (zygote + first program) "
            f"{fmt(cold).strip()}"
        )

        small = interleaved(runners, _constant(SMALL), small_repeats, zygote)
        fresh = interleaved(runners, lambda i: f"{SMALL}# variant {time.time_ns()}\n", fresh_repeats, zygote)
        families: dict[str, dict[int, Stats]] = {}
        for family, make in (("ImagePatch.exists", patch_loop), ("user tool ping", tool_loop)):
            families[family] = {}
            for n, repeats in loop_repeats.items():
                source = make(n)
                families[family][n] = interleaved(runners, _constant(source), repeats, zygote)

    print(f"\nWall time per program (median; modes interleaved; {small_repeats} runs of the 2-call program)")
    rows: list[tuple[str, dict[str, float]] | None] = [
        ("2 tool calls, same program", small[0]),
        (f"2 tool calls, new program ({fresh_repeats})", fresh[0]),
    ]
    for family, results in families.items():
        rows.append(None)
        rows += [(f"{n:>4} x {family}", results[n][0]) for n in results]
        per_call, intercept = fit(results, 0)
        rows += [("  per call (slope)", per_call), ("  fixed (intercept)", intercept)]
    print_wall(rows)

    print("\nCPU per program (mean; less sensitive than wall time to other load on the machine)")
    cpu_rows = [("2 tool calls, same program", small[1]), ("2 tool calls, new program", fresh[1])]
    cpu_slopes = {family: fit(results, 1)[0] for family, results in families.items()}
    cpu_rows += [(f"per call ({family})", cpu_slopes[family]) for family in families]
    print_cpu(cpu_rows)

    print("\nTargets (issue 3, on a 2-core machine)")
    for label, (wall, _, p10) in (("same program", small), ("new program", fresh)):
        over = wall[MODES[2]] - wall[MODES[0]]
        print(
            f"  run_program over plain exec per program <= {TARGET_FIXED_MS:g} ms, {label:<13}: "
            f"{over * 1e3:6.2f} ms  {verdict(over * 1e3 <= TARGET_FIXED_MS)}"
            f"   (10th percentile: {(p10[MODES[2]] - p10[MODES[0]]) * 1e3:.2f} ms)"
        )
    for family, results in families.items():
        per_call = fit(results, 0)[0]
        over = per_call[MODES[2]] - per_call[MODES[0]]
        print(
            f"  traced tool call over a direct call <= {TARGET_CALL_US:g} µs, {family:<17}: "
            f"{over * 1e6:6.1f} µs  {verdict(over * 1e6 <= TARGET_CALL_US)}"
        )

    print(f"\nThroughput, {batch} programs (one image for all)")
    for label, source in (("2 tool calls", SMALL), ("100 x ImagePatch.exists", patch_loop(100))):
        with use_toolkit(toolkit):
            start = time.perf_counter()
            for _ in range(batch):
                runners[MODES[0]](source)
            plain = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(batch):
            runners[MODES[2]](source)
        serial = time.perf_counter() - start
        cells = [f"plain exec {batch / plain:6.0f}/s", f"run_program one at a time {batch / serial:4.0f}/s"]
        for workers in (None, batch):
            start = time.perf_counter()
            executions = vpd.run_programs(
                [source] * batch, image, toolkit=toolkit, sandbox=sandbox, max_workers=workers
            )
            elapsed = time.perf_counter() - start
            failed = sum(not e.ok for e in executions)
            name = "default threads" if workers is None else f"{workers} threads"
            cells.append(f"run_programs {name} {batch / elapsed:4.0f}/s" + (f" ({failed} FAILED)" if failed else ""))
        print(f"  {label:<24} " + " | ".join(cells))

    print("\nMemory (MiB)")
    print(f"  host peak RSS (ru_maxrss): {rss_before:.1f} after imports, {host_maxrss_mib():.1f} at the end")
    if zygote is not None:
        worker = worker_memory(zygote, lambda: runners[MODES[2]](patch_loop(1000)))
        for name, values in (("zygote", proc_memory(zygote)), ("worker (peak while running)", worker)):
            shown = ", ".join(f"{k} {v:.1f}" for k, v in sorted(values.items())) or "unreadable"
            print(f"  {name}: {shown}")
        print("  (VmRSS/VmHWM count pages shared with the zygote; Pss and Private show what a worker adds)")
    sandbox.close()
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\nload average {load} (after); total benchmark time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
