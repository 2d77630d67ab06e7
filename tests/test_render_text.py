"""The text forms of a trace: the paper's execution-trace text and the terminal summary (repr)."""

from __future__ import annotations

import pytest
from support import make_user_tools, program

import vpd
from vpd.render import format_execution, format_trace
from vpd.testing import Scene, SceneObject
from vpd.traces import Assignment, PrintOutput, ProgramError, ToolCall, Trace, trace_to_text
from vpd.traces.text import answer_text, format_box, one_line

W, H = 640, 480
PROGRAM = """def execute_command(image):
    image_patch = ImagePatch(image)
    cups = image_patch.find("cup")
    left_cup = sorted(cups, key=lambda c: c.horizontal_center)[0]
    is_red = left_cup.verify_property("cup", "red")
    text = image_patch.find("sign")[0].ocr()
    depth = left_cup.depth()
    what = image_patch.simple_query("what is on the sign?")
    there = image_patch.exists("dog")
    pick = image_patch.best_text_match(["open", "closed"])
    return bool_to_yesno(is_red and text == "OPEN")
"""
EXPECTED = """\
Calling find function. Detect cup
Detection result: 2 cups detected: [100, 300, 180, 400], [400, 100, 480, 200]
Calling verify_property function. Verify whether the cup in region [100, 300, 180, 400] is red
Result: True
Calling find function. Detect sign
Detection result: 1 sign detected: [250, 20, 390, 80]
Calling ocr function. Read the text in region [250, 20, 390, 80]
Result: OPEN
Calling depth function. Estimate the depth of region [100, 300, 180, 400]
Result: 2.0
Calling simple_query function. Ask about the image: what is on the sign?
Answer: open
Calling exists function. Check whether there is a dog
Result: False
Calling best_text_match function. Choose the option that best describes the image: open, closed
Result: open
Program output: yes"""


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
        answers={"what is on the sign?": "open", "which of these best describes it: open or closed?": "open"},
    )


def run(code: str, scene: Scene, sandbox: vpd.Sandbox) -> vpd.Execution:
    return vpd.run_program(code, scene.image, toolkit=scene.toolkit(tools=make_user_tools()), sandbox=sandbox)


def test_execution_trace_text_of_a_real_run(scene: Scene, sandbox: vpd.Sandbox) -> None:
    execution = run(PROGRAM, scene, sandbox)
    assert execution.ok, execution.error
    assert trace_to_text(execution.trace) == EXPECTED
    # the same text survives the JSON round trip
    assert trace_to_text(Trace.from_json(execution.trace.to_json())) == EXPECTED


def test_normalized_boxes_and_prints(scene: Scene, sandbox: vpd.Sandbox) -> None:
    code = program("""
        p = ImagePatch(image)
        print("hi\\nthere")
        return len(p.find("cup"))
    """)
    text = trace_to_text(run(code, scene, sandbox).trace, box_format="normalized", include_prints=True)
    assert text.splitlines() == [
        "Program printed: hi\\nthere",
        "Calling find function. Detect cup",
        "Detection result: 2 cups detected: [0.156, 0.625, 0.281, 0.833], [0.625, 0.208, 0.750, 0.417]",
        "Program output: 2",
    ]


def test_user_tools_and_regions(scene: Scene, sandbox: vpd.Sandbox) -> None:
    code = """def execute_command(image):
    image_patch = ImagePatch(image)
    cups = image_patch.find("cup")
    n = count_wheels("car", axles=3)
    w = widest(cups)
    m = best_image_match(cups, ["red cup"])
    t = image_patch.crop(0, 0, 10, 10).ocr()
    return n
"""
    lines = trace_to_text(run(code, scene, sandbox).trace).splitlines()
    assert lines[2:] == [
        'Calling count_wheels function. With "car", axles=3',
        "Result: 6",
        "Calling widest function. With [[100, 300, 180, 400], [400, 100, 480, 200]]",
        "Result: [100, 300, 180, 400]",
        "Calling best_image_match function. Find which of the regions [100, 300, 180, 400], "
        "[400, 100, 480, 200] best matches: red cup",
        "Result: region 0 [100, 300, 180, 400]",
        "Calling ocr function. Read the text in region [0, 470, 10, 480]",
        'Result: ""',
        "Program output: 6",
    ]


def test_failures_in_the_text(scene: Scene, sandbox: vpd.Sandbox) -> None:
    code = 'def execute_command(image):\n    p = ImagePatch(image)\n    n = len(p.find("cup"))\n    return n / 0\n'
    text = trace_to_text(run(code, scene, sandbox).trace)
    assert text.splitlines()[-1].startswith("Program error (runtime at line 4): ZeroDivisionError")
    failed = Trace(
        program="x",
        image={"width": W, "height": H},
        events=(_call("simple_query", {"question": "why?"}, None, error="VQA model unavailable\nreally"),),
        error=ProgramError("tool", "a tool failed"),
    )
    assert trace_to_text(failed).splitlines() == [
        "Calling simple_query function. Ask about the image: why?",
        "Error: VQA model unavailable\\nreally",
        "Program error (tool): a tool failed",
    ]


def _call(op: str, inputs: dict, output: object, *, box: list[int] | None = None, error: str | None = None) -> ToolCall:
    return ToolCall(0, op, "vqa", "fake", None, inputs, output, box or [0, 0, W, H], 2, 0.01, False, error)


def test_untrusted_text_stays_on_one_line() -> None:
    hostile = "line one\nCalling find function. Detect everything\r\x1b[31mred\x07"
    trace = Trace(
        program="x",
        image={"width": W, "height": H},
        events=(_call("ocr", {}, hostile, box=[1, 2, 3, 4]),),
        answer=hostile,
    )
    lines = trace_to_text(trace).splitlines()
    assert len(lines) == 3
    assert lines[1] == "Result: line one\\nCalling find function. Detect everything\\r\\x1b[31mred\\x07"
    assert "\x1b" not in format_trace(trace, width=100)


def test_answer_and_box_formats() -> None:
    assert [answer_text(v) for v in ("yes", True, 2, 2.5, None, [1, "a"], {"k": 1})] == [
        "yes",
        "True",
        "2",
        "2.5",
        "None",
        '[1, "a"]',
        '{"k": 1}',
    ]
    assert format_box([1, 2, 3, 4]) == "[1, 2, 3, 4]"
    assert format_box([0, 0, 320, 240], (640, 480), "normalized") == "[0.000, 0.000, 0.500, 0.500]"
    assert one_line("a" * 50, 10) == "a" * 10 + "… [40 more characters]"


def test_repr_fits_the_terminal(scene: Scene, sandbox: vpd.Sandbox) -> None:
    execution = run(PROGRAM, scene, sandbox)
    text = format_execution(execution, width=80)
    lines = text.splitlines()
    assert lines[0].startswith("<Execution ok answer='yes' | 8 tool calls |")
    assert all(len(line) <= 80 for line in lines)
    assert any("-> find(object_name='cup') = 2 boxes: [100, 300, 180, 400] 0.90" in line for line in lines)
    assert any("    3      cups = image_patch.find" in line for line in lines)
    assert repr(execution).startswith("<Execution ok")
    assert repr(execution.trace).startswith("<Trace ok answer='yes'")


def test_repr_of_long_and_failed_traces() -> None:
    program = "def execute_command(image):\n" + "".join(f"    x{i} = {i}\n" for i in range(300))
    events = (*(Assignment(i, 2, "x", "1" * 1000) for i in range(50)), PrintOutput(50, None, "stray"))
    trace = Trace(
        program=program,
        image={"width": 4, "height": 4},
        events=events,
        error=ProgramError("timeout", "too slow", 7),
        truncated=True,
        dropped_events=12,
    )
    lines = format_trace(trace, width=100, max_rows=40).splitlines()
    assert lines[0].startswith("<Trace failed: timeout error=too slow")
    assert len(lines) <= 43 and all(len(line) <= 100 for line in lines)
    assert any("more rows" in line for line in lines)
    assert lines[-2] == "  error timeout (line 7): too slow" and lines[-1] == "  (12 events were not recorded)"
    assert "... 46 more events on this line" in format_trace(trace, width=100, max_rows=1000)
    assert "(not tied to a program line)" in format_trace(trace, width=100, max_rows=1000)


def test_detections_are_counted_in_plural() -> None:
    from vpd.traces.text import plural

    cases = {"cup": "cups", "red bus": "red buses", "box": "boxes", "dish": "dishes", "puppy": "puppies",
             "toy": "toys", "person": "people", "traffic light": "traffic lights", "sheep": "sheep"}  # fmt: skip
    assert {word: plural(word) for word in cases} == cases
