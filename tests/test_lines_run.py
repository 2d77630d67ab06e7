"""Which lines ran: counted by the compiled program, carried by the trace, marked in the views."""

from __future__ import annotations

import pytest

import vpd
from vpd.render import build_view, render_trace
from vpd.render.lines import line_runs, statement_heads
from vpd.testing import Scene, SceneObject
from vpd.traces import ProgramError, Trace


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene(320, 240, [SceneObject("cat", (10, 10, 60, 60)), SceneObject("cat", (100, 10, 150, 60))])


BRANCHES = """def execute_command(image):
    cats = ImagePatch(image).find("cat")
    total = 0
    for cat in cats:
        total += 1
    names = [c for c in cats if c]

    def helper(x):
        return x * 2

    if total > 5:
        return "many"
    elif total == 2:
        return str(helper(total) // 2)
    else:
        return "few"
"""


def test_counts_the_statements_that_ran_and_the_return_taken(scene: Scene, sandbox: vpd.Sandbox) -> None:
    run = vpd.run_program(BRANCHES, scene.image, toolkit=scene.toolkit(), sandbox=sandbox)
    assert run.answer == "2"
    counts = run.trace.line_counts
    assert counts is not None
    assert counts[4] == 1 and counts[5] == 2  # the loop header once, its body per iteration
    assert counts[6] == 1  # a comprehension counts as its statement, not per item
    assert counts[9] == 1  # the helper's body ran once
    assert 12 not in counts and 16 not in counts  # branches not taken
    assert run.trace.return_line == 14  # the helper's return (line 9) ran after it, and is not the answer's
    assert Trace.from_json(run.trace.to_json()) == run.trace


def test_a_failed_or_stopped_run_says_where(scene: Scene, sandbox: vpd.Sandbox) -> None:
    failed = vpd.run_program(
        "def execute_command(image):\n    x = 1\n    return x / 0\n    y = 2\n", scene.image, sandbox=sandbox
    )
    assert failed.error is not None and failed.error.line == 3
    assert failed.trace.line_counts == {1: 1, 2: 1, 3: 1} and failed.trace.return_line is None
    loop = "def execute_command(image):\n    x = 0\n    while True:\n        x += 1\n"
    stopped = vpd.run_program(loop, scene.image, sandbox=sandbox, timeout=0.5)
    assert stopped.error is not None and stopped.error.kind == "timeout"
    assert stopped.error.line in (3, 4)  # the line the stop interrupted
    assert stopped.trace.line_counts is not None and stopped.trace.line_counts[4] > 100


def test_a_caught_exception_then_a_return(scene: Scene, sandbox: vpd.Sandbox) -> None:
    program = (
        "def execute_command(image):\n    try:\n        x = 1 / 0\n    except ZeroDivisionError:\n"
        "        x = 5\n    return x\n"
    )
    run = vpd.run_program(program, scene.image, sandbox=sandbox)
    assert run.answer == 5 and run.trace.return_line == 6
    runs = build_view(run.trace).line_runs
    assert runs == [1, 1, 1, 1, 1, 1]  # the except line ran with its handler


def test_statement_spans() -> None:
    program = (
        "@d\ndef f(a,\n      b):\n    x = g(1,\n          2)\n    if x:\n        pass\n    else:\n"
        "        # no\n        y = 2\n"
    )
    heads = statement_heads(program)
    assert heads[1] == heads[2] == heads[3] == 2  # decorator and a multi-line signature: the def
    assert heads[4] == heads[5] == 4  # a call over two lines
    assert 8 not in heads and 9 not in heads  # else:, a comment
    assert statement_heads("def (") == {}
    assert line_runs(program, None, 10) == [None] * 10  # not recorded: nothing is marked
    assert line_runs("x = 1\ny = 2\n", {1: 3}, 2) == [3, 0]


def test_the_view_marks_ran_not_run_return_and_the_failure(scene: Scene, sandbox: vpd.Sandbox) -> None:
    run = vpd.run_program(BRANCHES, scene.image, toolkit=scene.toolkit(), sandbox=sandbox)
    html = render_trace(run.trace, scene.image)
    row5 = '<tr class="vpd-ran" data-line="5"><td class="vpd-no">5</td><td class="vpd-mark" title="ran 2 times">'
    assert row5 + "\u00d72" in html
    assert '<tr class="vpd-notrun" data-line="12">' in html
    assert '<tr class="vpd-ran vpd-returned" data-line="14">' in html and ">return</td>" in html
    assert '<tr data-line="7">' in html  # a blank line: no mark
    assert "Lines that ran have a green edge" in html
    timeout = Trace(
        program="def execute_command(image):\n    while True:\n        pass\n",
        image={"width": 10, "height": 10},
        error=ProgramError("timeout", "too slow", 3),
        line_counts={1: 1, 2: 1, 3: 900},
    )
    html = render_trace(timeout)
    assert 'data-line="3"><td class="vpd-no">3</td><td class="vpd-mark" title="this line was running' in html
    assert ">stopped</td>" in html
    old = Trace(program="x = 1", image={"width": 10, "height": 10})  # a trace without counts
    html = render_trace(old)
    assert 'class="vpd-ran' not in html and 'class="vpd-notrun' not in html and "green edge" not in html


def test_the_return_taken_is_the_one_that_returned(scene: Scene, sandbox: vpd.Sandbox) -> None:
    raising = (
        "def execute_command(image):\n    try:\n        return 1 / 0\n    except ZeroDivisionError:\n        pass\n"
    )
    run = vpd.run_program(raising, scene.image, sandbox=sandbox)
    assert run.ok and run.answer is None and run.trace.return_line is None  # line 3 never returned
    recursive = (
        "def execute_command(image, depth=0):\n    if depth < 2:\n        return execute_command(image, depth + 1)\n"
        "    return depth\n"
    )
    run = vpd.run_program(recursive, scene.image, sandbox=sandbox)
    assert run.answer == 2 and run.trace.return_line == 3  # the outer call returned from line 3
    cancelled = (
        "def execute_command(image):\n    try:\n        try:\n            return 1\n        finally:\n"
        "            raise ValueError('no')\n    except ValueError:\n        pass\n"
    )
    run = vpd.run_program(cancelled, scene.image, sandbox=sandbox)
    assert run.ok and run.answer is None and run.trace.return_line is None  # the finally undid line 4's return


def test_a_line_counts_how_often_it_was_reached_not_its_statements(scene: Scene, sandbox: vpd.Sandbox) -> None:
    program = (
        "def execute_command(image):\n    a = 1; b = 2\n    for i in range(3):\n        a += 1; b += 1\n"
        "    if a: return a + b\n"
    )
    run = vpd.run_program(program, scene.image, sandbox=sandbox)
    assert run.answer == 9 and run.trace.line_counts == {1: 1, 2: 1, 3: 1, 4: 3, 5: 1}
    assert run.trace.return_line == 5


def test_a_long_program_still_answers(scene: Scene, sandbox: vpd.Sandbox) -> None:
    """15,000 lines ran: the counts must not crowd the worker's last message out of the wire."""
    program = "def execute_command(image):\n" + " 1\n" * 15_000 + " return 5\n"  # 45 kB
    run = vpd.run_program(program, scene.image, sandbox=sandbox)
    assert run.ok and run.answer == 5, run.error
    counts = run.trace.line_counts
    assert counts is None or counts[15_001] == 1  # counted when they fit, else not recorded (never wrong)


def test_lines_ended_by_carriage_returns(scene: Scene, sandbox: vpd.Sandbox) -> None:
    run = vpd.run_program("def execute_command(image):\r    a = 1\r    return a\r", scene.image, sandbox=sandbox)
    assert run.answer == 1 and run.trace.line_counts == {1: 1, 2: 1, 3: 1} and run.trace.return_line == 3


def test_counts_give_way_to_a_large_answer(scene: Scene, sandbox: vpd.Sandbox) -> None:
    """Counts and a large (allowed) answer together overflow the last message: the answer wins."""
    body = "    for i in range(100):\n" + "        1\n" * 4_700
    program = "def execute_command(image):\n" + body + "    return '\U0001f600' * 19_990\n"  # 80 kB of UTF-8
    run = vpd.run_program(program, scene.image, sandbox=sandbox)
    assert run.ok and run.answer == "\U0001f600" * 19_990, run.error


def test_the_host_keeps_only_sane_counts() -> None:
    from vpd.programs.sandbox.recording import TraceRecorder

    for bad in ("12", [1, -1], [1, True], [1, "2"], [0] * 12, {"1": 1}, [1, 2**70]):
        recorder = TraceRecorder()
        recorder.note_lines({"lines": bad, "return_line": 99, "line": "3"}, program_lines=10)
        assert recorder.line_counts is None and recorder.return_line is None and recorder.stop_line is None, bad
    recorder = TraceRecorder()
    recorder.note_lines({"lines": [7, 1, 0, 4], "return_line": 3, "line": 2}, program_lines=10)
    assert recorder.line_counts == {1: 1, 3: 4} and recorder.return_line == 3 and recorder.stop_line == 2


def test_comments_and_blank_lines_under_a_header_get_no_mark() -> None:
    program = "def f(a):\n    # why\n\n    if a:\n        # note\n        return 1\n"
    heads = statement_heads(program)
    assert heads == {1: 1, 4: 4, 6: 6}
