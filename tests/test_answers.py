"""Answer normalisation and voting."""

from __future__ import annotations

import math

import pytest

from vpd.traces import normalize_answer, vote


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "yes"),
        (False, "no"),
        ("Yes.", "yes"),
        ("  NO ", "no"),
        ("true", "yes"),
        (2, "2"),
        (2.0, "2"),
        ("2.0", "2"),
        ("two", "2"),
        ("Two.", "2"),
        (0.5, "0.5"),
        (1 / 3, "0.3333333333"),
        (0.1 + 0.2, "0.3"),
        (1e15, "1000000000000000"),
        (10**15, "1000000000000000"),
        (1234567.4, "1234567.4"),
        ("Yes!", "yes"),
        ("yes, there is.", "yes"),
        ("No. It is empty", "no"),
        ("no one", "no one"),
        ("1,000", "1000"),
        ("3 cups", "3 cups"),
        ("02", "2"),
        ("1e400", "1e400"),
        ("9" * 5000, "9" * 5000),
        ("?!", "?!"),
        ("2.50", "2.5"),
        (-3, "-3"),
        ("Red  car.", "red car"),
        ("'blue'", "blue"),
        ("", None),
        (None, None),
        (math.nan, None),
        (math.inf, None),
        ([1, "Two", True], '["1","2","yes"]'),
        ({"b": 2.0, "a": "X"}, '{"a":"x","b":"2"}'),
        ("1e3", "1000"),
        ("...", "..."),
        ("Ünïcode", "ünïcode"),
    ],
)
def test_normalize_answer(value: object, expected: str | None) -> None:
    assert normalize_answer(value) == expected


def test_vote_majority() -> None:
    assert vote(["2", "3", "2", None]) == ("2", {"2": 2, "3": 1})


def test_vote_tie_goes_to_earliest_sample() -> None:
    # Not palindromes: "first" and "last" of a tie must give different answers here.
    assert vote(["3", "2", "3", "2"])[0] == "3"
    assert vote(["2", "3", "2", "3", None])[0] == "2"
    assert vote([None, "2", "3"])[0] == "2"
    assert vote(["a", "b", "c", "b", "a", "c"])[0] == "a"


def test_trailing_exclamation_and_question_marks_are_stripped() -> None:
    # Not yes/no words, which a separate rule also covers.
    assert normalize_answer("Red!") == "red"
    assert normalize_answer("blue?") == "blue"
    assert normalize_answer("two!!") == "2"
    assert normalize_answer("a cat?!") == "a cat"


def test_vote_nobody() -> None:
    assert vote([None, None]) == (None, {})
    assert vote([]) == (None, {})


def test_huge_integers_do_not_crash() -> None:
    assert normalize_answer(10**5000) == "an integer of 16610 bits"


@pytest.mark.parametrize(
    "question,kind",
    [("Is the cup red?", "yes/no"), ("Are there two dogs?", "yes/no"), ("Is the cup red or blue?", "any"),
     ("How many cats are there?", "count"), ("What color is the bus?", "open"), ("Where is he looking?", "open"),
     ("Name the animal.", "any"), ("", "any")],
)  # fmt: skip
def test_question_kinds(question: str, kind: str) -> None:
    from vpd.traces.answers import question_kind

    assert question_kind(question) == kind


def test_answers_of_the_wrong_kind_lose_their_vote() -> None:
    # "yes" twice would win; but the question asks for a colour.
    assert vote(["yes", "red", "yes"], "What color is the bus?") == ("red", {"red": 1})
    assert vote(["3", "three cats", "cat"], "How many cats are there?") == ("3", {"3": 1})
    assert vote(["red", "yes", "red"], "Is the bus red?") == ("yes", {"yes": 1})
    assert vote(["red", "blue"], "Is the bus red?") == ("red", {"red": 1, "blue": 1})  # none fits: all vote
    assert vote(["yes", "red", "yes"]) == ("yes", {"yes": 2, "red": 1})  # without the question, as before
