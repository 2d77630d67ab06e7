"""Programs written against ViperGPT's image API run as written, and the checker suggests fixes.

The programs here are written for these tests in ViperGPT's style (its names, keywords,
annotations and extra execute_command parameters); none is copied from its prompts.
"""

from __future__ import annotations

from typing import Any

import pytest

import vpd
from vpd.programs.api import render_api
from vpd.programs.checker import check_program
from vpd.programs.policy import compile_program
from vpd.testing import Scene, SceneObject


@pytest.fixture(scope="module")
def scene() -> Scene:
    objects = [SceneObject("cat", (10, 10, 60, 60), attributes=("red",)), SceneObject("dog", (100, 20, 150, 80))]
    return Scene(200, 150, objects, llm={"Possible answers": "tabby cat", "capital": "Paris"})


def run(scene: Scene, code: str, **kwargs: Any) -> vpd.Execution:
    return vpd.run_program(code, scene.image, toolkit=scene.toolkit(), **kwargs)


def calls(execution: vpd.Execution) -> list[tuple[str, dict[str, Any]]]:
    return [(call.operation, dict(call.inputs)) for call in execution.trace.tool_calls]


# ---------------------------------------------------------------- names and keywords


def test_compute_depth_is_depth_and_is_traced_as_depth(scene: Scene) -> None:
    code = (
        "def execute_command(image):\n"
        "    cat = ImagePatch(image).find('cat')[0]\n"
        "    return [cat.compute_depth(), cat.depth()]\n"
    )
    execution = run(scene, code)
    assert execution.ok, execution.error
    assert execution.answer[0] == execution.answer[1]
    assert [name for name, _ in calls(execution)] == ["find", "depth", "depth"]


def test_process_guesses_asks_the_llm_once_with_the_question_and_guesses(scene: Scene) -> None:
    code = (
        "def execute_command(image):\n"
        "    image_patch = ImagePatch(image)\n"
        "    guess = image_patch.simple_query('What animal is this?')\n"
        "    return process_guesses('What breed is the animal?', guess, 'siamese')\n"
    )
    execution = run(scene, code)
    assert execution.ok and execution.answer == "tabby cat", execution.error
    (operation, inputs) = calls(execution)[-1]
    assert operation == "llm_query"
    question = str(inputs)
    assert "What breed is the animal?" in question and "siamese" in question
    # Without guesses it is the question itself.
    bare = run(scene, "def execute_command(image):\n    return process_guesses('What is the capital of France?')\n")
    assert bare.answer == "paris" or bare.answer == "Paris"


def test_viper_keywords_and_defaults(scene: Scene) -> None:
    code = (
        "def execute_command(image):\n"
        "    image_patch = ImagePatch(image)\n"
        "    cat = image_patch.find('cat')[0]\n"
        "    red = cat.verify_property('cat', visual_property='red')\n"
        "    also = cat.verify_property('cat', attribute='red')\n"
        "    plain = cat.verify_property('cat', 'red')\n"
        "    kind = cat.best_text_match(option_list=['cat', 'dog'], prefix='a photo of a')\n"
        "    positional = cat.best_text_match(['cat', 'dog'], 'a photo of a')\n"
        "    what = cat.simple_query()\n"
        "    return [red, also, plain, kind, positional, what]\n"
    )
    execution = run(scene, code)
    assert execution.ok, execution.error
    red, also, plain, kind, positional, _ = execution.answer
    assert red == also == plain
    assert kind == positional and kind in ("cat", "dog")  # the option, without the prefix
    made = calls(execution)
    matched = [inputs for name, inputs in made if name == "best_text_match"]
    assert all("a photo of a cat" in str(inputs) for inputs in matched)
    asked = [inputs for name, inputs in made if name == "simple_query"]
    assert "What is this?" in str(asked[0])
    verified = [name for name, _ in made if name == "verify_property"]
    assert len(verified) == 3  # each keyword is the same canonical operation


def test_a_property_given_twice_or_not_at_all_is_a_clear_runtime_error(scene: Scene) -> None:
    call = "ImagePatch(image).verify_property('cat', 'red', visual_property='red')"
    twice = run(scene, f"def execute_command(image):\n    return {call}\n")
    assert twice.error is not None and "pass property once" in twice.error.message
    missing = run(scene, "def execute_command(image):\n    return ImagePatch(image).verify_property('cat')\n")
    assert missing.error is not None and "needs property" in missing.error.message


def test_math_typing_and_annotations(scene: Scene) -> None:
    code = (
        "import math\n"
        "from math import floor, sqrt as root\n"
        "from typing import List, Optional\n"
        "import typing as t\n"
        "\n"
        "def execute_command(image) -> str:\n"
        "    image_patch: ImagePatch = ImagePatch(image)\n"
        "    animals: List[ImagePatch] = image_patch.find('cat') + image_patch.find('dog')\n"
        "    best: Optional[np.ndarray] = None\n"  # annotations are not evaluated: np is never looked up
        "    half = math.ceil(len(animals) / 2)\n"
        "    return [half, floor(2.7), root(16), math.pi > 3, t.List is List]\n"
    )
    assert check_program(code) == []
    execution = run(scene, code)
    assert execution.ok, execution.error
    assert execution.answer == [1, 2, 4.0, True, True]


def test_safe_math_refuses_what_it_does_not_list(scene: Scene) -> None:
    execution = run(scene, "def execute_command(image):\n    m = math\n    return getattr(m, 'ceil')(1.5)\n")
    assert execution.error is not None  # getattr is not a builtin programs have
    # The static check cannot see through the list; the sandbox's guard refuses at run time.
    sneaky = run(scene, "def execute_command(image):\n    m = [math][0]\n    return m.upper\n")
    assert sneaky.error is not None and "module 'math' has no attribute 'upper'" in sneaky.error.message


def test_the_prompt_shows_only_vpds_own_names() -> None:
    api = render_api()
    for name in ("compute_depth", "process_guesses", "visual_property", "prefix:", "option_list", "attribute:"):
        assert name not in api, name
    assert "def verify_property(self, object_name: str, property: str) -> bool:" in api
    assert "def simple_query(self, question: str) -> str:" in api
    assert "def best_text_match(self, options: list[str]) -> str:" in api


# ---------------------------------------------------------------- extra parameters


def test_extra_execute_command_parameters_are_bound_by_name_and_traced(scene: Scene) -> None:
    notebook = (
        "def execute_command(image, my_fig, time_wait_between_lines, syntax):\n"
        "    return [my_fig, time_wait_between_lines, syntax, len(ImagePatch(image).find('cat'))]\n"
    )
    execution = run(scene, notebook)
    assert execution.ok and execution.answer == [None, None, None, 1], execution.error
    fixed = (
        "def execute_command(image, possible_answers, query, ImagePatch, VideoSegment, llm_query, bool_to_yesno,"
        " depth_of=None):\n"
        "    patch = ImagePatch(image)\n"
        "    return [query, possible_answers, bool_to_yesno(patch.exists('cat')), depth_of]\n"
    )
    meta = {"question": "Is there a cat?", "choices": ["yes", "no"]}
    execution = run(scene, fixed, meta=meta)
    assert execution.ok and execution.answer == ["Is there a cat?", ["yes", "no"], "yes", None], execution.error
    bound = {a.name: a.value for a in execution.trace.assignments if a.line == 1}
    assert bound["query"] == "'Is there a cat?'" and bound["possible_answers"] == "['yes', 'no']"
    assert "ImagePatch" in bound and "depth_of" not in bound  # a default stays a default
    # Without a question in the run's meta, query is None.
    assert run(scene, "def execute_command(image, query):\n    return query\n").answer is None


def test_a_parameter_vpd_cannot_fill_is_a_static_error_naming_what_it_can(scene: Scene) -> None:
    errors = check_program("def execute_command(image, foo, query):\n    return 1\n")
    assert len(errors) == 1 and errors[0].line == 1
    assert "'foo' gets no value" in errors[0].message and "possible_answers" in errors[0].message
    assert check_program("def execute_command():\n    return 1\n")[0].message.startswith(
        "execute_command must take the image"
    )
    assert check_program("def execute_command(image, *rest):\n    return 1\n")


# ---------------------------------------------------------------- checker messages


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ("return ImagePatch(image).exist('dog')", ["'exist'", "Did you mean 'exists'?"]),
        ("return ImagePatch(image).get_depth()", ["'get_depth'", "Did you mean 'depth'?"]),
        ("return exsits('dog')", ["'exsits'", "exists is an ImagePatch method", "image_patch.exists("]),
        ("return math.ceill(2.5)", ["module 'math' has no attribute 'ceill'", "Did you mean 'ceil'?"]),
        ("return 'abc'.uper()", ["neither an ImagePatch member nor a method of str", "Did you mean 'upper'?"]),
        ("return bool_to_yesnoo(True)", ["Did you mean 'bool_to_yesno'?"]),
    ],
    ids=["exist", "depth", "method-as-function", "math", "str-method", "helper"],
)
def test_near_misses_get_a_suggestion(body: str, needles: list[str]) -> None:
    errors = check_program(f"def execute_command(image):\n    {body}\n")
    assert len(errors) == 1 and errors[0].line == 2
    for needle in needles:
        assert needle in errors[0].message, errors[0].message


def test_the_attribute_list_shows_vpds_names_not_the_aliases() -> None:
    (error,) = check_program("def execute_command(image):\n    return ImagePatch(image).exist('dog')\n")
    assert "compute_depth" not in error.message and "depth" in error.message


def test_imports_get_an_honest_message() -> None:
    compiled = compile_program(
        "import os\nfrom math import *\nfrom math import ceill\ndef execute_command(image):\n  return 1\n"
    )
    messages = dict(compiled.errors)
    assert "programs cannot import modules" in messages[1] and "math" in messages[1]
    assert "import the names you use" in messages[2]
    assert "'ceill'" in messages[3] and "ceil" in messages[3]
    from_relative = compile_program("from . import x\ndef execute_command(image):\n  return 1\n")
    assert "programs cannot import modules" in from_relative.errors[0][1]


def test_an_unknown_name_in_an_annotation_is_not_an_error() -> None:
    code = "def execute_command(image) -> Dict[str, Whatever]:\n    x: Unknown = 1\n    return x\n"
    assert check_program(code) == []


# ---------------------------------------------------------------- bring your own prompt

# A prompt in ViperGPT's format, written for this test: an API class text, one example
# with its extra parameters, and the place for the query.
VIPER_STYLE_PROMPT = '''class ImagePatch:
    """A crop of an image, with methods find, exists, verify_property, compute_depth, simple_query."""

    def compute_depth(self):
        """Returns the median depth of the crop."""


# Which animal is closer?
def execute_command(image, my_fig, time_wait_between_lines, syntax):
    image_patch = ImagePatch(image)
    animals = image_patch.find("cat") + image_patch.find("dog")
    return min(animals, key=lambda a: a.compute_depth()).simple_query("What animal is this?")


# INSERT_QUERY_HERE
def execute_command(image, my_fig, time_wait_between_lines, syntax):
'''

# What a model might reply to it: the body only, continuing the header, ViperGPT's names.
VIPER_STYLE_REPLY = (
    "    image_patch = ImagePatch(image)\n"
    "    cats: List[ImagePatch] = image_patch.find('cat')\n"
    "    nearest = min(cats, key=lambda c: c.compute_depth())\n"
    "    return math.ceil(len(cats) + 0.5)\n"
)


def test_a_vipergpt_format_prompt_drives_solve(scene: Scene, tmp_path: Any) -> None:
    from vpd.testing.openai_server import FakeOpenAIServer

    prompt = tmp_path / "viper.prompt"
    prompt.write_text(VIPER_STYLE_PROMPT)
    with FakeOpenAIServer([VIPER_STYLE_REPLY]) as server:
        solution = vpd.solve(
            scene.image, "How many cats are there, rounded up?", k=1, toolkit=scene.toolkit(),
            llm=server.model_string, api_base=server.base_url, api_key="test", cache=False, fallback=False,
            prompt=prompt,
        )  # fmt: skip
        (request,) = server.chat_requests
    sent = request.messages
    assert len(sent) == 1 and sent[0]["role"] == "user"
    assert "# How many cats are there, rounded up?\ndef execute_command(image, my_fig" in sent[0]["content"]
    assert "INSERT_QUERY_HERE" not in sent[0]["content"] and "Rules:" not in sent[0]["content"]
    assert solution.answer == "2", (solution.error, solution.program)
    assert solution.prompt.startswith(f"custom prompt {prompt} (vipergpt, sha256 ")
    assert solution.execution is not None and solution.execution.trace.meta["prompt"] == solution.prompt
    assert solution.execution.trace.meta["prompt_style"] == "vipergpt"
    assert [c.operation for c in solution.execution.trace.tool_calls] == ["find", "depth"]
    assert solution.to_dict()["prompt"] == solution.prompt


def test_a_template_of_your_own_gets_the_api_question_and_examples(tmp_path: Any) -> None:
    from vpd.programs.custom_prompt import PromptTemplate
    from vpd.programs.library import Example

    template = PromptTemplate.from_text("API:\n{api}\nExamples:\n{examples}\nQ: {question}\nCode {x: 1}")
    assert template.style == "template" and template.uses_examples
    example = Example("How many {question}s?", "def execute_command(image):\n    return f'{question}'")
    (message,) = template.messages("  How many  dogs? ", examples=[example])
    text = message["content"]
    assert "def verify_property(self, object_name: str, property: str) -> bool:" in text
    assert "Q: How many dogs?" in text and "Code {x: 1}" in text
    assert "# Question: How many {question}s?" in text and "return f'{question}'" in text  # filled in once


def test_bad_prompt_files_get_clear_errors(tmp_path: Any) -> None:
    from vpd.programs.custom_prompt import PromptTemplate

    with pytest.raises(vpd.InvalidArgumentError, match=r"no place for the question.*INSERT_QUERY_HERE.*\{question\}"):
        PromptTemplate.from_text("Write a program.")
    with pytest.raises(vpd.ConfigError, match="Cannot read the prompt file"):
        PromptTemplate.load(tmp_path / "missing.prompt")
    (tmp_path / "binary.prompt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(vpd.ConfigError, match="Cannot read the prompt file"):
        PromptTemplate.load(tmp_path / "binary.prompt")
    with pytest.raises(vpd.InvalidArgumentError, match="prompt must be a file path or a PromptTemplate"):
        vpd.Solver(k=1, llm="openai/x", api_base="http://127.0.0.1:9", prompt=3)  # type: ignore[arg-type]


def test_vpd_solve_prompt_option(scene: Scene, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from vpd.cli import main
    from vpd.testing.openai_server import FakeOpenAIServer

    prompt = tmp_path / "mine.txt"
    prompt.write_text("Use ImagePatch. {question}")
    image = tmp_path / "scene.png"
    scene.image.save(image)
    reply = "```python\ndef execute_command(image):\n    return len(ImagePatch(image).find('dog'))\n```"
    with FakeOpenAIServer([reply]) as server, vpd.use_toolkit(scene.toolkit()):
        code = main(
            ["solve", str(image), "How many dogs?", "--k", "1", "--prompt", str(prompt), "--llm", server.model_string,
             "--api-base", server.base_url, "--api-key", "test", "--no-cache", "--quiet"]
        )  # fmt: skip
        (request,) = server.chat_requests
    printed = capsys.readouterr().out
    assert code == 0 and request.messages[0]["content"] == "Use ImagePatch. How many dogs?"
    assert "Prompt:   custom prompt" in printed  # (the path may be cut to the terminal width)


def test_llm_query_defaults_to_a_long_answer_only_for_programs_from_a_vipergpt_prompt(scene: Scene) -> None:
    code = "def execute_command(image):\n    return [llm_query('What is the capital of France?'), 1]\n"
    method = "def execute_command(image):\n    return ImagePatch(image).llm_query('What is the capital of France?')\n"

    def long_answers(execution: vpd.Execution) -> list[Any]:
        assert execution.ok, execution.error
        return [inputs.get("long_answer") for name, inputs in calls(execution) if name == "llm_query"]

    assert long_answers(run(scene, code)) == [False]
    assert long_answers(run(scene, code, meta={"prompt_style": "vipergpt"})) == [True]
    assert long_answers(run(scene, method, meta={"prompt_style": "vipergpt"})) == [True]
    explicit = (
        "def execute_command(image):\n    return llm_query('What is the capital of France?', long_answer=False)\n"
    )
    assert long_answers(run(scene, explicit, meta={"prompt_style": "vipergpt"})) == [False]


def test_the_solver_passes_a_questions_choices_to_possible_answers(scene: Scene) -> None:
    from vpd.testing.openai_server import FakeOpenAIServer

    reply = "```python\ndef execute_command(image, possible_answers, query):\n    return possible_answers[-1]\n```"
    with FakeOpenAIServer([reply]) as server:
        solver = vpd.Solver(
            k=1, toolkit=scene.toolkit(), llm=server.model_string, api_base=server.base_url, api_key="test", cache=False
        )
        solution = solver.solve(scene.image, "Which animal is it?", choices=["cat", "dog"], fallback=False)
        with pytest.raises(vpd.InvalidArgumentError, match="choices must be a list of strings"):
            solver.solve(scene.image, "Which animal is it?", choices="cat or dog")  # type: ignore[arg-type]
    assert solution.answer == "dog", solution.error
    assert solution.execution is not None and solution.execution.trace.meta["choices"] == ["cat", "dog"]
