"""With no LLM configured (a bare ``pip install vpd``), the first error names both ways forward.

The embedded model is made unavailable the way a bare install lacks it: its backend's
import requirement is not installed. Provider keys are removed from the environment so
that the suggestions are deterministic; with one set, the message names the matching model
string, and vpd still does not pick a hosted model by itself.
"""

from __future__ import annotations

import pytest
from PIL import Image

import vpd
from vpd.cli import main
from vpd.errors import BackendUnavailable
from vpd.tools.backends.llama_cpp import LlamaCppChat
from vpd.tools.llm_setup import PROVIDER_MODELS, llm_setup_hint, models_for_keys
from vpd.tools.toolkit import Toolkit

HOSTED = "VPD_LLM=openai/gpt-4o-mini"
LOCAL = "pip install 'vpd[local]'"


@pytest.fixture
def no_llm(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No provider key, no VPD_LLM, and llama-cpp-python "not installed"."""
    for key, _ in PROVIDER_MODELS:
        monkeypatch.delenv(key, raising=False)
    for name in ("VPD_LLM", "VPD_LLM_MODEL", "VPD_LLM_API_BASE", "VPD_LLM_API_KEY", "VPD_TOOLKIT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(LlamaCppChat, "requires", ("llama_cpp_not_installed_here",))
    return monkeypatch


def _image() -> Image.Image:
    return Image.new("RGB", (32, 32), "white")


def test_hint_names_both_ways() -> None:
    hint = llm_setup_hint({})
    assert "export OPENAI_API_KEY=... VPD_LLM=openai/gpt-4o-mini" in hint and LOCAL in hint
    assert "is set" not in hint  # no key, no suggestion
    assert "pip install 'vpd[local-small]'" in llm_setup_hint({}, extra="local-small")


def test_hint_suggests_the_model_of_a_key_that_is_set() -> None:
    hint = llm_setup_hint({"ANTHROPIC_API_KEY": "sk-test", "GEMINI_API_KEY": "g"})
    assert "VPD_LLM=anthropic/claude-haiku-4-5 (ANTHROPIC_API_KEY is set)" in hint
    assert "VPD_LLM=gemini/gemini-2.5-flash (GEMINI_API_KEY is set)" in hint
    assert LOCAL in hint
    assert models_for_keys({"OPENAI_API_KEY": "  "}) == []  # a blank key is no key


def test_suggested_models_use_the_key_they_are_suggested_for(monkeypatch: pytest.MonkeyPatch) -> None:
    litellm = pytest.importorskip("litellm")
    for key, _ in PROVIDER_MODELS:
        monkeypatch.delenv(key, raising=False)
    for key, model in PROVIDER_MODELS:
        monkeypatch.setenv(key, "test-key")
        assert litellm.validate_environment(model)["keys_in_environment"], (key, model)
        monkeypatch.delenv(key)


def test_solve_without_an_llm_names_both_ways(no_llm: pytest.MonkeyPatch) -> None:
    with pytest.raises(BackendUnavailable) as info:
        vpd.solve(_image(), "How many cups are there?", k=1, toolkit=Toolkit.offline(), cache=False)
    message = str(info.value)
    assert "No LLM is configured" in message and "llama-cpp-python is not installed" in message
    assert HOSTED in message and LOCAL in message


def test_a_provider_key_is_suggested_but_never_used_unasked(no_llm: pytest.MonkeyPatch) -> None:
    no_llm.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    toolkit = Toolkit.offline()
    assert not toolkit.has("llm")  # auto never turns a key into a hosted model
    with pytest.raises(BackendUnavailable, match=r"VPD_LLM=openai/gpt-4o-mini \(OPENAI_API_KEY is set\)"):
        vpd.solve(_image(), "How many cups are there?", k=1, toolkit=toolkit, cache=False)


def test_cli_solve_and_tools_name_both_ways(no_llm: pytest.MonkeyPatch, tmp_path, capsys) -> None:
    image = tmp_path / "white.png"
    _image().save(image)
    assert main(["solve", str(image), "How many cups are there?", "--k", "1", "--toolkit", "offline"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vpd: error: No LLM is configured") and HOSTED in err and LOCAL in err

    assert main(["tools", "--toolkit", "offline"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("llm "))
    assert lines[row].rstrip().endswith("off")
    why = lines[row + 1].strip()
    assert why.startswith("why:") and HOSTED in why and LOCAL in why


def test_unconfigured_llm_without_an_auto_order_names_both_ways(no_llm: pytest.MonkeyPatch) -> None:
    import vpd.tools.config

    no_llm.setitem(vpd.tools.config.AUTO_ORDER, "llm", ())
    toolkit = Toolkit()
    with pytest.raises(BackendUnavailable, match="not configured") as info:
        toolkit.backend("llm")
    assert HOSTED in str(info.value) and LOCAL in str(info.value)
