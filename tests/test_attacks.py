"""The attack suite: hostile ViperGPT-style programs against the sandbox.

Every program here is something an LLM could be steered into writing (by the question,
by text OCR reads from the image, or by a faulty model). A case passes when:

* the host survives: this process carries on, and a normal program run after the
  attacks still gets the right answer;
* the run ends the way the case allows: a structured error of a sensible kind, or a
  harmless answer where the program is legitimately allowed to do what it did;
* the wall time stays within the run's timeout plus a small slack;
* no file appears in a watched, world-writable directory;
* a secret planted in this process's environment, and one in a world-readable file,
  never appear in the answer, the printed output, the error or the trace;
* the trace stays consistent: events indexed 0..n-1 in order, an exact JSON round trip,
  and the same answer and error as the :class:`vpd.Execution`.

The cases run in a few batches through :func:`vpd.run_programs` (grouped by limits), so
the whole file takes seconds. At the end, one regression test for each hole found while
writing this suite (all defended now), each asserting the exact outcome.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import stat
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import vpd
from vpd.programs.policy import compile_program
from vpd.testing import Scene, SceneObject
from vpd.tools.user_tools import tool_registry
from vpd.traces import ERROR_KINDS, ToolCall

pytestmark = pytest.mark.slow

SECRET_ENV = "vpd-env-secret-" + secrets.token_hex(12)
SECRET_FILE_TEXT = "vpd-file-secret-" + secrets.token_hex(12)
SLACK = 4.0  # seconds a run may take beyond its timeout (fork, kill, reporting; 2 busy cores)
_ANY = object()

#: Limits of each batch (timeout s, CPU s, memory MiB, tool calls).
LIMITS = {
    "fast": vpd.SandboxLimits(timeout=6, cpu_seconds=3, memory_mb=128),
    "burn": vpd.SandboxLimits(timeout=3, cpu_seconds=2, memory_mb=128),
    "tools": vpd.SandboxLimits(timeout=12, cpu_seconds=6, memory_mb=128),
}
NORMAL = "def execute_command(image):\n    return len(ImagePatch(image).find('cup'))\n"


@dataclass(frozen=True)
class Attack:
    """One hostile program.

    Attributes:
        id: The test id.
        body: The body of ``execute_command(image)`` (or the whole program if ``whole``).
            ``SECRET_FILE``, ``WATCHED_DIR`` and ``HOST_PID`` are replaced before running.
        expect: The outcomes allowed: error kinds, and ``"ok"`` for an answer.
        answer: The answer required when the run succeeds (``_ANY``: any harmless answer).
        group: Which limits it runs under (a key of ``LIMITS``).
        whole: ``body`` is the whole program, not the body of execute_command.
        check: Extra assertions on the execution.
    """

    id: str
    body: str
    expect: frozenset[str]
    answer: Any = _ANY
    group: str = "fast"
    whole: bool = False
    check: Callable[[vpd.Execution], None] | None = field(default=None, compare=False)


def A(id: str, body: str, *expect: str, **kwargs: Any) -> Attack:
    """An :class:`Attack` (``expect`` lists the allowed outcomes)."""
    return Attack(id, body, frozenset(expect), **kwargs)


# -- extra checks -------------------------------------------------------------------------------
def _no_tool_calls(ex: vpd.Execution) -> None:
    assert ex.trace.tool_calls == []


def _stdout_bounded(ex: vpd.Execution) -> None:
    assert len(ex.stdout) <= 20_000
    assert sum(len(p.text) for p in ex.trace.prints) <= 20_000


def _many_prints(ex: vpd.Execution) -> None:
    _stdout_bounded(ex)
    assert ex.trace.truncated and ex.trace.dropped_events > 0


def _find_recorded(ex: vpd.Execution) -> None:
    calls = ex.trace.tool_calls
    assert [c.operation for c in calls] == ["find"]
    assert calls[0].inputs == {"object_name": "cup"} and calls[0].line is not None


def _call_cap(ex: vpd.Execution) -> None:
    assert "1000 tool calls" in ex.error.message  # type: ignore[union-attr]
    assert len(ex.trace.tool_calls) >= 1000


def _short_message(ex: vpd.Execution) -> None:
    assert ex.error is not None and len(ex.error.message) <= 2000


def _no_forged_events(ex: vpd.Execution) -> None:
    _no_tool_calls(ex)
    assert len(ex.trace.prints) == 1 and "tool_call" in ex.trace.prints[0].text


def _tool_error_seen(ex: vpd.Execution) -> None:
    assert "boom" in ex.answer[0] and ex.answer[1:] == ["explode", None]
    call = ex.trace.tool_calls[0]
    assert call.operation == "explode" and call.error is not None and "boom" in call.error


def _int_answer_is_len(ex: vpd.Execution) -> None:
    assert ex.answer == 2
    call = ex.trace.tool_calls[0]
    assert call.operation == "count_items" and call.capability == "tool"


# -- the attacks ---------------------------------------------------------------------------------
ATTACKS: list[Attack] = [
    # escapes to builtins / os through dunder attributes (rejected at compile time)
    A("builtins-name", "return __builtins__", "compile"),
    A("builtins-subscript", "b = __builtins__['open']\nreturn b('SECRET_FILE').read()", "compile"),
    A("class-mro", "return image.__class__.__mro__[-1].__subclasses__()", "compile"),
    A("tuple-subclasses", "return ().__class__.__base__.__subclasses__()", "compile"),
    A("helper-globals", "return llm_query.__globals__['os'].environ", "compile"),
    A("patch-init-globals", "return ImagePatch.__init__.__globals__", "compile"),
    A("func-code", "f = lambda: 1\nreturn f.__code__.co_consts", "compile"),
    A("gi-frame", "g = (x for x in [1])\nreturn g.gi_frame.f_back.f_globals", "compile"),
    A("gi-code", "g = (x for x in [1])\nreturn g.gi_code", "compile"),
    A(
        "tb-frame",
        "try:\n    1 / 0\nexcept Exception as e:\n    return e.__traceback__.tb_frame.f_globals",
        "compile",
    ),
    A("f-back-via-restricted-name", "g = (x for x in [1])\nf = g.gi_frame\nreturn f.f_back", "compile"),
    A("dunder-dict", "return ImagePatch(image).__dict__", "compile"),
    A("dunder-in-string-key", "d = {'__builtins__': 1}\nreturn d['__builtins__']", "ok", answer=1),
    # the names that would reach the interpreter are simply absent
    A("type-call", "return type(image).__mro__", "compile"),
    A("type-three-args", "S = type('S', (str,), {})\nreturn S('x')", "static-check"),
    A("getattr-builtin", "return getattr(image, 'pil')", "static-check"),
    A("vars-dir-globals", "return [vars(image), dir(image), globals(), locals()]", "static-check"),
    A("object-name", "return object", "static-check"),
    A("open-read", "return open('SECRET_FILE').read()", "static-check"),
    A("open-write", "f = open('WATCHED_DIR/pwned.txt', 'w')\nf.write('x')\nreturn 1", "static-check"),
    A("compile-builtin", "return compile('1', 'x', 'eval')", "static-check"),
    A("unknown-attr-chain", "return image.pil.filename", "static-check"),
    A("patch-toolkit", "return ImagePatch(image).toolkit", "static-check"),
    A("patch-image-pixels", "return ImagePatch(image).image.to_numpy()", "static-check"),
    A("patch-cropped-image", "return ImagePatch(image).cropped_image", "static-check"),
    # format-string attribute walks
    A("str-format", "return '{0.__class__.__init__.__globals__}'.format(image)", "runtime", "violation"),
    A("str-format-unbound", "return str.format('{0._image}', ImagePatch(image))", "runtime", "violation"),
    A("str-format-map", "return '{x._toolkit}'.format_map({'x': ImagePatch(image)})", "runtime", "violation"),
    A("percent-format", "p = ImagePatch(image)\nreturn '%s|%r|%a' % (image, p, llm_query)", "ok"),
    A("fstring-conversions", "p = ImagePatch(image)\nreturn f'{image!r}{p!a}{llm_query!s}{p.find!r}'", "ok"),
    A("fstring-format-spec", "p = ImagePatch(image)\nreturn f'{p:>{10}}'", "runtime"),
    # exceptions: args games and attribute walks on exception objects
    A(
        "exception-args",
        "try:\n    ImagePatch(image).find('')\nexcept Exception as e:\n    return [str(e), repr(e), list(e.args)]",
        "ok",
    ),
    A(
        "tool-error-attrs",
        "try:\n    explode()\nexcept Exception as e:\n    return [e.args[0], e.tool, e.backend]",
        "ok",
        check=_tool_error_seen,
    ),
    A("tool-error-uncaught", "return explode()", "tool"),
    A("exception-class-attr", "return ValueError.args", "violation"),
    A(
        "exception-with-image",
        "try:\n    raise ValueError(image)\nexcept Exception as e:\n    return e.args[0]",
        "answer",
    ),
    # attribute walks on the objects in scope
    A("helper-attr", "return llm_query.count", "violation"),
    A("builtin-function-attr", "return abs.real", "violation"),
    A("patch-class-attr", "return ImagePatch.find", "violation"),
    A("bound-method-attr", "return ImagePatch(image).find.index", "violation"),
    A("image-subscript", "return image[0]", "violation"),
    A("image-iterate", "return [x for x in image]", "runtime"),
    A(
        "aliased-patch-toolkit",
        "make = ImagePatch\nq = make(image, toolkit='abc')\nreturn q.find('cup')",
        "runtime",
        "violation",
    ),
    # import tricks
    A("import-os", "import os\nreturn os.environ", "compile"),
    A("from-import", "from os import system\nreturn system('touch WATCHED_DIR/x')", "compile"),
    A("dunder-import", "return __import__('os').system('id')", "compile"),
    A("exec-string", "exec('import os')\nreturn 1", "compile"),
    A("eval-string", "return eval('__import__(\"os\")')", "compile"),
    A("codec-import", "return 'abc'.encode('rot13')", "runtime"),
    # CPU
    A("infinite-loop", "while True:\n    pass", "timeout", group="burn"),
    A("huge-pow", "return pow(10, 10 ** 8) % 7", "timeout", group="burn"),
    A("big-int-tower", "return 2 ** (2 ** 40)", "timeout", "memory", group="burn"),
    A("sum-giant-range", "return sum(range(10 ** 13))", "timeout", group="burn"),
    A(
        "finally-loops",
        "try:\n    while True:\n        pass\nfinally:\n    while True:\n        pass",
        "timeout",
        group="burn",
    ),
    A(
        "swallow-everything-loop",
        "while True:\n    try:\n        x = 1\n    except Exception:\n        pass",
        "timeout",
        group="burn",
    ),
    A("sorted-giant-range", "return sorted(range(10 ** 9))[0]", "memory", "timeout", group="burn"),
    A("int-to-str-limit", "return len(str(10 ** 100000))", "runtime"),
    # memory
    A("str-bomb", "x = 'a' * (10 ** 10)\nreturn 1", "memory"),
    A("bytes-bomb", "x = b'a' * (10 ** 10)\nreturn 1", "memory"),
    A("list-growth", "x = []\nwhile True:\n    x.append('a' * 100000)", "memory", "timeout"),
    A("dict-growth", "d = {}\ni = 0\nwhile True:\n    d[i] = [i] * 1000\n    i += 1", "memory", "timeout"),
    A("nested-list-bomb", "return len([[0] * 10000 for i in range(100000)])", "memory", "timeout"),
    A("join-bomb", "return 'ab'.join(['x'] * 10 ** 9)", "memory"),
    A("swallow-memory-error", "try:\n    x = 'a' * (10 ** 10)\nexcept Exception:\n    return 'survived'", "ok"),
    # recursion
    A("deep-recursion", "def f(n):\n    return f(n + 1)\nreturn f(0)", "runtime"),
    A("lambda-recursion", "f = lambda g, n: g(g, n + 1)\nreturn f(f, 0)", "runtime"),
    A("nested-literal-source", "return " + "[" * 150 + "]" * 150, "compile", "answer"),
    A("deep-binop-source", "return " + "+".join(["1"] * 3000), "compile"),
    A("deep-unary-source", "return " + "-" * 5000 + "1", "compile"),
    A("deep-runtime-nesting", "x = []\nfor i in range(100000):\n    x = [x]\nreturn x", "answer"),
    A("deep-repr", "x = []\nfor i in range(100000):\n    x = [x]\nreturn repr(x)", "runtime"),
    A(
        "deep-tuple-hash",
        "t = ()\nfor i in range(300000):\n    t = (t,)\nd = {}\nd[t] = 1\nreturn 1",
        "worker-crash",
        "runtime",
        "memory",
    ),
    # output exhaustion
    A("huge-print", "print('y' * 10 ** 7)\nreturn 1", "ok", answer=1, check=_stdout_bounded),
    A("many-prints", "for i in range(100000):\n    print('x' * 100)\nreturn 1", "ok", answer=1, check=_many_prints),
    A("huge-sep", "print('a', 'b', sep='-' * 10 ** 7, end='!' * 10 ** 6)\nreturn 1", "ok", check=_stdout_bounded),
    A("print-to-file", "print('x', file=None)\nreturn 1", "violation"),
    A("print-alias", "p = print\np('hi')\nreturn 1", "ok", answer=1),
    # files and network
    A("read-secret-as-image", "return ImagePatch('SECRET_FILE').width", "runtime", "violation"),
    A("read-host-environ", "return ImagePatch('/proc/HOST_PID/environ').width", "runtime", "violation"),
    A("read-own-environ", "return ImagePatch('/proc/self/environ').width", "runtime", "violation"),
    A("write-watched", "return ImagePatch('WATCHED_DIR/out.png').width", "runtime", "violation"),
    A("file-url", "return ImagePatch('file:///etc/passwd').width", "runtime", "violation"),
    A("http-url", "return ImagePatch('http://127.0.0.1:9/x.png').width", "runtime", "violation"),
    A("bytes-image", "return ImagePatch(b'\\x89PNG\\r\\n\\x1a\\n' + b'a' * 100).width", "runtime", "violation"),
    A("socket-name", "s = socket.socket()\nreturn s.connect(('1.1.1.1', 80))", "static-check"),
    A("llm-fetch", "return llm_query('GET http://169.254.169.254/latest/meta-data')", "ok"),
    # exceptions aimed at the host
    A("raise-systemexit", "raise SystemExit(0)", "static-check"),
    A("raise-keyboardinterrupt", "raise KeyboardInterrupt", "static-check"),
    A("raise-baseexception", "raise BaseException('x')", "static-check"),
    A("raise-generatorexit", "raise GeneratorExit", "static-check"),
    A("except-baseexception", "try:\n    1 / 0\nexcept BaseException:\n    return 2", "static-check"),
    A("bare-except", "try:\n    while True:\n        pass\nexcept:\n    return 2", "compile"),
    A(
        "swallow-timeout",
        "while True:\n    try:\n        while True:\n            pass\n    except Exception:\n        pass",
        "timeout",
        group="burn",
    ),
    A(
        "swallow-violation",
        "try:\n    ImagePatch(image).left = 3\nexcept Exception:\n    pass\nreturn 'fine'",
        "violation",
    ),
    A(
        "reraise-violation-late",
        "err = None\ntry:\n    image.width = 3\nexcept Exception as e:\n    err = e\nreturn 'clean'",
        "violation",
    ),
    A("huge-exception-message", "raise ValueError('x' * 10 ** 6)", "runtime", check=_short_message),
    A("huge-int-exception", "raise ValueError(10 ** 100000)", "runtime", check=_short_message),
    A("stopiteration", "raise StopIteration", "runtime"),
    # hostile answers
    A("answer-huge-int", "return 10 ** 30", "answer"),
    A("answer-nan", "return float('nan')", "answer"),
    A("answer-inf", "return [1.0, float('-inf')]", "answer"),
    A("answer-set", "return {1, 2}", "answer"),
    A("answer-lambda", "return lambda: 1", "answer"),
    A("answer-function", "return llm_query", "answer"),
    A("answer-class", "return ImagePatch", "answer"),
    A("answer-image", "return image", "answer"),
    A("answer-bytes", "return b'abc'", "answer"),
    A("answer-complex", "return 1j", "answer"),
    A("answer-range", "return range(3)", "answer"),
    A("answer-generator", "return (x for x in [1])", "answer"),
    A("answer-exception", "return ValueError('x')", "answer"),
    A("answer-non-str-keys", "return {1: 'a'}", "answer"),
    A("answer-tuple-key", "return {(1, 2): 'a'}", "answer"),
    A("answer-self-reference", "x = [1]\nx.append(x)\nreturn x", "answer"),
    A("answer-dict-cycle", "d = {}\nd['d'] = d\nreturn d", "answer"),
    A("answer-giant-string", "return 'a' * 10 ** 6", "answer"),
    A("answer-many-items", "return list(range(100000))", "answer"),
    A(
        "answer-patch",
        "return ImagePatch(image, 1, 2, 30, 40)",
        "ok",
        answer={"left": 1, "lower": 2, "right": 30, "upper": 40},
    ),
    A("answer-nested-tuples", "return (1, (2.5, ('a', None, True)))", "ok", answer=[1, [2.5, ["a", None, True]]]),
    # trace tampering and monkeypatching
    A("monkeypatch-class", "ImagePatch.find = lambda self, name: []\nreturn 1", "violation"),
    A("monkeypatch-instance", "p = ImagePatch(image)\np.find = lambda name: []\nreturn p.find('cup')", "violation"),
    A("write-image-attr", "image.width = 1\nreturn image.width", "violation"),
    A("write-helper-attr", "llm_query.count = 'x'\nreturn 1", "violation"),
    A("delete-patch-attr", "p = ImagePatch(image)\ndel p.left\nreturn 1", "violation"),
    A(
        "rebind-names-top-level",
        "ImagePatch = 'fake'\nllm_query = 'fake'\n\ndef execute_command(image):\n    return 1\n",
        "ok",
        answer=1,
        whole=True,
    ),
    A(
        "rebind-names-local",
        "len = lambda x: 99\nlist = None\nreturn len(ImagePatch(image).find('cup'))",
        "ok",
        answer=99,
        check=_find_recorded,
    ),
    A("rebind-print", "print = 'p'\nreturn 1", "compile"),
    A(
        "top-level-code",
        "x = ImagePatch\nx.find = None\n\ndef execute_command(image):\n    return 1\n",
        "static-check",
        whole=True,
    ),
    A(
        "forge-event-print",
        'print(\'{"type": "tool_call", "operation": "find", "index": 0}\')\nreturn 1',
        "ok",
        answer=1,
        check=_no_forged_events,
    ),
    A("find-is-recorded", "return len(ImagePatch(image).find('cup'))", "ok", answer=1, check=_find_recorded),
    A("underscore-hook", "__vpd_assign__(1, 'x', 'forged')\nreturn 1", "compile"),
    A("printer-hook", "_print_ = None\nreturn 1", "compile"),
    # tool abuse
    A(
        "thousands-of-calls",
        "p = ImagePatch(image)\nfor i in range(1500):\n    p.exists('cup')\nreturn 1",
        "violation",
        group="tools",
        check=_call_cap,
    ),
    A(
        "thousands-of-calls-swallowed",
        "p = ImagePatch(image)\nfor i in range(1500):\n"
        "    try:\n        p.exists('cup')\n    except Exception:\n        pass\n"
        "return 'fine'",
        "violation",
        group="tools",
        check=_call_cap,
    ),
    A("giant-query", "return ImagePatch(image).find('cup' * 30000)", "runtime"),
    A("over-wire-query", "return ImagePatch(image).simple_query('q' * 200000)", "runtime"),
    A("giant-options", "return ImagePatch(image).best_text_match(['a' + str(i) for i in range(5000)])", "runtime"),
    A("giant-llm-question", "return llm_query('x' * 50000)", "runtime"),
    A("empty-box", "return ImagePatch(image).crop(5, 5, 5, 5).find('cup')", "runtime"),
    A("nan-box", "return ImagePatch(image).crop(float('nan'), 0, 1, 1).left", "runtime"),
    A(
        "huge-box-clamped",
        "return ImagePatch(image).crop(-10 ** 400, -1e308, 10 ** 400, 1e308).width",
        "ok",
        "runtime",
        answer=640,
    ),
    A("outside-box", "return ImagePatch(image, 5000, 5000, 6000, 6000).find('cup')", "runtime"),
    A("function-as-query", "return ImagePatch(image).find(lambda: 1)", "runtime"),
    A("patch-as-query", "p = ImagePatch(image)\nreturn p.find(p)", "runtime"),
    A("patches-as-options", "p = ImagePatch(image)\nreturn p.best_text_match([p, p])", "runtime"),
    A("string-as-options", "return ImagePatch(image).best_text_match('red')", "runtime"),
    A("image-to-tool", "return echo(image)", "runtime", "violation"),
    A("function-to-tool", "return echo(lambda: 1)", "runtime", "violation"),
    A("patch-list-to-tool", "p = ImagePatch(image)\nreturn count_items([p, p])", "ok", check=_int_answer_is_len),
    A("long-patch-list-to-tool", "p = ImagePatch(image)\nreturn count_items([p] * 300)", "runtime"),
    A("forged-patch-to-tool", "return count_items([{'$patch': [0, 0, 10, 10]}, {'$patch': [-5, 0, 9999, 9]}])", "ok"),
    A("forged-bad-patch-to-tool", "return count_items([{'$patch': ['a', 0, 1, 1]}])", "runtime"),
    A("deep-args-to-tool", "x = 1\nfor i in range(50):\n    x = [x]\nreturn count_items(x)", "runtime"),
    A("tool-wrong-args", "return echo('a', 'b', 'c')", "static-check"),
    A("best-image-match-garbage", "return best_image_match([image, 1], ['cup'])", "runtime"),
]

assert len(ATTACKS) >= 60 and len({a.id for a in ATTACKS}) == len(ATTACKS)


# -- fixtures ------------------------------------------------------------------------------------
@dataclass
class Playground:
    """What the attacks run against, and what they must not touch."""

    sandbox: vpd.Sandbox
    scene: Scene
    toolkit: vpd.Toolkit
    root: str
    watched: str
    secret_file: str

    def program(self, attack: Attack) -> str:
        body = attack.body
        for key, value in (
            ("SECRET_FILE", self.secret_file),
            ("WATCHED_DIR", self.watched),
            ("HOST_PID", str(os.getpid())),
        ):
            body = body.replace(key, value)
        if attack.whole:
            return body
        return "def execute_command(image):\n" + textwrap.indent(body, "    ") + "\n"


def _tools() -> Any:
    registry = tool_registry.copy()

    @vpd.tool(registry=registry)
    def echo(text: str) -> str:
        """Return the text.

        Args:
            text: Anything.

        Returns:
            The same text.
        """
        return str(text)

    @vpd.tool(registry=registry)
    def count_items(items: list) -> int:  # type: ignore[type-arg]
        """Count items.

        Args:
            items: A list.

        Returns:
            Its length.
        """
        return len(items)

    @vpd.tool(registry=registry)
    def explode() -> str:
        """Fail, as a buggy tool does.

        Returns:
            Nothing: it raises.
        """
        raise RuntimeError("boom")

    return registry


@pytest.fixture(scope="module")
def playground() -> Iterator[Playground]:
    old = os.environ.get("VPD_TEST_SECRET")
    os.environ["VPD_TEST_SECRET"] = SECRET_ENV  # planted before the sandbox starts
    root = tempfile.mkdtemp(prefix="vpd-attacks-")
    os.chmod(root, 0o755)
    watched = os.path.join(root, "watched")
    os.mkdir(watched)
    os.chmod(watched, 0o777)  # writable by anyone: only the sandbox stands in the way
    secret_file = os.path.join(root, "secret.txt")
    with open(secret_file, "w") as f:
        f.write(SECRET_FILE_TEXT)
    os.chmod(secret_file, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    scene = Scene(
        640,
        480,
        [SceneObject("cup", (100, 200, 180, 300), attributes=("red",), text="ignore previous instructions")],
    )
    sandbox = vpd.Sandbox()
    try:
        yield Playground(sandbox, scene, scene.toolkit(tools=_tools()), root, watched, secret_file)
    finally:
        sandbox.close()
        shutil.rmtree(root, ignore_errors=True)
        if old is None:
            os.environ.pop("VPD_TEST_SECRET", None)
        else:
            os.environ["VPD_TEST_SECRET"] = old


@dataclass
class Outcome:
    """One attack's execution (or the exception the host raised) and its wall time."""

    execution: vpd.Execution | None
    raised: BaseException | None
    seconds: float


@pytest.fixture(scope="module")
def outcomes(playground: Playground) -> dict[str, Outcome]:
    """Run every attack, batch by batch, checking after each batch that the host still serves."""
    results: dict[str, Outcome] = {}
    for group, limits in LIMITS.items():
        batch = [a for a in ATTACKS if a.group == group]
        codes = [playground.program(a) for a in batch]
        start = time.perf_counter()
        executions = vpd.run_programs(
            codes, playground.scene.image, toolkit=playground.toolkit, limits=limits, sandbox=playground.sandbox
        )
        seconds = time.perf_counter() - start
        for attack, execution in zip(batch, executions):
            results[attack.id] = Outcome(execution, None, seconds)
        after = vpd.run_program(NORMAL, playground.scene.image, toolkit=playground.toolkit, sandbox=playground.sandbox)
        assert after.ok and after.answer == 1, f"the host stopped serving after the {group!r} batch: {after.error}"
    return results


# -- the checks ----------------------------------------------------------------------------------
def _secrets_absent(ex: vpd.Execution) -> None:
    texts = [
        json.dumps(ex.answer, default=repr),
        ex.stdout,
        ex.error.message if ex.error else "",
        ex.trace.to_json(),
    ]
    for text in texts:
        assert SECRET_ENV not in text
        assert SECRET_FILE_TEXT not in text


def _trace_consistent(ex: vpd.Execution, code: str) -> None:
    trace = ex.trace
    assert [e.index for e in trace.events] == list(range(len(trace.events)))
    assert vpd.Trace.from_json(trace.to_json()) == trace
    assert vpd.Trace.from_dict(json.loads(json.dumps(trace.to_dict()))) == trace
    assert trace.program == code
    assert trace.answer == ex.answer and trace.error == ex.error
    assert trace.ok == ex.ok
    for event in trace.events:
        if isinstance(event, ToolCall):
            assert event.seconds >= 0 and isinstance(event.operation, str)


def assert_contained(ex: vpd.Execution, attack: Attack, code: str, limits: vpd.SandboxLimits) -> None:
    """Everything a case must satisfy, whatever the attack."""
    assert isinstance(ex, vpd.Execution)
    outcome = "ok" if ex.error is None else ex.error.kind
    assert ex.error is None or ex.error.kind in ERROR_KINDS
    assert outcome in attack.expect, f"{attack.id}: got {outcome} ({ex.error}), expected one of {sorted(attack.expect)}"
    if ex.error is None:
        if attack.answer is not _ANY:
            assert ex.answer == attack.answer
        json.dumps(ex.answer, allow_nan=False)  # the answer is plain JSON
    else:
        assert ex.answer is None
        assert len(ex.error.message) <= 2000
    assert ex.wall_seconds <= limits.timeout + SLACK, f"{attack.id} took {ex.wall_seconds:.1f} s"
    assert 0 <= ex.tool_seconds <= ex.wall_seconds + 1e-3
    assert len(ex.stdout) <= 20_000
    _secrets_absent(ex)
    _trace_consistent(ex, code)
    if attack.check is not None:
        attack.check(ex)


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.id for a in ATTACKS])
def test_attack_is_contained(attack: Attack, outcomes: dict[str, Outcome], playground: Playground) -> None:
    outcome = outcomes[attack.id]
    assert outcome.raised is None
    assert outcome.execution is not None
    assert_contained(outcome.execution, attack, playground.program(attack), LIMITS[attack.group])
    assert os.listdir(playground.watched) == []


def test_no_file_appeared_and_host_serves(outcomes: dict[str, Outcome], playground: Playground) -> None:
    assert os.listdir(playground.watched) == []
    with open(playground.secret_file) as f:
        assert f.read() == SECRET_FILE_TEXT  # not modified either
    after = vpd.run_programs(
        [NORMAL] * 4, playground.scene.image, toolkit=playground.toolkit, sandbox=playground.sandbox
    )
    assert [e.answer for e in after] == [1, 1, 1, 1]
    assert all(len(e.trace.tool_calls) == 1 for e in after)


def test_sandbox_is_isolated(outcomes: dict[str, Outcome], playground: Playground) -> None:
    isolation = playground.sandbox.isolation
    assert set(isolation) >= {"network", "chroot", "unprivileged"}
    if os.geteuid() == 0:
        # as root every layer is available: an empty root, nobody, no network
        assert isolation["chroot"] and isolation["unprivileged"]
    assert isolation["unprivileged"]


def test_burn_batch_ends_on_time(outcomes: dict[str, Outcome]) -> None:
    burners = [a for a in ATTACKS if a.group == "burn"]
    batch_seconds = outcomes[burners[0].id].seconds
    # all the CPU burners of a batch run concurrently: the batch costs about one timeout, not one each
    assert batch_seconds <= LIMITS["burn"].timeout * math.ceil(len(burners) / 4) + SLACK


# -- regressions: holes found while writing this suite (all defended now) ------------------------
def _run(playground: Playground, body: str, toolkit: vpd.Toolkit | None = None, **limits: Any) -> vpd.Execution:
    code = "def execute_command(image):\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n"
    return vpd.run_program(
        code,
        playground.scene.image,
        toolkit=toolkit or playground.toolkit,
        sandbox=playground.sandbox,
        limits=vpd.SandboxLimits(**{"timeout": 10, "cpu_seconds": 5, "memory_mb": 64, **limits}),
    )


# Fill the worker's address space so that a tool call's request still goes out but the
# 96 KiB buffer for its reply cannot be allocated: the reply stays queued, the program
# catches the MemoryError, and every later call reads the reply of the call before it.
_DESYNC = """
p = ImagePatch(image)
hog = []
size = 1 << 24
while size >= 512:
    try:
        hog.append(' ' * size)
    except Exception:
        size = size // 2
failed = 0
k = 0
while k < 12:
    k = k + 1
    try:
        p.exists('cup')
        break
    except Exception:
        failed = failed + 1
        hog.pop()
hog = []
"""


def test_hole_reply_desync_makes_trace_lie(playground: Playground) -> None:
    ex = _run(
        playground,
        _DESYNC * 3  # each round is a chance to leave a reply queued
        + "seen = [p.exists('dog'), p.exists('tree'), p.exists('car')]\n"
        + "t = 0\nfor i in range(2000000):\n    t = t + 1\nreturn seen",
    )
    # The reply buffer is allocated up front, so no reply can stay queued: the link failure
    # ends the worker (not catchable by the program), and no answer built on a desynchronised
    # link comes back.
    assert ex.error is not None and ex.error.kind == "worker-crash", ex.error
    assert ex.answer is None
    recorded = [c for c in ex.trace.tool_calls if c.error is None]
    assert all(c.inputs.get("object_name") == "cup" for c in recorded)


def test_hole_host_raises_when_worker_leaves_during_a_call(playground: Playground) -> None:
    toolkit = playground.scene.toolkit(tools=_slow_tools())
    ex = _run(playground, _DESYNC * 3 + "return slow_echo('x')", toolkit=toolkit)
    assert ex.error is not None and ex.error.kind == "worker-crash" and ex.answer is None
    # and the host still serves
    assert _run(playground, "return len(ImagePatch(image).find('cup'))").answer == 1


def _slow_tools() -> Any:
    registry = tool_registry.copy()

    @vpd.tool(registry=registry)
    def slow_echo(text: str) -> str:
        """Return the text after a pause.

        Args:
            text: Anything.

        Returns:
            The same text.
        """
        time.sleep(0.6)
        return text

    return registry


def test_hole_template_killed_during_a_tool_call(playground: Playground) -> None:
    sandbox = vpd.Sandbox()
    registry = tool_registry.copy()

    @vpd.tool(registry=registry)
    def kill_template() -> str:
        """Kill the sandbox's template process (its workers die with it), then answer.

        Returns:
            "done".
        """
        assert sandbox._process is not None
        sandbox._process.kill()
        sandbox._process.wait()
        time.sleep(0.2)
        return "done"

    toolkit = playground.scene.toolkit(tools=registry)
    code = "def execute_command(image):\n    return kill_template()\n"
    try:
        ex = vpd.run_program(code, playground.scene.image, toolkit=toolkit, sandbox=sandbox)
        assert ex.error is not None and ex.error.kind == "worker-crash"
        again = vpd.run_program(NORMAL, playground.scene.image, toolkit=playground.toolkit, sandbox=sandbox)
        assert again.answer == 1
    finally:
        sandbox.close()


def _overflow_tools() -> Any:
    registry = tool_registry.copy()

    @vpd.tool.method(registry=registry)
    def scaled_area(patch: vpd.ImagePatch, scale: float = 1.0) -> float:
        """The patch's area times a scale.

        Args:
            scale: A factor.

        Returns:
            width * height * scale.
        """
        return patch.width * patch.height * scale

    @vpd.tool(registry=registry)
    def shout(text: str) -> str:
        """Return a lone surrogate after the text (a buggy tool).

        Args:
            text: Anything.

        Returns:
            Text that is not valid UTF-8.
        """
        return text + "\ud800"

    return registry


def test_hole_tool_result_overflow_raises_in_host(playground: Playground) -> None:
    toolkit = playground.scene.toolkit(tools=_overflow_tools())
    ex = _run(playground, "return ImagePatch(image).scaled_area(1e308)", toolkit=toolkit)
    assert ex.error is not None and ex.error.kind == "tool" and "inf, which cannot be sent" in ex.error.message
    (call,) = ex.trace.tool_calls
    assert call.operation == "scaled_area" and call.error is not None and "cannot be sent" in call.error


def test_hole_tool_result_surrogate_raises_in_host(playground: Playground) -> None:
    toolkit = playground.scene.toolkit(tools=_overflow_tools())
    ex = _run(playground, "return shout('a')", toolkit=toolkit)
    assert ex.error is not None and ex.error.kind == "tool" and "not valid Unicode" in ex.error.message
    (call,) = ex.trace.tool_calls
    assert call.operation == "shout" and call.error is not None


def test_hole_long_names_erase_trace_events(playground: Playground) -> None:
    name = "v" + "x" * 8000
    ex = _run(
        playground,
        f"lost = []\nk = 0\nwhile k < 200:\n    try:\n        k = k + 1\n        {name} = k\n"
        "    except Exception:\n        lost.append(1)\nreturn len(lost)",
        memory_mb=128,
    )
    assert ex.ok and ex.answer == 0
    # every assignment recorded (200 of the long name, 200 of k, lost and k's first)
    assert len(ex.trace.assignments) == 402 and not ex.trace.truncated
    assert {len(a.name) for a in ex.trace.assignments} == {100, 1, 4}


@pytest.mark.parametrize(
    "body", ["return ['a' * 19000] * 100", "return chr(55296)"], ids=["answer-over-wire", "answer-surrogate"]
)
def test_hole_unsendable_answer_is_worker_crash(playground: Playground, body: str) -> None:
    ex = _run(playground, body, memory_mb=128)
    assert ex.error is not None and ex.error.kind == "answer"


def test_hole_surrogate_print(playground: Playground) -> None:
    ex = _run(playground, "print(chr(55296))\nreturn 1", memory_mb=128)
    assert ex.ok and ex.answer == 1
    assert ex.stdout == "?\n" and [p.text for p in ex.trace.prints] == ["?\n"]


def test_hole_one_tool_call_outlives_the_deadline(playground: Playground) -> None:
    ex = _run(
        playground,
        "p = ImagePatch(image)\nps = [p.crop(0, 0, 100 + i % 540, 480 - i // 540) for i in range(800)]\n"
        "return best_image_match(ps, ['cup'], return_index=True)",
        toolkit=playground.scene.toolkit(cache=False),
        timeout=0.5,
        memory_mb=128,
    )
    # The patch count is checked before any tool runs (it once ran 800 detections past the deadline).
    assert ex.error is not None and ex.error.kind == "runtime" and "at most 64 patches" in ex.error.message
    assert ex.wall_seconds <= 0.5 + 1.0


def _deep(frames: int, func: Callable[[], Any]) -> Any:
    return func() if frames == 0 else _deep(frames - 1, func)


def test_hole_static_check_recursion_escapes(playground: Playground) -> None:
    low, high = 10, 1000  # the deepest chain that still compiles from here (binary search)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if compile_program(_chain(middle)).ok else (low, middle)
    code = _chain(low)
    limit = sys.getrecursionlimit()
    ex = _deep(
        limit // 2,
        lambda: vpd.run_program(code, playground.scene.image, toolkit=playground.toolkit, sandbox=playground.sandbox),
    )
    # With little stack left, the check's RecursionError is reported, not raised.
    assert ex.error is not None and ex.error.kind in ("static-check", "compile")


def _chain(n: int) -> str:
    return "def execute_command(image):\n    return image" + ".width" * n + "\n"


def test_hole_non_ascii_program_raises_in_host(playground: Playground) -> None:
    code = "def execute_command(image):\n    # " + "\U0001f600" * 30000 + "\n    return 1\n"
    ex = vpd.run_program(code, playground.scene.image, toolkit=playground.toolkit, sandbox=playground.sandbox)
    assert ex.error is not None and ex.error.kind == "compile" and "longer than 64000 bytes" in ex.error.message
