"""Helpers shared by the tests (fixtures are in conftest.py).

* :func:`program`: a program from the body of its ``execute_command``.
* :func:`make_user_tools`: a tool registry with the user tools the tests call.
* :func:`synthetic_trace` and friends: traces for the rendering and report tests (no
  sandbox, no model: fast). Each trace looks like a ViperGPT-style run: a program of a dozen lines, finds that return
boxes, an OCR read, a property check, a VQA question, assignments and a print; one in five
fails (runtime errors and timeouts), and half carry a label.
"""

from __future__ import annotations

import json
import random
import textwrap
import time
from pathlib import Path

import vpd
from vpd.tools.user_tools import ToolRegistry, tool_registry
from vpd.traces import Assignment, PrintOutput, ProgramError, ToolCall, Trace


def program(body: str) -> str:
    """A program whose ``execute_command(image)`` has ``body`` (indented or not)."""
    return "def execute_command(image):\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n"


def make_user_tools() -> ToolRegistry:
    """A copy of the default tool registry plus the user tools the tests call."""
    registry = tool_registry.copy()

    @vpd.tool(registry=registry)
    def count_wheels(vehicle: str, axles: int = 2) -> int:
        """Count the wheels of a vehicle.

        Args:
            vehicle: The vehicle's name.
            axles: How many axles it has.

        Returns:
            The number of wheels.
        """
        return axles * 2

    @vpd.tool.method(registry=registry)
    def aspect(patch: vpd.ImagePatch) -> float:
        """Width over height of the patch.

        Returns:
            The aspect ratio.
        """
        return patch.width / patch.height

    @vpd.tool(registry=registry)
    def widest(patches: list) -> vpd.ImagePatch:  # type: ignore[type-arg]
        """The widest of some patches.

        Args:
            patches: Patches.

        Returns:
            The widest one.
        """
        return max(patches, key=lambda p: p.width)

    @vpd.tool(registry=registry)
    def broken(text: str) -> str:
        """Always fails.

        Args:
            text: Anything.

        Returns:
            Nothing: it raises.
        """
        raise RuntimeError(f"broken tool got {text}")

    @vpd.tool(registry=registry)
    def pause(seconds: float) -> float:
        """Sleep (in the host) and return the seconds.

        Args:
            seconds: How long.

        Returns:
            The same seconds.
        """
        time.sleep(seconds)
        return seconds

    return registry


W, H = 320, 240
OBJECTS = ("cup", "car", "dog", "sign", "person", "bicycle", "tree", "bus")
PROGRAM = """def execute_command(image):
    image_patch = ImagePatch(image)
    {obj}s = image_patch.find("{obj}")
    print("found", len({obj}s))
    if len({obj}s) == 0:
        return "no"
    first = {obj}s[0]
    is_red = first.verify_property("{obj}", "red")
    text = first.ocr()
    colour = first.simple_query("what colour is the {obj}?")
    return {result}
"""


def call(index: int, operation: str, inputs: dict, output: object, box: list[int] | None, line: int) -> ToolCall:
    return ToolCall(
        index=index,
        operation=operation,
        capability={"find": "detect", "ocr": "ocr", "simple_query": "vqa"}.get(operation, "match"),
        backend="fake",
        model="fake-1",
        inputs=inputs,
        output=output,
        box=box,
        line=line,
        seconds=0.002,
        cache_hit=index % 3 == 0,
    )


def synthetic_trace(i: int, rng: random.Random, *, ocr_text: str | None = None, sha256: str | None = None) -> Trace:
    """The i-th synthetic trace (deterministic given ``rng``'s state), on the image ``sha256``."""
    obj = OBJECTS[i % len(OBJECTS)]
    n = rng.randint(0, 4)
    found = []
    for _ in range(n):
        x0, y0 = rng.randint(0, W - 40), rng.randint(0, H - 40)
        found.append(
            {"box": [x0, y0, x0 + rng.randint(10, 40), y0 + rng.randint(10, 40)], "score": round(rng.random(), 4)}
        )
    events: list = [
        Assignment(0, 2, "image_patch", f"ImagePatch(left=0, lower=0, right={W}, upper={H})"),
        call(1, "find", {"object_name": obj}, found, [0, 0, W, H], 3),
        Assignment(2, 3, f"{obj}s", f"[{', '.join('ImagePatch(...)' for _ in found)}]"),
        PrintOutput(3, 4, f"found {n}\n"),
    ]
    answer: object = "no"
    error = None
    if found:
        box = found[0]["box"]
        text = ocr_text if ocr_text is not None else rng.choice(["OPEN", "", "STOP", "Café 42"])
        events += [
            Assignment(4, 7, "first", "ImagePatch(left=..., lower=..., right=..., upper=...)"),
            call(5, "verify_property", {"object_name": obj, "property": "red"}, rng.random() < 0.5, box, 8),
            call(6, "ocr", {}, text, box, 9),
            Assignment(7, 9, "text", repr(text)),
        ]
        if i % 5 == 4:
            error = ProgramError("runtime", "ZeroDivisionError: division by zero", 10) if i % 10 == 4 else None
            error = error or ProgramError("timeout", "The program did not finish within 60 s and was stopped.")
        else:
            colour = rng.choice(["red", "blue", "green"])
            events.append(call(8, "simple_query", {"question": f"what colour is the {obj}?"}, colour, box, 10))
            answer = colour
    result = "colour" if found else '"no"'
    meta = {"question": f"What colour is the {obj} number {i}?"}
    if i % 2 == 0:
        meta["label"] = rng.choice(["red", "blue", "green", "no"])
    return Trace(
        program=PROGRAM.format(obj=obj, result=result),
        image={"sha256": sha256 or f"{i % 50:064x}", "width": W, "height": H},
        events=tuple(events),
        answer=None if error else answer,
        error=error,
        wall_seconds=0.05 + rng.random(),
        tool_seconds=0.01,
        meta=meta,
    )


def write_images(folder: Path, count: int = 50) -> list[tuple[str, str]]:
    """``count`` small PNG images under ``folder``: ``(path relative to its parent, sha256)`` each."""
    from PIL import Image, ImageDraw

    from vpd.image import load_image

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for j in range(count):
        image = Image.new("RGB", (W, H), ((j * 37) % 256, (j * 91) % 256, 160))
        ImageDraw.Draw(image).ellipse((40, 40, 200, 180), fill=(240, 240, 240))
        path = folder / f"img{j}.png"
        image.save(path)
        names.append((f"{folder.name}/{path.name}", load_image(path).sha256))
    return names


def write_jsonl(path: Path, count: int, *, images: list[tuple[str, str]] | None = None, seed: int = 0) -> list[Trace]:
    """``count`` synthetic traces as records in a JSONL file; image ``i % len(images)`` for trace ``i``."""
    rng = random.Random(seed)
    traces = []
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            name, sha = images[i % len(images)] if images else (None, None)
            trace = synthetic_trace(i, rng, sha256=sha)
            record: dict = {"trace": trace.to_dict()}
            if name:
                record["image"] = name
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            traces.append(trace)
    return traces


# -- synthesis and evaluation runs, made by the real pipeline with a scripted LLM ------------------

RUN_HOSTILE = '<script>window.__pwned = 3</script><img src=x onerror="window.__pwned = 4">'


def _count_program(body: str) -> str:
    lines = "\n".join("    " + line for line in body.strip().splitlines())
    return f"```python\ndef execute_command(image):\n{lines}\n```"


#: Per question word, the reply of each sample: sample 0 is wrong for cats, 1 and 2 right.
RUN_SCRIPT = {
    "cats": [
        _count_program("cats = ImagePatch(image).find('cat')\nif len(cats) > 5:\n    return 99\nreturn len(cats) + 1"),
        _count_program("cats = ImagePatch(image).find('cat')\nif len(cats) > 5:\n    return 99\nreturn len(cats)"),
        _count_program("return len(ImagePatch(image).find('cat'))"),
    ],
    "dogs": [
        _count_program("return ImagePatch(image).find('dog')[10]"),
        "I cannot answer that.",
        _count_program("return len(ImagePatch(image).find('dog')) + 1"),
    ],
}


def run_responder(script: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def respond(request: dict) -> str:
        question = request["messages"][-1]["content"]
        for word, replies in script.items():
            if f"How many {word}" in question:
                return replies[int(request.get("seed", 0)) % len(replies)]
        return "I cannot answer that."

    return respond


def make_runs(folder: Path) -> tuple[Path, Path]:
    """A synthesis run (k = 3) and an evaluation folder with two teachers that differ, on a scene.

    Returns:
        ``(synthesis run folder, evaluation folder)``.
    """
    from vpd.distill.datasets import Dataset, Example
    from vpd.distill.evaluate import evaluate
    from vpd.distill.synthesis import synthesize
    from vpd.testing import Scene, SceneObject
    from vpd.testing.openai_server import FakeOpenAIServer

    scene = Scene(320, 240, [SceneObject("cat", (10, 10, 60, 60)), SceneObject("cat", (100, 10, 150, 60)),
                             SceneObject("dog", (20, 150, 90, 220))])  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    image = folder / "scene.png"
    scene.image.save(image)
    dataset = Dataset(
        "toy",
        (
            Example("q1", image, "How many cats are there?", ("2",), metric="count"),
            Example("q2", image, "How many dogs are there?", ("1",), metric="count"),
            Example("q3", image, f"How many cats {RUN_HOSTILE}?", ("2",), metric="count"),
        ),
    )
    options = {"toolkit": scene.toolkit(), "api_key": "test", "cache": False, "max_repairs": 0,
               "limits": vpd.SandboxLimits(timeout=2.0)}  # fmt: skip
    with FakeOpenAIServer(run_responder(RUN_SCRIPT)) as server:
        synthesize(dataset, folder / "synth", k=3, llm=server.model_string, api_base=server.base_url, **options)
        solver = vpd.Solver(k=1, llm=server.model_string, api_base=server.base_url, **options)
        evaluate(dataset, folder / "eval", solver, name="teacher")
    other = {"cats": [RUN_SCRIPT["cats"][2]], "dogs": [_count_program("return len(ImagePatch(image).find('dog'))")]}
    with FakeOpenAIServer(run_responder(other)) as server:
        solver = vpd.Solver(k=1, llm=server.model_string, api_base=server.base_url, **options)
        evaluate(dataset, folder / "eval", solver, name="fixed")
    return folder / "synth", folder / "eval"
