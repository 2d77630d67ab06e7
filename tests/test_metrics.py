"""The official metrics: cases derived from each evaluation script's rules, and an oracle.

The oracle (``_official_vqa``) follows the structure of the VQA challenge's ``vqaEval.py``
loop (answer dicts with ids, processed in place, each left out in turn by dict inequality),
so that the compact implementation in vpd is checked against the script's own shape on
many generated cases, quirks included.
"""

from __future__ import annotations

import random

import pytest

from vpd.distill.metrics import (
    METRICS,
    as_count,
    choice_accuracy,
    count_accuracy,
    direct_answer_accuracy,
    exact_match,
    score,
    vqa_accuracy,
    vqa_normalize,
    vqa_process_digit_article,
    vqa_process_punctuation,
)
from vpd.errors import InvalidArgumentError


def refs(*pairs: tuple[str, int]) -> list[str]:
    """Reference answers from (answer, times) pairs."""
    return [answer for answer, times in pairs for _ in range(times)]


# -- VQAv2 / OK-VQA ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "matches,expected",
    [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)],
)
def test_leave_one_out_over_ten_answers(matches: int, expected: float) -> None:
    # Three annotators agreeing is not enough for full credit: left out in turn, each of
    # them sees only two others.
    answers = refs(("red", matches), ("blue", 10 - matches))
    assert vqa_accuracy("red", answers) == pytest.approx(expected)


@pytest.mark.parametrize(
    "prediction,answers,expected",
    [
        ("Two", refs(("2", 10)), 1.0),  # number words become digits, text is lower-cased
        ("none", refs(("0", 10)), 1.0),
        ("eleven", refs(("11", 10)), 0.0),  # only none/zero...ten are mapped
        ("the dog.", refs(("dog", 10)), 1.0),  # articles dropped, final period removed
        (" yes\n", refs(("yes", 10)), 1.0),
        ("yes\tplease", refs(("yes please", 10)), 1.0),
        ("yes!", refs(("yes", 10)), 0.0),  # "!" is not in the script's punctuation list
        ("1,000", refs(("1000", 10)), 1.0),  # a digit-comma-digit removes punctuation outright
        ("3.5", refs(("3.5", 10)), 1.0),  # a period before a digit stays
        ("9 a.m.", refs(("9 am", 10)), 1.0),
        ("black/white", refs(("black white", 10)), 1.0),  # "/" without a space beside it -> a space
        ("black / white", refs(("black  white", 10)), 0.0),  # beside a space -> removed: "black  white" splits
        ("dont", refs(("don’t", 10)), 1.0),  # contractions get the script's typographic apostrophe
        ("dont", refs(("dont", 10)), 0.0),  # ...and identical references are compared as given
        ("it's", refs(("it's", 10)), 0.0),  # the prediction becomes "it s"; identical references stay "it's"
        ("it's", refs(("it's", 9), ("its", 1)), 1.0),  # differing references get the punctuation step too
        ("don't", refs(("don't", 3), ("do not", 7)), 0.9),  # differing references get punctuation: "don t"
        ("Yes", refs(("Yes", 5), ("yes", 5)), 1.0),  # references are not lower-cased
        ("a", refs(("a", 10)), 0.0),  # the prediction loses its article; identical references keep theirs
    ],
)
def test_official_processing(prediction: str, answers: list[str], expected: float) -> None:
    assert vqa_accuracy(prediction, answers) == pytest.approx(expected)


def test_punctuation_steps() -> None:
    assert vqa_process_punctuation("it's") == "it s"
    assert vqa_process_punctuation("it ' s") == "it  s"
    assert vqa_process_punctuation("1,2 (a)") == "12 a"
    assert vqa_process_punctuation("." * 40) == "." * 8  # re.UNICODE passed as sub's count: 32 at most
    assert vqa_process_punctuation("a.b") == "ab"
    assert vqa_process_digit_article("The Three Cats") == "3 cats"
    assert vqa_normalize("  An Apple.\n") == "apple"


def _official_vqa(prediction: str, answers: list[str]) -> float:
    """One question scored in the shape of vqaEval.py's loop (the oracle)."""
    gts = [{"answer": answer, "answer_confidence": "yes", "answer_id": i + 1} for i, answer in enumerate(answers)]
    res = prediction.replace("\n", " ").replace("\t", " ").strip()
    res = vqa_process_punctuation(res)
    res = vqa_process_digit_article(res)
    if len({gt["answer"] for gt in gts}) > 1:
        for gt in gts:
            gt["answer"] = vqa_process_punctuation(gt["answer"])
    accuracies = []
    for left_out in gts:
        others = [gt for gt in gts if gt != left_out]
        matching = [gt for gt in others if gt["answer"] == res]
        accuracies.append(min(1, float(len(matching)) / 3))
    return float(sum(accuracies)) / len(accuracies)


def test_agrees_with_the_scripts_loop_on_generated_cases() -> None:
    rng = random.Random(7)
    vocabulary = ["2", "two", "yes", "Yes", "no", "the cat", "cat", "cat.", "dont", "don’t", "1,000", "1000",
                  "red/blue", "red blue", "a", "3.5", "it's", "its", " white ", "none", "0"]  # fmt: skip
    for _ in range(3000):
        answers = [rng.choice(vocabulary) for _ in range(rng.choice([2, 3, 5, 10, 10, 10]))]
        prediction = rng.choice([*vocabulary, rng.choice(answers)])
        assert vqa_accuracy(prediction, answers) == pytest.approx(_official_vqa(prediction, answers)), (
            prediction,
            answers,
        )


def test_vqa_accuracy_refuses_what_it_cannot_score() -> None:
    with pytest.raises(InvalidArgumentError, match="exact_match"):
        vqa_accuracy("cat", ["cat"])
    with pytest.raises(InvalidArgumentError, match="at least one reference"):
        vqa_accuracy("cat", [])
    with pytest.raises(InvalidArgumentError, match="normalize_answer"):
        vqa_accuracy(2, ["2", "2"])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="list of reference answers"):
        vqa_accuracy("cat", "cat")
    with pytest.raises(InvalidArgumentError, match="strings"):
        vqa_accuracy("cat", ["cat", 2])  # type: ignore[list-item]


# -- A-OKVQA, GQA, TallyQA --------------------------------------------------------------------
def test_direct_answer_is_plain_equality_without_leave_one_out() -> None:
    answers = refs(("bread", 3), ("toast", 7))
    assert direct_answer_accuracy("bread", answers) == 1.0  # three matches: full credit here
    assert direct_answer_accuracy("bread", refs(("bread", 2), ("toast", 8))) == pytest.approx(2 / 3)
    assert direct_answer_accuracy("Bread", answers) == 0.0  # no processing at all
    assert direct_answer_accuracy("the bread", answers) == 0.0


def test_choice_and_exact_match_are_plain_equality() -> None:
    assert choice_accuracy("a dog", ["a dog"]) == 1.0
    assert choice_accuracy("dog", ["a dog"]) == 0.0
    assert exact_match("yes", ["yes"]) == 1.0
    assert exact_match("Yes", ["yes"]) == 0.0  # GQA's eval.py: predicted == gold
    assert exact_match("left", ["right", "left"]) == 1.0


@pytest.mark.parametrize(
    "prediction,reference,expected",
    [("2", "2", 1.0), ("two", "2", 1.0), ("Two.", "2", 1.0), ("2.0", "2", 1.0), ("twenty", "20", 1.0),
     ("2.5", "2", 0.0), ("3", "2", 0.0), ("two cars", "2", 0.0), ("", "0", 0.0), ("zero", "0", 1.0)],
)  # fmt: skip
def test_count_accuracy(prediction: str, reference: str, expected: float) -> None:
    assert count_accuracy(prediction, [reference]) == expected


def test_as_count() -> None:
    assert [as_count(t) for t in ["7", " 7 ", "seven", "7.00", "7.5", "many", "1e3"]] == [7, 7, 7, 7, None, None, None]


def test_score_dispatches_by_name() -> None:
    assert set(METRICS) == {"vqa", "direct-answer", "exact", "choice", "count"}
    assert score("vqa", "two", refs(("2", 10))) == 1.0
    assert score("count", "two", ["2"]) == 1.0
    with pytest.raises(InvalidArgumentError, match="Unknown metric 'bleu'; choose one of vqa"):
        score("bleu", "x", ["x"])
