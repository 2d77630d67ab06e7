"""The operations contract: declared once, served the same by the toolkit and through the sandbox."""

from __future__ import annotations

import inspect

import pytest

import vpd
from vpd.programs.sandbox.worker import ToolClient
from vpd.testing import Scene, SceneObject
from vpd.tools.contract import OPERATIONS, operation_signature

W, H = 320, 240

# One program that uses every operation of the contract (checked against OPERATIONS below, so a
# new operation cannot go untested through the sandbox).
PROGRAM = """def execute_command(image):
    patch = ImagePatch(image)
    cups = patch.find("cup")
    red, blue = cups
    return {
        "find": [[c.left, c.lower, c.right, c.upper, c.area, c.label] for c in cups],
        "exists": [patch.exists("sign"), patch.exists("dog")],
        "verify_property": [blue.verify_property("cup", "blue"), blue.verify_property("cup", "red")],
        "best_text_match": blue.best_text_match(["red", "blue"]),
        "simple_query": patch.simple_query("What is on the sign?"),
        "depth": [red.depth(), blue.depth(), patch.crop(0, 0, 10, 10).depth()],
        "ocr": patch.find("sign")[0].ocr(),
        "llm_query": [patch.llm_query("Capital of France?"), llm_query("Capital of France?", long_answer=True)],
        "best_image_match": best_image_match(cups, ["blue cup"], return_index=True),
    }
"""


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene(
        W,
        H,
        [
            SceneObject("cup", (20, 150, 80, 220), attributes=("red",), depth=2.0, score=0.9),
            SceneObject("cup", (200, 40, 260, 100), attributes=("blue",), depth=7.0, score=0.8),
            SceneObject("sign", (120, 10, 200, 40), text="OPEN"),
            # In front of most of the red cup: only the cup's mask gives the cup's own depth.
            SceneObject("ball", (20, 150, 70, 215), depth=1.0),
        ],
        answers={"what is on the sign?": "open"},
        llm={"capital of france": "Paris"},
    )


def test_the_program_exercises_every_operation() -> None:
    assert set(OPERATIONS) == {
        "find",
        "exists",
        "verify_property",
        "best_text_match",
        "simple_query",
        "depth",
        "ocr",
        "llm_query",
        "best_image_match",
    }
    for name in OPERATIONS:
        assert f'"{name}":' in PROGRAM


def test_toolkit_methods_have_the_declared_parameters() -> None:
    # The sandbox calls the toolkit by the contract's parameter names.
    for name in OPERATIONS:
        declared = operation_signature(name).parameters
        implemented = list(inspect.signature(getattr(vpd.Toolkit, name)).parameters.values())[1:]
        assert [p.name for p in implemented] == list(declared), name
        assert [p.default for p in implemented] == [p.default for p in declared.values()], name


def test_every_operation_gives_the_same_result_through_the_sandbox(scene: Scene, sandbox: vpd.Sandbox) -> None:
    toolkit = scene.toolkit()
    scope = {"ImagePatch": vpd.ImagePatch, "best_image_match": vpd.best_image_match, "llm_query": vpd.llm_query}
    exec(PROGRAM, scope)  # the same program, run directly in this process
    with vpd.use_toolkit(toolkit):
        direct = scope["execute_command"](scene.image)
    run = sandbox.run(PROGRAM, scene.image, toolkit=toolkit)
    assert run.ok, run.error
    assert run.answer == direct
    # Values the scene fixes, so that agreement is not agreement on nonsense.
    assert run.answer["find"][0][:4] == [20, 20, 80, 90] and run.answer["find"][0][5] == "cup"
    assert run.answer["exists"] == [True, False]
    assert run.answer["verify_property"] == [True, False]
    assert run.answer["best_text_match"] == "blue"
    assert run.answer["simple_query"] == "open"
    # The masks stay in the host, yet depth() of a found object is the object's own (the ball
    # covers most of the red cup's box: without its mask the box's median would be the ball's).
    assert run.answer["find"][0][4] == 10 * 70 + 50 * 5
    assert run.answer["depth"][:2] == [2.0, 7.0]
    assert run.answer["ocr"] == "OPEN"
    assert run.answer["llm_query"][0] == "Paris"
    assert run.answer["best_image_match"] == 1
    served = {call.operation for call in run.trace.tool_calls}
    assert served == set(OPERATIONS)
    assert all(call.error is None for call in run.trace.tool_calls)


def test_the_worker_client_forwards_only_declared_operations() -> None:
    client = ToolClient.__new__(ToolClient)
    with pytest.raises(AttributeError):
        client.detect  # noqa: B018 - a capability, not an operation of the contract
    assert all(callable(getattr(client, name)) for name in OPERATIONS)


def test_a_program_cannot_call_an_undeclared_operation(scene: Scene, sandbox: vpd.Sandbox) -> None:
    run = sandbox.run(
        "def execute_command(image):\n    return ImagePatch(image).toolkit.detect(image, [0, 0, 1, 1], ['x'])\n",
        scene.image,
        toolkit=scene.toolkit(),
    )
    assert not run.ok
