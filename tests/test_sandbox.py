"""Behaviour of the sandbox: answers, traces, errors, limits, concurrency, user tools, restarts.

The attack suite (tests/test_attacks.py) checks that hostile programs are contained;
these tests check that ordinary ViperGPT-style programs get the right answer and a
complete trace, and that each way a run can end is reported as it should be.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from support import program

import vpd
from vpd.programs import check_program
from vpd.testing import Scene, SceneObject
from vpd.tools.user_tools import ToolRegistry
from vpd.traces import TRACE_VERSION, Assignment, PrintOutput, ToolCall

W, H = 640, 480
VIPER = """def execute_command(image):
    image_patch = ImagePatch(image)
    cups = image_patch.find("cup")
    print("cups:", len(cups))
    cups = sorted(cups, key=lambda c: c.horizontal_center)
    left_cup = cups[0]
    is_red = left_cup.verify_property("cup", "red")
    sign_text = image_patch.find("sign")[0].ocr()
    if is_red and sign_text == "OPEN":
        return bool_to_yesno(True)
    return "no"
"""


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene(
        W,
        H,
        [
            SceneObject("cup", (100, 300, 180, 400), attributes=("red",), depth=2.0),
            SceneObject("cup", (400, 100, 480, 200), attributes=("blue",), depth=5.0),
            SceneObject("sign", (250, 20, 390, 80), text="OPEN"),
        ],
        answers={"what is on the sign?": "open"},
    )


@pytest.fixture(scope="module")
def toolkit(scene: Scene, user_tools: ToolRegistry) -> vpd.Toolkit:
    return scene.toolkit(tools=user_tools)


def run(code: str, scene: Scene, toolkit: vpd.Toolkit, sandbox: vpd.Sandbox, **kwargs: Any) -> vpd.Execution:
    return vpd.run_program(code, scene.image, toolkit=toolkit, sandbox=sandbox, **kwargs)


def assert_trace_ok(ex: vpd.Execution) -> None:
    trace = ex.trace
    assert [e.index for e in trace.events] == list(range(len(trace.events)))
    assert vpd.Trace.from_json(trace.to_json()) == trace
    assert trace.answer == ex.answer and trace.error == ex.error


# -- a ViperGPT-style program ---------------------------------------------------------------------
def test_viper_program_answer_and_complete_trace(scene, toolkit, sandbox):
    ex = run(VIPER, scene, toolkit, sandbox)
    assert ex.ok and ex.error is None
    assert ex.answer == "yes"
    assert ex.stdout == "cups: 2\n"
    assert ex.wall_seconds > 0 and 0 < ex.tool_seconds <= ex.wall_seconds
    trace = ex.trace
    assert_trace_ok(ex)
    assert trace.version == TRACE_VERSION and trace.program == VIPER
    assert trace.image["width"] == W and trace.image["height"] == H and len(trace.image["sha256"]) == 64

    calls = trace.tool_calls
    assert [(c.operation, c.line) for c in calls] == [("find", 3), ("verify_property", 7), ("find", 8), ("ocr", 8)]
    find_cups, verify, find_sign, ocr = calls
    assert find_cups.inputs == {"object_name": "cup"}
    assert find_cups.box == [0, 0, W, H]  # the whole image, top-left origin
    assert [d["box"] for d in find_cups.output] == [[100, 300, 180, 400], [400, 100, 480, 200]]
    assert find_cups.capability == "detect" and find_cups.backend == "fake" and find_cups.error is None
    assert verify.inputs == {"object_name": "cup", "property": "red"} and verify.output is True
    assert verify.box == [100, 300, 180, 400]  # the left cup's region
    assert find_sign.output[0]["box"] == [250, 20, 390, 80]
    assert ocr.box == [250, 20, 390, 80] and ocr.output == "OPEN"
    assert all(c.seconds >= 0 and c.cache_hit in (True, False) for c in calls)

    assigned = [(a.line, a.name) for a in trace.assignments]
    assert assigned == [(2, "image_patch"), (3, "cups"), (5, "cups"), (6, "left_cup"), (7, "is_red"), (8, "sign_text")]
    values = {a.name: a.value for a in trace.assignments}
    assert values["image_patch"] == f"ImagePatch(left=0, lower=0, right={W}, upper={H})"
    # ImagePatch coordinates are bottom-left: the left cup (y 300..400 from the top) is lower=80, upper=180
    assert values["left_cup"] == "ImagePatch(left=100, lower=80, right=180, upper=180)"
    assert values["is_red"] == "True" and values["sign_text"] == "'OPEN'"
    assert [(p.line, p.text) for p in trace.prints] == [(4, "cups: 2\n")]

    # the events interleave in program order
    kinds = [type(e).__name__ for e in trace.events]
    assert kinds[:4] == ["Assignment", "ToolCall", "Assignment", "PrintOutput"]


def test_helpers_llm_depth_and_best_image_match(scene, toolkit, sandbox):
    code = program(
        """
        image_patch = ImagePatch(image)
        cups = image_patch.find("cup")
        closest = min(cups, key=lambda c: c.depth())
        blue = best_image_match(cups, ["blue cup"])
        index = best_image_match(cups, ["red cup"], return_index=True)
        near = distance(cups[0], cups[1]) > 0
        n = coerce_to_numeric("2 cups")
        return [closest.horizontal_center, blue.left, index, near, n]
        """
    )
    ex = run(code, scene, toolkit, sandbox)
    assert ex.ok, ex.error
    assert ex.answer == [140.0, 400, 0, True, 2]
    operations = [c.operation for c in ex.trace.tool_calls]
    assert operations == ["find", "depth", "depth", "best_image_match", "best_image_match"]
    depth_calls = ex.trace.tool_calls[1:3]
    assert [c.output for c in depth_calls] == [2.0, 5.0]
    assert all(c.line == 4 for c in depth_calls)


# -- many programs at once ------------------------------------------------------------------------
def test_run_programs_keeps_traces_apart(scene, toolkit, sandbox):
    names = ["cup", "sign", "dog", "cup", "sign", "red cup"]
    codes = [program(f"found = ImagePatch(image).find({n!r})\nreturn [{i}, len(found)]") for i, n in enumerate(names)]
    results = vpd.run_programs(codes, scene.image, toolkit=toolkit, sandbox=sandbox)
    assert [r.answer for r in results] == [[0, 2], [1, 1], [2, 0], [3, 2], [4, 1], [5, 1]]
    for name, code, result in zip(names, codes, results):
        assert result.trace.program == code
        assert [c.inputs for c in result.trace.tool_calls] == [{"object_name": name}]
        assert len(result.trace.assignments) == 1
        assert_trace_ok(result)


def test_run_programs_runs_concurrently(scene, toolkit, sandbox):
    codes = [program("return pause(0.8)")] * 4
    start = time.perf_counter()
    results = vpd.run_programs(codes, scene.image, toolkit=toolkit, sandbox=sandbox, max_workers=4)
    elapsed = time.perf_counter() - start
    assert [r.answer for r in results] == [0.8] * 4
    assert elapsed < 4 * 0.8 * 0.75, f"4 programs of 0.8 s took {elapsed:.2f} s: they did not overlap"
    assert all(r.tool_seconds >= 0.75 for r in results)


def test_run_programs_one_image_per_program(toolkit, sandbox):
    small = Scene(100, 50, [SceneObject("cup", (0, 0, 10, 10))]).image
    large = Scene(300, 200, []).image
    code = program("return [image.width, image.height]")
    results = vpd.run_programs([code, code], [small, large], toolkit=toolkit, sandbox=sandbox)
    assert [r.answer for r in results] == [[100, 50], [300, 200]]
    with pytest.raises(vpd.InvalidArgumentError):
        vpd.run_programs([code, code, code], [small, large], toolkit=toolkit, sandbox=sandbox)


def test_a_failing_program_does_not_disturb_the_others(scene, toolkit, sandbox):
    codes = [
        program("while True:\n    pass"),
        program("return len(ImagePatch(image).find('cup'))"),
        program("x = [1][5]"),
        program("return 'fine'"),
    ]
    results = vpd.run_programs(codes, scene.image, toolkit=toolkit, sandbox=sandbox, timeout=2)
    assert [r.error.kind if r.error else r.answer for r in results] == ["timeout", 2, "runtime", "fine"]


# -- errors before anything runs ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "line", "needle"),
    [
        ("def execute_command(image)\n    return 1\n", 1, "SyntaxError"),
        (program("import os\nreturn 1"), 2, "import"),
        (program("class A:\n    pass\nreturn 1"), 2, "class"),
        (program("return image._box"), 2, "_box"),
    ],
    ids=["syntax", "import", "class", "underscore"],
)
def test_compile_errors_start_no_worker(scene, toolkit, code, line, needle):
    fresh = vpd.Sandbox()
    try:
        ex = run(code, scene, toolkit, fresh)
        assert ex.error is not None and ex.error.kind == "compile"
        assert ex.error.line == line and needle in ex.error.message
        assert ex.answer is None and ex.trace.events == ()
        assert fresh._process is None  # the template process was never started
        assert_trace_ok(ex)
    finally:
        fresh.close()


@pytest.mark.parametrize(
    ("body", "line", "needles"),
    [
        (
            "return ImagePatch(image).get_depth()",
            2,
            ["get_depth", "Did you mean 'depth'", "find", "exists", "simple_query"],
        ),
        ("cups = ImagePatch(image).find('cup')\nreturn cups.simple_query('?')", 3, ["list that find() returns"]),
        ("cups = ImagePatch(image).find('cup')\nreturn cups.find('x')", 3, ["find() returns a list"]),
        ("return ImagePatch(image).find()", 2, ["find(object_name)", "missing"]),
        ("return ImagePatch(image).crop(1, 2)", 2, ["crop(left, lower, right, upper)"]),
        ("return count_wheels()", 2, ["count_wheels", "missing"]),
        ("return segment_everything(image)", 2, ["segment_everything", "ImagePatch", "llm_query", "count_wheels"]),
        ("x = 1\n", None, ["execute_command"]),
    ],
    ids=[
        "unknown-method",
        "list-misuse",
        "find-on-list",
        "too-few-args",
        "crop-args",
        "tool-args",
        "unknown-name",
        "no-entry",
    ],
)
def test_static_check_errors_start_no_worker(scene, toolkit, body, line, needles):
    code = program(body) if line is not None else body
    fresh = vpd.Sandbox()
    try:
        ex = run(code, scene, toolkit, fresh)
        assert ex.error is not None and ex.error.kind == "static-check", ex.error
        assert ex.error.line == line
        for needle in needles:
            assert needle in ex.error.message
        assert fresh._process is None
        assert check_program(code, toolkit.tools)  # the same errors without a sandbox
    finally:
        fresh.close()


def test_check_program_accepts_a_good_program(toolkit):
    assert check_program(VIPER, toolkit.tools) == []


def test_non_string_program_is_rejected(scene, toolkit, sandbox):
    with pytest.raises(vpd.InvalidArgumentError):
        run(b"def execute_command(image):\n    return 1\n", scene, toolkit, sandbox)  # type: ignore[arg-type]


# -- errors while running ---------------------------------------------------------------------------
def test_runtime_exception_reports_the_program_line(scene, toolkit, sandbox):
    ex = run(
        program("image_patch = ImagePatch(image)\nx = 1\nitems = [1, 2]\nreturn items[5]"), scene, toolkit, sandbox
    )
    assert ex.error is not None and ex.error.kind == "runtime"
    assert ex.error.line == 5 and ex.error.message.startswith("IndexError")
    assert [a.name for a in ex.trace.assignments] == ["image_patch", "x", "items"]  # what happened before is kept
    assert_trace_ok(ex)


def test_runtime_error_inside_a_nested_function_reports_its_line(scene, toolkit, sandbox):
    code = program("def helper(x):\n    return x / 0\nreturn helper(3)")
    ex = run(code, scene, toolkit, sandbox)
    assert ex.error is not None and ex.error.kind == "runtime" and ex.error.line == 3
    assert "ZeroDivisionError" in ex.error.message


def test_long_error_messages_are_truncated(scene, toolkit, sandbox):
    ex = run(program("raise ValueError('x' * 100000)"), scene, toolkit, sandbox)
    assert ex.error is not None and ex.error.kind == "runtime" and len(ex.error.message) <= 2000


def test_timeout_kills_an_infinite_loop_and_the_sandbox_keeps_serving(scene, toolkit, sandbox):
    limits = vpd.SandboxLimits(timeout=1.0, cpu_seconds=30)
    start = time.perf_counter()
    ex = run(program("n = 0\nwhile True:\n    n += 1"), scene, toolkit, sandbox, limits=limits)
    elapsed = time.perf_counter() - start
    assert ex.error is not None and ex.error.kind == "timeout" and "1 s" in ex.error.message
    # Stopped at the deadline, not long after it (a deadline twice as long must fail here).
    assert 1.0 <= ex.wall_seconds <= elapsed < 1.6
    assert ex.answer is None
    assert_trace_ok(ex)
    after = run(VIPER, scene, toolkit, sandbox)
    assert after.answer == "yes"


def test_cpu_limit_ends_a_busy_program(scene, toolkit, sandbox):
    limits = vpd.SandboxLimits(timeout=20, cpu_seconds=1)
    ex = run(program("while True:\n    pass"), scene, toolkit, sandbox, limits=limits)
    assert ex.error is not None and ex.error.kind == "timeout" and "CPU" in ex.error.message
    assert ex.wall_seconds < 10


def test_timeout_argument_overrides_the_limits(scene, toolkit, sandbox):
    ex = run(program("while True:\n    pass"), scene, toolkit, sandbox, timeout=0.5)
    assert ex.error is not None and ex.error.kind == "timeout" and 0.5 <= ex.wall_seconds < 0.95


def test_memory_bomb_is_kind_memory(scene, toolkit, sandbox):
    limits = vpd.SandboxLimits(timeout=10, memory_mb=64)
    ex = run(
        program("blocks = []\nwhile True:\n    blocks.append(' ' * 1000000)"), scene, toolkit, sandbox, limits=limits
    )
    assert ex.error is not None and ex.error.kind == "memory"
    assert ex.error.line == 4
    assert run(VIPER, scene, toolkit, sandbox).answer == "yes"


def test_recursion_is_a_runtime_error(scene, toolkit, sandbox):
    ex = run(program("def f(n):\n    return f(n + 1)\nreturn f(0)"), scene, toolkit, sandbox)
    assert ex.error is not None and ex.error.kind == "runtime" and "RecursionError" in ex.error.message


def test_a_raising_tool_is_kind_tool_and_recorded(scene, toolkit, sandbox):
    ex = run(program("x = 1\nreturn broken('now')"), scene, toolkit, sandbox)
    assert ex.error is not None and ex.error.kind == "tool" and ex.error.line == 3
    assert "broken tool got now" in ex.error.message
    (call,) = ex.trace.tool_calls
    assert call.operation == "broken" and call.line == 3
    assert call.error is not None and "broken tool got now" in call.error and call.output is None


def test_a_failing_backend_is_kind_tool(toolkit, sandbox):
    def refuse(question: str, objects: list[SceneObject]) -> str:
        raise RuntimeError("the VQA model crashed")

    failing = Scene(W, H, [SceneObject("cup", (10, 10, 50, 50))], answers=refuse)
    ex = vpd.run_program(
        program("return ImagePatch(image).simple_query('what is this?')"),
        failing.image,
        toolkit=failing.toolkit(),
        sandbox=sandbox,
    )
    assert ex.error is not None and ex.error.kind == "tool", ex.error
    (call,) = ex.trace.tool_calls
    assert call.operation == "simple_query" and call.error is not None


def test_a_caught_tool_error_lets_the_program_go_on(scene, toolkit, sandbox):
    code = program("try:\n    broken('a')\nexcept Exception as e:\n    return 'recovered: ' + str(e)[:40]")
    ex = run(code, scene, toolkit, sandbox)
    assert ex.ok and ex.answer.startswith("recovered: ")
    assert ex.trace.tool_calls[0].error is not None


def test_a_caught_violation_still_fails_the_run(scene, toolkit, sandbox):
    code = program("p = ImagePatch(image)\ntry:\n    p.left = 0\nexcept Exception:\n    pass\nreturn 'ok'")
    ex = run(code, scene, toolkit, sandbox)
    assert ex.error is not None and ex.error.kind == "violation"


def test_tool_call_cap(scene, toolkit, sandbox):
    limits = vpd.SandboxLimits(timeout=20, max_tool_calls=5)
    ex = run(
        program("p = ImagePatch(image)\nfor i in range(10):\n    p.exists('cup')\nreturn 1"),
        scene,
        toolkit,
        sandbox,
        limits=limits,
    )
    assert ex.error is not None and ex.error.kind == "violation" and "5 tool calls" in ex.error.message
    calls = ex.trace.tool_calls
    assert len(calls) == 6 and calls[-1].error is not None and all(c.error is None for c in calls[:5])


# -- user tools ------------------------------------------------------------------------------------
def test_user_function_and_method_tools(scene, toolkit, sandbox):
    code = program(
        """
        image_patch = ImagePatch(image)
        wheels = count_wheels("car", axles=3)
        cup = image_patch.find("cup")[0]
        ratio = cup.aspect()
        wide = widest(image_patch.find("cup") + image_patch.find("sign"))
        return [wheels, ratio, wide.left, wide.width]
        """
    )
    ex = run(code, scene, toolkit, sandbox)
    assert ex.ok, ex.error
    assert ex.answer == [6, 0.8, 250, 140]
    tools = [c for c in ex.trace.tool_calls if c.capability == "tool"]
    assert [(c.operation, c.line) for c in tools] == [("count_wheels", 3), ("aspect", 5), ("widest", 6)]
    assert tools[0].output == 6 and tools[1].output == 0.8
    assert tools[0].inputs == {"args": ["car"], "kwargs": {"axles": 3}}


def test_user_tools_are_rejected_without_their_registry(scene, sandbox):
    ex = vpd.run_program(program("return count_wheels('car')"), scene.image, toolkit=scene.toolkit(), sandbox=sandbox)
    assert ex.error is not None and ex.error.kind == "static-check" and "count_wheels" in ex.error.message


def test_tool_arguments_are_checked(scene, toolkit, sandbox):
    ex = run(program("return count_wheels(lambda: 1)"), scene, toolkit, sandbox)
    assert ex.error is not None and ex.error.kind == "runtime" and "function" in ex.error.message
    ex = run(program("p = ImagePatch(image)\nreturn widest([p] * 300)"), scene, toolkit, sandbox)
    assert ex.error is not None and ex.error.kind == "runtime" and "256" in ex.error.message


# -- the answer ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "answer"),
    [
        ("return ImagePatch(image, 10, 20, 30, 40)", {"left": 10, "lower": 20, "right": 30, "upper": 40}),
        ("return ImagePatch(image).find('sign')", [{"left": 250, "lower": 400, "right": 390, "upper": 460}]),
        ("return (1, (2, 'x'))", [1, [2, "x"]]),
        ("return {'a': [1.5, None], 'b': {'c': True}}", {"a": [1.5, None], "b": {"c": True}}),
        ("return 'text'", "text"),
        ("return -7", -7),
        ("return None", None),
        ("return False", False),
    ],
    ids=["patch", "patch-list", "tuples", "dict", "str", "int", "none", "bool"],
)
def test_answer_conversion(scene, toolkit, sandbox, body, answer):
    ex = run(program(body), scene, toolkit, sandbox)
    assert ex.ok, ex.error
    assert ex.answer == answer and type(ex.answer) is type(answer)
    assert json.loads(json.dumps(ex.answer)) == answer


@pytest.mark.parametrize(
    "body",
    ["return {1, 2}", "return lambda: 1", "return float('nan')", "return 2 ** 80", "return {1: 'a'}", "return image"],
    ids=["set", "lambda", "nan", "big-int", "int-key", "image"],
)
def test_unsupported_answers_are_kind_answer(scene, toolkit, sandbox, body):
    ex = run(program(body), scene, toolkit, sandbox)
    assert ex.error is not None and ex.error.kind == "answer"
    assert ex.answer is None and ex.trace.answer is None


# -- prints -----------------------------------------------------------------------------------------
def test_prints_are_captured_with_lines(scene, toolkit, sandbox):
    code = program("print('a', 1, [2, 3], sep='|')\nprint('no newline', end='')\nreturn 0")
    ex = run(code, scene, toolkit, sandbox)
    assert ex.stdout == "a|1|[2, 3]\nno newline"
    assert [(p.line, p.text) for p in ex.trace.prints] == [(2, "a|1|[2, 3]\n"), (3, "no newline")]


def test_prints_are_capped(scene, toolkit, sandbox):
    ex = run(program("for i in range(1000):\n    print('x' * 100)\nreturn 1"), scene, toolkit, sandbox)
    assert ex.ok and len(ex.stdout) <= 20_000 and ex.trace.truncated


# -- the trace ----------------------------------------------------------------------------------------
def test_trace_json_round_trip(scene, toolkit, sandbox):
    ex = run(VIPER, scene, toolkit, sandbox, meta={"question": "Is the left cup red?", "id": 7})
    trace = ex.trace
    text = trace.to_json()
    again = vpd.Trace.from_json(text)
    assert again == trace and again.to_json() == text
    assert vpd.Trace.from_dict(trace.to_dict()) == trace
    data = json.loads(text)
    assert data["version"] == TRACE_VERSION
    assert {e["type"] for e in data["events"]} == {"tool_call", "assignment", "print"}
    assert isinstance(again.events[1], ToolCall) and isinstance(again.events[0], Assignment)
    assert any(isinstance(e, PrintOutput) for e in again.events)


def test_trace_of_a_failed_run_round_trips(scene, toolkit, sandbox):
    ex = run(program("x = ImagePatch(image).find('cup')\nreturn x[9]"), scene, toolkit, sandbox)
    assert ex.error is not None
    again = vpd.Trace.from_json(ex.trace.to_json())
    assert again == ex.trace and again.error == ex.error and not again.ok


def test_trace_rejects_unknown_versions_and_events():
    trace = vpd.Trace(program="p", image={"sha256": "0", "width": 1, "height": 1})
    data = trace.to_dict()
    with pytest.raises(ValueError, match="version"):
        vpd.Trace.from_dict({**data, "version": "vpd.trace/0"})
    with pytest.raises(ValueError, match="event"):
        vpd.Trace.from_dict({**data, "events": [{"type": "bogus"}]})


def test_meta_is_stored(scene, toolkit, sandbox):
    meta = {"question": "How many cups?", "label": 2, "tags": ["count"], "nested": {"k": None}}
    ex = run(program("return len(ImagePatch(image).find('cup'))"), scene, toolkit, sandbox, meta=meta)
    assert ex.trace.meta == meta
    assert vpd.Trace.from_json(ex.trace.to_json()).meta == meta
    meta["label"] = 3  # the trace keeps its own copy
    assert ex.trace.meta["label"] == 2


def test_meta_is_stored_for_static_errors_too(scene, toolkit, sandbox):
    ex = run(program("return nope()"), scene, toolkit, sandbox, meta={"id": 1})
    assert ex.error is not None and ex.trace.meta == {"id": 1}


# -- the template process ----------------------------------------------------------------------------
def test_sandbox_restarts_when_its_template_process_is_killed(scene, toolkit):
    box = vpd.Sandbox()
    try:
        assert run(VIPER, scene, toolkit, box).answer == "yes"
        process = box._process
        assert process is not None
        first = process.pid
        process.kill()
        process.wait()
        ex = run(VIPER, scene, toolkit, box)
        assert ex.answer == "yes", ex.error
        assert box._process is not None and box._process.pid != first
    finally:
        box.close()
    assert box._process is None


def test_isolation_report(scene, toolkit, sandbox):
    run(program("return 1"), scene, toolkit, sandbox)
    isolation = sandbox.isolation
    assert {"network", "chroot", "unprivileged"} <= set(isolation)
    assert all(isinstance(v, bool) for v in isolation.values())
    assert isolation["unprivileged"]


def test_sandbox_as_context_manager(scene, toolkit):
    with vpd.Sandbox() as box:
        assert run(program("return 41 + 1"), scene, toolkit, box).answer == 42
    assert box._process is None


def test_limits_are_validated():
    for bad in (
        {"timeout": 0},
        {"timeout": float("nan")},
        {"cpu_seconds": -1},
        {"memory_mb": 0},
        {"max_tool_calls": True},
    ):
        with pytest.raises(vpd.InvalidArgumentError):
            vpd.SandboxLimits(**bad)


def test_the_default_sandbox_and_toolkit_context(scene, toolkit):
    with vpd.use_toolkit(toolkit):
        ex = vpd.run_program(program("return len(ImagePatch(image).find('cup'))"), scene.image)
    assert ex.answer == 2


# -- regressions: bugs found while writing these tests (all fixed) ----------------------------------------------
def test_missing_attribute_of_a_plain_value_is_an_attribute_error(scene, toolkit, sandbox):
    ex = run(program("items = [1, 2]\nreturn items.upper"), scene, toolkit, sandbox)
    assert ex.error is not None and ex.error.kind == "runtime" and "AttributeError" in ex.error.message


def test_walrus_assignments_are_traced(scene, toolkit, sandbox):
    ex = run(
        program("if (n := len(ImagePatch(image).find('cup'))) > 1:\n    return n\nreturn 0"), scene, toolkit, sandbox
    )
    assert ex.answer == 2
    assert [a.name for a in ex.trace.assignments] == ["n"]


def test_user_tool_calls_record_their_patches(scene, toolkit, sandbox):
    code = program(
        """
        cups = ImagePatch(image).find("cup")
        ratio = cups[0].aspect()
        wide = widest(cups)
        return 1
        """
    )
    ex = run(code, scene, toolkit, sandbox)
    aspect, widest = [c for c in ex.trace.tool_calls if c.capability == "tool"]
    assert aspect.box == [100, 300, 180, 400]
    assert "100" in json.dumps(widest.inputs) and "400" in json.dumps(widest.output)
