"""The operations contract: declared once, served the same by the toolkit and through the sandbox."""

from __future__ import annotations

import inspect

import pytest

import vpd
from vpd.image import load_image
from vpd.programs.sandbox import wire
from vpd.programs.sandbox.serving import ToolServer
from vpd.programs.sandbox.worker import ToolClient
from vpd.testing import FakeOCR, Scene, SceneObject
from vpd.tools.contract import OPERATIONS, Region, operation_signature
from vpd.tools.user_tools import ToolRegistry

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


def test_the_worker_client_forwards_exactly_the_declared_operations() -> None:
    # mypy cannot see the client's generated methods: this test holds them to the contract.
    client = ToolClient.__new__(ToolClient)
    with pytest.raises(AttributeError):
        client.detect  # noqa: B018 - a capability, not an operation of the contract
    for name in OPERATIONS:
        assert inspect.signature(getattr(client, name)) == operation_signature(name), name
    declared = operation_signature("verify_property")
    assert list(declared.parameters) == ["image", "box", "object_name", "property"]  # ImagePatch's names
    with pytest.raises(TypeError, match=r"verify_property\(\): .*argument"):
        client.verify_property(None, (0, 0, 1, 1))


def test_toolkit_methods_have_the_declared_annotations() -> None:
    for name in OPERATIONS:
        implemented = inspect.signature(getattr(vpd.Toolkit, name))
        declared = operation_signature(name)
        assert [p.annotation for p in list(implemented.parameters.values())[1:]] == [
            p.annotation for p in declared.parameters.values()
        ], name
        assert implemented.return_annotation == declared.return_annotation, name


# Wrong arguments a program can pass: through the sandbox they fail exactly as they do directly.
WRONG_ARGUMENTS = [
    "ImagePatch(image).find(3)",
    "ImagePatch(image).find('')",
    "ImagePatch(image).exists(['cup'])",
    "ImagePatch(image).verify_property('cup', 5)",
    "ImagePatch(image).best_text_match('red')",
    "ImagePatch(image).best_text_match(['red', 2])",
    "ImagePatch(image).best_text_match([])",
    "ImagePatch(image).simple_query(3)",
    "ImagePatch(image).llm_query('Capital of France?', 1)",
    "llm_query('Capital of France?', long_answer='yes')",
    "best_image_match([ImagePatch(image)], [3])",
    "best_image_match([ImagePatch(image)] * 65, ['cup'])",
]


@pytest.mark.parametrize("call", WRONG_ARGUMENTS)
def test_wrong_arguments_fail_the_same_through_the_sandbox(call: str, scene: Scene, sandbox: vpd.Sandbox) -> None:
    code = f"def execute_command(image):\n    return {call}\n"
    toolkit = scene.toolkit()
    scope = {"ImagePatch": vpd.ImagePatch, "best_image_match": vpd.best_image_match, "llm_query": vpd.llm_query}
    exec(code, scope)
    with vpd.use_toolkit(toolkit), pytest.raises(vpd.InvalidArgumentError) as direct:
        scope["execute_command"](scene.image)
    run = sandbox.run(code, scene.image, toolkit=toolkit)
    assert run.error is not None and run.error.kind == "runtime"
    assert run.error.message == f"InvalidArgumentError: {direct.value}"


def test_the_host_serves_only_declared_operations_with_declared_arguments(scene: Scene) -> None:
    # What a hostile worker could send: the host reads every request against the contract.
    server = ToolServer(scene.toolkit(), load_image(scene.image), max_tool_calls=20)

    def error(op: object, args: object) -> tuple[str, str]:
        served = server.serve(op, args)
        assert "result" not in served.reply, served.reply
        return served.reply["error"]["kind"], served.reply["error"]["message"]

    assert server.serve("exists", {"box": [0, 0, W, H], "object_name": "cup"}).reply == {"result": True}
    assert error("detect", {"images": []}) == ("violation", "The worker asked for an unknown operation.")
    assert error("find", ["cup"])[0] == "violation"
    assert error(["ocr"], {"box": [0, 0, 9, 9]})[0] == "violation"  # an unhashable operation name
    assert error({"op": 1}, {})[0] == "violation"
    assert error("find", {"box": [0, 0, 10], "object_name": "cup"}) == ("invalid", "A region is four integers.")
    assert error("find", {"object_name": "cup"}) == ("invalid", "find() is missing its argument 'box'.")
    assert error("find", {"box": [0, 0, 9, 9], "object_name": "cup", "extra": 1})[1].startswith("find() got unexpected")
    # Texts, lists and flags are checked by the toolkit, as in a direct call.
    assert error("llm_query", {"question": "q?", "long_answer": 1}) == ("invalid", "long_answer must be True or False.")
    assert error("best_text_match", {"box": [0, 0, 9, 9], "options": "red"})[0] == "invalid"
    assert error("simple_query", {"box": [0, 0, 9, 9], "question": {"$patch": [0, 0, 1, 1]}}) == (
        "invalid",
        "question must be a string, got dict.",
    )
    # The image and masks come from the host, whatever the worker sends in their place.
    served = server.serve("depth", {"box": [0, 0, W, H], "image": "x", "mask": [[True]]})
    assert served.reply == {"result": 10.0}
    # Results cross as plain JSON: regions without their masks.
    (region,) = server.serve("find", {"box": [190, 30, 270, 110], "object_name": "cup"}).reply["result"]
    assert set(region) == {wire.REGION} and "mask" not in region[wire.REGION]
    assert region[wire.REGION]["box"] == [200, 40, 260, 100] and region[wire.REGION]["area"] == 60 * 60


def test_the_host_enforces_the_call_budget(scene: Scene) -> None:
    server = ToolServer(scene.toolkit(), load_image(scene.image), max_tool_calls=2)
    for _ in range(2):
        assert "result" in server.serve("ocr", {"box": [0, 0, W, H]}).reply
    assert server.serve("ocr", {"box": [0, 0, W, H]}).reply["error"]["kind"] == "violation"
    assert server.violation == "The program made more than 2 tool calls."


def _region_tools() -> ToolRegistry:
    registry = ToolRegistry()

    @vpd.tool(registry=registry)
    def tagged() -> dict:  # type: ignore[type-arg]
        """Plain data that happens to use the wire's region tag.

        Returns:
            A dict.
        """
        return {"$region": {"box": [1, 2, 3, 4]}}

    @vpd.tool(registry=registry)
    def region() -> str:
        """A buggy tool that returns a toolkit Region instead of its declared text.

        Returns:
            Text, supposedly.
        """
        return Region((1, 2, 3, 4), 0.5, "cup")  # type: ignore[return-value]

    return registry


def test_user_tool_results_are_plain_data_never_regions(scene: Scene, sandbox: vpd.Sandbox) -> None:
    toolkit = scene.toolkit(tools=_region_tools())
    plain = sandbox.run("def execute_command(image):\n    return tagged()\n", scene.image, toolkit=toolkit)
    assert plain.ok and plain.answer == {"$region": {"box": [1, 2, 3, 4]}}
    bad = sandbox.run("def execute_command(image):\n    return region()\n", scene.image, toolkit=toolkit)
    assert bad.error is not None and bad.error.kind == "tool"
    assert "ToolError: a tool returned a Region, which cannot be sent to a program" in bad.error.message


def test_a_failed_operation_tells_the_program_what_failed(scene: Scene, sandbox: vpd.Sandbox) -> None:
    broken = scene.toolkit(ocr=BrokenOCR(scene))
    code = (
        "def execute_command(image):\n    try:\n        ImagePatch(image).ocr()\n"
        "    except Exception as e:\n        return [e.capability, e.backend, e.tool]\n"
    )
    run = sandbox.run(code, scene.image, toolkit=broken)
    assert run.ok and run.answer == ["ocr", "fake", None]


class BrokenOCR(FakeOCR):
    def read_text(self, images):  # type: ignore[no-untyped-def]
        raise RuntimeError("the OCR model fell over")
