"""vpd.distill.synthesize: k programs per labelled question from a scripted OpenAI-compatible
server, run over a fake scene toolkit, scored with the dataset's metric; the run directory
is resumable and crash-safe."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import vpd
from vpd.distill.datasets import Dataset, Example
from vpd.distill.runs import RunDirectory, read_records
from vpd.distill.synthesis import SynthesisProgress, summarize, synthesize
from vpd.errors import ConfigError
from vpd.testing import Scene, SceneObject
from vpd.testing.openai_server import FakeOpenAIServer

pytest.importorskip("litellm")


def _code(body: str) -> str:
    lines = "\n".join("    " + line for line in body.strip().splitlines())
    return f"```python\ndef execute_command(image):\n{lines}\n```"


COUNT = _code("return len(ImagePatch(image).find('{0}'))")
COUNT_WRONG = _code("return len(ImagePatch(image).find('{0}')) + 1")
CRASH = _code("return ImagePatch(image).find('{0}')[10]")
LOOP = _code("while True:\n    pass")
NO_CODE = "I cannot answer that."

# Per question word, the reply of each sample (seed): what each of the k programs does.
SCRIPT = {
    "cats": [COUNT_WRONG, COUNT, COUNT],  # sample 0 wrong, 1 and 2 right: sample 1 is chosen
    "dogs": [CRASH, LOOP, COUNT_WRONG],  # nothing right
    "birds": [NO_CODE, NO_CODE, NO_CODE],  # never a program
}


def _respond(calls: list[str]) -> Callable[[dict[str, Any]], Any]:
    def respond(request: dict[str, Any]) -> Any:
        question = request["messages"][-1]["content"]
        for word, replies in SCRIPT.items():
            if f"How many {word}" in question:
                calls.append(word)
                return replies[int(request.get("seed", 0)) % len(replies)].format(word[:-1])
        return NO_CODE

    return respond


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene(
        320,
        240,
        [
            SceneObject("cat", (10, 10, 60, 60)),
            SceneObject("cat", (100, 10, 150, 60)),
            SceneObject("dog", (20, 150, 90, 220)),
        ],
    )


@pytest.fixture
def dataset(tmp_path: Path, scene: Scene) -> Dataset:
    image = tmp_path / "scene.png"
    scene.image.save(image)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    rows = [
        Example("q1", image, "How many cats are there?", ("2",), metric="count"),
        Example("q2", image, "How many dogs are there?", ("1",), metric="count"),
        Example("q3", image, "How many birds are there?", ("0",), metric="count"),
        Example("q4", broken, "How many cats are there?", ("2",), metric="count"),
    ]
    return Dataset("toy", tuple(rows))


def _synthesize(dataset: Dataset, out: Path, server: FakeOpenAIServer, scene: Scene, **kwargs: Any) -> Any:
    options: dict[str, Any] = {
        "k": 3,
        "toolkit": scene.toolkit(),
        "llm": server.model_string,
        "api_base": server.base_url,
        "api_key": "test",
        "cache": False,
        "max_repairs": 0,
        "limits": vpd.SandboxLimits(timeout=1.0),
    }
    options.update(kwargs)
    return synthesize(dataset, out, **options)


def test_synthesis_scores_every_candidate_and_keeps_a_correct_program(
    tmp_path: Path, dataset: Dataset, scene: Scene
) -> None:
    out = tmp_path / "run"
    seen: list[SynthesisProgress] = []
    with FakeOpenAIServer(_respond([])) as server:
        summary = _synthesize(dataset, out, server, scene, progress=seen.append)
    records = {r["id"]: r for r in read_records(out / "records.jsonl")}
    assert sorted(records) == ["q1", "q2", "q3", "q4"]

    cats = records["q1"]
    assert [c["outcome"] for c in cats["candidates"]] == ["wrong", "correct", "correct"]
    assert [c["prediction"] for c in cats["candidates"]] == ["3", "2", "2"]
    assert cats["chosen"] == 1 and cats["verified"] and cats["score"] == 1.0
    assert cats["references"] == ["2"] and cats["metric"] == "count"
    chosen = cats["candidates"][1]
    assert "find('cat')" in chosen["program"]
    assert chosen["trace"]["program"].startswith("def execute_command")  # the records-layer trace
    assert [e["operation"] for e in chosen["trace"]["events"] if e.get("type") == "tool_call"] == ["find"]

    dogs = records["q2"]
    assert [c["outcome"] for c in dogs["candidates"]] == ["runtime", "timeout", "wrong"]
    assert not dogs["verified"] and dogs["chosen"] is None
    assert "IndexError" in dogs["candidates"][0]["error"]

    birds = records["q3"]
    assert [c["outcome"] for c in birds["candidates"]] == ["no-code"] * 3
    assert all(c["program"] is None and c["trace"] is None for c in birds["candidates"])

    broken = records["q4"]
    assert broken["error"].startswith("ImageError") and broken["candidates"] == [] and not broken["verified"]

    assert summary.examples == 4 and summary.verified == 1
    assert summary.verified_at == (0, 1, 1)  # the first correct program is sample 1
    assert summary.outcomes == {"wrong": 2, "correct": 2, "runtime": 1, "timeout": 1, "no-code": 3}
    assert summary.errors == 1
    assert json.loads((out / "summary.json").read_text())["verified_share"] == 0.25
    assert "k = 2:" in (out / "summary.txt").read_text()
    assert (out / "verified_at_k.png").stat().st_size > 0
    stored = json.loads((out / "run.json").read_text())
    assert stored["kind"] == "synthesis" and stored["config"]["k"] == 3 and "python" in stored["versions"]
    assert seen[-1].done == 4 and seen[-1].verified == 1 and seen[-1].total == 4

    # vpd show reads a run's records: one entry per candidate that ran.
    shown = vpd.read_traces(out / "records.jsonl").records
    assert [r.id for r in shown] == ["q1#0", "q1#1", "q1#2", "q2#0", "q2#1", "q2#2"]
    assert [r.correct for r in shown[:3]] == [False, True, True] and shown[1].extra["chosen"] is True
    assert shown[0].question == "How many cats are there?" and shown[0].label == ["2"]
    assert shown[0].image_path is not None and shown[0].image_path.name == "scene.png"
    from vpd.cli import main

    assert main(["show", str(out / "records.jsonl"), "-o", str(tmp_path / "report.html")]) == 0
    assert "q1#1" in (tmp_path / "report.html").read_text()


def test_rerun_resumes_and_a_different_configuration_is_refused(tmp_path: Path, dataset: Dataset, scene: Scene) -> None:
    out = tmp_path / "run"
    calls: list[str] = []
    with FakeOpenAIServer(_respond(calls)) as server:
        _synthesize(dataset, out, server, scene, limit=2)
        assert len(read_records(out / "records.jsonl")) == 2
        first = len(calls)
        seen: list[SynthesisProgress] = []
        summary = _synthesize(dataset, out, server, scene, progress=seen.append)  # the two finished ones are skipped
        assert summary.examples == 4
        # The progress counts the whole run, the examples finished before included.
        assert [p.done for p in seen] == [3, 4] and [p.done_here for p in seen] == [1, 2]
        assert seen[-1].verified == 1 and seen[-1].outcomes["correct"] == 2 and seen[-1].outcomes["runtime"] == 1
        assert calls[first:] == ["birds"] * 3  # q3's three samples; q4's image fails before any request
        again = len(calls)
        _synthesize(dataset, out, server, scene)
        assert len(calls) == again  # nothing left to do
        with pytest.raises(ConfigError, match="k: 3 then, 2 now"):
            _synthesize(dataset, out, server, scene, k=2)
    ids = [r["id"] for r in read_records(out / "records.jsonl")]
    assert sorted(ids) == ["q1", "q2", "q3", "q4"] and len(ids) == len(set(ids))


def test_a_torn_last_record_is_cut_and_its_example_done_again(tmp_path: Path, dataset: Dataset, scene: Scene) -> None:
    out = tmp_path / "run"
    with FakeOpenAIServer(_respond([])) as server:
        _synthesize(dataset, out, server, scene, limit=2)
        path = out / "records.jsonl"
        data = path.read_bytes()
        last_start = data.rstrip(b"\n").rfind(b"\n") + 1
        torn_id = json.loads(data[last_start:])["id"]
        path.write_bytes(data[: last_start + 40])  # killed while writing the second record
        assert [r["id"] for r in read_records(path)] != [] and torn_id not in [r["id"] for r in read_records(path)]
        _synthesize(dataset, out, server, scene, limit=2)
    records = read_records(out / "records.jsonl")
    assert sorted(r["id"] for r in records) == ["q1", "q2"]
    assert all(line.startswith(b"{") for line in path.read_bytes().splitlines())  # no torn bytes left


def test_one_process_at_a_time(tmp_path: Path, dataset: Dataset, scene: Scene) -> None:
    out = tmp_path / "run"
    with (
        RunDirectory(out, "synthesis"),
        FakeOpenAIServer(_respond([])) as server,
        pytest.raises(ConfigError, match="Another process is working in"),
    ):
        _synthesize(dataset, out, server, scene)


def test_summarize_counts_the_first_correct_sample() -> None:
    def record(outcomes: list[str]) -> dict[str, Any]:
        candidates = [{"index": i, "outcome": o} for i, o in enumerate(outcomes)]
        return {"candidates": candidates, "verified": "correct" in outcomes, "error": None}

    summary = summarize([record(["correct", "wrong"]), record(["wrong", "correct"]), record(["wrong", "wrong"])])
    assert summary.verified_at == (1, 2) and summary.verified == 2 and summary.examples == 3
    assert summary.outcomes == {"correct": 2, "wrong": 4}


SUBPROCESS = """
import sys
import vpd
from vpd.cli import main
from vpd.testing import Scene, SceneObject
scene = Scene(320, 240, [SceneObject("cat", (10, 10, 60, 60)), SceneObject("cat", (100, 10, 150, 60)),
                         SceneObject("dog", (20, 150, 90, 220))])
with vpd.use_toolkit(scene.toolkit()):
    sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_kill_9_mid_run_loses_nothing_finished_and_duplicates_nothing(tmp_path: Path, scene: Scene) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    image = tmp_path / "scene.png"
    scene.image.save(image)
    rows = [
        {"id": f"q{i}", "image": "scene.png", "question": f"How many {'cats' if i % 2 else 'dogs'} are there?",
         "answers": ["2" if i % 2 else "1"], "metric": "count"}
        for i in range(16)
    ]  # fmt: skip
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "run"
    script = tmp_path / "run_cli.py"
    script.write_text(SUBPROCESS)

    def slow(request: dict[str, Any]) -> Any:
        time.sleep(0.15)  # the run takes a while: the kill lands in the middle of it
        return _respond([])(request)

    with FakeOpenAIServer(slow) as server:
        command = [sys.executable, str(script), "synthesize", str(data), "--out", str(out), "--k", "2", "--jobs", "2",
                   "--llm", server.model_string, "--api-base", server.base_url, "--api-key", "test", "--no-cache",
                   "--timeout", "2", "--quiet"]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        records = out / "records.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if records.exists() and records.read_bytes().count(b"\n") >= 4:
                break
            time.sleep(0.02)
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        os.killpg(process.pid, signal.SIGKILL)  # the CLI and its sandbox, at once
        process.wait()
        before = read_records(records)
        assert 4 <= len(before) < 16
        finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stderr
    after = read_records(records)
    ids = [r["id"] for r in after]
    assert sorted(ids, key=lambda i: int(i[1:])) == [f"q{i}" for i in range(16)] and len(set(ids)) == 16
    assert [r["id"] for r in after[: len(before)]] == [r["id"] for r in before]  # kept as they were
    assert all(line.startswith(b"{") and line.endswith(b"}") for line in records.read_bytes().splitlines())
    assert all(r["verified"] for r in after if r["question"].startswith("How many cats"))
    assert "verified: 8 (50.0%)" in finished.stdout


def test_verified_programs_become_worked_examples(tmp_path: Path, dataset: Dataset, scene: Scene) -> None:
    from vpd.programs.library import ExampleLibrary

    out = tmp_path / "run"
    with FakeOpenAIServer(_respond([])) as server:
        _synthesize(dataset, out, server, scene)
    library = ExampleLibrary.from_run(out, similarity="lexical")
    (example,) = library.examples  # q1 only: the other questions have no correct program
    assert example.question == "How many cats are there?" and "find('cat')" in example.program
    assert example.tags == ("verified", "count") and example.source == "records.jsonl:q1"
    assert len(ExampleLibrary.from_run(out / "records.jsonl", builtin=True, similarity="lexical")) > 1
    # A run still being written (a torn last line) loads what is complete.
    records = out / "records.jsonl"
    records.write_bytes(records.read_bytes() + b'{"version": "vpd.synth')
    assert len(ExampleLibrary.from_run(out, similarity="lexical")) == 1
    with pytest.raises(vpd.VPDError, match="pass a `vpd synthesize` run"):
        ExampleLibrary.from_run(tmp_path / "nowhere")
    (tmp_path / "other.jsonl").write_text('{"version": "vpd.trace/1"}\n')
    with pytest.raises(vpd.VPDError, match="not a synthesis record"):
        ExampleLibrary.from_run(tmp_path / "other.jsonl")

    # vpd solve --examples RUN_DIR puts the verified program in the prompt.
    from vpd.cli import main

    requests: list[str] = []

    def respond(request: dict[str, Any]) -> Any:
        requests.append(json.dumps(request["messages"]))
        return COUNT.format("dog")

    image = tmp_path / "scene.png"
    with FakeOpenAIServer(respond) as server, vpd.use_toolkit(scene.toolkit()):
        code = main(["solve", str(image), "How many dogs are there?", "--k", "1", "--examples", str(out),
                     "--llm", server.model_string, "--api-base", server.base_url, "--api-key", "t", "--no-cache",
                     "--quiet"])  # fmt: skip
    # The verified program (its own spelling), and none of the built-in examples.
    assert code == 0 and requests and "return len(ImagePatch(image).find('cat'))" in requests[0]
    assert 'image_patch.find(\\"cat\\")' not in requests[0]


def test_synthesize_rewrite_export_into_a_training_set(tmp_path: Path, dataset: Dataset, scene: Scene) -> None:
    datasets = pytest.importorskip("datasets")
    from vpd.cli import main
    from vpd.distill.export import export_run

    out = tmp_path / "run"
    with FakeOpenAIServer(_respond([])) as server:
        _synthesize(dataset, out, server, scene)
    assert main(["rewrite", str(out), "--template", "--quiet"]) == 0
    summary = export_run(out, tmp_path / "train")
    assert (summary.rows, summary.with_rationale, summary.label_only, summary.left_out) == (3, 1, 2, 1)
    rows = [json.loads(line) for line in (tmp_path / "train" / "train.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["q1", "q2", "q3"]
    cats = rows[0]
    assert cats["answer"] == "2" and cats["rationale"].endswith("So the answer is 2.") and "[0.031" in cats["rationale"]
    assert rows[1] == {"id": "q2", "image": str(tmp_path / "scene.png"), "question": "How many dogs are there?",
                       "answer": "1", "rationale": None}  # fmt: skip
    loaded = datasets.load_from_disk(str(tmp_path / "train" / "hf"))
    assert loaded.num_rows == 3 and loaded[0]["rationale"] == cats["rationale"] and loaded[1]["rationale"] is None
    card = (tmp_path / "train" / "README.md").read_text()
    assert "| 3 | 1 | 2 | 0 | 0 | 1 |" in card and "top-left" in card and "dataset `toy`" in card
    # The CLI, JSONL only.
    assert main(["export", str(out), "--out", str(tmp_path / "cli"), "--no-hf"]) == 0
    assert (tmp_path / "cli" / "train.jsonl").exists() and not (tmp_path / "cli" / "hf").exists()
    with pytest.raises(vpd.VPDError, match="run `vpd synthesize` first"):
        export_run(tmp_path / "nothing", tmp_path / "x")


def test_label_only_rows_take_the_most_common_reference() -> None:
    from vpd.distill.export import _label

    assert _label({"references": ["down", "table", "down", "at table", "table", "down"]}) == "down"
    assert _label({"references": ["a", "b"]}) == "a"  # a tie: the first
