"""Module-level helper functions that programs may call (besides ``ImagePatch`` methods).

Like the ImagePatch docstrings, these are written for the program-writing LLM.
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any

from vpd.errors import InvalidArgumentError
from vpd.patch import ImagePatch, long_answer_or_default, prompt_shows

__all__ = [
    "COMPAT_HELPERS",
    "HELPER_API",
    "best_image_match",
    "bool_to_yesno",
    "coerce_to_numeric",
    "distance",
    "llm_query",
    "process_guesses",
]

#: The helpers shown to the program-writing LLM, in prompt order.
HELPER_API: tuple[str, ...] = ("llm_query", "best_image_match", "distance", "bool_to_yesno", "coerce_to_numeric")
#: Helpers for programs written against ViperGPT: in scope and checked, not in the prompt.
COMPAT_HELPERS: tuple[str, ...] = ("process_guesses",)

_NUMBER_WORDS = {
    "zero": 0, "one": 1, "single": 1, "two": 2, "pair": 2, "couple": 2,
    "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11,
    "twelve": 12, "dozen": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
    "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100,
}  # fmt: skip
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+")


@prompt_shows(defaults={"long_answer": False})
def llm_query(question: str, long_answer: bool | None = None) -> str:
    """Ask a language model a question that needs world knowledge, not the image.

    Args:
        question: A complete question, e.g. "Which animal is the largest: cat, horse or mouse?".
        long_answer: True for an explanation of a few sentences; False (default) for a word or short phrase.

    Returns:
        The answer.

    Example:
        >>> answer = llm_query("What is the capital of France?")
    """
    from vpd.tools.toolkit import current_operations

    return current_operations().llm_query(question, long_answer_or_default(long_answer))


def best_image_match(list_patches: list[ImagePatch], content: list[str], return_index: bool = False) -> Any:
    """Return the patch that best matches any of the descriptions in `content`.

    Args:
        list_patches: The candidate patches (from the same image).
        content: Descriptions to match, e.g. ["a red car"].
        return_index: True to return the index of the best patch instead of the patch.

    Returns:
        The best patch (or its index); None if `list_patches` is empty.

    Example:
        >>> people = image_patch.find("person")
        >>> chef = best_image_match(people, ["a chef in a white hat"])
    """
    if isinstance(list_patches, ImagePatch) or not isinstance(list_patches, (list, tuple)):
        raise InvalidArgumentError("best_image_match takes a list of ImagePatch objects, e.g. image_patch.find('car').")
    if not list_patches:
        return None
    if not all(isinstance(p, ImagePatch) for p in list_patches):
        raise InvalidArgumentError("Every item of list_patches must be an ImagePatch.")
    if isinstance(content, str):
        content = [content]
    first = list_patches[0]
    if any(p.image.sha256 != first.image.sha256 for p in list_patches):
        raise InvalidArgumentError("best_image_match needs patches of one image.")
    index = first.toolkit.best_image_match(first.image, [p.xyxy for p in list_patches], content)
    return index if return_index else list_patches[index]


def distance(patch_a: ImagePatch | float, patch_b: ImagePatch | float) -> float:
    """Return the distance between two patches (or two numbers).

    For patches: the pixel distance between their closest edges, 0 when they touch; when
    they overlap, minus the fraction of the smaller one that is covered (between -1 and 0).
    For numbers: the absolute difference.

    Args:
        patch_a: A patch or a number.
        patch_b: A patch or a number.

    Returns:
        The distance (smaller means closer).

    Example:
        >>> cup = image_patch.find("cup")[0]
        >>> nearest_person = min(image_patch.find("person"), key=lambda p: distance(p, cup))
    """
    if isinstance(patch_a, ImagePatch) and isinstance(patch_b, ImagePatch):
        dx = max(0, patch_a.left - patch_b.right, patch_b.left - patch_a.right)
        dy = max(0, patch_a.lower - patch_b.upper, patch_b.lower - patch_a.upper)
        if dx or dy:
            return math.hypot(dx, dy)
        ix = min(patch_a.right, patch_b.right) - max(patch_a.left, patch_b.left)
        iy = min(patch_a.upper, patch_b.upper) - max(patch_a.lower, patch_b.lower)
        if ix <= 0 or iy <= 0:
            return 0.0
        smaller = min(patch_a.width * patch_a.height, patch_b.width * patch_b.height)
        return -(ix * iy) / smaller
    if (
        isinstance(patch_a, numbers.Real)
        and isinstance(patch_b, numbers.Real)
        and not isinstance(patch_a, bool)
        and not isinstance(patch_b, bool)
    ):
        return float(abs(float(patch_a) - float(patch_b)))
    raise InvalidArgumentError(
        "distance takes two ImagePatch objects or two numbers, "
        f"got {type(patch_a).__name__} and {type(patch_b).__name__}."
    )


def bool_to_yesno(bool_answer: bool) -> str:
    """Turn a boolean into "yes" or "no".

    Args:
        bool_answer: The boolean.

    Returns:
        "yes" if `bool_answer` is true, else "no".

    Example:
        >>> return bool_to_yesno(image_patch.exists("dog"))
    """
    return "yes" if bool_answer else "no"


def coerce_to_numeric(string: Any, no_string: bool = False) -> Any:
    """Extract a number from a string such as "3 cups", "about 2.5 m", "1,200" or "three".

    Args:
        string: The text (numbers are returned as they are).
        no_string: If True, return None instead of the original string when no number is found.

    Returns:
        An int or float; if there is no number, the original string (or None if `no_string`).

    Example:
        >>> count = coerce_to_numeric(image_patch.simple_query("How many birds are there?"))
    """
    if isinstance(string, bool):
        return int(string)
    if isinstance(string, numbers.Real):
        return string
    if not isinstance(string, str):
        raise InvalidArgumentError(f"coerce_to_numeric takes a string, got {type(string).__name__}.")
    match = _NUMBER.search(string)
    if match:
        text = match.group(0).replace(",", "")
        value = float(text)
        return int(value) if value.is_integer() and "." not in text else value
    words = re.findall(r"[a-z]+", string.lower())
    if words in (["no"], ["none"], ["nothing"]):
        return 0
    total: int | None = None
    for word in words:
        if word in _NUMBER_WORDS:
            value = _NUMBER_WORDS[word]
            # "twenty one" -> 21, "one hundred" -> 100, "two hundred five" -> 205
            total = (total or 1) * 100 if value == 100 else (total or 0) + value
        elif total is not None and word != "and":
            break
    if total is not None:
        return total
    return None if no_string else string


def process_guesses(prompt: str, guess1: str | None = None, guess2: str | None = None) -> str:
    """ViperGPT's OK-VQA helper: the final short answer to a question, given up to two guesses.

    One :func:`llm_query` (traced as ``llm_query``) weighs the guesses, e.g. one from
    ``simple_query`` and one from ``llm_query``, against the question.

    Args:
        prompt: The question.
        guess1: A first guess (e.g. what the image shows), or None.
        guess2: A second guess (e.g. from world knowledge), or None.

    Returns:
        A short answer.

    Example:
        >>> guess = image_patch.simple_query("What sport can be played here?")
        >>> known = llm_query("What sport is played on a court with a net and rackets?")
        >>> answer = process_guesses("What sport can be played here?", guess, known)
    """
    if not isinstance(prompt, str):
        raise InvalidArgumentError(f"process_guesses takes the question as a string, got {type(prompt).__name__}.")
    guesses = [str(guess) for guess in (guess1, guess2) if guess is not None and str(guess).strip()]
    if not guesses:
        return llm_query(prompt)
    listed = "; ".join(f"guess {i}: {guess}" for i, guess in enumerate(guesses, 1))
    return llm_query(
        f"Question: {prompt} Possible answers ({listed}). Keep a guess that answers the question well, "
        "or give a better answer. Answer the question with a word or a short phrase."
    )


def _reserve_names() -> None:
    from vpd.tools.user_tools import tool_registry

    tool_registry.reserve((*HELPER_API, *COMPAT_HELPERS), "a built-in helper function")


_reserve_names()
