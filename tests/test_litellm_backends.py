"""The litellm backends and the fake OpenAI-compatible server, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest
from PIL import Image

from vpd.errors import BackendError, BackendUnavailable, InvalidArgumentError
from vpd.testing.openai_server import Disconnect, Fail, FakeOpenAIServer, Malformed, Reply, ScriptEntry
from vpd.tools.backends._litellm import short_answer
from vpd.tools.backends.litellm_llm import LiteLLMChat
from vpd.tools.backends.litellm_vqa import LiteLLMVQA, image_data_url
from vpd.tools.protocols import LanguageModel, TextGenerator, VisualQA
from vpd.tools.types import ChatMessage

pytest.importorskip("litellm")

HELLO: list[ChatMessage] = [{"role": "user", "content": "Say hello"}]


def _post(url: str, body: object, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _chat(server: FakeOpenAIServer, **options: Any) -> LiteLLMChat:
    return LiteLLMChat(server.model_string, api_base=server.base_url, api_key="test-key", **options)


# -- the fake server, seen by a raw HTTP client -----------------------------------------------
def test_server_answers_chat_completions_in_the_openai_format() -> None:
    with FakeOpenAIServer(replies=["first", Reply("second", finish_reason="length")]) as server:
        status, raw = _post(f"{server.base_url}/chat/completions", {"model": "m", "messages": HELLO})
        assert status == 200
        body = json.loads(raw)
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"] == {"role": "assistant", "content": "first"}
        assert body["choices"][0]["finish_reason"] == "stop"
        _, raw = _post(f"{server.base_url}/chat/completions", {"model": "m", "messages": HELLO})
        assert json.loads(raw)["choices"][0]["finish_reason"] == "length"
        with urllib.request.urlopen(f"{server.base_url}/models", timeout=10) as response:
            assert json.loads(response.read())["data"][0]["id"] == "fake-model"
        assert [r.method for r in server.requests] == ["POST", "POST", "GET"]
        assert server.chat_requests[0].text == "Say hello"
        assert server.remaining == 0


def test_server_injects_failures_visible_to_a_raw_client() -> None:
    script: list[Fail | Malformed] = [Fail(status=429, message="slow down"), Fail(status=500), Malformed(b"<html>oops")]
    with FakeOpenAIServer(replies=script) as server:
        url = f"{server.base_url}/chat/completions"
        status, raw = _post(url, {"messages": HELLO})
        assert status == 429
        assert json.loads(raw)["error"]["message"] == "slow down"
        assert _post(url, {"messages": HELLO})[0] == 500
        assert _post(url, {"messages": HELLO}) == (200, b"<html>oops")
        # The script is exhausted: the server says so instead of inventing a reply.
        status, raw = _post(url, {"messages": HELLO})
        assert status == 500
        assert "no scripted reply left" in json.loads(raw)["error"]["message"]


def test_server_checks_the_api_key_and_rejects_streaming() -> None:
    with FakeOpenAIServer(replies=["ok"], api_key="secret") as server:
        url = f"{server.base_url}/chat/completions"
        assert _post(url, {"messages": HELLO})[0] == 401
        assert _post(url, {"messages": HELLO, "stream": True}, {"Authorization": "Bearer secret"})[0] == 400
        assert _post(url, {"messages": HELLO}, {"Authorization": "Bearer secret"})[0] == 200


def test_server_callable_script_sees_the_request() -> None:
    with FakeOpenAIServer(replies=lambda body: body["messages"][-1]["content"].upper()) as server:
        _, raw = _post(f"{server.base_url}/chat/completions", {"messages": [{"role": "user", "content": "echo"}]})
        assert json.loads(raw)["choices"][0]["message"]["content"] == "ECHO"


def test_server_delay_and_stop_on_exit() -> None:
    with FakeOpenAIServer(replies=[Reply("late", delay=0.3)]) as server:
        url = f"{server.base_url}/chat/completions"
        start = time.monotonic()
        assert _post(url, {"messages": HELLO})[0] == 200
        assert time.monotonic() - start >= 0.3
    assert not server.running
    with pytest.raises(OSError):
        _post(url, {"messages": HELLO})


def test_server_stops_by_itself_when_idle() -> None:
    server = FakeOpenAIServer(replies=["x"], idle_timeout=0.2).start()
    url = f"{server.base_url}/models"
    deadline = time.monotonic() + 5
    while server.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not server.running
    with pytest.raises(OSError):  # refused: nothing listens any more
        urllib.request.urlopen(url, timeout=2)
    server.stop()  # idempotent


def test_server_disconnect_drops_the_connection() -> None:
    with FakeOpenAIServer(replies=[Disconnect(), "after"]) as server:
        url = f"{server.base_url}/chat/completions"
        with pytest.raises((OSError, http.client.HTTPException)):
            _post(url, {"messages": HELLO})
        assert _post(url, {"messages": HELLO})[0] == 200


def test_server_rejects_unknown_script_entries() -> None:
    with pytest.raises(TypeError):
        FakeOpenAIServer(replies=[42])  # type: ignore[list-item]


# -- LiteLLMChat ------------------------------------------------------------------------------
def test_chat_returns_replies_and_sends_the_settings() -> None:
    with FakeOpenAIServer(replies=["Hello there!"]) as server:
        llm = _chat(server)
        assert isinstance(llm, LanguageModel)
        assert llm.chat([HELLO], max_tokens=17, temperature=0.5) == ["Hello there!"]
        (request,) = server.chat_requests
        assert request.body["messages"] == HELLO
        assert request.body["max_tokens"] == 17
        assert request.body["temperature"] == 0.5
        assert request.headers["authorization"] == "Bearer test-key"
    # The loader sets this before importing litellm, so it never downloads its cost map.
    assert os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP") == "True"


def test_chat_batch_is_concurrent_and_keeps_order() -> None:
    active = 0
    peak = 0
    lock = threading.Lock()

    def reply(body: dict) -> str:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.2)
        with lock:
            active -= 1
        return "reply to " + body["messages"][-1]["content"]

    conversations: list[list[ChatMessage]] = [[{"role": "user", "content": f"q{i}"}] for i in range(6)]
    with FakeOpenAIServer(replies=reply) as server:
        replies = _chat(server, max_workers=3).chat(conversations)
    assert replies == [f"reply to q{i}" for i in range(6)]
    assert peak >= 2


def test_chat_retries_a_rate_limit_then_succeeds() -> None:
    with FakeOpenAIServer(replies=[Fail(status=429), Fail(status=503), "finally"]) as server:
        assert _chat(server, num_retries=2, retry_delay=0.0).chat([HELLO]) == ["finally"]
        assert len(server.chat_requests) == 3


def test_chat_rate_limit_without_retries_is_a_tool_error() -> None:
    with FakeOpenAIServer(replies=[Fail(status=429, message="quota exceeded"), "unused"]) as server:
        with pytest.raises(BackendError, match="rate limited") as info:
            _chat(server, num_retries=0).chat([HELLO])
        assert "quota exceeded" in str(info.value)
        assert info.value.capability == "llm" and info.value.backend == "litellm"
        assert len(server.chat_requests) == 1  # neither we nor the OpenAI client retried


def test_chat_bad_key_says_to_check_the_api_key() -> None:
    with FakeOpenAIServer(replies=["unused"], api_key="right") as server:
        llm = LiteLLMChat(server.model_string, api_base=server.base_url, api_key="wrong")
        with pytest.raises(BackendError, match="API key") as info:
            llm.chat([HELLO])
        assert "401" in str(info.value)
        assert not isinstance(info.value, BackendUnavailable)


def test_chat_connection_refused_mentions_api_base() -> None:
    api_base = f"http://127.0.0.1:{_free_port()}/v1"
    llm = LiteLLMChat("openai/nothing-here", api_base=api_base, api_key="k", num_retries=0)
    with pytest.raises(BackendError, match="api_base") as info:
        llm.chat([HELLO])
    assert api_base in str(info.value)


def test_chat_timeout_is_reported() -> None:
    with (
        FakeOpenAIServer(replies=[Reply("too late", delay=3.0)]) as server,
        pytest.raises(BackendError, match="did not answer within"),
    ):
        _chat(server, timeout=0.5, num_retries=0).chat([HELLO])


def test_chat_malformed_response_is_a_tool_error() -> None:
    with FakeOpenAIServer(replies=[Malformed()]) as server, pytest.raises(BackendError):
        _chat(server, num_retries=0).chat([HELLO])


def test_chat_without_a_model_tells_to_set_vpd_llm() -> None:
    llm = LiteLLMChat()
    with pytest.raises(BackendUnavailable, match="VPD_LLM"):
        llm.chat([HELLO])
    assert not LiteLLMChat.check_available(None)
    assert "VPD_LLM" in LiteLLMChat.check_available(None).reason
    assert LiteLLMChat.check_available("openai/gpt-4o-mini")


def test_chat_validates_input_and_skips_loading_for_empty_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    llm = LiteLLMChat("openai/x")
    monkeypatch.setattr(llm, "load", lambda: pytest.fail("an empty batch must not load litellm"))
    assert llm.chat([]) == []
    with pytest.raises(InvalidArgumentError):
        llm.chat([[]])
    with pytest.raises(InvalidArgumentError):
        llm.chat([[{"content": "no role"}]])  # type: ignore[typeddict-item]


def test_secrets_stay_out_of_info_and_cache_keys() -> None:
    llm = LiteLLMChat("openai/x", api_key="sk-secret", extra_headers={"X-Token": "t0ken"}, timeout=5)
    shown = llm.info()
    assert shown.options["api_key"] == "***" and shown.options["extra_headers"] == {"X-Token": "***"}
    identity = llm.cache_identity()
    assert "sk-secret" not in identity and "t0ken" not in identity and "openai/x" in identity
    assert identity == LiteLLMChat("openai/x", api_key="other", timeout=99).cache_identity()
    assert identity != LiteLLMChat("openai/y").cache_identity()


def test_missing_litellm_names_the_llm_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LiteLLMChat, "requires", ("litellm_is_not_installed_here",))
    with pytest.raises(BackendUnavailable, match=r"vpd\[llm\]"):
        LiteLLMChat("openai/x").chat([HELLO])


# -- LiteLLMChat.generate and retries -------------------------------------------------------
def test_generate_returns_text_token_counts_and_timing() -> None:
    with FakeOpenAIServer(replies=[Reply("def execute_command(image): return 3", finish_reason="length")]) as server:
        llm = _chat(server)
        assert isinstance(llm, TextGenerator)
        completion = llm.generate(HELLO, temperature=0.7, max_tokens=33, seed=11, stop=["\n\n"])
        (request,) = server.chat_requests
    assert completion.text == "def execute_command(image): return 3"
    assert completion.model == server.model_string
    # The fake server counts words: "Say hello" is 2, the reply 4.
    assert (completion.prompt_tokens, completion.completion_tokens) == (2, 4)
    assert completion.finish_reason == "length"
    assert completion.seconds > 0 and completion.first_token_seconds is None and not completion.cached
    assert request.body["seed"] == 11 and request.body["stop"] == ["\n\n"]
    assert request.body["max_tokens"] == 33 and request.body["temperature"] == 0.7


def test_generate_without_seed_or_stop_sends_neither() -> None:
    with FakeOpenAIServer(replies=["ok"]) as server:
        _chat(server).generate(HELLO)
        (request,) = server.chat_requests
    assert "seed" not in request.body and "stop" not in request.body


def test_generate_retries_rate_limits_and_server_errors_then_succeeds() -> None:
    script: list[ScriptEntry] = [
        Fail(status=429, message="slow down"),
        Fail(status=500),
        Fail(status=502),
        "third time lucky",
    ]
    with FakeOpenAIServer(replies=script) as server:
        completion = _chat(server, num_retries=3, retry_delay=0.0).generate(HELLO)
        assert completion.text == "third time lucky"
        assert len(server.chat_requests) == 4


def test_retries_back_off_exponentially() -> None:
    with FakeOpenAIServer(replies=[Fail(status=503), Fail(status=503), "ok"]) as server:
        llm = _chat(server, num_retries=2, retry_delay=0.2)
        llm.generate(HELLO)  # litellm is imported by this first call, outside the timing below
    with FakeOpenAIServer(replies=[Fail(status=503), Fail(status=503), "ok"]) as server:
        start = time.monotonic()
        _chat(server, num_retries=2, retry_delay=0.2).generate(HELLO)
        elapsed = time.monotonic() - start
        times = [r.time for r in server.chat_requests]
    assert elapsed >= 0.2 + 0.4  # 0.2 s, then 0.4 s (plus up to 0.2 s of jitter each)
    assert times[2] - times[1] >= 0.4 - 0.05


def test_retry_after_from_the_server_is_honoured() -> None:
    with FakeOpenAIServer(replies=[Fail(status=429, headers={"Retry-After": "1"}), "ok"]) as server:
        llm = _chat(server, num_retries=1, retry_delay=0.0)
        assert llm.generate(HELLO).text == "ok"
        first, second = server.chat_requests
    assert second.time - first.time >= 0.95


def test_a_dropped_connection_is_retried() -> None:
    with FakeOpenAIServer(replies=[Disconnect(), "back again"]) as server:
        assert _chat(server, num_retries=1, retry_delay=0.0).generate(HELLO).text == "back again"
        assert len(server.chat_requests) == 2


def test_retries_give_up_with_the_last_error() -> None:
    with FakeOpenAIServer(replies=[Fail(status=503, message="overloaded")] * 3) as server:
        with pytest.raises(BackendError, match="HTTP 503.*overloaded"):
            _chat(server, num_retries=2, retry_delay=0.0).generate(HELLO)
        assert len(server.chat_requests) == 3


@pytest.mark.parametrize(
    ("status", "message"),
    [(400, "rejected the request"), (401, "API key"), (403, "refused access"), (404, "Check the model name")],
)
def test_client_errors_are_never_retried(status: int, message: str) -> None:
    with FakeOpenAIServer(replies=[Fail(status=status, message="nope"), "unused"]) as server:
        with pytest.raises(BackendError, match=message) as info:
            _chat(server, num_retries=3, retry_delay=0.0).generate(HELLO)
        assert f"HTTP {status}" in str(info.value) and "nope" in str(info.value)
        assert len(server.chat_requests) == 1
        assert server.remaining == 1


def test_a_slow_reply_times_out_on_every_attempt() -> None:
    script = [Reply("late", delay=3.0), Reply("late", delay=3.0)]
    with FakeOpenAIServer(replies=script) as server:
        with pytest.raises(BackendError, match=r"did not answer within 0.4 s.*Raise the timeout option"):
            _chat(server, timeout=0.4, num_retries=1, retry_delay=0.0).generate(HELLO)
        assert len(server.chat_requests) == 2


def test_a_timeout_then_a_prompt_reply_succeeds() -> None:
    with FakeOpenAIServer(replies=[Reply("late", delay=3.0), "in time"]) as server:
        assert _chat(server, timeout=0.4, num_retries=1, retry_delay=0.0).generate(HELLO).text == "in time"


@pytest.mark.parametrize("body", [b'{"not": "a chat completion"', b"<html>oops</html>", b"[1, 2]"])
def test_a_malformed_body_is_a_clear_error_and_not_retried(body: bytes) -> None:
    with FakeOpenAIServer(replies=[Malformed(body), "unused"]) as server:
        with pytest.raises(BackendError, match="not a chat completion.*api_base") as info:
            _chat(server, num_retries=2, retry_delay=0.0).generate(HELLO)
        assert info.value.capability == "llm" and info.value.backend == "litellm"
        assert len(server.chat_requests) == 1


def test_a_response_without_choices_is_a_tool_error() -> None:
    with (
        FakeOpenAIServer(replies=[Malformed(b'{"choices": []}')]) as server,
        pytest.raises(BackendError, match="without a message"),
    ):
        _chat(server, num_retries=0).generate(HELLO)


def test_generate_validates_before_any_request() -> None:
    llm = LiteLLMChat("openai/x", api_base="http://127.0.0.1:9/v1")
    with pytest.raises(InvalidArgumentError, match="max_tokens"):
        llm.generate(HELLO, max_tokens=0)
    with pytest.raises(InvalidArgumentError, match="seed"):
        llm.generate(HELLO, seed="1")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        llm.generate([])
    with pytest.raises(BackendUnavailable, match="VPD_LLM"):
        LiteLLMChat().generate(HELLO)


def test_missing_tenacity_names_the_llm_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LiteLLMChat, "requires", ("litellm", "tenacity_is_not_installed_here"))
    with pytest.raises(BackendUnavailable, match=r"tenacity_is_not_installed_here.*vpd\[llm\]"):
        LiteLLMChat("openai/x").generate(HELLO)


# -- LiteLLMVQA -------------------------------------------------------------------------------
def _decode(data_url: str) -> Image.Image:
    header, _, payload = data_url.partition(",")
    assert header.startswith("data:image/") and header.endswith(";base64")
    return Image.open(io.BytesIO(base64.b64decode(payload)))


def test_vqa_sends_the_image_as_a_downscaled_data_url() -> None:
    image = Image.new("RGB", (2000, 1000), (200, 30, 30))
    with FakeOpenAIServer(replies=["Red."]) as server:
        vqa = LiteLLMVQA(server.model_string, api_base=server.base_url, api_key="k", max_side=512)
        assert isinstance(vqa, VisualQA)
        assert vqa.answer([image], ["What colour is the image?"]) == ["red"]
        (request,) = server.chat_requests
    (url,) = request.image_urls
    assert url.startswith("data:image/jpeg;base64,")
    sent = _decode(url)
    assert sent.size == (512, 256)
    r, g, b = np.asarray(sent.convert("RGB"))[128, 256].tolist()
    assert r > 150 and g < 80 and b < 80  # RGB order preserved
    assert "What colour is the image?" in request.text


def test_vqa_batch_answers_in_order_and_png_option() -> None:
    images = [Image.new("RGB", (64, 32), c) for c in ("red", "blue", "green")]
    questions = ["first?", "second?", "third?"]
    with FakeOpenAIServer(replies=lambda body: "Answer: " + body["messages"][-1]["content"][0]["text"][:6]) as server:
        vqa = LiteLLMVQA(server.model_string, api_base=server.base_url, api_key="k", image_format="png")
        assert vqa.answer(images, questions) == ["first?", "second", "third?"]
        assert all(r.image_urls[0].startswith("data:image/png;base64,") for r in server.chat_requests)
        assert {_decode(r.image_urls[0]).size for r in server.chat_requests} == {(64, 32)}


def test_vqa_errors_and_validation() -> None:
    image = Image.new("RGB", (8, 8))
    vqa = LiteLLMVQA("openai/x")
    assert vqa.answer([], []) == []
    with pytest.raises(InvalidArgumentError):
        vqa.answer([image], [])
    with pytest.raises(InvalidArgumentError):
        vqa.answer([image], ["   "])
    with pytest.raises(BackendUnavailable, match="VPD_VQA_MODEL"):
        LiteLLMVQA().answer([image], ["what?"])
    assert "VPD_VQA_MODEL" in LiteLLMVQA.check_available().reason
    with FakeOpenAIServer(replies=["unused"], api_key="right") as server, pytest.raises(BackendError, match="API key"):
        LiteLLMVQA(server.model_string, api_base=server.base_url, api_key="wrong").answer([image], ["what?"])


def test_image_data_url_never_upscales() -> None:
    assert _decode(image_data_url(Image.new("RGB", (10, 20)), max_side=1024)).size == (10, 20)
    with pytest.raises(InvalidArgumentError):
        image_data_url(Image.new("RGB", (10, 20)), image_format="gif")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("Yes.", "yes"), ('"Two"', "two"), ("Answer: a red car.\nBecause...", "a red car"), ("", ""), ("3.5", "3.5")],
)
def test_short_answer(raw: str, expected: str) -> None:
    assert short_answer(raw) == expected


def test_other_providers_keep_their_own_key_at_a_custom_api_base(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROQ_API_KEY", "gsk-test-key")
    with FakeOpenAIServer(["hi"]) as server:
        chat = LiteLLMChat("groq/llama-3", api_base=server.base_url, num_retries=0)
        # litellm's Groq client may not parse the fake server's minimal reply; the request is what matters.
        with contextlib.suppress(BackendError):
            chat.chat([HELLO])
        headers = server.requests[0].headers
    assert headers.get("authorization") == "Bearer gsk-test-key"


def test_openai_style_model_at_a_local_server_gets_a_placeholder_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeOpenAIServer(["hi"]) as server:
        assert LiteLLMChat(server.model_string, api_base=server.base_url).chat([HELLO]) == ["hi"]
        assert server.requests[0].headers.get("authorization") == "Bearer no-key-needed"
