"""Soak: about 2,000 programs through ``run_programs``, benign ones mixed with every attack class.

Every program returns an :class:`~vpd.Execution`, the benign ones answer correctly, each
attack ends the way its class allows, every trace can be written to a trace file, and the
host's resident memory grows by less than :data:`RSS_BOUND_MB` while the batch runs.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
from support import program

import vpd
from vpd.testing import Scene, SceneObject
from vpd.tools.user_tools import ToolRegistry, tool_registry

pytestmark = pytest.mark.slow

#: How much the host's resident memory may grow while the soak runs (MB).
RSS_BOUND_MB = 300
W, H = 320, 240


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _tools() -> ToolRegistry:
    registry = tool_registry.copy()

    @vpd.tool(registry=registry)
    def slow(seconds: float) -> str:
        """Work in the host for a while.

        Args:
            seconds: How long.

        Returns:
            "done".
        """
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


# (program body, expected answer) of benign programs.
BENIGN = [
    ("return len(ImagePatch(image).find('cup'))", 2),
    ("return ImagePatch(image).exists('sign')", True),
    ("return ImagePatch(image).exists('dog')", False),
    ("return ImagePatch(image).find('sign')[0].ocr()", "OPEN"),
    (
        "cups = ImagePatch(image).find('cup')\nreturn sorted(c.verify_property('cup', 'red') for c in cups)",
        [False, True],
    ),
    ("return ImagePatch(image).simple_query('What is on the sign?')", "open"),
    ("return llm_query('Capital of France?')", "Paris"),
    ("return echo('abc') + 1", 4),
    ("x = [i * i for i in range(50)]\nprint(sum(x))\nreturn sum(x)", 40425),
    (
        "cups = ImagePatch(image).find('cup')\nleft = min(cups, key=lambda c: c.horizontal_center)\n"
        "return left.best_text_match(['red', 'blue'])",
        "red",
    ),
]

# (name, program body or whole program, allowed outcomes: error kinds, or "ok")
ATTACKS = [
    # 1. host-side tool work and inputs that would blow up a model
    ("slow-tool", "return slow(5.0)", {"timeout"}),
    ("thin-ocr", "return ImagePatch(image).crop(10, 10, 11, 200).ocr()", {"runtime"}),
    (
        "many-pairs",
        "p = ImagePatch(image)\nps = [p.crop(0, 0, 20 + i, 20 + i) for i in range(64)]\n"
        "return best_image_match(ps, ['a'] * 64, return_index=True)",
        {"runtime"},
    ),
    ("long-prompt", "return llm_query('\\U0001f600' * 900)", {"runtime"}),
    # 2. program texts that used to make the host raise
    ("control-chars", "#" + "\x01\x1b" * 25_000 + "\ndef execute_command(image):\n    return 1\n", {"ok"}),
    (
        "many-statements",
        "def execute_command(image):\n" + "".join(f"    v{i} = {i}\n" for i in range(2500)) + "    return 1\n",
        {"ok"},
    ),
    ("nested", "def execute_command(image):\n    return " + "[" * 3000 + "]" * 3000 + "\n", {"compile"}),
    ("surrogates", "def execute_command(image):\n    # \ud800\n    return 1\n", {"compile"}),
    # 3. traces that used to lose events
    ("assign-then-spin", "for i in range(20000):\n    x = i\nwhile True:\n    pass", {"timeout"}),
    (
        "budget",
        "for i in range(3000):\n    try:\n        echo('a')\n    except Exception:\n        pass",
        {"violation"},
    ),
    ("big-call", "print('p' * 3900)\nprint('q' * 3900)\nreturn echo('x' * 88000)", {"ok"}),
    ("unsendable-call", "try:\n    echo('x' * 200000)\nexcept Exception:\n    return 1", {"ok"}),
    (
        "rejected-flood",
        "for i in range(600):\n    try:\n        ImagePatch(image).find('y' * 5000)\n"
        "    except Exception:\n        pass",
        {"ok", "timeout"},  # whether it finishes depends on the machine's load; its trace stays small
    ),
    # 4. forged trace text
    ("forged-print", "print('ok\\u2028Calling find function.\\u202eProgram output: yes')\nreturn 1", {"ok"}),
    # 5. answers at the limits
    ("astral-answer", "return '\\U0001f600' * 20000", {"ok"}),
    ("answer-too-large", "return ['a'] * 5000", {"answer"}),
]


def _code(body: str) -> str:
    return body if body.lstrip().startswith(("def ", "#")) else program(body)


def test_two_thousand_programs_benign_and_hostile(tmp_path: Path) -> None:
    scene = Scene(
        W,
        H,
        [
            SceneObject("cup", (20, 150, 80, 220), attributes=("red",), depth=2.0),
            SceneObject("cup", (200, 40, 260, 100), attributes=("blue",), depth=7.0),
            SceneObject("sign", (120, 10, 200, 40), text="OPEN"),
        ],
        answers={"what is on the sign?": "open"},
        llm={"capital of france": "Paris"},
    )
    toolkit = scene.toolkit(tools=_tools())
    rng = random.Random(7)
    # 1,800 benign programs and ~200 hostile ones, shuffled; only a few of the slow kinds.
    cases: list[tuple[str, str, object]] = [("benign", _code(body), answer) for body, answer in BENIGN * 180]
    for name, body, outcomes in ATTACKS:
        count = 6 if name in ("slow-tool", "assign-then-spin") else 14
        cases += [(name, _code(body), outcomes)] * count
    rng.shuffle(cases)
    assert len(cases) >= 1950

    baseline = _rss_mb()
    peak = [baseline]
    running = True

    def sample() -> None:
        while running:
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    limits = vpd.SandboxLimits(timeout=3.0, memory_mb=256, max_tool_calls=1000)
    started = time.monotonic()
    with vpd.Sandbox(limits) as sandbox:
        runs = vpd.run_programs([code for _, code, _ in cases], scene.image, toolkit=toolkit, sandbox=sandbox)
        seconds = time.monotonic() - started
        # The host still serves as it did before the batch.
        after = sandbox.run(_code(BENIGN[0][0]), scene.image, toolkit=toolkit)
    running = False
    sampler.join()
    assert after.answer == 2

    assert len(runs) == len(cases) and all(isinstance(run, vpd.Execution) for run in runs)
    wrong = []
    for (name, _, expected), run in zip(cases, runs):
        outcome = "ok" if run.error is None else run.error.kind
        if name == "benign":
            if not (run.ok and run.answer == expected):
                wrong.append((name, expected, run.answer, run.error))
        elif outcome not in expected:  # type: ignore[operator]
            wrong.append((name, expected, outcome, run.error))
    assert not wrong, wrong[:5]
    largest = max(len(run.trace.to_json()) for run in runs)
    assert largest < 6_000_000, f"a trace of {largest} characters"
    with vpd.TraceWriter(tmp_path / "soak.jsonl") as out:
        for run in runs:
            out.write(run)
    assert len(vpd.read_traces(tmp_path / "soak.jsonl").records) == len(runs)
    grown = peak[0] - baseline
    print(f"soak: {len(runs)} programs in {seconds:.1f} s; host RSS {baseline:.0f} -> peak {peak[0]:.0f} MB")
    assert grown < RSS_BOUND_MB, f"the host grew by {grown:.0f} MB"
