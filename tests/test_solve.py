"""vpd.solve end to end: a real OpenAI-compatible HTTP server on 127.0.0.1 writes the programs
(through litellm), the sandbox runs them over a fake scene toolkit, answers are voted on."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import vpd
from vpd.cli import main
from vpd.errors import BackendError, InvalidArgumentError
from vpd.programs.completions import CompletionCache
from vpd.programs.generation import GenerationConfig, ProgramGenerator
from vpd.testing import Scene, SceneObject
from vpd.testing.openai_server import Fail, FakeOpenAIServer, Reply

pytest.importorskip("litellm")

COUNT_CATS = """```python
def execute_command(image):
    image_patch = ImagePatch(image)
    cat_patches = image_patch.find("cat")
    return str(len(cat_patches))
```"""
COUNT_CATS_INT = """Here you go:
```python
def execute_command(image):
    image_patch = ImagePatch(image)
    return len(image_patch.find("cat"))
```"""
WRONG_COUNT = """```python
def execute_command(image):
    image_patch = ImagePatch(image)
    return len(image_patch.find("cat")) + 1
```"""
CRASHES = """```python
def execute_command(image):
    image_patch = ImagePatch(image)
    cats = image_patch.find("cat")
    return cats[10].simple_query("what is this?")
```"""
UNKNOWN_METHOD = """```python
def execute_command(image):
    image_patch = ImagePatch(image)
    return image_patch.count_objects("cat")
```"""


def _scene() -> Scene:
    return Scene(
        320,
        240,
        [
            SceneObject("cat", (10, 10, 60, 60)),
            SceneObject("cat", (100, 10, 150, 60)),
            SceneObject("cat", (200, 100, 250, 150)),
            SceneObject("dog", (20, 150, 90, 220)),
        ],
    )


def _by_seed(replies: dict[int, list[str]]) -> Callable[[dict[str, Any]], Any]:
    """A responder that answers sample i (seed i) with replies[i] in turn (first try, repairs...)."""
    served: dict[int, int] = {}

    def respond(request: dict[str, Any]) -> Any:
        seed = int(request.get("seed", 0))
        n = served.get(seed, 0)
        served[seed] = n + 1
        script = replies[seed]
        return script[min(n, len(script) - 1)]

    return respond


@pytest.fixture
def cache(tmp_path: Path) -> CompletionCache:
    return CompletionCache(tmp_path / "completions.sqlite")


def test_solve_votes_over_programs_and_repairs_invalid_ones(cache: CompletionCache) -> None:
    scene = _scene()
    replies = {
        0: [COUNT_CATS],
        1: [UNKNOWN_METHOD, COUNT_CATS_INT],  # repaired after the static check's error
        2: [CRASHES],
        3: [WRONG_COUNT],
        4: ["I am sorry, I cannot see images."] * 3,  # never a program
    }
    with FakeOpenAIServer(_by_seed(replies)) as server:
        solution = vpd.solve(
            scene.image,
            "How many cats are there?",
            k=5,
            toolkit=scene.toolkit(),
            llm=server.model_string,
            api_base=server.base_url,
            api_key="test",
            cache=cache,
            max_repairs=2,
        )
        requests = server.requests
    assert str(solution) == "3"
    assert solution.answer == "3" and solution.source == "program"
    assert solution.votes == {"3": 2, "4": 1}
    assert [c.answer for c in solution.candidates] == ["3", "3", None, "4", None]
    assert [c.chosen for c in solution.candidates] == [True, False, False, False, False]
    assert solution.program is not None and 'find("cat")' in solution.program
    assert solution.trace is not None and [e.operation for e in solution.trace.tool_calls] == ["find"]
    assert solution.trace.meta["question"] == "How many cats are there?"

    repaired = solution.candidates[1].sample
    assert len(repaired.attempts) == 2
    assert repaired.attempts[0].errors is not None and "count_objects" in repaired.attempts[0].errors
    # The error went back to the model in the repair request.
    repair_requests = [r for r in requests if r.body.get("seed") == 1]
    assert len(repair_requests) == 2
    assert "count_objects" in repair_requests[1].text

    assert "IndexError" in (solution.candidates[2].error or "")
    assert len(solution.candidates[4].sample.attempts) == 3  # first try + 2 repairs
    assert solution.candidates[4].error is not None and "no valid program" in solution.candidates[4].error
    # Sample 0 greedy, the others sampled.
    temperatures = {r.body.get("seed"): r.body.get("temperature") for r in requests}
    assert temperatures[0] == 0 and temperatures[3] == pytest.approx(0.7)
    assert solution.timings.llm > 0 and solution.timings.total >= solution.timings.llm
    assert json.loads(json.dumps(solution.to_dict()))["answer"] == "3"


def test_rerun_is_served_from_the_completion_cache(cache: CompletionCache) -> None:
    scene = _scene()
    with FakeOpenAIServer(_by_seed({i: [COUNT_CATS] for i in range(3)})) as server:
        kwargs: dict[str, Any] = dict(
            k=3, toolkit=scene.toolkit(), llm=server.model_string, api_base=server.base_url, cache=cache
        )
        first = vpd.solve(scene.image, "How many cats?", **kwargs)
        sent = len(server.requests)
        second = vpd.solve(scene.image, "How many cats?", **kwargs)
        assert len(server.requests) == sent == 3
    assert first.answer == second.answer == "3"
    assert second.timings.cached_replies == 3 and first.timings.cached_replies == 0
    assert [c.program for c in first.candidates] == [c.program for c in second.candidates]


def test_identical_programs_run_once_and_share_tool_results(cache: CompletionCache) -> None:
    scene = _scene()
    toolkit = scene.toolkit()
    with FakeOpenAIServer(_by_seed({i: [COUNT_CATS if i % 2 else COUNT_CATS_INT] for i in range(4)})) as server:
        solution = vpd.solve(
            scene.image, "How many cats?", k=4, toolkit=toolkit, llm=server.model_string,
            api_base=server.base_url, cache=cache,
        )  # fmt: skip
    executions = {id(c.execution) for c in solution.candidates}
    assert len(executions) == 2  # two distinct programs
    assert solution.votes == {"3": 4}
    # The second program's find("cat") came from the toolkit's result cache.
    hits = [e.cache_hit for c in solution.candidates for e in c.execution.trace.tool_calls]  # type: ignore[union-attr]
    assert True in hits


def test_transient_server_errors_are_retried(cache: CompletionCache) -> None:
    scene = _scene()
    with FakeOpenAIServer([Fail(429), Fail(500), COUNT_CATS]) as server:
        solution = vpd.solve(
            scene.image, "How many cats?", k=1, toolkit=scene.toolkit(), llm=server.model_string,
            api_base=server.base_url, cache=cache,
        )  # fmt: skip
        assert len(server.requests) == 3
    assert solution.answer == "3"


def test_authentication_failure_is_an_error_not_retried(cache: CompletionCache) -> None:
    scene = _scene()
    with FakeOpenAIServer([COUNT_CATS], api_key="right") as server:
        with pytest.raises(BackendError, match="credentials"):
            vpd.solve(
                scene.image, "How many cats?", k=1, toolkit=scene.toolkit(), llm=server.model_string,
                api_base=server.base_url, api_key="wrong", cache=cache,
            )  # fmt: skip
        assert len(server.requests) == 1


def test_no_program_falls_back_to_vqa_and_says_so(cache: CompletionCache) -> None:
    scene = Scene(120, 80, [SceneObject("cat", (10, 10, 40, 40))], answers={"what animal is this?": "cat"})
    with FakeOpenAIServer([Reply("no code here")] * 3) as server:
        solution = vpd.solve(
            scene.image, "What animal is this?", k=1, toolkit=scene.toolkit(), llm=server.model_string,
            api_base=server.base_url, cache=cache, max_repairs=2,
        )  # fmt: skip
        without = vpd.solve(
            scene.image, "What animal is this?", k=1, toolkit=scene.toolkit(), llm=server.model_string,
            api_base=server.base_url, cache=cache, max_repairs=2, fallback=False,
        )  # fmt: skip
    assert solution.source == "fallback" and solution.answer == "cat"
    assert without.answer is None and without.source == "none"
    assert without.error is not None and "No program produced an answer" in without.error
    assert str(without) == ""


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"k": 0}, "k must be"), ({"k": True}, "k must be"), ({"temperature": -1}, "temperature")],
)
def test_bad_arguments(kwargs: dict[str, Any], message: str, cache: CompletionCache) -> None:
    scene = _scene()
    with pytest.raises(InvalidArgumentError, match=message):
        vpd.solve(scene.image, "How many cats?", toolkit=scene.toolkit(), llm="openai/x", cache=cache, **kwargs)


def test_empty_question_is_rejected() -> None:
    with pytest.raises(InvalidArgumentError, match="question"):
        vpd.solve(_scene().image, "  ", llm="openai/x", cache=False)


def test_generator_needs_a_text_generator() -> None:
    with pytest.raises(InvalidArgumentError, match="generate"):
        ProgramGenerator(object(), cache=False)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        GenerationConfig(k=0)


def test_cli_solve_prints_program_trace_and_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scene = _scene()
    image = tmp_path / "scene.png"
    scene.image.save(image)
    monkeypatch.setenv("VPD_CACHE_DIR", str(tmp_path / "cache"))
    with FakeOpenAIServer(_by_seed({0: [COUNT_CATS], 1: [WRONG_COUNT]})) as server, vpd.use_toolkit(scene.toolkit()):
        args = [
            "solve", str(image), "How many cats are there?", "--k", "2", "--llm", server.model_string,
            "--api-base", server.base_url, "--quiet",
        ]  # fmt: skip
        out = io.StringIO()
        assert main(args, out=out) == 0
        text = out.getvalue()
        assert "Answer: 3" in text
        assert 'find("cat")' in text  # the program
        assert "-> find(object_name='cat') = 3 boxes" in text  # the trace
        assert "  2. answer '4' (1 of 2 agree)" in text  # numbered from 1, as the progress counts
        json_out = io.StringIO()
        assert main([*args, "--json"], out=json_out) == 0
    payload = json.loads(json_out.getvalue())
    assert payload["answer"] == "3" and len(payload["candidates"]) == 2
    assert payload["candidates"][0]["trace"]["program"].startswith("def execute_command")


def test_cli_solve_missing_image_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["solve", str(tmp_path / "nope.png"), "How many?", "--llm", "openai/x", "--quiet"])
    assert code == 1
    assert "nope.png" in capsys.readouterr().err


def test_one_failed_request_does_not_sink_the_others(cache: CompletionCache) -> None:
    scene = _scene()

    def respond(request: dict[str, Any]) -> Any:
        return Fail(400, "bad request for this sample") if request.get("seed") == 2 else COUNT_CATS

    messages: list[str] = []
    with FakeOpenAIServer(respond) as server:
        solution = vpd.solve(
            scene.image, "How many cats?", k=3, toolkit=scene.toolkit(), llm=server.model_string,
            api_base=server.base_url, cache=cache, progress=lambda stage, message: messages.append(message),
        )  # fmt: skip
    assert solution.answer == "3" and solution.votes == {"3": 2}
    failed = solution.candidates[2]
    assert failed.sample.llm_error is not None and "bad request" in failed.sample.llm_error
    assert failed.error is not None and "LLM request failed" in failed.error
    assert any("sample 3 of 3: the request failed" in m for m in messages)
    assert any("sample 1 of 3: a valid program" in m for m in messages)


def test_repairs_go_out_after_every_first_attempt(cache: CompletionCache) -> None:
    scene = _scene()
    with FakeOpenAIServer(_by_seed({0: [UNKNOWN_METHOD, COUNT_CATS], 1: [COUNT_CATS], 2: [COUNT_CATS]})) as server:
        vpd.solve(
            scene.image, "How many cats?", k=3, toolkit=scene.toolkit(), llm=server.model_string,
            api_base=server.base_url, cache=cache,
        )  # fmt: skip
        requests = server.requests
    first_length = len(requests[0].messages)
    repairs = [i for i, r in enumerate(requests) if len(r.messages) > first_length]
    assert len(requests) == 4 and repairs == [3]  # three first attempts, then the repair
    assert requests[3].body.get("seed") == 0


def test_cli_unknown_local_model_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "scene.png"
    _scene().image.save(image)
    assert main(["solve", str(image), "How many cats?", "--llm", "local:7b", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "Unknown local model 'local:7b'" in err and "local:0.5b" in err


def test_cli_writes_html_after_printing_the_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scene = _scene()
    image = tmp_path / "scene.png"
    scene.image.save(image)
    monkeypatch.setenv("VPD_CACHE_DIR", str(tmp_path / "cache"))
    with FakeOpenAIServer(_by_seed({0: [COUNT_CATS]})) as server, vpd.use_toolkit(scene.toolkit()):
        base = ["solve", str(image), "How many cats?", "--k", "1", "--llm", server.model_string]
        base += ["--api-base", server.base_url, "--quiet"]
        out = io.StringIO()
        assert main([*base, "--html", str(tmp_path / "view.html")], out=out) == 0
        html = (tmp_path / "view.html").read_text()
        assert "<html" in html and "execute_command" in html and "<img" in html
        bad = io.StringIO()
        assert main([*base, "--html", str(tmp_path / "missing" / "dir" / "view.html")], out=bad) == 1
        assert "Answer: 3" in bad.getvalue()  # the answer was printed before the write failed
