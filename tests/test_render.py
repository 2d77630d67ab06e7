"""Notebook HTML of traces, executions and candidates: content, escaping, limits, images."""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass

import pytest
from PIL import Image

import vpd
from vpd.render import build_view, render_candidates, render_execution, render_trace
from vpd.render.images import data_url
from vpd.testing import Scene, SceneObject
from vpd.traces import Assignment, PrintOutput, ProgramError, ToolCall, Trace

W, H = 640, 480
INJECT = '<script>alert("x")</script><img src=x onerror=alert(1)>"\'&'
PROGRAM = """def execute_command(image):
    image_patch = ImagePatch(image)
    cups = image_patch.find("cup")
    print("cups:", len(cups))
    left_cup = sorted(cups, key=lambda c: c.horizontal_center)[0]
    is_red = left_cup.verify_property("cup", "red")
    text = image_patch.find("sign")[0].ocr()
    return bool_to_yesno(is_red and text == "OPEN")
"""


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene(
        W,
        H,
        [
            SceneObject("cup", (100, 300, 180, 400), attributes=("red",)),
            SceneObject("cup", (400, 100, 480, 200), attributes=("blue",)),
            SceneObject("sign", (250, 20, 390, 80), text="OPEN"),
        ],
    )


@pytest.fixture(scope="module")
def execution(scene: Scene, sandbox: vpd.Sandbox) -> vpd.Execution:
    result = vpd.run_program(PROGRAM, scene.image, toolkit=scene.toolkit(), sandbox=sandbox)
    assert result.ok, result.error
    return result


def images_in(html: str) -> list[Image.Image]:
    """The images embedded in ``html`` as data URLs, decoded."""
    found = re.findall(r'src="data:image/(?:png|jpeg);base64,([A-Za-z0-9+/=]+)"', html)
    return [Image.open(io.BytesIO(base64.b64decode(data))) for data in found]


def assert_no_markup_from(html: str) -> None:
    """Nothing from INJECT became markup: no script, no injected image or attribute."""
    assert "<script" not in html.lower()
    assert "<img src=x" not in html and "onerror=alert" not in html.replace("onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;" in html


def test_execution_view(execution: vpd.Execution, scene: Scene) -> None:
    html = render_execution(execution, scene.image, question="Is the left cup red?", label="yes")
    assert html.startswith('<div class="vpd"><style>') and html.endswith("</div>")
    assert "<h3>Is the left cup red?</h3>" in html and "vpd-badge vpd-ok" in html  # answer yes == label yes
    # numbered program lines, each with the calls it made beside it
    for number, line in enumerate(PROGRAM.splitlines(), start=1):
        assert f'<td class="vpd-no">{number}</td>' in html
        assert f"<code>{line.replace(chr(34), '&quot;')}</code>" in html
    assert "find(object_name=&#x27;cup&#x27;)" in html and "2 boxes: [100, 300, 180, 400] 0.90" in html
    assert "verify_property(object_name=&#x27;cup&#x27;, property=&#x27;red&#x27;)" in html
    assert "print: cups: 2" in html and "is_red = True" in html
    # the image with 4 boxes, their legend, the convention, and crops of the regions tools looked at
    drawn, *crops = images_in(html)
    assert drawn.size == (W, H) and len(crops) == 2  # [100, 300, 180, 400] (verify_property) and the sign (ocr)
    assert html.count('<span class="vpd-swatch"') == 4  # find's 2, ocr's text box, verify_property's region
    assert "origin at the top-left corner" in html
    assert drawn.convert("RGB").getpixel((100, 350)) != scene.image.convert("RGB").getpixel((100, 350))  # a box edge
    assert "Execution trace (text for distillation)" in html and "Calling find function. Detect cup" in html


def test_trace_without_its_image(execution: vpd.Execution) -> None:
    html = execution.trace._repr_html_()
    assert "Image not available: boxes drawn on a blank canvas of its size." in html
    assert "vpd.render.render_execution(execution, image)" in html  # how to attach it
    (drawn,) = images_in(html)
    assert drawn.size == (W, H)
    assert execution._repr_html_() == html


def test_another_image_is_flagged(execution: vpd.Execution) -> None:
    other = Image.new("RGB", (W // 2, H // 2), (30, 30, 30))
    html = render_trace(execution.trace, other)
    assert "not the one the program ran on" in html
    assert images_in(html)[0].size == (W // 2, H // 2)  # boxes scaled to the image given


def test_no_boxes_and_no_tool_calls(scene: Scene, sandbox: vpd.Sandbox) -> None:
    result = vpd.run_program(
        "def execute_command(image):\n    return 1\n", scene.image, toolkit=scene.toolkit(), sandbox=sandbox
    )
    html = render_execution(result, scene.image)
    assert "No tool returned a box." in html and "0 tool calls" in html
    assert "Regions the tools looked at" not in html


def test_failed_runs(scene: Scene, sandbox: vpd.Sandbox) -> None:
    runtime = vpd.run_program(
        "def execute_command(image):\n    p = ImagePatch(image)\n    x = p.find('cup')\n    return 1 / 0\n",
        scene.image,
        toolkit=scene.toolkit(),
        sandbox=sandbox,
    )
    html = render_execution(runtime, scene.image, label="2")
    assert '<tr class="vpd-ran vpd-errline" data-line="4"><td class="vpd-no">4</td>' in html
    assert "failed: runtime" in html and "ZeroDivisionError" in html and "vpd-badge vpd-bad" in html
    broken = vpd.run_program("def execute_command(image):\n    return (\n", scene.image, sandbox=sandbox)
    assert broken.error is not None and broken.error.kind == "compile"
    html = render_execution(broken)
    assert "failed: compile" in html and "0 tool calls" in html
    timeout = Trace(program="x = 1", image={"width": 10, "height": 10}, error=ProgramError("timeout", "too slow"))
    assert "<b>timeout</b>: too slow" in render_trace(timeout)


def hostile_trace() -> Trace:
    return Trace(
        program=f"def execute_command(image):\n    # {INJECT}\n    return '{INJECT}'\n",
        image={"sha256": INJECT, "width": W, "height": H},
        events=(
            ToolCall(0, "ocr", "ocr", INJECT, INJECT, {"q": INJECT}, INJECT, [1, 2, 30, 40], 2, 0.1, False),
            ToolCall(1, INJECT, "tool", "x", None, {}, [{"box": [5, 5, 50, 50], "label": INJECT}], None, 2, 0.1, False),
            ToolCall(2, "find", "detect", "x", None, {"object_name": INJECT}, None, None, 2, 0.1, False, INJECT),
            Assignment(3, 2, INJECT, INJECT),
            PrintOutput(4, 2, INJECT),
        ),
        answer=INJECT,
        meta={"question": INJECT, "label": INJECT, "rationale": INJECT},
    )


def test_a_hostile_line_from_a_trace_file_stays_out_of_the_markup() -> None:
    """Trace.from_dict does not check types: a line that is a string must not reach the HTML or the CSS."""
    payload = '1"]{}</style><script>window.__pwned = 1</script><style>'
    data = hostile_trace().to_dict()
    data["events"][1]["line"] = payload
    data["error"] = {"kind": "runtime", "message": "x", "line": payload}
    data["return_line"] = payload
    html = render_trace(Trace.from_dict(data))
    assert "<script>window" not in html  # not a line: dropped (the text view shows it, escaped)
    assert_no_markup_from(html)


def test_injection_is_escaped_everywhere() -> None:
    html = render_trace(hostile_trace())
    assert_no_markup_from(html)
    assert html.count("&lt;script&gt;") >= 10
    assert "<h4>Rationale</h4>" in html  # the rationale sits beside the execution trace


def test_non_ascii_and_lone_surrogates() -> None:
    text = "Café ☕ 杯子 \U0001f375 naïve"
    trace = Trace(
        program=f"def execute_command(image):\n    return '{text}'\n",
        image={"width": W, "height": H},
        events=(
            ToolCall(
                0,
                "find",
                "detect",
                "x",
                None,
                {"object_name": text},
                [{"box": [1, 1, 9, 9], "label": text}],
                None,
                2,
                0.0,
                False,
            ),
            PrintOutput(1, 2, "bad \udcff surrogate"),
        ),
        answer=text,
        meta={"question": text},
    )
    html = render_trace(trace)
    assert f"<h3>{text}</h3>" in html and "bad ? surrogate" in html
    html.encode("utf-8")  # no lone surrogate left


def test_hundreds_of_boxes_and_huge_text() -> None:
    boxes = [{"box": [i % 600, i % 400, i % 600 + 20, i % 400 + 20], "score": 0.5} for i in range(500)]
    long_line = "x = '" + "y" * 100_000 + "'"
    trace = Trace(
        program=f"def execute_command(image):\n    {long_line}\n" + "    pass\n" * 5000,
        image={"width": W, "height": H},
        events=(
            ToolCall(0, "find", "detect", "x", None, {"object_name": "dot"}, boxes, [0, 0, W, H], 2, 0.1, False),
            *(
                ToolCall(i, "ocr", "ocr", "x", None, {}, "z" * 1_000_000, [i, i, i + 9, i + 9], 3, 0.0, False)
                for i in range(1, 60)
            ),
            PrintOutput(60, 3, "p" * 1_000_000),
        ),
        answer="a" * 1_000_000,
    )
    view = build_view(trace)
    assert len(view.boxes) == 300 and len(view.program_lines) == 2000
    assert any("200 more boxes are not drawn" in note for note in view.notes)
    html = render_trace(trace)
    assert len(html) < 2_000_000
    assert "… 200 more" in html and "more characters]" in html and "more events</summary>" in html
    assert html.count('class="vpd-crop"') == 16 and "… 32 more regions" in html


def test_data_urls_are_capped() -> None:
    noise = Image.effect_noise((3000, 2000), 100).convert("RGB")
    url = data_url(noise, max_side=640, max_bytes=60_000)
    assert url.startswith("data:image/jpeg;base64,") and len(url) < 60_000 * 4 / 3 + 100
    (decoded,) = images_in(f'src="{url}"')
    assert max(decoded.size) <= 640
    tiny = data_url(Image.new("RGB", (20, 20), (255, 0, 0)))
    assert tiny.startswith("data:image/png;base64,")


@dataclass
class FakeCandidate:
    index: int
    execution: vpd.Execution | None
    answer: str | None
    votes: int
    chosen: bool
    error: str | None = None


def test_candidates_with_votes(execution: vpd.Execution, scene: Scene, sandbox: vpd.Sandbox) -> None:
    other = vpd.run_program(
        "def execute_command(image):\n    return 'no'\n", scene.image, toolkit=scene.toolkit(), sandbox=sandbox
    )
    candidates = [
        FakeCandidate(0, execution, "yes", 2, True),
        FakeCandidate(1, other, "no", 1, False),
        FakeCandidate(2, execution, "yes", 2, False),
        FakeCandidate(3, None, None, 0, False, "no valid program: " + INJECT),
    ]
    html = render_candidates(candidates, scene.image, question="Is the left cup red?", answer="yes", label="yes")
    # Numbered from 1, as the CLI counts samples; each row has its own vote, how many
    # programs share its answer, and "chosen" under a header that says so.
    assert html.count("<details open><summary>Program 1: yes</summary>") == 1
    assert html.count("<details><summary>Program") == 2  # the candidate without a run has no view
    assert "<th>its vote</th><th>programs with this answer</th><th>chosen</th>" in html
    assert (
        '<tr class="vpd-chosen"><td>1</td><td><code>yes</code></td><td>1</td><td>2 of 4</td><td>&#10003; chosen' in html
    )
    assert "<tr><td>2</td><td><code>no</code></td><td>1</td><td>1 of 4</td><td></td>" in html
    assert "<span>2 of 4 programs agree</span>" in html and "votes: yes &times;2, no &times;1" in html
    assert_no_markup_from(html)
    # plain executions: votes counted from their answers
    html = render_candidates([execution, other, execution])
    assert "votes: yes &times;2, no &times;1" in html
    # An answer a typed vote dropped shows its own vote as 0.
    html = render_candidates(candidates, scene.image, votes={"yes": 2})
    assert '<td><code>no</code></td><td><span title="an answer of the wrong kind for the question">0</span>' in html


def test_cache_hits_say_whether_they_were_stored_or_shared(execution: vpd.Execution) -> None:
    import dataclasses

    from vpd.render.view import _info

    call = execution.trace.tool_calls[0]
    stored = dataclasses.replace(call, cache_hit=True, seconds=0.0004)
    shared = dataclasses.replace(call, cache_hit=True, seconds=1.01)
    assert "from the result cache" in _info(stored) and "shared" not in _info(stored)
    assert "shared: an identical call was computing it" in _info(shared) and "1.01 s" in _info(shared)
    assert "cache" not in _info(dataclasses.replace(call, cache_hit=False))


def test_events_repeated_in_a_loop_are_numbered(scene: Scene, sandbox: vpd.Sandbox) -> None:
    from vpd.render.view import build_view

    code = (
        "def execute_command(image):\n"
        "    total = 0\n"
        "    for name in ['cup', 'cup', 'plate']:\n"
        "        found = ImagePatch(image).find(name)\n"
        "        total = total + len(found)\n"
        "    return total\n"
    )
    execution = vpd.run_program(code, scene.image, toolkit=scene.toolkit(), sandbox=sandbox)
    assert execution.ok, execution.error
    view = build_view(execution.trace)
    on_line_5 = [e.text for e in view.events if e.line == 5]
    assert [t.split(" ", 1)[0] for t in on_line_5] == ["#1", "#2", "#3"]
    assert on_line_5[0].startswith("#1 total = ")
    finds = [e for e in view.events if e.kind == "call"]
    assert [e.iteration for e in finds] == [1, 2, None]  # find('cup') twice, find('plate') once
    assert [e.iteration for e in view.events if e.line == 2] == [None]  # ran once: no number


def test_exists_shows_its_evidence_and_the_query_mapping(scene: Scene, sandbox: vpd.Sandbox) -> None:
    import dataclasses

    from vpd.render.view import _info, build_view

    code = "def execute_command(image):\n    return ImagePatch(image).exists('cup')\n"
    execution = vpd.run_program(code, scene.image, toolkit=scene.toolkit(), sandbox=sandbox)
    assert execution.ok and execution.answer is True, execution.error
    (call,) = execution.trace.tool_calls
    assert call.details["evidence_count"] >= 1 and call.details["evidence"][0]["box"]
    view = build_view(execution.trace)
    assert view.boxes and view.events[0].boxes  # the boxes that made it True are drawn
    # A closed-vocabulary detector's reading of the query is shown with the call.
    mapped = dataclasses.replace(
        call,
        details={"query_mapping": [{"query": "flag", "classes": []}, {"query": "mug", "classes": ["cup"]}]},
    )
    assert "'flag' -> no class it knows; 'mug' -> cup" in _info(mapped)


def test_verify_property_shows_the_region_it_judged_and_its_verdict(scene: Scene, sandbox: vpd.Sandbox) -> None:
    from vpd.render.view import build_view

    code = (
        "def execute_command(image):\n    cup = ImagePatch(image).find('cup')[0]\n"
        "    return cup.verify_property('cup', 'red')\n"
    )
    execution = vpd.run_program(code, scene.image, toolkit=scene.toolkit(), sandbox=sandbox)
    assert execution.ok, execution.error
    verify = execution.trace.tool_calls[-1]
    (item,) = verify.details["evidence"]
    assert item["box"] == verify.box and item["label"].startswith("red? ")
    assert item["label"] == f"red? {'yes' if execution.answer else 'no'}" or "(" in item["label"]
    view = build_view(execution.trace)
    drawn = [b for b in view.boxes if b.line == 3]
    assert len(drawn) == 1 and drawn[0].label.startswith("red? ")  # drawn, with the verdict, linked to its line


def test_a_call_that_loaded_its_model_is_labelled_a_cold_start(scene: Scene, sandbox: vpd.Sandbox) -> None:
    from typing import Any as _Any

    from vpd.render.view import build_view
    from vpd.testing.scene import FakeDetector

    class LoadingDetector(FakeDetector):
        def _load(self) -> _Any:
            return "weights"

        def detect(self, images: _Any, queries: _Any) -> _Any:
            self.load()
            return super().detect(images, queries)

    detector = LoadingDetector(scene)
    assert not detector.loaded
    body = "    p = ImagePatch(image)\n    return [len(p.find('cup')), len(p.find('plate'))]\n"
    code = "def execute_command(image):\n" + body
    execution = vpd.run_program(code, scene.image, toolkit=scene.toolkit(detect=detector), sandbox=sandbox)
    assert execution.ok, execution.error
    assert detector.loaded
    first, second = (e.info for e in build_view(execution.trace).events if e.kind == "call")
    assert "cold start: the model loaded during this call" in first
    assert "cold start" not in second
