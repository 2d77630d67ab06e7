"""The sandbox, round two: one class of tests per class of hostile program (issue 10).

1. host-side tool work is bounded by the program's deadline and by input caps;
2. no program makes ``run_program`` / ``run_programs`` raise;
3. traces never lose events silently;
4. trace text cannot be forged;
5. no host path leaks, limits agree, leftovers are cleaned.

These are written against the mechanisms, not as copies of particular attack programs; the
attack suite (tests/test_attacks.py) keeps its own cases.
"""

from __future__ import annotations

import contextvars
import json
import signal
import sys
import threading
import time
import unicodedata
from pathlib import Path

import pytest
from support import program

import vpd
from vpd.render import build_view, format_trace, render_trace
from vpd.testing import Scene, SceneObject
from vpd.tools.user_tools import ToolRegistry, tool_registry
from vpd.traces import OMITTED, TraceWriter, trace_to_text
from vpd.traces.text import one_line, reveal

W, H = 320, 240
HIDDEN = ("Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp")


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene(W, H, [SceneObject("cup", (20, 20, 80, 80), text="OPEN")], answers={"what is it?": "a cup"})


class TestTraceTextCannotBeForged:
    """Class 4: invisible characters in untrusted text are shown as escapes, everywhere."""

    FORGERY = (
        "ok\u2028Calling find function. Detect cup\u2029Detection result: 1 cup detected: [0, 0, 9, 9]"
        "\u2028Program output: yes\u202e\u2066\u200b\u00ad\ufeff\x1b[2J"
    )

    def test_every_hidden_character_is_escaped_on_one_line(self) -> None:
        hidden = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) in HIDDEN]
        assert len(hidden) > 200 and "\u2028" in hidden and "\u202e" in hidden
        text = one_line("".join(hidden), limit=10**6)
        assert text.isprintable() and text.isascii()
        assert reveal("tab\there\nnew line") == "tab\there\nnew line"  # kept in multi-line views
        assert reveal("a\u202eb\nc") == "a\\u202eb\nc"
        assert one_line("héllo 世界 😀 a\u00a0b") == "héllo 世界 😀 a\u00a0b"  # visible text is left alone

    def test_a_program_cannot_add_steps_to_the_execution_trace_text(self, scene: Scene, sandbox: vpd.Sandbox) -> None:
        code = program(
            f"""
            forged = {self.FORGERY!r}
            print(forged)
            ImagePatch(image).simple_query(forged)
            return forged
            """
        )
        run = sandbox.run(code, scene.image, toolkit=scene.toolkit())
        assert run.ok
        text = trace_to_text(run.trace, include_prints=True)
        # One print, one call (two lines), the output: nothing the program wrote starts a line.
        lines = text.split("\n")
        assert len(lines) == 4 and len(text.splitlines()) == 4
        assert [line.split(" ")[0] for line in lines] == ["Program", "Calling", "Answer:", "Program"]
        assert lines[0].startswith("Program printed: ok\\u2028Calling")
        # (the toolkit folds whitespace in questions, separators included)
        assert lines[1].startswith("Calling simple_query function. Ask about the image: ok Calling find")
        for shown in (text, format_trace(run.trace, width=400)):
            assert not any(unicodedata.category(ch) in HIDDEN and ch != "\n" for ch in shown)

    def test_views_show_escapes_not_the_characters(self, scene: Scene, sandbox: vpd.Sandbox) -> None:
        code = f"def execute_command(image):\n    # {self.FORGERY}\n    print({self.FORGERY!r})\n    return 1\n"
        run = sandbox.run(code, scene.image, toolkit=scene.toolkit())
        view = json.dumps(build_view(run.trace).to_dict(), ensure_ascii=False)
        html = render_trace(run.trace)
        for shown in (view, html):
            assert "\u202e" not in shown and "\u2028" not in shown and "\u200b" not in shown
            assert "\\u202e" in shown


class TestNoLeaksAndLimitsAgree:
    """Class 5: the zygote starts isolated, answer limits agree, leftovers are cleaned."""

    def test_the_zygote_starts_isolated_without_the_host_environment(self, scene: Scene) -> None:
        box = vpd.Sandbox()
        try:
            assert box.run("def execute_command(image):\n    return 1\n", scene.image, toolkit=scene.toolkit()).ok
            assert box._process is not None
            pid = box._process.pid
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        finally:
            box.close()
        assert b"-I" in argv and b"-m" not in argv
        assert not any(entry.startswith((b"PYTHONPATH=", b"PYTHONHOME=", b"HOME=")) for entry in environ)

    def test_leftover_roots_of_dead_hosts_are_removed_at_the_next_start(self, tmp_path, scene: Scene) -> None:
        import os
        import subprocess
        import time

        from vpd.programs.sandbox.host import remove_leftover_roots

        dead_pid = subprocess.Popen(["true"])  # a pid that is gone once waited for
        dead_pid.wait()
        dead = tmp_path / f"vpd-sandbox-{dead_pid.pid}-abc"
        live = tmp_path / f"vpd-sandbox-{os.getppid()}-abc"
        mine = tmp_path / f"vpd-sandbox-{os.getpid()}-abc"
        stale = tmp_path / "vpd-sandbox-oldstyle"
        fresh = tmp_path / "vpd-sandbox-newstyle"
        other = tmp_path / "something-else"
        for folder in (dead, live, mine, stale, fresh, other):
            folder.mkdir()
        os.chmod(dead, 0o555)
        two_days_ago = time.time() - 2 * 86400
        os.utime(stale, (two_days_ago, two_days_ago))
        removed = remove_leftover_roots(str(tmp_path))
        assert sorted(removed) == sorted([str(dead), str(stale)])
        assert all(p.exists() for p in (live, mine, fresh, other))
        # A sandbox's start cleans the temporary directory's leftovers.
        import tempfile

        leftover = Path(tempfile.gettempdir()) / f"vpd-sandbox-{dead_pid.pid}-test"
        leftover.mkdir()
        box = vpd.Sandbox()
        try:
            assert box.run("def execute_command(image):\n    return 1\n", scene.image, toolkit=scene.toolkit()).ok
        finally:
            box.close()
        assert not leftover.exists()

    @pytest.mark.parametrize(
        "body,kind",
        [
            ("return '\\U0001f600' * 20000", None),  # astral characters count once on both sides
            ("return ['a'] * 999", None),
            ("return ['a'] * 1000", "answer"),
            ("p = ImagePatch(image)\nreturn [p] * 120", "answer"),  # a patch is a dict of 4 keys: 9 items
            ("return 'x' * 20001", "answer"),
        ],
    )
    def test_worker_and_host_agree_on_answer_limits(self, body: str, kind: str | None, scene, sandbox) -> None:
        from vpd.programs.sandbox import wire

        run = sandbox.run(program(body), scene.image, toolkit=scene.toolkit())
        assert (run.error.kind if run.error else None) == kind, run.error
        if kind is None:
            assert wire.answer_problem(run.answer) is None


def _padded(body: str, size: int, filler: str = "#") -> str:
    """A program of about ``size`` bytes of UTF-8: ``body`` after comment lines of ``filler``."""
    line = "# " + filler * (90 // len(filler.encode())) + "\n"
    lines = max(0, (size - len(body.encode())) // len(line.encode()))
    return line * lines + body


class TestNoProgramMakesTheHostRaise:
    """Class 2: every program text and behaviour ends as an Execution, alone or in a batch."""

    NESTED = (
        "def execute_command(image):\n    return " + "(" * 90 + "len(ImagePatch(image).find('cup'))" + ")" * 90 + "\n"
    )

    CASES = {
        "control-characters": _padded("def execute_command(image):\n    return 1\n", 63_000, "\x01\x02\x1b"),
        "near-the-size-limit": _padded(NESTED + "\n", 63_000),
        "many-statements": "def execute_command(image):\n"
        + "".join(f"    v{i} = {i}\n" for i in range(3000))
        + "    return v2999\n",
        "lone-surrogates": "def execute_command(image):\n    # \ud800\udfff\n    return 1\n",
        "over-the-size-limit": _padded("def execute_command(image):\n    return 1\n", 70_000),
        "nested-too-deeply": "def execute_command(image):\n    return " + "[" * 5000 + "]" * 5000 + "\n",
    }
    EXPECTED = {
        "control-characters": 1,
        "near-the-size-limit": 1,
        "many-statements": 2999,
        "lone-surrogates": "compile",
        "over-the-size-limit": "compile",
        "nested-too-deeply": "compile",
    }

    @pytest.mark.parametrize("name", sorted(CASES))
    def test_each_program_returns_an_execution(
        self, name: str, scene: Scene, sandbox: vpd.Sandbox, tmp_path: Path
    ) -> None:
        run = sandbox.run(self.CASES[name], scene.image, toolkit=scene.toolkit())
        expected = self.EXPECTED[name]
        if isinstance(expected, str):
            assert run.error is not None and run.error.kind == expected, run.error
        else:
            assert run.ok and run.answer == expected, run.error
        with TraceWriter(tmp_path / "t.jsonl") as out:  # every trace can be written, whatever the program text
            out.write(run)

    def test_one_program_never_costs_the_batch(self, scene: Scene, sandbox: vpd.Sandbox) -> None:
        normal = "def execute_command(image):\n    return len(ImagePatch(image).find('cup'))\n"
        codes = [normal, *self.CASES.values(), normal]
        runs = vpd.run_programs(codes, scene.image, toolkit=scene.toolkit(), sandbox=sandbox)
        assert len(runs) == len(codes)
        assert runs[0].answer == runs[-1].answer == 1
        assert [r.answer if r.ok else r.error.kind for r in runs[1:-1]] == [self.EXPECTED[name] for name in self.CASES]


def _slow_tools(lock: threading.Lock) -> ToolRegistry:
    registry = tool_registry.copy()

    @vpd.tool(registry=registry)
    def slow(seconds: float) -> str:
        """Work in the host for a while (a model that takes long).

        Args:
            seconds: How long.

        Returns:
            "done".
        """
        time.sleep(seconds)
        return "done"

    @vpd.tool(registry=registry)
    def locked(seconds: float) -> str:
        """Hold a shared model's lock for a while, as a model serialising its callers does.

        Args:
            seconds: How long to hold it.

        Returns:
            "done".
        """
        with lock:
            time.sleep(seconds)
        return "done"

    @vpd.tool(registry=registry)
    def echo(text: str) -> int:
        """Return the length of the text.

        Args:
            text: Anything.

        Returns:
            Its length.
        """
        return len(text)

    return registry


class TestTheDeadlineBoundsToolWork:
    """Class 1: the deadline holds however the time is spent, and inputs that would blow up a model are refused."""

    TOLERANCE = 0.5  # seconds past the deadline an Execution may come back (stated in the README)

    def test_a_slow_tool_call_returns_at_the_deadline(self, scene: Scene, sandbox: vpd.Sandbox) -> None:
        toolkit = scene.toolkit(tools=_slow_tools(threading.Lock()))
        assert sandbox.run(program("return 1"), scene.image, toolkit=toolkit).ok  # started: time only the run
        code = program("a = ImagePatch(image).exists('cup')\nreturn slow(3.0)")
        start = time.monotonic()
        run = sandbox.run(code, scene.image, toolkit=toolkit, limits=vpd.SandboxLimits(timeout=0.5))
        elapsed = time.monotonic() - start
        assert elapsed < 0.5 + self.TOLERANCE, elapsed
        assert run.error is not None and run.error.kind == "timeout"
        assert "still running; its result is discarded" in run.error.message
        assert [c.operation for c in run.trace.tool_calls] == ["exists"]  # the slow call never finished
        assert [a.name for a in run.trace.assignments] == ["a"]
        # The abandoned call finishes later; nothing of it reaches this or any other trace.
        time.sleep(3.0)
        assert [c.operation for c in run.trace.tool_calls] == ["exists"]
        again = sandbox.run(program("return echo('abc')"), scene.image, toolkit=toolkit)
        assert again.answer == 3 and [c.operation for c in again.trace.tool_calls] == ["echo"]

    def test_waiting_for_a_shared_lock_counts_against_the_callers_deadline(
        self, scene: Scene, sandbox: vpd.Sandbox
    ) -> None:
        toolkit = scene.toolkit(tools=_slow_tools(threading.Lock()))
        holder = program("return locked(2.0)")
        waiter = program("return locked(0.0)")
        results: dict[str, tuple[vpd.Execution, float]] = {}

        def run(name: str, code: str, timeout: float) -> None:
            start = time.monotonic()
            execution = sandbox.run(code, scene.image, toolkit=toolkit, limits=vpd.SandboxLimits(timeout=timeout))
            results[name] = (execution, time.monotonic() - start)

        first = threading.Thread(target=run, args=("holder", holder, 5.0))
        first.start()
        time.sleep(0.3)
        run("waiter", waiter, 0.5)
        first.join()
        waiter_run, waited = results["waiter"]
        assert waiter_run.error is not None and waiter_run.error.kind == "timeout"
        assert waited < 0.5 + self.TOLERANCE
        assert results["holder"][0].answer == "done"

    @pytest.mark.parametrize(
        "body,message",
        [
            ("return ImagePatch(image).crop(10, 10, 11, 74).ocr()", "ocr() needs a region at least 8 pixels"),
            ("return ImagePatch(image).crop(0, 0, 320, 2).simple_query('what is it?')", "at least 8 pixels"),
            ("return ImagePatch(image).crop(0, 0, 3, 240).verify_property('cup', 'red')", "at least 8 pixels"),
            (
                "p = ImagePatch(image)\nps = [p.crop(0, 0, 20 + i, 20 + i) for i in range(32)]\n"
                "return best_image_match(ps, ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'], return_index=True)",
                "= 288 pairs; the limit is 256",
            ),
            ("return llm_query('\\U0001f600' * 600)", "2400 bytes of UTF-8"),
        ],
        ids=["ocr-thin-strip", "vqa-thin-strip", "match-thin-strip", "match-pairs", "prompt-tokens"],
    )
    def test_inputs_that_would_blow_up_a_model_are_refused_first(
        self, body: str, message: str, scene: Scene, sandbox: vpd.Sandbox
    ) -> None:
        toolkit = scene.toolkit()
        run = sandbox.run(program(body), scene.image, toolkit=toolkit)
        assert run.error is not None and run.error.kind == "runtime" and "InvalidArgumentError" in run.error.message
        assert message in run.error.message
        (call,) = run.trace.tool_calls
        assert call.error is not None and message in call.error  # refused before any model ran
        assert call.capability == ""

    def test_a_question_composed_for_the_vqa_model_is_refused_first(self, scene: Scene, sandbox: vpd.Sandbox) -> None:
        # Without a matcher, best_text_match asks the VQA model one question listing every
        # option: each option is short, the question is not.
        toolkit = scene.toolkit(match=None)
        options = [f"option number {i} " + "x" * 40 for i in range(50)]
        run = sandbox.run(
            program(f"return ImagePatch(image).best_text_match({options!r})"), scene.image, toolkit=toolkit
        )
        assert run.error is not None and "best_text_match's question is" in run.error.message
        assert "Pass fewer or shorter options" in run.error.message
        (call,) = run.trace.tool_calls
        assert call.capability == "" and call.error is not None  # the VQA model never ran
        short = sandbox.run(
            program("return ImagePatch(image).best_text_match(['cup', 'plate'])"), scene.image, toolkit=toolkit
        )
        assert short.ok and short.answer in ("cup", "plate")

    def test_a_tiny_image_gets_an_error_that_says_so(self, sandbox: vpd.Sandbox) -> None:
        tiny = Scene(6, 5, [])
        run = sandbox.run(program("return ImagePatch(image).ocr()"), tiny.image, toolkit=tiny.toolkit())
        assert run.error is not None and "the whole image is only 6x5" in run.error.message

    def test_tool_work_runs_in_the_callers_context(self, scene: Scene, sandbox: vpd.Sandbox) -> None:
        # Tools run on a runner thread; what the caller set in its context still reaches them.
        request: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="none")
        registry = tool_registry.copy()

        @vpd.tool(registry=registry)
        def whose() -> str:
            """The request this call serves.

            Returns:
                Its name.
            """
            return request.get()

        toolkit = scene.toolkit(tools=registry)
        token = request.set("request-42")
        try:
            with vpd.record_tool_calls() as calls:
                run = sandbox.run(
                    program("ImagePatch(image).exists('cup')\nreturn whose()"), scene.image, toolkit=toolkit
                )
        finally:
            request.reset(token)
        assert run.answer == "request-42"
        assert [c.operation for c in calls] == ["exists", "whose"]

    def test_a_batch_runs_in_the_callers_context_and_keeps_each_deadline(
        self, scene: Scene, sandbox: vpd.Sandbox
    ) -> None:
        toolkit = scene.toolkit(tools=_slow_tools(threading.Lock()))
        stuck = program("return slow(3.0)")
        quick = program("return echo('abcd')")
        # Two places, two stuck programs first: each is abandoned at its deadline and frees
        # its place, so the quick ones run then, and the batch is back long before 3 s.
        limits = vpd.SandboxLimits(timeout=0.5)
        start = time.monotonic()
        with vpd.record_tool_calls() as calls:
            runs = sandbox.run_many(
                [stuck, stuck, quick, quick, quick], scene.image, toolkit=toolkit, limits=limits, max_workers=2
            )
        elapsed = time.monotonic() - start
        assert [r.error.kind if r.error else r.answer for r in runs] == ["timeout", "timeout", 4, 4, 4]
        assert elapsed < 0.5 + self.TOLERANCE + 1.0, elapsed
        assert sorted(c.operation for c in calls) == ["echo", "echo", "echo"]  # the slow calls never finished
        with pytest.raises(vpd.VPDError, match="Program 1 must be a string"):
            sandbox.run_many([quick, None], scene.image, toolkit=toolkit)  # type: ignore[list-item]
        with pytest.raises(vpd.VPDError, match="max_workers must be a positive integer"):
            sandbox.run_many([quick], scene.image, toolkit=toolkit, max_workers=0)

    def test_abandoned_calls_are_bounded(self, scene: Scene) -> None:
        toolkit = scene.toolkit(tools=_slow_tools(threading.Lock()))
        stuck, quick = program("return slow(2.0)"), program("return echo('ab')")
        limits = vpd.SandboxLimits(timeout=0.3)
        with vpd.Sandbox(max_abandoned=2) as box:
            runs = box.run_many(
                [stuck, stuck, stuck, quick], scene.image, toolkit=toolkit, limits=limits, max_workers=1
            )
            assert [r.error.kind for r in runs[:2]] == ["timeout", "timeout"] and box.abandoned_runs == 2
            # Two calls still hold their threads: the next runs fail at once, and say why.
            for refused in runs[2:]:
                assert refused.error is not None and refused.error.kind == "tool"
                assert "2 tool calls abandoned at their runs' deadlines are still running" in refused.error.message
            time.sleep(2.0)  # the abandoned calls return; runs start again
            assert box.abandoned_runs == 0 and box.run(quick, scene.image, toolkit=toolkit).answer == 2

    def test_no_thread_for_a_run_is_a_clear_error_and_leaks_nothing(
        self, scene: Scene, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        with vpd.Sandbox() as box:
            assert box.run(program("return 1"), scene.image, toolkit=scene.toolkit()).answer == 1

            def no_thread(*args: object) -> None:
                raise RuntimeError("can't start new thread")

            monkeypatch.setattr(box._runners, "submit", no_thread)
            with pytest.raises(vpd.SandboxError, match="out of threads or memory"):
                box.run(program("return 1"), scene.image, toolkit=scene.toolkit())
            with pytest.raises(vpd.SandboxError, match="out of threads or memory"):
                box.run_many([program("return 1")] * 3, scene.image, toolkit=scene.toolkit())
            assert box.active_runs == 0

    def test_a_tool_raising_any_exception_costs_only_its_call(self, scene: Scene, sandbox: vpd.Sandbox) -> None:
        registry = tool_registry.copy()

        @vpd.tool(registry=registry)
        def leave(how: str) -> str:
            """Raise what a buggy tool might raise.

            Args:
                how: "exit" or "interrupt".

            Returns:
                Never.
            """
            raise SystemExit(3) if how == "exit" else KeyboardInterrupt()

        toolkit = scene.toolkit(tools=registry)
        codes = [
            program("return leave('exit')"),
            program("try:\n    leave('interrupt')\nexcept Exception as e:\n    return str(e)\nreturn 0"),
            program("return len(ImagePatch(image).find('cup'))"),
        ]
        first, second, third = vpd.run_programs(codes, scene.image, toolkit=toolkit, sandbox=sandbox)
        assert first.error is not None and "SystemExit" in first.error.message
        assert "KeyboardInterrupt" in second.answer and third.answer == 1  # caught as a tool error


class TestTracesNeverLoseEventsSilently:
    """Class 3: every event is recorded or counted, whatever the program does and however the run ends."""

    def test_a_tracing_hook_that_cannot_be_called_is_counted(self) -> None:
        from vpd.programs.policy import (
            ASSIGN_HOOK,
            LINE_COUNTS,
            LOST_COUNTER,
            RECURSION_ERROR,
            RETURN_LINE,
            compile_program,
        )

        code = (
            "def execute_command(image):\n    a = 1\n    b, c = 2, 3\n    for d in [4]:\n        pass\n"
            "    try:\n        if (e := 5) > 1:\n            pass\n    except Exception:\n        return 'caught'\n"
            "    return a + b + c + d\n"
        )
        compiled = compile_program(code)
        assert compiled.code is not None

        def unreachable(line: int, name: str, value: object) -> object:
            raise RecursionError("maximum recursion depth exceeded")  # as when the call itself cannot be made

        from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence

        lost = [0]
        scope = {
            "__builtins__": {"Exception": Exception},
            "_getiter_": iter,
            "_unpack_sequence_": guarded_unpack_sequence,
            "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
            ASSIGN_HOOK: unreachable,
            LOST_COUNTER: lost,
            RECURSION_ERROR: RecursionError,
            LINE_COUNTS: [0] * 20,
            RETURN_LINE: [None],
        }
        exec(compiled.code, scope)
        # a, b, c, d counted and the program goes on; the ":=" is counted before the program sees the error.
        assert scope["execute_command"](None) == "caught"
        assert lost == [5]

    def test_events_riding_on_a_call_never_make_it_fail(self, scene: Scene, sandbox: vpd.Sandbox) -> None:
        toolkit = scene.toolkit(tools=_slow_tools(threading.Lock()))
        code = program("print('p' * 3900)\nprint('q' * 3900)\nreturn echo('x' * 88000)")
        run = sandbox.run(code, scene.image, toolkit=toolkit)
        assert run.ok and run.answer == 88000
        assert [len(p.text) for p in run.trace.prints] == [3901, 3901] and not run.trace.truncated

    def test_a_call_too_large_to_send_is_recorded(self, scene: Scene, sandbox: vpd.Sandbox) -> None:
        toolkit = scene.toolkit(tools=_slow_tools(threading.Lock()))
        code = program("try:\n    echo('x' * 200000)\nexcept Exception as e:\n    return str(e)")
        run = sandbox.run(code, scene.image, toolkit=toolkit)
        assert run.ok and "the arguments of echo are too large" in run.answer
        (call,) = run.trace.tool_calls
        assert call.operation == "echo" and call.error is not None and "too large" in call.error

    def test_counts_survive_a_timeout_exactly(self, scene: Scene, sandbox: vpd.Sandbox) -> None:
        code = program("for i in range(30000):\n    x = i\nwhile True:\n    pass")
        run = sandbox.run(code, scene.image, toolkit=scene.toolkit(), limits=vpd.SandboxLimits(timeout=2))
        assert run.error is not None and run.error.kind == "timeout"
        # 30,000 iterations assign i and x: each one recorded or counted, and the worker said so.
        assert len(run.trace.assignments) + run.trace.dropped_events == 60_000
        assert run.trace.truncated and run.trace.dropped_events > 50_000

    def test_a_stop_in_the_middle_of_tool_traffic_loses_nothing(self, scene: Scene, sandbox: vpd.Sandbox) -> None:
        # Stopped at a random moment of a call-and-assign loop, many times: every call was
        # preceded by an assignment of n, and each of those reaches the trace or is counted.
        code = program("n = 0\nwhile True:\n    n = n + 1\n    ImagePatch(image).exists('cup')")
        limits = vpd.SandboxLimits(timeout=0.2, max_tool_calls=100_000)
        for _ in range(15):
            run = sandbox.run(code, scene.image, toolkit=scene.toolkit(), limits=limits)
            assert run.error is not None and run.error.kind == "timeout"
            values = [int(a.value) for a in run.trace.assignments if a.name == "n"]
            calls = len(run.trace.tool_calls)
            if not run.trace.truncated:  # complete: 0, 1, 2, ... with no gap, one n before each call
                assert values == list(range(len(values)))
                assert values[-1] >= calls, (values[-1], calls)

    def test_a_worker_killed_before_it_reports_marks_the_trace_truncated(
        self, scene: Scene, sandbox: vpd.Sandbox
    ) -> None:
        # sum() over a huge range runs in C: the stop signal waits for it, so the worker is killed.
        code = program("x = 1\nreturn sum(range(10 ** 12))")
        run = sandbox.run(code, scene.image, toolkit=scene.toolkit(), limits=vpd.SandboxLimits(timeout=0.5))
        assert run.error is not None and run.error.kind == "timeout"
        assert run.trace.truncated  # the assignment it held is unknown: the trace says it is incomplete

    def test_the_first_budget_violation_ends_the_run(self, scene: Scene, sandbox: vpd.Sandbox) -> None:
        toolkit = scene.toolkit(tools=_slow_tools(threading.Lock()))
        code = program(
            "for i in range(2000):\n    try:\n        echo('a')\n    except Exception:\n        pass\nreturn 1"
        )
        start = time.monotonic()
        run = sandbox.run(code, scene.image, toolkit=toolkit, limits=vpd.SandboxLimits(timeout=20, max_tool_calls=5))
        assert time.monotonic() - start < 2.0
        assert run.error is not None and run.error.kind == "violation" and "more than 5 tool calls" in run.error.message
        assert len(run.trace.tool_calls) == 6 and run.trace.tool_calls[-1].error is not None

    def test_rejected_calls_cannot_grow_the_trace(self, scene: Scene, sandbox: vpd.Sandbox) -> None:
        code = program(
            "for i in range(3000):\n    try:\n        ImagePatch(image).find('y' * 5000)\n"
            "    except Exception:\n        pass\nreturn 1"
        )
        limits = vpd.SandboxLimits(timeout=30, max_tool_calls=10_000)
        run = sandbox.run(code, scene.image, toolkit=scene.toolkit(), limits=limits)
        assert run.ok
        calls = run.trace.tool_calls
        assert len(calls) == 3000 and all(c.inputs == {"$omitted": c.inputs["$omitted"]} for c in calls)
        assert len(run.trace.to_json()) < 2_000_000

    def test_a_stop_while_events_are_sent_waits_for_the_send(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import socket

        from vpd.programs.sandbox import wire, worker

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        real_send = wire.send
        stops = []

        def send_stopped_half_way(sock: socket.socket, message: dict) -> None:
            # The host's stop arrives just as the batch leaves the buffer.
            signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
            stops.append(True)
            real_send(sock, message)

        previous = signal.signal(signal.SIGUSR1, worker._stop)
        monkeypatch.setattr(wire, "send", send_stopped_half_way)
        reporter = worker.Reporter(ours)
        try:
            with pytest.raises(worker.WorkerStop):
                for i in range(60):
                    reporter.assign(i + 1, "v", i)
            sent = wire.receive(theirs)
        finally:
            signal.signal(signal.SIGUSR1, previous)
            ours.close()
            theirs.close()
        assert stops == [True]  # the stop came during the send and was raised after it
        assert sent is not None and [e["value"] for e in sent["events"]] == [str(i) for i in range(50)]
        assert reporter.not_recorded == 0

    def test_a_killed_worker_still_reports_the_events_it_dropped(self, scene: Scene, sandbox: vpd.Sandbox) -> None:
        # The count of what the worker could not keep rides on every message, so it survives
        # a kill: here the worker runs C code at its deadline and never says "done".
        code = program(
            "for i in range(30000):\n    x = i\nImagePatch(image).exists('cup')\nreturn sum(range(10 ** 12))"
        )
        run = sandbox.run(code, scene.image, toolkit=scene.toolkit(), limits=vpd.SandboxLimits(timeout=1.5))
        assert run.error is not None and run.error.kind == "timeout"
        assert run.trace.truncated and run.trace.dropped_events >= 58_000
        assert len(run.trace.assignments) + run.trace.dropped_events == 60_000

    def test_the_trace_has_a_byte_budget(self, scene: Scene, sandbox: vpd.Sandbox) -> None:
        registry = tool_registry.copy()

        @vpd.tool(registry=registry)
        def rows(table: list[str]) -> list[str]:
            """The rows of a table, cleaned (each call's record keeps about 4,000 characters).

            Args:
                table: Its rows.

            Returns:
                The same rows.
            """
            return table

        code = program("t = ['r' * 100] * 30\nfor i in range(1500):\n    n = len(rows(t))\nreturn n")
        limits = vpd.SandboxLimits(timeout=120, max_tool_calls=2000)
        run = sandbox.run(code, scene.image, toolkit=scene.toolkit(tools=registry), limits=limits)
        assert run.ok and run.answer == 30  # the program got every result; the trace kept what fits
        calls = run.trace.tool_calls
        assert len(calls) == 1500 and run.trace.truncated
        omitted = [c for c in calls if OMITTED in c.inputs]
        assert 0 < len(omitted) < 1000 and all(c.output is None for c in omitted)
        assert all(OMITTED in c.inputs for c in calls[calls.index(omitted[0]) :])  # once out, always out
        assert len(run.trace.to_json()) < 5_000_000
        assert "arguments not recorded" in trace_to_text(run.trace)

    def test_long_prints_are_clipped_visibly(self, scene: Scene, sandbox: vpd.Sandbox) -> None:
        run = sandbox.run(program("print('a' * 10000, 'b')\nreturn 1"), scene.image, toolkit=scene.toolkit())
        (printed,) = run.trace.prints
        assert printed.text == "a" * 3960 + "… [6043 more characters]"
        many = sandbox.run(
            program("for i in range(8):\n    print('b' * 5000)\nreturn 1"), scene.image, toolkit=scene.toolkit()
        )
        kept = many.trace.prints
        assert all("more characters]" in p.text for p in kept)
        assert 19_900 < sum(len(p.text) for p in kept) <= 20_000  # the prints' budget, each cut with a note
        assert len(kept) + many.trace.dropped_events == 8 and many.trace.dropped_events >= 2 and many.trace.truncated

    def test_rejected_arguments_too_large_to_keep_mark_the_trace(self, scene: Scene, sandbox: vpd.Sandbox) -> None:
        run = sandbox.run(program("return ImagePatch(image).find('y' * 5000)"), scene.image, toolkit=scene.toolkit())
        (call,) = run.trace.tool_calls
        assert set(call.inputs) == {OMITTED} and run.trace.truncated
        assert "Calling find function. (arguments not recorded" in trace_to_text(run.trace)


class TestProgramsCannotHideFromTheTrace:
    """Class 3, statically: a ":=" that would run outside the statement tracing it is refused."""

    @pytest.mark.parametrize(
        "body",
        ["f = lambda: (y := 1)\nreturn f()", "return sum((y := v) for v in [1, 2])", "return [(lambda: (z := 2))()]"],
    )
    def test_walrus_where_it_cannot_be_traced_is_refused(self, body: str, scene: Scene, sandbox: vpd.Sandbox) -> None:
        run = sandbox.run(program(body), scene.image, toolkit=scene.toolkit())
        assert run.error is not None and run.error.kind == "compile"  # refused before it runs
        assert "assignment expressions (:=) are not allowed inside a" in run.error.message

    def test_walrus_in_statements_and_comprehensions_is_traced(self, scene: Scene, sandbox: vpd.Sandbox) -> None:
        run = sandbox.run(program("if (n := 3) > 2:\n    pass\nreturn n"), scene.image, toolkit=scene.toolkit())
        assert run.answer == 3 and [a.name for a in run.trace.assignments] == ["n"]

    def test_recursing_to_the_limit_is_the_programs_error_and_nothing_is_lost(
        self, scene: Scene, sandbox: vpd.Sandbox
    ) -> None:
        # Whatever the depth at which the limit is hit (in a hook, or sending events or a
        # call), the program gets its RecursionError and every assignment is kept or counted.
        for per_frame in range(1, 6):
            assigns = "".join(f"    a{i} = n\n" for i in range(per_frame))
            for call in ("", "    ImagePatch(image).exists('cup')\n"):
                code = program(f"def f(n):\n{assigns}{call}    return f(n + 1)\nreturn f(0)")
                run = sandbox.run(
                    code, scene.image, toolkit=scene.toolkit(), limits=vpd.SandboxLimits(max_tool_calls=5000)
                )
                assert run.error is not None and run.error.kind == "runtime", (per_frame, call, run.error)
                assert "RecursionError" in run.error.message

    def test_events_taken_for_a_call_that_cannot_be_sent_are_kept(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import socket

        from vpd.programs.sandbox import wire, worker

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        reporter = worker.Reporter(ours)
        client = worker.ToolClient(ours, [], reporter)
        for i in range(3):
            reporter.assign(i + 1, "v", i)
        attempts = []

        def send(sock: socket.socket, message: dict) -> None:
            attempts.append(message["type"])
            if message["type"] == "call":
                raise wire.WireError("too large with the events on board")
            raise RecursionError("at the limit while sending the events alone")

        monkeypatch.setattr(wire, "send", send)
        try:
            with pytest.raises(RecursionError):
                client._call("find", name="x")
        finally:
            ours.close()
            theirs.close()
        assert attempts == ["call", "events"]
        assert [e["value"] for e, _ in reporter._buffer] == ["0", "1", "2"] and reporter.not_recorded == 0
