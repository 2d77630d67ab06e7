"""A scripted, local OpenAI-compatible chat server for tests.

:class:`FakeOpenAIServer` is a real HTTP server (standard library only) on ``127.0.0.1``
that answers ``POST /v1/chat/completions`` (non-streaming) and ``GET /v1/models`` like the
OpenAI API. Its replies come from a script, so code that talks to an LLM over HTTP (litellm,
the ``openai`` client, plain ``httpx``) can be tested end to end, errors included, without a
model or the network::

    from vpd.testing.openai_server import FakeOpenAIServer, Fail

    with FakeOpenAIServer(replies=[Fail(status=429), "a red car"]) as server:
        llm = LiteLLMChat(server.model_string, api_base=server.base_url, api_key="test")
        ...
        assert server.requests[-1].image_urls  # what the client actually sent

Script entries, consumed one per chat request in arrival order:

* a ``str``: the assistant's reply;
* :class:`Reply`: a reply with a delay or another ``finish_reason``;
* :class:`Fail`: an HTTP error with an OpenAI-style error body (429, 500, 401...);
* :class:`Malformed`: a response whose body is not a chat completion;
* :class:`Disconnect`: the connection closed without any response (a crashed server).

Instead of a list, ``replies`` may be a callable that receives the request's JSON body and
returns any of the above (handy for concurrent requests, whose order is not fixed). When a
list runs out, the server answers HTTP 500 saying so, which makes a test that sends more
requests than it scripted fail loudly.

The server runs in a daemon thread, stops when the ``with`` block ends (or on :meth:`stop`),
and stops by itself after ``idle_timeout`` seconds without a request, so a forgotten server
never outlives its test session for long.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Disconnect", "Fail", "FakeOpenAIServer", "Malformed", "RecordedRequest", "Reply", "ScriptEntry"]


@dataclass(frozen=True)
class Reply:
    """A successful chat completion.

    Attributes:
        text: The assistant message's content.
        delay: Seconds to wait before answering (to test timeouts).
        finish_reason: The choice's ``finish_reason`` (``"stop"``, ``"length"``...).
    """

    text: str
    delay: float = 0.0
    finish_reason: str = "stop"


@dataclass(frozen=True)
class Fail:
    """An HTTP error response with an OpenAI-style ``{"error": {...}}`` body.

    Attributes:
        status: The HTTP status (429 rate limit, 500 server error, 401 bad key...).
        message: The error message in the body.
        delay: Seconds to wait before answering.
        headers: Extra response headers (e.g. ``{"Retry-After": "0"}``).
    """

    status: int = 500
    message: str = "injected failure"
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Malformed:
    """A response whose body is not a valid chat completion.

    Attributes:
        body: The raw body sent back.
        status: The HTTP status (200: a "successful" response the client cannot parse).
        delay: Seconds to wait before answering.
    """

    body: bytes = b'{"not": "a chat completion"'
    status: int = 200
    delay: float = 0.0


@dataclass(frozen=True)
class Disconnect:
    """No response at all: the server closes the connection (clients see a connection error).

    Attributes:
        delay: Seconds to wait before hanging up.
    """

    delay: float = 0.0


ScriptEntry = str | Reply | Fail | Malformed | Disconnect
"""What the script gives for one request."""


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received.

    Attributes:
        method: ``"GET"`` or ``"POST"``.
        path: The request path, e.g. ``"/v1/chat/completions"``.
        headers: The request headers (names lower-cased).
        body: The parsed JSON body (``None`` when there was none or it was not JSON).
        time: When it arrived (``time.time()``).
    """

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    time: float

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat messages of the body (``[]`` when absent)."""
        if isinstance(self.body, dict) and isinstance(self.body.get("messages"), list):
            return [m for m in self.body["messages"] if isinstance(m, dict)]
        return []

    @property
    def text(self) -> str:
        """All text content of the messages, joined by newlines."""
        parts: list[str] = []
        for message in self.messages:
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
        return "\n".join(parts)

    @property
    def image_urls(self) -> list[str]:
        """The URLs of every ``image_url`` content part (data URLs included)."""
        urls: list[str] = []
        for message in self.messages:
            content = message.get("content")
            if not isinstance(content, list):
                continue
            for part in content:
                if isinstance(part, dict) and part.get("type") == "image_url":
                    image_url = part.get("image_url")
                    url = image_url.get("url") if isinstance(image_url, dict) else image_url
                    if isinstance(url, str):
                        urls.append(url)
        return urls


Responder = Callable[[Any], ScriptEntry]


class FakeOpenAIServer:
    """A scripted OpenAI-compatible chat-completions server on ``127.0.0.1``.

    Args:
        replies: The script: a list of entries (``str``, :class:`Reply`, :class:`Fail`,
            :class:`Malformed`, :class:`Disconnect`) used one per chat request, or a callable
            ``(request_json) -> entry``.
        model: The model name listed by ``GET /v1/models``.
        api_key: When set, requests without ``Authorization: Bearer <api_key>`` get HTTP 401.
        port: The port to listen on; 0 picks a free one.
        idle_timeout: Seconds without a request after which the server stops by itself.
    """

    def __init__(
        self,
        replies: Sequence[ScriptEntry] | Responder = (),
        *,
        model: str = "fake-model",
        api_key: str | None = None,
        port: int = 0,
        idle_timeout: float = 300.0,
    ) -> None:
        if callable(replies):
            self._responder: Responder | None = replies
            self._script: list[ScriptEntry] = []
        else:
            self._responder = None
            self._script = list(replies)
            for entry in self._script:
                if not isinstance(entry, (str, Reply, Fail, Malformed, Disconnect)):
                    raise TypeError(
                        f"Script entries must be str, Reply, Fail, Malformed or Disconnect, not {type(entry).__name__}."
                    )
        self.model = model
        self.api_key = api_key
        self.idle_timeout = float(idle_timeout)
        self._requested_port = port
        self._lock = threading.Lock()
        self._lifecycle = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._ids = itertools.count(1)
        self._stopped = threading.Event()
        self._last_activity = time.monotonic()
        self._httpd: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        """Start serving in a daemon thread (idempotent); returns ``self``."""
        with self._lifecycle:
            if self._httpd is not None:
                return self
            handler = type("_BoundHandler", (_Handler,), {"fake": self})
            httpd = _QuietServer(("127.0.0.1", self._requested_port), handler)
            self._stopped.clear()
            self._last_activity = time.monotonic()
            serve = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            watchdog = threading.Thread(target=self._watch_idle, daemon=True)
            self._threads = [serve, watchdog]
            self._httpd = httpd
            serve.start()
            watchdog.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        with self._lifecycle:
            httpd = self._httpd
            if httpd is None:
                return
            self._stopped.set()  # also wakes handlers waiting in a delay
            httpd.shutdown()
            httpd.server_close()
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join(timeout=5)
            self._httpd = None  # only now: `running` turns False once the port is closed

    @property
    def running(self) -> bool:
        """Whether the server is accepting requests."""
        return self._httpd is not None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _watch_idle(self) -> None:
        while not self._stopped.wait(timeout=min(1.0, max(0.05, self.idle_timeout / 10))):
            if time.monotonic() - self._last_activity > self.idle_timeout:
                # shutdown() must not run on the serving thread; this is the watchdog thread.
                threading.Thread(target=self.stop, daemon=True).start()
                return

    # -- addresses ---------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._httpd is None:
            raise RuntimeError("FakeOpenAIServer is not running; use it as a context manager or call start().")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, ``http://127.0.0.1:<port>/v1`` (litellm's ``api_base``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def model_string(self) -> str:
        """The litellm model string for this server, ``"openai/<model>"``."""
        return f"openai/{self.model}"

    # -- what happened -----------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """The chat-completion requests received so far."""
        return [r for r in self.requests if r.method == "POST" and r.path.rstrip("/").endswith("/chat/completions")]

    @property
    def remaining(self) -> int:
        """How many scripted entries are left (0 with a callable script)."""
        with self._lock:
            return len(self._script)

    # -- used by the handler -----------------------------------------------------------
    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)
            self._last_activity = time.monotonic()

    def _next_entry(self, body: Any) -> ScriptEntry:
        if self._responder is not None:
            return self._responder(body)
        with self._lock:
            if not self._script:
                return Fail(500, "FakeOpenAIServer: no scripted reply left for this request")
            return self._script.pop(0)

    def _completion(self, body: Any, reply: Reply) -> dict[str, Any]:
        prompt_words = sum(
            len(str(m.get("content", "")).split()) for m in body.get("messages", []) if isinstance(m, dict)
        )
        completion_words = len(reply.text.split())
        return {
            "id": f"chatcmpl-fake-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_words,
                "completion_tokens": completion_words,
                "total_tokens": prompt_words + completion_words,
            },
        }

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._stopped.wait(timeout=seconds)


class _QuietServer(ThreadingHTTPServer):
    """A threading server whose handler threads never block exit, and that ignores clients hanging up."""

    daemon_threads = True  # a handler stuck in a delay must not block interpreter exit

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that disconnect early (a timeout test does that on purpose)."""
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
            super().handle_error(request, client_address)


def _error_body(message: str, status: int) -> bytes:
    kind = {401: "invalid_request_error", 404: "invalid_request_error", 429: "rate_limit_error"}.get(
        status, "api_error"
    )
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": str(status)}}).encode()


class _Handler(BaseHTTPRequestHandler):
    """Request handler; ``fake`` is set on a per-server subclass."""

    fake: FakeOpenAIServer
    server_version = "FakeOpenAIServer/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request logging to stderr."""

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def _authorised(self) -> bool:
        if self.fake.api_key is None:
            return True
        return self.headers.get("Authorization", "") == f"Bearer {self.fake.api_key}"

    def do_GET(self) -> None:
        """``GET /v1/models`` lists the one fake model."""
        self.fake._record(
            RecordedRequest("GET", self.path, {k.lower(): v for k, v in self.headers.items()}, None, time.time())
        )
        if self.path.rstrip("/") not in ("/v1/models", "/models"):
            self._send(404, _error_body(f"Unknown path {self.path}", 404))
            return
        if not self._authorised():
            self._send(401, _error_body("Incorrect API key provided.", 401))
            return
        data = {"object": "list", "data": [{"id": self.fake.model, "object": "model", "created": 0, "owned_by": "vpd"}]}
        self._send(200, json.dumps(data).encode())

    def do_POST(self) -> None:
        """``POST /v1/chat/completions`` answers from the script."""
        body = self._read_json()
        self.fake._record(
            RecordedRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time())
        )
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._send(404, _error_body(f"Unknown path {self.path}; only /v1/chat/completions is served", 404))
            return
        if not self._authorised():
            self._send(401, _error_body("Incorrect API key provided.", 401))
            return
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self._send(400, _error_body("The body must be JSON with a 'messages' list.", 400))
            return
        if body.get("stream"):
            self._send(400, _error_body("FakeOpenAIServer does not support streaming.", 400))
            return
        try:
            entry = self.fake._next_entry(body)
        except Exception as exc:  # a failing responder is reported to the client, not swallowed
            self._send(500, _error_body(f"FakeOpenAIServer responder raised {type(exc).__name__}: {exc}", 500))
            return
        if isinstance(entry, str):
            entry = Reply(entry)
        if isinstance(entry, Reply):
            self.fake._wait(entry.delay)
            self._send(200, json.dumps(self.fake._completion(body, entry)).encode())
        elif isinstance(entry, Fail):
            self.fake._wait(entry.delay)
            self._send(entry.status, _error_body(entry.message, entry.status), entry.headers)
        elif isinstance(entry, Malformed):
            self.fake._wait(entry.delay)
            self._send(entry.status, entry.body)
        elif isinstance(entry, Disconnect):
            self.fake._wait(entry.delay)
            self.close_connection = True  # nothing written: the client sees the connection drop
        else:
            self._send(500, _error_body(f"FakeOpenAIServer: bad script entry {entry!r:.100}", 500))
