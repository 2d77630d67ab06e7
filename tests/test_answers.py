"""Answer normalisation and voting."""

from __future__ import annotations

import math

import pytest

from vpd.answers import normalize_answer, vote


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
        (1 / 3, "0.333333"),
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
    assert vote(["3", "2", "2", "3"])[0] == "3"
    assert vote([None, "2", "3"])[0] == "2"


def test_vote_nobody() -> None:
    assert vote([None, None]) == (None, {})
    assert vote([]) == (None, {})
