"""Rationales: a verified program's execution trace rewritten as chain-of-thought text.

VPD trains the student on natural-language rationales that keep the evidence the program
gathered (boxes, read text, answers of the tools) and end with the answer, e.g. "The cars
at [0.669, 0.103, 0.779, 0.286] and [0.669, 0.468, 0.769, 0.664] have their brake lights
on. So the answer is 2."

* :class:`TemplateRewriter`: deterministic, one sentence per tool call; offline and in tests.
* :class:`LLMRewriter`: a language model rewrites the execution-trace text
  (:func:`vpd.traces.trace_to_text`) with a few-shot prompt (examples shipped as data in
  ``vpd/distill/assets/rationale_examples.toml``); a rejected rationale goes back once with
  what was wrong.
* :func:`check_rationale`: the problems that reject a rationale: it does not end with the
  program's answer (or contradicts it), it drops the evidence, or it leaks code.

**Boxes in rationales** are ``[x0, y0, x1, y1]`` with the origin at the image's top-left,
each coordinate divided by the image's width or height (three decimals), as
``trace_to_text(..., box_format="normalized")`` writes them; programs' own ``ImagePatch``
coordinates (bottom-left origin) never appear.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from vpd.traces.answers import normalize_answer
from vpd.traces.text import answer_text, box_of, format_box, is_box, one_line, plural, trace_to_text
from vpd.traces.trace import ToolCall, Trace

if TYPE_CHECKING:
    from vpd.tools.protocols import TextGenerator

__all__ = [
    "RATIONALE_VERSION",
    "LLMRewriter",
    "RewriteSummary",
    "Rewriter",
    "TemplateRewriter",
    "check_rationale",
    "evidence_of",
    "final_answer",
    "rewrite_run",
    "shipped_examples",
]

_CODE = re.compile(
    r"```|\bdef \w+\(|execute_command|ImagePatch|image_patch|\breturn\b|"
    r"\b(find|exists|simple_query|verify_property|best_text_match|best_image_match|depth|crop|ocr|llm_query)\(|"
    # The API's own names are never English: "the simple_query function said no" is code talk.
    r"\b(simple_query|verify_property|best_text_match|best_image_match|llm_query|bool_to_yesno|"
    r"coerce_to_numeric|compute_depth|process_guesses)\b"
)
_ANSWER_IS = re.compile(r"answer is[:\s]+", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


class Rewriter(Protocol):
    """Turns a verified program's run into a rationale."""

    @property
    def name(self) -> str:
        """What wrote the rationales (recorded with each)."""

    def rewrite(self, question: str, program: str, trace: Trace, answer: str) -> str:
        """The rationale (ends with "So the answer is <answer>.")."""


def evidence_of(trace: Trace) -> tuple[list[str], list[str]]:
    """What a rationale must keep some of: the boxes tools found or looked at, and their results.

    Returns:
        The boxes (normalized, as in rationales) and the short textual results (OCR text,
        VQA and LLM answers), in the order the tools produced them.
    """
    size = _size(trace)
    boxes: list[str] = []
    values: list[str] = []
    for call in trace.tool_calls:
        if call.error is not None:
            continue
        output = call.output
        found = [b for b in (box_of(item) for item in output) if b is not None] if isinstance(output, list) else []
        boxes.extend(format_box(b, size, "normalized") for b in found)
        if call.box is not None and is_box(call.box) and size and list(call.box) != [0, 0, size[0], size[1]]:
            boxes.append(format_box(call.box, size, "normalized"))
        if isinstance(output, str) and output.strip() and len(output) <= 200:
            values.append(output.strip())
    return list(dict.fromkeys(boxes)), list(dict.fromkeys(values))


def final_answer(rationale: str) -> str | None:
    """The answer a rationale ends with ("... So the answer is 2." gives "2"), or None.

    Only the last line counts, as the rewriter's rationales and a student's explanations
    end with the answer.
    """
    lines = rationale.strip().splitlines() if isinstance(rationale, str) else []
    if not lines:
        return None
    # The last "answer is" of the line: "... the answer is 2. So the answer is 3." says 3.
    found = list(_ANSWER_IS.finditer(lines[-1]))
    if not found:
        return None
    answer = lines[-1][found[-1].end() :].strip().rstrip(".").strip()
    # 'So the answer is "no".' states no: quotes around the whole answer are not part of it.
    if len(answer) >= 2 and answer[0] == answer[-1] and answer[0] in "\"'`":
        answer = answer[1:-1].strip()
    return answer or None


def check_rationale(rationale: str, *, answer: str, trace: Trace) -> list[str]:
    """Why a rationale cannot be used (empty when it can).

    Args:
        rationale: The rationale.
        answer: The verified program's answer (normalised, as synthesis records it).
        trace: The program's trace (for the evidence).
    """
    problems = []
    if not rationale or not rationale.strip():
        return ["it is empty"]
    final = final_answer(rationale)
    if final is None:
        problems.append('it does not end with the answer ("So the answer is ...")')
    elif normalize_answer(final) != normalize_answer(answer):
        problems.append(f"it ends with the answer {final!r}, but the program answered {answer!r}")
    boxes, values = evidence_of(trace)
    numbers = _NUMBER.findall(rationale)
    kept_box = any(_has_sequence(numbers, _NUMBER.findall(box)) for box in boxes)
    kept_value = any(value.lower() in rationale.lower() for value in values)
    if (boxes or values) and not (kept_box or kept_value):
        problems.append("it drops the evidence: no box or tool result of the trace is in it")
    leak = _CODE.search(rationale)
    if leak is not None:
        problems.append(f"it leaks code ({leak.group(0)!r})")
    return problems


def _has_sequence(numbers: Sequence[str], wanted: Sequence[str]) -> bool:
    floats = [float(n) for n in numbers]
    target = [float(n) for n in wanted]
    return any(floats[i : i + len(target)] == target for i in range(len(floats) - len(target) + 1))


def _size(trace: Trace) -> tuple[int, int] | None:
    width, height = trace.image.get("width"), trace.image.get("height")
    return (width, height) if isinstance(width, int) and isinstance(height, int) else None


# -- the template rewriter -------------------------------------------------------------------
@dataclass(frozen=True)
class TemplateRewriter:
    """A deterministic rationale: one sentence per successful tool call, then the answer."""

    name: str = "template"

    def rewrite(self, question: str, program: str, trace: Trace, answer: str) -> str:
        """The rationale of one run (see :class:`Rewriter`)."""
        size = _size(trace)
        sentences = [s for s in (_sentence(call, size) for call in trace.tool_calls if call.error is None) if s]
        sentences.append(f"So the answer is {answer}.")
        return " ".join(sentences)


def _sentence(call: ToolCall, size: tuple[int, int] | None) -> str | None:
    inputs = call.inputs if isinstance(call.inputs, dict) else {}
    region = ""
    if call.box is not None and is_box(call.box) and size and list(call.box) != [0, 0, size[0], size[1]]:
        region = f" in the region {format_box(call.box, size, 'normalized')}"

    def text(name: str) -> str:
        value = inputs.get(name, "")
        return one_line(value if isinstance(value, str) else answer_text(value), 120)

    output = call.output
    result = one_line(answer_text(output), 200) if output is not None else "nothing"
    op = call.operation
    if op == "find":
        what = text("object_name")
        found = [b for b in (box_of(i) for i in output) if b is not None] if isinstance(output, list) else []
        if not found:
            return f"There are no {plural(what)}{region}."
        places = ", ".join(format_box(b, size, "normalized") for b in found)
        noun = what if len(found) == 1 else plural(what)
        return f"There {'is' if len(found) == 1 else 'are'} {len(found)} {noun}{region}, at {places}."
    if op == "exists":
        return f"There {'is' if output else 'is no'} {text('object_name')}{region}."
    if op == "verify_property":
        return f"The {text('object_name')}{region} is {'' if output else 'not '}{text('property')}."
    if op == "simple_query":
        return f'Asked "{text("question")}" about the image{region}, the answer is {result}.'
    if op == "ocr":
        return f'The text{region} reads "{result}".' if output else f"There is no text{region}."
    if op == "best_text_match":
        return f"The image{region} is best described as {result}."
    if op == "depth":
        return f"The depth{region} is {result}."
    if op == "llm_query":
        return f'Asked "{text("question")}", the language model answers {result}.'
    return f"The {op.replace('_', ' ')} tool{region} gives {result}."


# -- the LLM rewriter ------------------------------------------------------------------------
_SYSTEM = (
    "You turn the execution trace of a program that answered a question about an image into a short "
    "step-by-step rationale in plain English, as a person looking at the image would reason. Keep the "
    "evidence: the box coordinates exactly as written in the trace ([x0, y0, x1, y1], top-left origin, "
    "fractions of the image) and the values the tools returned. Never mention code, functions, programs or "
    "tools. End with the sentence: So the answer is <answer>."
)


class LLMRewriter:
    """A language model writes the rationale from the execution-trace text (few-shot).

    Args:
        llm: Any text generator (a litellm or llama.cpp backend, or your own).
        examples: Few-shot ``(question, trace text, rationale)`` triples (default: the ones
            shipped in ``vpd/distill/assets/rationale_examples.toml``).
        max_repairs: Times a rejected rationale goes back with what was wrong.
        max_tokens: Most tokens per rationale.
    """

    def __init__(
        self,
        llm: TextGenerator,
        *,
        examples: Sequence[tuple[str, str, str]] | None = None,
        max_repairs: int = 1,
        max_tokens: int = 300,
    ) -> None:
        self.llm = llm
        self.examples = list(examples) if examples is not None else shipped_examples()
        self.max_repairs = max_repairs
        self.max_tokens = max_tokens
        self.name = f"llm:{llm.cache_identity()}" if callable(getattr(llm, "cache_identity", None)) else "llm"

    def messages(self, question: str, trace: Trace, answer: str) -> list[dict[str, str]]:
        """The few-shot conversation for one rationale."""
        messages = [{"role": "system", "content": _SYSTEM}]
        for shot_question, shot_trace, shot_rationale in self.examples:
            messages.append({"role": "user", "content": _query(shot_question, shot_trace)})
            messages.append({"role": "assistant", "content": shot_rationale})
        text = trace_to_text(trace, box_format="normalized")
        messages.append({"role": "user", "content": _query(question, text) + f"\n(The answer is {answer}.)"})
        return messages

    def rewrite(self, question: str, program: str, trace: Trace, answer: str) -> str:
        """The rationale of one run; after ``max_repairs`` tries, the last one (checked by the caller)."""
        messages: list[Any] = self.messages(question, trace, answer)
        reply = ""
        for attempt in range(self.max_repairs + 1):
            reply = self.llm.generate(messages, temperature=0.0, max_tokens=self.max_tokens).text.strip()
            problems = check_rationale(reply, answer=answer, trace=trace)
            if not problems or attempt == self.max_repairs:
                break
            messages = [
                *messages,
                {"role": "assistant", "content": reply},
                {"role": "user", "content": "Rewrite it: " + "; ".join(problems) + "."},
            ]
        return reply


def _query(question: str, trace_text: str) -> str:
    return f"Question: {question}\nExecution trace:\n{trace_text}"


def shipped_examples() -> list[tuple[str, str, str]]:
    """The few-shot examples shipped with vpd: ``(question, trace text, rationale)``."""
    from importlib.resources import files

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    data = tomllib.loads((files("vpd.distill") / "assets" / "rationale_examples.toml").read_text(encoding="utf-8"))
    return [(e["question"], e["trace"], e["rationale"]) for e in data["example"]]


# -- a run's rationales ----------------------------------------------------------------------
#: The version of a rationale record (a line of ``RUN_DIR/rationales.jsonl``).
RATIONALE_VERSION = "vpd.rationale/1"
RATIONALES = "rationales.jsonl"


@dataclass(frozen=True)
class RewriteSummary:
    """What :func:`rewrite_run` did.

    Attributes:
        accepted: Verified examples with a rationale that passed the checks (all runs).
        rejected: Those whose rationale was rejected (their problems are in the records).
        unverified: Examples without a verified program (they keep only their label).
        written: Rationale records written by this call.
    """

    accepted: int
    rejected: int
    unverified: int
    written: int


def rewrite_run(
    run_dir: str | os.PathLike[str],
    rewriter: Rewriter,
    *,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RewriteSummary:
    """Write a rationale for each verified example of a synthesis run (``RUN_DIR/rationales.jsonl``).

    One line per verified example: its id, the chosen candidate, the rationale, the
    rewriter, the problems :func:`check_rationale` found and whether it is accepted.
    Rerunning skips examples already rewritten (crash-safe like synthesis).

    Args:
        run_dir: A ``vpd synthesize`` run directory.
        rewriter: A :class:`TemplateRewriter`, an :class:`LLMRewriter` or your own.
        limit: At most this many new rationales.
        progress: Called with ``(done, total)`` after each one.
    """
    from vpd.distill.runs import RunDirectory

    with RunDirectory(run_dir, "synthesis") as directory:
        records = directory.records()
        done = {str(r.get("id")) for r in directory.records(RATIONALES)}
        verified = [r for r in records if r.get("verified") and r.get("chosen") is not None]
        todo = [r for r in verified if str(r.get("id")) not in done][: limit if limit is not None else None]
        for number, record in enumerate(todo, start=1):
            directory.append(_rationale_record(record, rewriter), RATIONALES)
            if progress is not None:
                progress(number, len(todo))
        rationales = directory.records(RATIONALES)
    accepted = sum(bool(r.get("accepted")) for r in rationales)
    return RewriteSummary(accepted, len(rationales) - accepted, len(records) - len(verified), len(todo))


def _rationale_record(record: dict[str, Any], rewriter: Rewriter) -> dict[str, Any]:
    chosen = next(c for c in record["candidates"] if c.get("index") == record["chosen"])
    trace = Trace.from_dict(chosen["trace"])
    answer = str(chosen["prediction"])
    try:
        rationale = rewriter.rewrite(record["question"], chosen["program"], trace, answer)
        problems = check_rationale(rationale, answer=answer, trace=trace)
    except Exception as exc:  # a model that fails on one example costs that example only
        rationale, problems = None, [f"the rewriter failed: {type(exc).__name__}: {one_line(str(exc), 300)}"]
    return {
        "version": RATIONALE_VERSION,
        "id": record["id"],
        "candidate": record["chosen"],
        "answer": answer,
        "rationale": rationale,
        "rewriter": rewriter.name,
        "problems": problems,
        "accepted": not problems,
    }
