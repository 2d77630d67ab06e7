"""Rationales from verified programs: the template rewriter, the LLM rewriter (scripted
server), the checks that reject a rationale, and ``vpd rewrite`` on a synthesis run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import vpd
from vpd.distill.rewriter import (
    LLMRewriter,
    TemplateRewriter,
    check_rationale,
    evidence_of,
    rewrite_run,
    shipped_examples,
)
from vpd.testing import Scene, SceneObject
from vpd.testing.openai_server import FakeOpenAIServer
from vpd.traces import Trace

COUNT_CATS = "def execute_command(image):\n    cats = ImagePatch(image).find('cat')\n    return len(cats)\n"


@pytest.fixture(scope="module")
def trace() -> Trace:
    scene = Scene(200, 100, [SceneObject("cat", (10, 10, 60, 60)), SceneObject("cat", (100, 20, 150, 70))])
    run = vpd.run_program(COUNT_CATS, scene.image, toolkit=scene.toolkit())
    assert run.answer == 2
    return run.trace


def test_template_rationale_keeps_the_evidence_and_ends_with_the_answer(trace: Trace) -> None:
    rationale = TemplateRewriter().rewrite("How many cats are there?", COUNT_CATS, trace, "2")
    boxes, _ = evidence_of(trace)
    assert boxes == ["[0.050, 0.100, 0.300, 0.600]", "[0.500, 0.200, 0.750, 0.700]"]  # top-left, fractions
    assert rationale == (
        "There are 2 cats, at [0.050, 0.100, 0.300, 0.600], [0.500, 0.200, 0.750, 0.700]. So the answer is 2."
    )
    assert check_rationale(rationale, answer="2", trace=trace) == []


@pytest.mark.parametrize(
    "rationale,problem",
    [
        ("There are cats at [0.050, 0.100, 0.300, 0.600]. So the answer is 3.", "but the program answered '2'"),
        ("There are cats at [0.050, 0.100, 0.300, 0.600].", "does not end with the answer"),
        ("There are two cats. So the answer is 2.", "drops the evidence"),
        ("find('cat') gives [0.050, 0.100, 0.300, 0.600]. So the answer is 2.", "leaks code"),
        ("ImagePatch at 0.05 0.1 0.3 0.6 ... So the answer is 2.", "leaks code"),
        ("The simple_query function said 2 at [0.050, 0.100, 0.300, 0.600]. So the answer is 2.", "leaks code"),
        ("", "empty"),
    ],
)
def test_bad_rationales_are_rejected(rationale: str, problem: str, trace: Trace) -> None:
    assert any(problem in p for p in check_rationale(rationale, answer="2", trace=trace))


def test_evidence_may_be_written_without_brackets(trace: Trace) -> None:
    text = "Two cats: one at 0.05, 0.1, 0.3, 0.6 and one at 0.5, 0.2, 0.75, 0.7. So the answer is two."
    assert check_rationale(text, answer="2", trace=trace) == []  # "two" is the answer 2


def test_llm_rewriter_sends_few_shots_and_repairs_once(trace: Trace) -> None:
    replies = [
        "The program calls find. So the answer is 2.",  # drops the evidence: sent back
        "Cats at [0.050, 0.100, 0.300, 0.600] and [0.500, 0.200, 0.750, 0.700]. So the answer is 2.",
    ]
    with FakeOpenAIServer(replies) as server:
        from vpd.tools.backends.litellm_llm import LiteLLMChat

        llm = LiteLLMChat(server.model_string, api_base=server.base_url, api_key="t")
        rewriter = LLMRewriter(llm)
        rationale = rewriter.rewrite("How many cats are there?", COUNT_CATS, trace, "2")
        requests = server.requests
    assert rationale == replies[1]
    first = requests[0].body["messages"]
    assert len(first) == 2 + 2 * len(shipped_examples()) and "brake lights" in json.dumps(first)
    assert "Detection result: 2 cats detected: [0.050, 0.100, 0.300, 0.600]" in first[-1]["content"]
    assert "drops the evidence" in requests[1].body["messages"][-1]["content"]


def test_rewrite_run_writes_rationales_resumably(tmp_path: Path, trace: Trace) -> None:
    run = tmp_path / "run"
    run.mkdir()
    chosen = {"index": 0, "program": COUNT_CATS, "prediction": "2", "outcome": "correct", "trace": trace.to_dict()}
    records = [
        {"version": "vpd.synthesis/1", "id": "q1", "question": "How many cats are there?", "verified": True,
         "chosen": 0, "candidates": [chosen]},
        {"version": "vpd.synthesis/1", "id": "q2", "question": "What colour?", "verified": False, "chosen": None,
         "candidates": []},
    ]  # fmt: skip
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = rewrite_run(run, TemplateRewriter())
    assert (summary.accepted, summary.rejected, summary.unverified, summary.written) == (1, 0, 1, 1)
    (line,) = (run / "rationales.jsonl").read_text().splitlines()
    written = json.loads(line)
    assert written["id"] == "q1" and written["accepted"] and written["rationale"].endswith("So the answer is 2.")
    assert written["rewriter"] == "template" and written["problems"] == []
    assert rewrite_run(run, TemplateRewriter()).written == 0  # resumed: nothing left

    class Broken:
        name = "broken"

        def rewrite(self, question: str, program: str, trace: Trace, answer: str) -> str:
            raise RuntimeError("model crashed")

    (run / "rationales.jsonl").unlink()
    summary = rewrite_run(run, Broken())
    assert (summary.accepted, summary.rejected) == (0, 1)
    assert "the rewriter failed: RuntimeError" in (run / "rationales.jsonl").read_text()


def test_cli_rewrite_template(tmp_path: Path, trace: Trace, capsys: pytest.CaptureFixture[str]) -> None:
    from vpd.cli import main

    run = tmp_path / "run"
    run.mkdir()
    chosen: dict[str, Any] = {"index": 0, "program": COUNT_CATS, "prediction": "2", "trace": trace.to_dict()}
    record = {"version": "vpd.synthesis/1", "id": "q1", "question": "How many cats?", "verified": True, "chosen": 0,
              "candidates": [chosen]}  # fmt: skip
    (run / "records.jsonl").write_text(json.dumps(record) + "\n")
    assert main(["rewrite", str(run), "--template", "--quiet"]) == 0
    assert "1 accepted, 0 rejected" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("There are 2 cats. So the answer is 2.", "2"),
        ("The answer is: yes", "yes"),
        ("So the answer is green. So the answer is blue.", "blue"),  # the last statement counts
        ("So the answer is 3.5.", "3.5"),
        ('So the answer is "no".', "no"),
        ("So the answer is 'fire hydrant'.", "fire hydrant"),
        ("The answer is 2.\nThen I looked again.", None),  # only the last line counts
        ("No answer here.", None),
        ("", None),
    ],
)
def test_final_answer_reads_the_last_statement(text: str, answer: str | None) -> None:
    from vpd.distill.rewriter import final_answer

    assert final_answer(text) == answer
