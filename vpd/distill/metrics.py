r"""The benchmarks' answer metrics, exactly as their official evaluation scripts compute them.

Each function scores one prediction (a string, as the model or program gave it) against an
example's references; a benchmark's score is the mean over its questions (times 100 in the
papers). Nothing is cleaned beyond what the official script does, so the numbers compare
with published ones. Turning a program's answer (``True``, ``2.0``...) into a prediction
string is the caller's job (see :func:`vpd.traces.normalize_answer`).

* **VQAv2 and OK-VQA** (:func:`vqa_accuracy`): the official ``vqaEval.py`` of the VQA
  challenge (GT-Vision-Lab/VQA, ``PythonEvaluationTools``), step by step:

  - the prediction: newlines and tabs become spaces, it is stripped, then punctuation is
    processed (below), then it is lower-cased and split into words, number words
    ``none``/``zero``…``ten`` become digits, the articles ``a``/``an``/``the`` are
    dropped, and contractions written without apostrophe are fixed (``dont`` ->
    ``don’t``, with the script's typographic apostrophes);
  - the references are compared as given when all of them are the same string; when they
    differ, each gets the punctuation step only (not the lower-casing, digits or articles);
  - punctuation: each of ``; : / ' [ ] " ( ) = + \ _ > < @ ` , ?`` is removed when the
    *original* text has it next to a space or has a digit-comma-digit anywhere, else
    replaced by a space; then periods not followed by a digit are removed (at most 32 of
    them: the script passes ``re.UNICODE`` where ``re.sub`` takes its count);
  - accuracy: for each reference in turn, the matches among the *other* references,
    ``min(1, matches / 3)``; the mean of those. With the usual ten answers, a prediction
    three annotators gave scores 0.9 and one four gave scores 1.
* **A-OKVQA** (allenai/aokvqa ``evaluation/eval_predictions.py``): direct answer
  (:func:`direct_answer_accuracy`) is ``min(1, matches / 3)`` over the ten direct answers,
  by plain string equality, no processing, no leave-one-out; multiple choice
  (:func:`choice_accuracy`) is plain equality with the correct choice.
* **GQA** (the official ``eval.py``): ``predicted == gold``, plain string equality
  (:func:`exact_match`); the same for CLEVR.
* **TallyQA** (:func:`count_accuracy`): the predicted count equals the reference after both
  are read as integers (digits, or the words ``zero``…``twenty``; ``"3.0"`` is 3).

:data:`METRICS` maps the names datasets use (``Example.metric``) to these functions, and
:func:`score` dispatches on them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from vpd.errors import InvalidArgumentError

__all__ = [
    "METRICS",
    "Metric",
    "as_count",
    "choice_accuracy",
    "count_accuracy",
    "direct_answer_accuracy",
    "exact_match",
    "score",
    "vqa_accuracy",
    "vqa_normalize",
    "vqa_process_digit_article",
    "vqa_process_punctuation",
]

#: A metric: (prediction, references) -> score in [0, 1].
Metric = Callable[[str, Sequence[str]], float]

# -- VQAv2 / OK-VQA, as vqaEval.py -------------------------------------------------------------
# The script's tables, verbatim (its apostrophes are typographic in most entries; kept so).
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn’t’ve", "couldnt’ve": "couldn’t’ve", "didnt": "didn’t", "doesnt": "doesn’t",
    "dont": "don’t", "hadnt": "hadn’t", "hadnt’ve": "hadn’t’ve", "hadn'tve": "hadn’t’ve", "hasnt": "hasn’t",
    "havent": "haven’t", "hed": "he’d", "hed’ve": "he’d’ve", "he’dve": "he’d’ve", "hes": "he’s", "howd": "how’d",
    "howll": "how’ll", "hows": "how’s", "Id’ve": "I’d’ve", "I’dve": "I’d’ve", "Im": "I’m", "Ive": "I’ve",
    "isnt": "isn’t", "itd": "it’d", "itd’ve": "it’d’ve", "it’dve": "it’d’ve", "itll": "it’ll", "let’s": "let’s",
    "maam": "ma’am", "mightnt": "mightn’t", "mightnt’ve": "mightn’t’ve", "mightn’tve": "mightn’t’ve",
    "mightve": "might’ve", "mustnt": "mustn’t", "mustve": "must’ve", "neednt": "needn’t", "notve": "not’ve",
    "oclock": "o’clock", "oughtnt": "oughtn’t", "ow’s’at": "’ow’s’at", "’ows’at": "’ow’s’at", "’ow’sat": "’ow’s’at",
    "shant": "shan’t", "shed’ve": "she’d’ve", "she’dve": "she’d’ve", "she’s": "she’s", "shouldve": "should’ve",
    "shouldnt": "shouldn’t", "shouldnt’ve": "shouldn’t’ve", "shouldn’tve": "shouldn’t’ve",
    "somebody’d": "somebodyd", "somebodyd’ve": "somebody’d’ve", "somebody’dve": "somebody’d’ve",
    "somebodyll": "somebody’ll", "somebodys": "somebody’s", "someoned": "someone’d", "someoned’ve": "someone’d’ve",
    "someone’dve": "someone’d’ve", "someonell": "someone’ll", "someones": "someone’s", "somethingd": "something’d",
    "somethingd’ve": "something’d’ve", "something’dve": "something’d’ve", "somethingll": "something’ll",
    "thats": "that’s", "thered": "there’d", "thered’ve": "there’d’ve", "there’dve": "there’d’ve",
    "therere": "there’re", "theres": "there’s", "theyd": "they’d", "theyd’ve": "they’d’ve", "they’dve": "they’d’ve",
    "theyll": "they’ll", "theyre": "they’re", "theyve": "they’ve", "twas": "’twas", "wasnt": "wasn’t",
    "wed’ve": "we’d’ve", "we’dve": "we’d’ve", "weve": "we've", "werent": "weren’t", "whatll": "what’ll",
    "whatre": "what’re", "whats": "what’s", "whatve": "what’ve", "whens": "when’s", "whered": "where’d",
    "wheres": "where's", "whereve": "where’ve", "whod": "who’d", "whod’ve": "who’d’ve", "who’dve": "who’d’ve",
    "wholl": "who’ll", "whos": "who’s", "whove": "who've", "whyll": "why’ll", "whyre": "why’re", "whys": "why’s",
    "wont": "won’t", "wouldve": "would’ve", "wouldnt": "wouldn’t", "wouldnt’ve": "wouldn’t’ve",
    "wouldn’tve": "wouldn’t’ve", "yall": "y’all", "yall’ll": "y’all’ll", "y’allll": "y’all’ll",
    "yall’d’ve": "y’all’d’ve", "y’alld’ve": "y’all’d’ve", "y’all’dve": "y’all’d’ve", "youd": "you’d",
    "youd’ve": "you’d’ve", "you’dve": "you’d’ve", "youll": "you’ll", "youre": "you’re", "youve": "you’ve",
}  # fmt: skip
_MANUAL_MAP = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = frozenset({"a", "an", "the"})
# "(?!<=\d)" is the script's own (a lookahead, not the lookbehind it may have meant): any
# period not followed by a digit goes. Kept as written, so results match the script's.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
_PUNCT = (";", ":", "/", "'", "[", "]", '"', "(", ")", "=", "+", "\\", "_", ">", "<", "@", "`", ",", "?")
# The script calls periodStrip.sub("", text, re.UNICODE): the third argument of sub is the
# count, and re.UNICODE is 32, so at most 32 periods are removed.
_PERIOD_COUNT = int(re.UNICODE)


def vqa_process_punctuation(text: str) -> str:
    """``processPunctuation`` of the official VQA evaluation (see the module docstring)."""
    out = text
    has_digit_comma = _COMMA_STRIP.search(text) is not None
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or has_digit_comma:  # noqa: SIM108 (the script's shape)
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, _PERIOD_COUNT)


def vqa_process_digit_article(text: str) -> str:
    """``processDigitArticle``: lower-case, number words to digits, no articles, contractions fixed."""
    words = [_MANUAL_MAP.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in _ARTICLES]
    return " ".join(_CONTRACTIONS.get(word, word) for word in words)


def vqa_normalize(prediction: str) -> str:
    """A prediction as the official VQA evaluation compares it with the references."""
    text = prediction.replace("\n", " ").replace("\t", " ").strip()
    return vqa_process_digit_article(vqa_process_punctuation(text))


def vqa_accuracy(prediction: str, references: Sequence[str]) -> float:
    """VQAv2 / OK-VQA accuracy of one prediction against the human answers (official script).

    Args:
        prediction: The predicted answer.
        references: The human answers (ten in VQAv2 and OK-VQA), repeats included.

    Returns:
        The mean over references of ``min(1, matches among the others / 3)``.

    Raises:
        InvalidArgumentError: Fewer than two references (the leave-one-out formula then
            scores every prediction 0: score such data with :func:`exact_match`).
    """
    answers = _references(references, "vqa_accuracy")
    if len(answers) < 2:
        raise InvalidArgumentError(
            "vqa_accuracy needs the human answers (ten in VQAv2); with one reference it scores every "
            "prediction 0. Score single-answer data with exact_match (metric 'exact')."
        )
    predicted = vqa_normalize(_prediction(prediction))
    if len(set(answers)) > 1:  # only then are the references processed, and only for punctuation
        answers = [vqa_process_punctuation(answer) for answer in answers]
    matches = sum(answer == predicted for answer in answers)
    total = 0.0
    for answer in answers:  # leave each reference out in turn
        total += min(1.0, (matches - (answer == predicted)) / 3)
    return total / len(answers)


# -- the others --------------------------------------------------------------------------------
def direct_answer_accuracy(prediction: str, references: Sequence[str]) -> float:
    """A-OKVQA direct-answer accuracy: ``min(1, equal references / 3)``, no processing, no leave-one-out."""
    predicted = _prediction(prediction)
    return min(1.0, sum(predicted == answer for answer in _references(references, "direct_answer_accuracy")) / 3)


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """GQA (and CLEVR) accuracy: 1 if the prediction equals the answer (plain string equality), else 0.

    With several references, any one of them counts.
    """
    predicted = _prediction(prediction)
    return float(any(predicted == answer for answer in _references(references, "exact_match")))


def choice_accuracy(prediction: str, references: Sequence[str]) -> float:
    """A-OKVQA multiple-choice accuracy: 1 if the prediction is the correct choice (``references[0]``)."""
    answers = _references(references, "choice_accuracy")
    return float(_prediction(prediction) == answers[0])


_COUNT_WORDS = {
    word: index
    for index, word in enumerate([
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
        "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
    ])
}  # fmt: skip
_INTEGRAL = re.compile(r"^[+-]?\d+(\.0*)?$")


def as_count(text: str) -> int | None:
    """``text`` read as a count: digits (``"3"``, ``"3.0"``) or a number word up to twenty; else None."""
    cleaned = text.strip().lower().rstrip(".")
    if cleaned in _COUNT_WORDS:
        return _COUNT_WORDS[cleaned]
    if _INTEGRAL.match(cleaned):
        return int(float(cleaned)) if "." in cleaned else int(cleaned)
    return None


def count_accuracy(prediction: str, references: Sequence[str]) -> float:
    """TallyQA accuracy: 1 if the predicted count equals the reference count (both read by :func:`as_count`)."""
    answers = _references(references, "count_accuracy")
    predicted = as_count(_prediction(prediction))
    return float(predicted is not None and any(as_count(answer) == predicted for answer in answers))


#: The metric of each name a dataset can name (``Example.metric``).
METRICS: dict[str, Metric] = {
    "vqa": vqa_accuracy,
    "direct-answer": direct_answer_accuracy,
    "exact": exact_match,
    "choice": choice_accuracy,
    "count": count_accuracy,
}


def score(metric: str, prediction: str, references: Sequence[str]) -> float:
    """Score ``prediction`` with the metric named ``metric`` (a key of :data:`METRICS`).

    Raises:
        InvalidArgumentError: Unknown metric, a prediction that is not a string, or no references.
    """
    try:
        function = METRICS[metric]
    except (KeyError, TypeError):
        raise InvalidArgumentError(f"Unknown metric {metric!r}; choose one of {', '.join(METRICS)}.") from None
    return function(prediction, references)


def _prediction(prediction: str) -> str:
    if not isinstance(prediction, str):
        raise InvalidArgumentError(
            f"A prediction is a string, got {type(prediction).__name__}; turn a program's answer into one "
            "first (vpd.traces.normalize_answer)."
        )
    return prediction


def _references(references: Sequence[str], metric: str) -> list[str]:
    if isinstance(references, str) or not isinstance(references, Sequence):
        raise InvalidArgumentError(f"{metric} takes a list of reference answers, got {type(references).__name__}.")
    answers = list(references)
    if not answers:
        raise InvalidArgumentError(f"{metric} needs at least one reference answer.")
    for answer in answers:
        if not isinstance(answer, str):
            raise InvalidArgumentError(f"Reference answers are strings, got {type(answer).__name__}: {answer!r}.")
    return answers
