"""Answer normalisation, self-consistency voting and judging answers against labels.

Programs answer in many forms: ``True``, ``"yes"``, ``2``, ``2.0``, ``"two"``, ``"Two."``.
:func:`normalize_answer` maps them to one canonical string so that votes over the k programs
of a question count the same answer once, and so that answers compare with labels.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["answer_fits", "judge", "normalize_answer", "question_kind", "vote"]

_NUMBER_WORDS = {
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "thirteen": "13",
    "fourteen": "14",
    "fifteen": "15",
    "sixteen": "16",
    "seventeen": "17",
    "eighteen": "18",
    "nineteen": "19",
    "twenty": "20",
}
_YES = {"yes", "true", "yeah", "yep", "correct"}
_NO = {"no", "false", "nope", "incorrect"}
_SPACE = re.compile(r"\s+")
_NUMERIC = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_INTEGER = re.compile(r"^[+-]?\d+$")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
# "yes, there is one." / "no - it is empty": the answer word, then punctuation.
_YES_NO_LEAD = re.compile(r"^(yes|no|yeah|nope)\s*[,;:!.\-]")


def normalize_answer(value: Any) -> str | None:
    """The canonical string form of an answer (None for no answer).

    * booleans and yes/no words become ``"yes"`` / ``"no"``, also at the start of a
      sentence before punctuation (``"Yes, there is."`` -> ``"yes"``);
    * numbers become digits: integers exactly, integral floats without ``.0``, other floats
      to 10 significant digits (so float noise such as ``0.30000000000000004`` votes with
      ``0.3``); number words zero to twenty and ``"1,000"``-style numbers become digits;
    * text is stripped, lower-cased, with inner whitespace collapsed, surrounding quotes
      and trailing ``.``, ``!`` and ``?`` removed (``"Red."`` -> ``"red"``);
    * lists and dicts become compact JSON of their normalised items.

    Args:
        value: An answer as a program returns it (JSON types).

    Returns:
        The normalised answer, or None for None, NaN, infinities and empty text.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # more digits than Python prints
            return f"an integer of {value.bit_length()} bits"
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return f"{value:.10g}"
    if isinstance(value, str):
        return _normalize_text(value)
    if isinstance(value, (list, tuple)):
        return json.dumps([normalize_answer(v) for v in value], ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, dict):
        items = {str(k): normalize_answer(v) for k, v in value.items()}
        return json.dumps(items, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return normalize_answer(str(value))


def _normalize_text(value: str) -> str | None:
    text = _SPACE.sub(" ", value).strip().lower().strip("\"'`").strip()
    stripped = text.rstrip(".!?").rstrip()
    if stripped:
        text = stripped.strip("\"'`").strip()
    if not text:
        return None
    if text in _YES:
        return "yes"
    if text in _NO:
        return "no"
    lead = _YES_NO_LEAD.match(text)
    if lead:
        return "yes" if lead.group(1) in _YES else "no"
    if text in _NUMBER_WORDS:
        return _NUMBER_WORDS[text]
    if _THOUSANDS.match(text):
        text = text.replace(",", "")
    if _INTEGER.match(text):
        return str(int(text)) if len(text) < 4000 else text
    if _NUMERIC.match(text):
        number = float(text)
        return normalize_answer(number) if math.isfinite(number) else text
    return text


_AUXILIARIES = frozenset({
    "is", "are", "was", "were", "am", "do", "does", "did", "can", "could", "has", "have", "had", "will", "would",
    "should", "shall", "may", "might", "must",
})  # fmt: skip
_WH = frozenset({"what", "which", "who", "whom", "whose", "where", "when", "why", "how"})


def question_kind(question: str) -> str:
    """What kind of answer a question asks for: ``"yes/no"``, ``"count"``, ``"open"`` or ``"any"``.

    ``"yes/no"``: it starts with an auxiliary verb (``Is``, ``Are``, ``Does``...) and offers
    no choice (no `` or ``); ``"count"``: it starts with ``How many``; ``"open"``: another
    question word (``What``, ``Which``, ``Where``...); ``"any"``: anything else.
    """
    words = re.findall(r"[a-z']+", question.lower())
    if not words:
        return "any"
    if words[:2] == ["how", "many"]:
        return "count"
    if words[0] in _AUXILIARIES:
        return "any" if "or" in words else "yes/no"
    if words[0] in _WH:
        return "open"
    return "any"


def answer_fits(question: str, answer: str) -> bool:
    """Whether a normalised answer is of the kind the question asks for (see :func:`question_kind`).

    A yes/no question answered with something else, a counting question answered with
    anything but a number, and an open question answered yes or no do not fit.
    """
    kind = question_kind(question)
    if kind == "yes/no":
        return answer in ("yes", "no")
    if kind == "count":
        return bool(_NUMERIC.match(answer))
    if kind == "open":
        return answer not in ("yes", "no")
    return True


def vote(answers: Sequence[str | None], question: str | None = None) -> tuple[str | None, dict[str, int]]:
    """Self-consistency: the most frequent answer among ``answers`` (None entries do not vote).

    Ties go to the tied answer that appears first in ``answers``: callers list samples in
    order, and sample 0 is the greedy one, the model's own best guess. Given the question,
    answers of the wrong kind (:func:`answer_fits`) lose their vote, unless no answer fits.

    Args:
        answers: Normalised answers, one per candidate, in sample order.
        question: The question, to check each answer's kind against.

    Returns:
        The winning answer (None when nobody voted) and the vote count per answer.
    """
    if question is not None and any(a is not None and answer_fits(question, a) for a in answers):
        answers = [a if a is not None and answer_fits(question, a) else None for a in answers]
    counts: dict[str, int] = {}
    for answer in answers:
        if answer is not None:
            counts[answer] = counts.get(answer, 0) + 1
    if not counts:
        return None, counts
    best = max(counts.values())
    winner = next(a for a in answers if a is not None and counts[a] == best)
    return winner, counts


def judge(answer: Any, label: Any) -> bool | None:
    """Whether an answer matches a label after normalisation (None when there is no label).

    Both sides go through :func:`normalize_answer` (``True`` matches ``"yes"``, ``2.0``
    matches ``"two"``...); a failed run (answer None) is not correct. This is vpd's own
    agreement test, used to mark traces correct or not; a dataset's official metric
    (VQAv2 soft accuracy, exact match...) is a separate, stricter question.

    Args:
        answer: The program's answer (JSON types), or None when it failed.
        label: The expected answer, or None when unknown.

    Returns:
        True or False, or None without a label.
    """
    if label is None:
        return None
    expected = normalize_answer(label)
    return expected is not None and normalize_answer(answer) == expected
