"""The embedded local model answers the demo question end to end (real weights, no network).

Slow (tens of seconds on 2 CPUs): it loads Qwen2.5-Coder-1.5B with llama.cpp, writes a
program for a real photo, runs it over the offline toolkit (NanoDet) and checks the answer.
In CI (``CI`` set) a missing model or llama.cpp is a failure, not a skip: CI installs them.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
from pathlib import Path

import pytest

import vpd
from vpd.cli import main
from vpd.programs.completions import CompletionCache
from vpd.tools.gguf import gguf_available

pytestmark = pytest.mark.slow

IMAGE = Path(__file__).resolve().parents[1] / "examples" / "images" / "coffee.jpg"


def _require_local_model() -> None:
    reasons = []
    if importlib.util.find_spec("llama_cpp") is None:
        reasons.append("llama-cpp-python is not installed (pip install 'vpd[local]')")
    available = gguf_available()
    if not available:
        reasons.append(available.reason)
    if reasons:
        if os.environ.get("CI"):
            pytest.fail("CI installs the local model, but: " + "; ".join(reasons))
        pytest.skip("; ".join(reasons))


def test_embedded_model_answers_the_demo_question(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _require_local_model()
    toolkit = vpd.Toolkit.offline()
    solution = vpd.solve(
        IMAGE,
        "How many cups are there?",
        k=3,  # sample 0 greedy, two sampled: the voting path on real replies
        toolkit=toolkit,
        cache=CompletionCache(tmp_path),
    )
    assert solution.answer == "1", solution.error or solution.program
    assert solution.votes["1"] >= 2
    assert solution.source == "program"
    assert solution.trace is not None
    finds = [call for call in solution.trace.tool_calls if call.operation == "find"]
    assert finds and finds[0].backend == "nanodet"
    assert solution.timings.load >= 0 and solution.timings.completion_tokens > 0
    assert "llama_cpp" in solution.model

    # The CLI on the same question: the reply now comes from the completion cache.
    out = io.StringIO()
    monkeypatch.setenv("VPD_CACHE_DIR", str(tmp_path))
    code = main(["solve", str(IMAGE), "How many cups are there?", "--k", "3", "--toolkit", "offline", "--quiet"], out)
    assert code == 0
    assert "Answer: 1" in out.getvalue()
    assert re.search(r"[3-9] from the cache", out.getvalue())
