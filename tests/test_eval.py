"""vpd eval: the teacher (scripted LLM, fake scene tools) and students (tiny random VLMs) side by side."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import vpd
from vpd.distill.datasets import Dataset, Example
from vpd.distill.evaluate import evaluate, summarize_eval
from vpd.distill.runs import read_records
from vpd.errors import ConfigError
from vpd.testing import Scene, SceneObject
from vpd.testing.openai_server import FakeOpenAIServer

if os.environ.get("CI"):
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
else:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
pytest.importorskip("litellm")

from vpd.cli import main
from vpd.distill.student import Student
from vpd.distill.training import TrainConfig, train
from vpd.testing.tiny_models import tiny_vlm

COUNT = "```python\ndef execute_command(image):\n    return len(ImagePatch(image).find('{0}'))\n```"


def _respond(calls: list[str]) -> Any:
    def respond(request: dict[str, Any]) -> Any:
        question = request["messages"][-1]["content"]
        calls.append(question)
        word = "dog" if "dogs" in question else "cat"
        return COUNT.format(word)

    return respond


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene(320, 240, [SceneObject("cat", (10, 10, 60, 60)), SceneObject("cat", (100, 10, 150, 60))])


@pytest.fixture
def dataset(tmp_path: Path, scene: Scene) -> Dataset:
    image = tmp_path / "scene.png"
    scene.image.save(image)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    return Dataset(
        "toy",
        (
            Example("q1", image, "How many cats are there?", ("2",), metric="count"),
            Example("q2", image, "How many dogs are there?", ("1",), metric="count"),
            Example("q3", broken, "How many cats are there?", ("2",), metric="count"),
        ),
    )


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_vlm(tmp_path_factory.mktemp("eval") / "tiny-llava", "llava")


def _solver(server: FakeOpenAIServer, scene: Scene) -> vpd.Solver:
    return vpd.Solver(
        k=1,
        toolkit=scene.toolkit(),
        llm=server.model_string,
        api_base=server.base_url,
        api_key="test",
        max_repairs=0,
        limits=vpd.SandboxLimits(timeout=2.0),
        cache=False,  # the tests count the LLM's requests: a cached reply would hide one
    )


def test_teacher_and_student_side_by_side_on_the_same_questions(
    tmp_path: Path, dataset: Dataset, scene: Scene, base: Path
) -> None:
    out = tmp_path / "eval"
    calls: list[str] = []
    with FakeOpenAIServer(_respond(calls)) as server:
        summaries = evaluate(dataset, out, _solver(server, scene))
    teacher = {r["id"]: r for r in read_records(out / "teacher" / "predictions.jsonl")}
    assert teacher["q1"]["prediction"] == "2" and teacher["q1"]["score"] == 1.0
    assert "find('cat')" in teacher["q1"]["program"] and teacher["q1"]["tokens"] > 0
    assert teacher["q2"]["prediction"] == "0" and teacher["q2"]["score"] == 0.0
    assert teacher["q3"]["prediction"] is None and teacher["q3"]["error"].startswith("ImageError")
    assert [s.system for s in summaries] == ["teacher"]
    assert summaries[0].questions == 3 and abs(summaries[0].accuracy - 1 / 3) < 1e-9 and summaries[0].errors == 1

    student = Student.load(base=base)
    summaries = evaluate(dataset, out, student, name="base-tiny", batch_size=3)
    rows = read_records(out / "base-tiny" / "predictions.jsonl")
    assert [r["id"] for r in rows] == ["q1", "q2", "q3"]  # the bad image failed alone, not its batch
    assert rows[2]["error"].startswith("ImageError") and rows[0]["error"] is None
    assert rows[0]["tokens"] > 16  # the prompt (image tokens included) and the generated tokens
    assert {s.system for s in summaries} == {"teacher", "base-tiny"}
    table = (out / "summary.md").read_text()
    assert "| teacher | 3 | 33.3% |" in table and "| base-tiny | 3 |" in table
    assert "student " in json.loads((out / "summary.json").read_text())[0]["description"]


def test_a_second_evaluation_resumes_and_another_system_in_the_folder_is_refused(
    tmp_path: Path, dataset: Dataset, scene: Scene, base: Path
) -> None:
    out = tmp_path / "eval"
    calls: list[str] = []
    with FakeOpenAIServer(_respond(calls)) as server:
        evaluate(dataset, out, _solver(server, scene), limit=1)
        first = len(calls)
        evaluate(dataset, out, _solver(server, scene))  # q1 is done: only q2 asks the LLM (q3's image fails first)
        assert len(calls) == first + 1
        evaluate(dataset, out, _solver(server, scene))
        assert len(calls) == first + 1
    assert sorted(r["id"] for r in read_records(out / "teacher" / "predictions.jsonl")) == ["q1", "q2", "q3"]
    with pytest.raises(ConfigError, match="another configuration"):
        evaluate(dataset, out, Student.load(base=base), name="teacher")


def test_the_summary_counts_only_questions_every_system_answered(tmp_path: Path, dataset: Dataset, base: Path) -> None:
    out = tmp_path / "eval"
    student = Student.load(base=base)
    evaluate(dataset, out, student, name="one", limit=1)
    summaries = evaluate(dataset, out, student, name="two")
    assert {s.system: s.questions for s in summaries} == {"one": 1, "two": 1}
    assert summarize_eval(tmp_path / "nothing") == []


def test_vpd_eval_prints_teacher_and_students_and_vpd_ask_answers(
    tmp_path: Path, scene: Scene, base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "scene.png"
    scene.image.save(image)
    data = tmp_path / "data.jsonl"
    data.write_text(
        json.dumps({"id": "q1", "image": "scene.png", "question": "How many cats are there?", "answers": ["2"]}) + "\n"
    )
    train_rows = tmp_path / "train"
    train_rows.mkdir()
    (train_rows / "train.jsonl").write_text(
        json.dumps({"id": "q1", "image": str(image), "question": "How many cats are there?", "answer": "2"}) + "\n"
    )
    assert (
        main(
            [
                "train",
                str(train_rows),
                "--student",
                str(base),
                "--out",
                str(tmp_path / "adapter"),
                "--max-steps",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    assert "trained 2 steps on 1 rows" in capsys.readouterr().out
    from vpd.distill.evaluate import describe

    identity = describe(Student.load(adapter=tmp_path / "adapter"))
    assert identity["adapter_sha256"] and len(identity["adapter_sha256"]) == 16  # retrained weights: another system
    stored = json.loads((tmp_path / "adapter" / "vpd_train.json").read_text())
    assert stored["config"]["max_steps"] == 2 and stored["config"]["lora_rank"] == 8  # unset options keep the defaults

    with FakeOpenAIServer(_respond([])) as server:
        code = main(
            [
                "eval", str(data), "--out", str(tmp_path / "eval"), "--teacher", "--llm", server.model_string,
                "--api-base", server.base_url, "--api-key", "test", "--student", str(tmp_path / "adapter"),
                "--student", str(base), "--quiet",
            ]
        )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "| teacher |" in printed and "| student-adapter |" in printed and "| base-tiny-llava |" in printed

    code = main(["ask", "--student", str(tmp_path / "adapter"), str(image), "How many cats are there?", "--json"])
    reply = json.loads(capsys.readouterr().out)
    assert reply["question"] == "How many cats are there?" and code in (0, 3)
    assert main(["eval", str(data), "--out", str(tmp_path / "e2")]) == 1  # nothing to evaluate


def test_train_options_reach_the_config(tmp_path: Path) -> None:
    from vpd.cli import build_parser
    from vpd.cli.train import config_from_args

    (tmp_path / "c.json").write_text(json.dumps({"lora_rank": 4, "learning_rate": 0.001}))
    args = build_parser().parse_args(
        [
            "train",
            "d",
            "--student",
            "m",
            "--out",
            "o",
            "--config",
            str(tmp_path / "c.json"),
            "--lr",
            "0.01",
            "--modules-to-save",
            "lm_head",
        ]
    )
    config = config_from_args(args)
    one = build_parser().parse_args(["train", "d", "--student", "m", "--out", "o", "--target-modules", "all-linear"])
    assert config_from_args(one).target_modules == "all-linear"  # a keyword, not a list of one name
    assert config.lora_rank == 4 and config.learning_rate == 0.01 and config.modules_to_save == ("lm_head",)
    assert config == TrainConfig(lora_rank=4, learning_rate=0.01, modules_to_save=("lm_head",))
    assert train is not None
