"""Quickstart: answer questions about a photo with programs, offline.

1. ``vpd.solve`` with the offline toolkit (NanoDet detection, RapidOCR) and, by default, the
   embedded local LLM: the model writes k programs, the sandbox runs them, answers are voted on.
2. A tool of your own with ``@vpd.tool.method``: programs can call it like any ImagePatch
   method, it shows in the prompt the LLM reads, and its calls are traced.
3. The same tools called directly, without an LLM.

    python examples/quickstart.py                          # embedded Qwen2.5-Coder-1.5B
    python examples/quickstart.py --llm local:0.5b         # faster, weaker
    python examples/quickstart.py --llm openai/gpt-4o-mini # any litellm model (needs its key)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import vpd

IMAGE = Path(__file__).resolve().parent / "images" / "coffee.jpg"

_COLOURS = {
    "black": (20, 20, 20),
    "white": (235, 235, 235),
    "grey": (128, 128, 128),
    "red": (200, 30, 30),
    "orange": (230, 130, 30),
    "yellow": (230, 220, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 200),
    "brown": (120, 75, 40),
}


@vpd.tool.method
def dominant_colour(patch: vpd.ImagePatch) -> str:
    """Name the colour that covers most of the patch.

    Args:
        patch: The region to look at.

    Returns:
        One of black, white, grey, red, orange, yellow, green, blue or brown.

    Example:
        >>> cup_colour = cup_patch.dominant_colour()
    """
    pixels = np.asarray(patch.cropped_image.convert("RGB").resize((32, 32))).reshape(-1, 3).astype(float)
    names = list(_COLOURS)
    centres = np.array([_COLOURS[n] for n in names], dtype=float)
    nearest = ((pixels[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
    return names[int(np.bincount(nearest, minlength=len(names)).argmax())]


def main(argv: list[str] | None = None) -> None:
    """Run the three parts; ``--llm``/``--api-base`` choose the model that writes programs."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm", default=None, help="model that writes programs (default: the embedded one)")
    parser.add_argument("--api-base", default=None, help="OpenAI-compatible server URL")
    parser.add_argument("--k", type=int, default=3, help="programs per question")
    args = parser.parse_args(argv)

    toolkit = vpd.Toolkit.offline()

    # 1. Questions answered by programs.
    for question in ("How many cups are there?", "What colour is the cup?"):
        solution = vpd.solve(IMAGE, question, k=args.k, toolkit=toolkit, llm=args.llm, api_base=args.api_base)
        print(f"Q: {question}\nA: {solution}  (votes {solution.votes}, source {solution.source})")
        if solution.program:
            print("   program:\n" + "\n".join(f"     {line}" for line in solution.program.splitlines()))
        print()

    # 2. and 3. The tools, and the custom one, called directly (no LLM), every call recorded.
    with vpd.record_tool_calls() as calls:
        photo = vpd.ImagePatch(IMAGE, toolkit=toolkit)
        cups = photo.find("cup")
        print(f"find('cup') -> {cups}")
        if cups:
            print(f"the cup's dominant colour: {cups[0].dominant_colour()}")
        print(f"exists('dog') -> {photo.exists('dog')}")
    print(f"{len(calls)} tool calls recorded: {', '.join(c.operation for c in calls)}")


if __name__ == "__main__":
    main()
