"""Running untrusted programs: the host side of the sandbox.

:class:`Sandbox` starts the zygote (:mod:`vpd.programs.zygote`) once, then runs each
program in a fresh worker forked from it. The host keeps the models and the pixels; it
serves the worker's tool calls through the :class:`~vpd.tools.Toolkit`, recording each as
it serves it, enforces a wall-clock deadline with ``SIGKILL`` (which no code in the
worker can catch), and turns every way a run can end into an :class:`Execution`, never an
exception. Many programs run at once, one host thread per running program.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import heapq
import itertools
import json
import marshal
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vpd.errors import InvalidArgumentError, ToolError, VPDError
from vpd.image import ImageData, ImageSource, load_image
from vpd.programs import wire
from vpd.programs.checker import check_program, format_errors
from vpd.programs.policy import compile_program
from vpd.programs.trace import ERROR_KINDS, Assignment, PrintOutput, ProgramError, ToolCall, Trace, TraceEvent
from vpd.tools.events import ToolEvent, record_tool_calls

if TYPE_CHECKING:
    from vpd.tools.toolkit import Toolkit

__all__ = ["Execution", "Sandbox", "SandboxLimits", "default_sandbox", "run_program", "run_programs"]

_MAX_MESSAGE_CHARS = 2000
_MAX_EVENTS = 5000
_MAX_STDOUT = 20_000
_MASK_BYTES = 64 * 1024 * 1024  # masks kept per run for depth()
# Polling instead of sleeping while waiting for the other side saves the wake-up latency of a
# blocking receive (tens of microseconds per message on virtual machines) when a reply comes
# fast; it is only done while no more programs run than there are CPUs, so it never takes a
# CPU from other work.
_HOST_SPIN_SECONDS = 100e-6
_WORKER_SPIN_SECONDS = 200e-6
_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@functools.lru_cache(maxsize=256)
def _marshalled(code: str) -> bytes:
    """The program's compiled code as bytes for the worker (same interpreter, so marshal is exact)."""
    return marshal.dumps(compile_program(code).code)


#: Larger jobs send the source and the worker compiles it (a control datagram must fit the socket buffer).
_MAX_INLINE_CODE = 160 * 1024


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one program run.

    Attributes:
        timeout: Wall-clock seconds for the whole run, tool calls included.
        cpu_seconds: CPU seconds the worker itself may use (tools run in the host).
        memory_mb: Address space the worker may add on top of the template process.
        max_tool_calls: Tool calls one program may make.
    """

    timeout: float = 60.0
    cpu_seconds: float = 10.0
    memory_mb: int = 512
    max_tool_calls: int = 1000

    def __post_init__(self) -> None:
        for name in ("timeout", "cpu_seconds"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise InvalidArgumentError(f"{name} must be a positive number of seconds, got {value!r}.")
        for name in ("memory_mb", "max_tool_calls"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}.")


@dataclass(frozen=True)
class Execution:
    """How one program run ended.

    Attributes:
        answer: The program's answer as JSON (str, int, float, bool, None, lists and dicts), or None.
        error: Why it failed (:class:`~vpd.programs.trace.ProgramError`), or None.
        trace: Everything that happened, recorded by the host.
        wall_seconds: Total time of the run.
        tool_seconds: Time spent serving tool calls.
        stdout: What the program printed (bounded, untrusted).
    """

    answer: Any
    error: ProgramError | None
    trace: Trace
    wall_seconds: float
    tool_seconds: float
    stdout: str = ""

    @property
    def ok(self) -> bool:
        """True when the program returned an answer without error."""
        return self.error is None

    def __repr__(self) -> str:
        from vpd.render.text import format_execution

        return format_execution(self)

    def _repr_html_(self) -> str:
        """Notebook view (see :func:`vpd.render.render_execution`, which also takes the image)."""
        from vpd.render.html import render_execution

        return render_execution(self)


def _bounded(text: Any, limit: int = _MAX_MESSAGE_CHARS) -> str:
    text = text if isinstance(text, str) else str(text)
    return text if len(text) <= limit else text[: limit - 15] + "... [truncated]"


def _json_safe(value: Any, depth: int = 0) -> Any:
    """Values a host tool returned, as plain JSON (numpy scalars included); ImagePatch as a box."""
    from vpd.patch import ImagePatch

    if depth > 8:
        raise ToolError("a tool returned a value nested too deeply")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ToolError("a tool returned text that is not valid Unicode (a lone surrogate)") from None
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ToolError(f"a tool returned {value!r}, which cannot be sent to a program")
        return float(value)
    if isinstance(value, ImagePatch):
        return {"$patch": list(value.xyxy)}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v, depth + 1) for k, v in value.items()}
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        return _json_safe(item(), depth + 1)
    raise ToolError(f"a tool returned a {type(value).__name__}, which cannot be sent to a program")


def _jsonable(value: Any) -> Any:
    """Plain JSON for a trace (exact round trip).

    Non-finite floats become None, lone surrogates ``?``, tuples lists, anything else its type name.
    """
    try:  # the common case, in C: already plain, finite and valid Unicode
        return json.loads(json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8"))
    except (TypeError, ValueError, UnicodeEncodeError, RecursionError):
        return _sanitised(value)


def _sanitised(value: Any, depth: int = 0) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if depth > 12:
        return "..."
    if isinstance(value, (list, tuple)):
        return [_sanitised(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {_sanitised(str(k), depth + 1): _sanitised(v, depth + 1) for k, v in value.items()}
    return _bounded(type(value).__name__, 100)


class _Run:
    """The host's side of one program run (one thread)."""

    def __init__(
        self, sandbox: Sandbox, sock: socket.socket, image: ImageData, toolkit: Toolkit, limits: SandboxLimits
    ):
        from vpd.patch import ImagePatch

        self.sandbox = sandbox
        self.sock = sock
        self.image = image
        self.toolkit = toolkit
        self.limits = limits
        self.root = ImagePatch(image, toolkit=toolkit)
        self.events: list[TraceEvent] = []
        self.dropped = 0
        self.masks: dict[tuple[int, ...], Any] = {}
        self.mask_bytes = 0
        self.tool_calls = 0
        self.tool_seconds = 0.0
        self.pid: int | None = None
        self.pidfd: int | None = None
        self.violation: str | None = None
        self.stdout: list[str] = []
        self.stdout_chars = 0
        self.kill_lock = threading.Lock()
        self.expired = threading.Event()
        self.finished = False

    # -- the conversation -----------------------------------------------------------------
    def serve(self, deadline: float) -> tuple[Any, ProgramError | None]:
        # The deadline is enforced by the sandbox's watchdog (it kills the worker and shuts
        # this socket down), so receiving needs no per-message timeout.
        self.sandbox._watch(self, deadline)
        try:
            answer, error = self._conversation(deadline)
            if self.expired.is_set():  # whatever the conversation saw, the deadline came first
                return None, self._timeout()
            return answer, error
        finally:
            self.finished = True
            self._kill()

    def _conversation(self, deadline: float) -> tuple[Any, ProgramError | None]:
        while True:
            try:
                # Poll briefly after a call: a program's next call often follows within microseconds.
                spin = _HOST_SPIN_SECONDS if self.tool_calls and self.sandbox.active_runs <= _CPUS else 0.0
                message = wire.receive(self.sock, spin=spin)
            except (wire.WireError, OSError) as exc:
                self._kill()
                return None, ProgramError("worker-crash", f"The worker sent a malformed message ({exc}).")
            if message is None:
                return None, self._died()
            kind = message.get("type")
            if kind == "call" and time.monotonic() >= deadline:
                return None, self._timeout()
            if kind == "hello" and self.pid is None:
                self._hello(message)
            elif kind == "events":
                if not self._events(message.get("events")):
                    self._kill()
                    return None, ProgramError("worker-crash", "The worker sent malformed trace events.")
            elif kind == "call":
                if "events" in message and not self._events(message["events"]):
                    self._kill()
                    return None, ProgramError("worker-crash", "The worker sent malformed trace events.")
                if not self._call(message):
                    return None, self._died()
            elif kind == "done":
                return self._done(message)
            else:
                self._kill()
                return None, ProgramError(
                    "worker-crash", f"The worker sent an unexpected message {_bounded(kind, 50)!r}."
                )

    def expire(self) -> None:
        """Called by the watchdog at the deadline: stop the worker and wake the serving thread."""
        self.expired.set()
        self._kill()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def _hello(self, message: dict[str, Any]) -> None:
        pid = message.get("pid")
        if isinstance(pid, int) and pid > 1:
            self.pid = pid
            with self.kill_lock, contextlib.suppress(OSError, AttributeError):
                self.pidfd = os.pidfd_open(pid)
            if self.expired.is_set():  # the deadline passed while the worker was starting
                self._kill()

    def _kill(self) -> None:
        with self.kill_lock:  # the watchdog and the serving thread may both get here
            if self.pidfd is not None:
                with contextlib.suppress(OSError):
                    signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
                with contextlib.suppress(OSError):
                    os.close(self.pidfd)
                self.pidfd = None

    def _timeout(self) -> ProgramError:
        self._kill()
        return ProgramError("timeout", f"The program did not finish within {self.limits.timeout:g} s and was stopped.")

    def _died(self) -> ProgramError:
        code = self.sandbox._exit_code(self.pid, wait=1.0) if self.pid else None
        if code == -signal.SIGXCPU:
            return ProgramError("timeout", f"The program used more than {self.limits.cpu_seconds:g} s of CPU time.")
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return ProgramError("worker-crash", f"The worker was killed by {name} before finishing.")
        return ProgramError("worker-crash", f"The worker exited (status {code}) before finishing.")

    def _events(self, raw: Any) -> bool:
        if not isinstance(raw, list):
            return False
        for item in raw:
            if not isinstance(item, dict):
                return False
            line = item.get("line")
            if line is not None and (not isinstance(line, int) or isinstance(line, bool)):
                return False
            if len(self.events) >= _MAX_EVENTS:
                self.dropped += 1
                continue
            if item.get("kind") == "assign":
                name, value = item.get("name"), item.get("value")
                if not isinstance(name, str) or not isinstance(value, str) or not isinstance(line, int):
                    return False
                self.events.append(Assignment(len(self.events), line, _bounded(name, 100), _bounded(value, 300)))
            elif item.get("kind") == "print":
                text = item.get("text")
                if not isinstance(text, str):
                    return False
                text = text[: max(0, _MAX_STDOUT - self.stdout_chars)]
                self.stdout_chars += len(text)
                self.stdout.append(text)
                self.events.append(PrintOutput(len(self.events), line, text))
            else:
                return False
        return True

    def _done(self, message: dict[str, Any]) -> tuple[Any, ProgramError | None]:
        dropped = message.get("dropped", 0)
        if isinstance(dropped, int) and not isinstance(dropped, bool):
            self.dropped += max(0, dropped)
        error = message.get("error")
        if self.violation:
            return None, ProgramError("violation", self.violation)
        if error is not None:
            if not isinstance(error, dict) or error.get("kind") not in ERROR_KINDS:
                return None, ProgramError("worker-crash", "The worker reported a malformed error.")
            line = error.get("line")
            return None, ProgramError(
                str(error["kind"]),
                _bounded(error.get("message", "")),
                line if isinstance(line, int) and not isinstance(line, bool) else None,
            )
        answer = message.get("answer")
        if len(json.dumps(answer)) > 200_000:
            return None, ProgramError("answer", "The answer is too large.")
        return answer, None

    # -- tool calls -------------------------------------------------------------------------
    def _call(self, message: dict[str, Any]) -> bool:
        """Serve one tool call; False when the reply cannot be delivered (the worker is gone)."""
        op = message.get("op")
        args = message.get("args")
        line = message.get("line")
        line = line if isinstance(line, int) and not isinstance(line, bool) else None
        start = time.perf_counter()
        self.tool_calls += 1
        reply: dict[str, Any]
        served: list[ToolEvent] = []
        if self.tool_calls > self.limits.max_tool_calls:
            self.violation = f"The program made more than {self.limits.max_tool_calls} tool calls."
            reply = {"error": {"kind": "violation", "message": self.violation}}
        elif not isinstance(op, str) or not isinstance(args, dict) or op not in _HANDLERS:
            self.violation = "The worker asked for an unknown operation."
            reply = {"error": {"kind": "violation", "message": self.violation}}
        else:
            with record_tool_calls() as served:
                try:
                    reply = {"result": _HANDLERS[op](self, args)}
                except InvalidArgumentError as exc:
                    reply = {"error": {"kind": "invalid", "message": _bounded(exc)}}
                except VPDError as exc:
                    reply = {"error": {"kind": "tool", "message": _bounded(exc)}}
                except Exception as exc:  # a user tool's own bug: the program sees a ToolError
                    reply = {"error": {"kind": "tool", "message": _bounded(f"{type(exc).__name__}: {exc}")}}
        seconds = time.perf_counter() - start
        self.tool_seconds += seconds
        reply["id"] = message.get("id")
        delivered = True
        try:
            try:
                wire.send(self.sock, reply)
            except wire.WireError:
                error = {"kind": "tool", "message": "The tool's result is too large or not JSON."}
                reply = {"id": message.get("id"), "error": error}
                wire.send(self.sock, reply)
        except OSError:
            delivered = False
        # Recorded after replying: the worker goes on while the host writes the trace.
        self._record(op, args, line, served, reply, seconds)
        return delivered

    def _record(
        self, op: Any, args: Any, line: int | None, served: list[ToolEvent], reply: dict[str, Any], seconds: float
    ) -> None:
        if len(self.events) >= _MAX_EVENTS:
            self.dropped += max(1, len(served))
            return
        if not served:  # rejected before any tool ran: still part of what the program did
            self.events.append(
                ToolCall(
                    index=len(self.events),
                    operation=_bounded(op if isinstance(op, str) else "?", 100),
                    capability="",
                    backend="",
                    model=None,
                    inputs=_jsonable(args) if isinstance(args, dict) and len(str(args)) < 4000 else {},
                    output=None,
                    box=None,
                    line=line,
                    seconds=round(seconds, 6),
                    cache_hit=False,
                    error=_bounded(reply.get("error", {}).get("message", "rejected")),
                )
            )
            return
        failed = reply.get("error", {}).get("message") if "error" in reply else None
        for position, event in enumerate(served):
            # A result the host could not hand to the program is a failed call in the trace too.
            error = event.error or (failed if position == len(served) - 1 else None)
            inputs, output, details = _jsonable([event.inputs, event.output, event.details])
            self.events.append(
                ToolCall(
                    index=len(self.events),
                    operation=event.operation,
                    capability=event.capability,
                    backend=event.backend,
                    model=event.model,
                    inputs=inputs,
                    output=output,
                    box=list(event.box) if event.box is not None else None,
                    line=line,
                    seconds=event.seconds,
                    cache_hit=event.cache_hit,
                    error=_bounded(error) if error else None,
                    details=details,
                )
            )

    def remember_mask(self, box: tuple[int, ...], mask: Any) -> None:
        """Keep a mask for depth() on the same box, within a memory budget (oldest dropped first)."""
        self.masks.pop(box, None)
        self.masks[box] = mask
        self.mask_bytes += int(getattr(mask, "nbytes", 0))
        while self.mask_bytes > _MASK_BYTES and len(self.masks) > 1:
            oldest = next(iter(self.masks))
            self.mask_bytes -= int(getattr(self.masks.pop(oldest), "nbytes", 0))

    # -- argument checks (the worker is untrusted) --------------------------------------------
    def box(self, value: Any) -> tuple[int, int, int, int]:
        if (
            not isinstance(value, list)
            or len(value) != 4
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            raise InvalidArgumentError("A region is four integers.")
        return self.toolkit.check_box(self.image, value)

    @staticmethod
    def text(args: dict[str, Any], key: str) -> str:
        value = args.get(key)
        if not isinstance(value, str):
            raise InvalidArgumentError(f"{key} must be a string.")
        return value

    def decode(self, value: Any, depth: int = 0) -> Any:
        from vpd.patch import ImagePatch

        if depth > 4:
            raise InvalidArgumentError("Tool arguments are nested too deeply.")
        if isinstance(value, dict):
            if set(value) == {"$patch"}:
                x0, y0, x1, y1 = self.box(value["$patch"])
                return ImagePatch._from_region(self.root, (x0, y0, x1, y1), mask=self.masks.get((x0, y0, x1, y1)))
            return {k: self.decode(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            if len(value) > 256:
                raise InvalidArgumentError("Tool arguments hold at most 256 items per list.")
            return [self.decode(v, depth + 1) for v in value]
        return value


def _find(run: _Run, args: dict[str, Any]) -> Any:
    regions = run.toolkit.find(run.image, run.box(args.get("box")), run.text(args, "object_name"))
    out = []
    for r in regions:
        if r.mask is not None:
            run.remember_mask(tuple(r.box), r.mask)
        out.append({"box": list(r.box), "score": r.score, "label": r.label, "class_name": r.class_name, "area": r.area})
    return out


def _depth(run: _Run, args: dict[str, Any]) -> Any:
    box = run.box(args.get("box"))
    return run.toolkit.depth(run.image, box, run.masks.get(tuple(box)))


def _options(args: dict[str, Any], key: str) -> list[str]:
    value = args.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgumentError(f"{key} must be a list of strings.")
    return value


def _call_tool(run: _Run, args: dict[str, Any]) -> Any:
    name = run.text(args, "name")
    positional = args.get("args", [])
    keywords = args.get("kwargs", {})
    if not isinstance(positional, list) or not isinstance(keywords, dict):
        raise InvalidArgumentError("Malformed tool arguments.")
    result = run.toolkit.call_tool(name, *run.decode(positional), **run.decode(keywords))
    return _json_safe(result)


_HANDLERS: dict[str, Any] = {
    "find": _find,
    "exists": lambda run, a: run.toolkit.exists(run.image, run.box(a.get("box")), run.text(a, "object_name")),
    "verify_property": lambda run, a: run.toolkit.verify_property(
        run.image, run.box(a.get("box")), run.text(a, "object_name"), run.text(a, "property")
    ),
    "best_text_match": lambda run, a: run.toolkit.best_text_match(
        run.image, run.box(a.get("box")), _options(a, "options")
    ),
    "simple_query": lambda run, a: run.toolkit.simple_query(run.image, run.box(a.get("box")), run.text(a, "question")),
    "depth": _depth,
    "ocr": lambda run, a: run.toolkit.ocr(run.image, run.box(a.get("box"))),
    "llm_query": lambda run, a: run.toolkit.llm_query(run.text(a, "question"), a.get("long_answer") is True),
    "best_image_match": lambda run, a: run.toolkit.best_image_match(
        run.image,
        [run.box(b) for b in (a.get("boxes") if isinstance(a.get("boxes"), list) else [None])],
        _options(a, "content"),
    ),
    "call_tool": _call_tool,
}


def _finished(run: _Run | None) -> bool:
    return run is None or run.finished


class Sandbox:
    """Runs untrusted programs in disposable worker processes.

    Args:
        limits: Default limits of each run.
        spares: Workers kept forked ahead of time, ready for the next programs (0 forks
            each worker on demand: slower start-up, a little less memory).

    The template process starts on first use and is shared by every run of this sandbox;
    :meth:`close` (also called at interpreter exit) stops it.
    """

    def __init__(self, limits: SandboxLimits | None = None, *, spares: int = 2) -> None:
        if isinstance(spares, bool) or not isinstance(spares, int) or not 0 <= spares <= 64:
            raise InvalidArgumentError(f"spares must be an integer from 0 to 64, got {spares!r}.")
        self.limits = limits or SandboxLimits()
        self.spares = spares
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._root: str | None = None
        self._exits: dict[int, int] = {}
        self._exit_cond = threading.Condition()
        self._deadlines: list[tuple[float, int, weakref.ref[_Run]]] = []
        self._watch_counter = itertools.count()
        self._active_lock = threading.Lock()
        self.active_runs = 0
        self._deadline_cond = threading.Condition()
        self._watchdog: threading.Thread | None = None
        self.isolation: dict[str, Any] = {}

    # -- the template process -----------------------------------------------------------------
    def _ensure_started(self) -> socket.socket:
        with self._lock:
            if self._control is not None and self._process is not None and self._process.poll() is None:
                return self._control
            self._stop_locked()
            host, zygote = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            self._root = tempfile.mkdtemp(prefix="vpd-sandbox-")
            os.chmod(self._root, 0o555)
            env = {
                "PATH": "/usr/bin:/bin",
                "PYTHONPATH": os.pathsep.join(os.path.abspath(p) for p in sys.path if p),
                "PYTHONDONTWRITEBYTECODE": "1",
                "LANG": "C.UTF-8",
            }
            self._process = subprocess.Popen(
                [sys.executable, "-s", "-m", "vpd.programs.zygote", str(zygote.fileno()), self._root, str(self.spares)],
                pass_fds=(zygote.fileno(),),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                cwd=self._root,
            )
            zygote.close()
            host.settimeout(60)
            try:
                ready = json.loads(host.recv(1 << 16) or b"{}")
            except (OSError, ValueError) as exc:
                ready = {"error": str(exc)}
            if ready.get("type") != "ready":
                err = b""
                with contextlib.suppress(Exception):
                    self._process.kill()
                    err = self._process.stderr.read() if self._process.stderr else b""
                self._stop_locked()
                raise ToolError(
                    "The sandbox's template process failed to start: "
                    + _bounded(err.decode(errors="replace")[-1500:] or ready, 1600)
                )
            if self._process.stderr:
                self._process.stderr.close()
            host.settimeout(None)
            self.isolation = dict(ready.get("isolation", {}))
            self._control = host
            threading.Thread(target=self._read_control, args=(host,), name="vpd-sandbox-control", daemon=True).start()
            return host

    def _submit(self, payload: bytes, worker: socket.socket) -> None:
        """Hand a job to the template process, restarting it once if it died."""
        for attempt in (1, 2):
            control = self._ensure_started()
            try:
                with self._send_lock:
                    socket.send_fds(control, [payload], [worker.fileno()])
                return
            except OSError as exc:
                if attempt == 2 or exc.errno == errno.EMSGSIZE:
                    raise ToolError(f"The sandbox could not start the program: {exc}.") from exc
                with self._lock:
                    self._stop_locked()

    def _read_control(self, control: socket.socket) -> None:
        while True:
            try:
                data = control.recv(1 << 16)
            except OSError:
                return
            if not data:
                return
            with contextlib.suppress(ValueError):
                message = json.loads(data)
                if message.get("type") == "exit":
                    with self._exit_cond:
                        self._exits[int(message["pid"])] = int(message["code"])
                        if len(self._exits) > 10_000:  # statuses nobody asked for
                            for pid in list(self._exits)[:5000]:
                                self._exits.pop(pid, None)
                        self._exit_cond.notify_all()

    def _watch(self, run: _Run, deadline: float) -> None:
        """Have the watchdog stop ``run`` at ``deadline`` (monotonic seconds) unless it finished."""
        with self._deadline_cond:
            # A weak reference: a finished run's trace and masks are not kept until its deadline.
            heapq.heappush(self._deadlines, (deadline, next(self._watch_counter), weakref.ref(run)))
            if self._watchdog is None or not self._watchdog.is_alive():
                self._watchdog = threading.Thread(target=self._watch_loop, name="vpd-sandbox-watchdog", daemon=True)
                self._watchdog.start()
            elif self._deadlines[0][2]() is run:
                self._deadline_cond.notify()

    def _watch_loop(self) -> None:
        # One thread for every run's deadline: a run ends at its deadline whatever its
        # serving thread is doing (waiting for the worker, or inside a slow tool).
        with self._deadline_cond:
            while True:
                while self._deadlines and _finished(self._deadlines[0][2]()):
                    heapq.heappop(self._deadlines)
                if not self._deadlines:
                    if not self._deadline_cond.wait(30.0) and not self._deadlines:
                        self._watchdog = None
                        return
                    continue
                deadline, _, ref = self._deadlines[0]
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    self._deadline_cond.wait(remaining)
                    continue
                heapq.heappop(self._deadlines)
                run = ref()
                if run is not None:
                    run.expire()

    def _exit_code(self, pid: int, wait: float) -> int | None:
        deadline = time.monotonic() + wait
        with self._exit_cond:
            while pid not in self._exits:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._exit_cond.wait(remaining)
            return self._exits.pop(pid)

    def _stop_locked(self) -> None:
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.close()
            self._control = None
        if self._process is not None:
            with contextlib.suppress(Exception):
                self._process.wait(timeout=2)
            if self._process.poll() is None:
                self._process.kill()
                with contextlib.suppress(Exception):
                    self._process.wait(timeout=2)
            self._process = None
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def close(self) -> None:
        """Stop the template process (and any worker still running)."""
        with self._lock:
            self._stop_locked()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running --------------------------------------------------------------------------------
    def run(
        self,
        code: str,
        image: ImageSource,
        *,
        toolkit: Toolkit | None = None,
        limits: SandboxLimits | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Execution:
        """Run one program (see :func:`run_program`)."""
        from vpd.tools.toolkit import current_toolkit

        started = time.perf_counter()
        limits = limits or self.limits
        toolkit = toolkit or current_toolkit()
        data = load_image(image)
        info = {"sha256": data.sha256, "width": data.width, "height": data.height}
        if not isinstance(code, str):
            raise InvalidArgumentError(f"A program must be a string, not {type(code).__name__}.")
        try:
            errors = check_program(code, toolkit.tools)
        except RecursionError:
            errors = [ProgramError("static-check", "The program is nested too deeply to check.")]
        if errors:
            error = ProgramError(errors[0].kind, format_errors(errors), errors[0].line)
            return self._finish(code, info, [], None, error, started, 0.0, "", 0, meta)
        host, worker = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        job = {
            "type": "run",
            "code": code,
            "image": info,
            "tools": [{"name": s.name, "kind": s.kind} for s in toolkit.tools.specs()],
            "limits": {"cpu_seconds": limits.cpu_seconds, "memory_bytes": limits.memory_mb * 1024 * 1024},
            "spin": _WORKER_SPIN_SECONDS if self.active_runs < _CPUS else 0.0,
        }
        run = _Run(self, host, data, toolkit, limits)
        payload = json.dumps(job, ensure_ascii=False).encode("utf-8", "replace")
        compiled = _marshalled(code)
        if len(payload) + len(compiled) < _MAX_INLINE_CODE:
            payload += b"\0" + compiled  # the worker runs the host's code object, not a recompilation
        try:
            try:
                self._submit(payload, worker)
            finally:
                worker.close()
            try:
                with self._active_lock:
                    self.active_runs += 1
                try:
                    answer, outcome = run.serve(time.monotonic() + limits.timeout)
                finally:
                    with self._active_lock:
                        self.active_runs -= 1
            except Exception as exc:  # a bug of ours or of a tool: never lose the batch over one run
                run._kill()
                answer, outcome = (
                    None,
                    ProgramError("worker-crash", _bounded(f"The host failed serving the run: {exc!r}")),
                )
        finally:
            host.close()
        return self._finish(
            code, info, run.events, answer, outcome, started, run.tool_seconds, "".join(run.stdout), run.dropped, meta
        )

    @staticmethod
    def _finish(
        code: str,
        info: dict[str, Any],
        events: list[TraceEvent],
        answer: Any,
        error: ProgramError | None,
        started: float,
        tool_seconds: float,
        stdout: str,
        dropped: int,
        meta: dict[str, Any] | None,
    ) -> Execution:
        wall = time.perf_counter() - started
        trace = Trace(
            program=code,
            image=info,
            events=tuple(events),
            answer=answer,
            error=error,
            wall_seconds=round(wall, 6),
            tool_seconds=round(tool_seconds, 6),
            truncated=dropped > 0,
            dropped_events=dropped,
            meta=_jsonable(meta or {}),
        )
        return Execution(answer, error, trace, wall, tool_seconds, stdout)

    def run_many(
        self,
        codes: Sequence[str],
        images: ImageSource | Sequence[ImageSource],
        *,
        toolkit: Toolkit | None = None,
        limits: SandboxLimits | None = None,
        max_workers: int | None = None,
        metas: Sequence[dict[str, Any] | None] | None = None,
    ) -> list[Execution]:
        """Run many programs concurrently (see :func:`run_programs`)."""
        from vpd.tools.toolkit import current_toolkit

        toolkit = toolkit or current_toolkit()
        if metas is not None and len(metas) != len(codes):
            raise InvalidArgumentError(f"Got {len(codes)} programs but {len(metas)} metas; pass one per program.")
        per_program: list[ImageData]
        if isinstance(images, (list, tuple)) and not _is_array_like(images):
            if len(images) != len(codes):
                raise InvalidArgumentError(
                    f"Got {len(codes)} programs but {len(images)} images; pass one image or one per program."
                )
            per_program = [load_image(i) for i in images]
        else:
            shared = load_image(images)  # type: ignore[arg-type]
            per_program = [shared] * len(codes)
        workers = max_workers or max(2, (os.cpu_count() or 2) * 2)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vpd-program") as pool:
            futures = [
                pool.submit(self.run, code, image, toolkit=toolkit, limits=limits, meta=meta)
                for code, image, meta in zip(codes, per_program, metas or [None] * len(codes))
            ]
            return [f.result() for f in futures]


def _is_array_like(value: Any) -> bool:
    return hasattr(value, "shape") or hasattr(value, "__array__")


_default: Sandbox | None = None
_default_lock = threading.Lock()


def default_sandbox() -> Sandbox:
    """The process-wide sandbox (started on first use, stopped at exit)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Sandbox()
            atexit.register(_default.close)
        return _default


def run_program(
    code: str,
    image: ImageSource,
    *,
    toolkit: Toolkit | None = None,
    timeout: float | None = None,
    limits: SandboxLimits | None = None,
    sandbox: Sandbox | None = None,
    meta: dict[str, Any] | None = None,
) -> Execution:
    """Run an untrusted ViperGPT-style program in the sandbox.

    The program defines ``execute_command(image)`` and returns the answer; ``ImagePatch``,
    the helpers and the registered tools are in scope. It runs in a disposable worker
    process; its tool calls are served (and traced) here by ``toolkit``.

    Args:
        code: The program's source.
        image: The image (anything :func:`vpd.load_image` accepts).
        toolkit: The tools (default: the current toolkit).
        timeout: Wall-clock seconds for the run (overrides ``limits.timeout``).
        limits: Resource limits (default: the sandbox's).
        sandbox: The sandbox to use (default: a process-wide one).
        meta: JSON stored in the trace (question, label...).

    Returns:
        The :class:`Execution`. A failing program is data: ``execution.error`` says why.

    Raises:
        ImageError: The image cannot be loaded.
        InvalidArgumentError: ``code`` is not a string, or bad limits.
        ToolError: The sandbox itself cannot start.
    """
    box = sandbox or default_sandbox()
    chosen = limits or box.limits
    if timeout is not None:
        chosen = SandboxLimits(timeout, chosen.cpu_seconds, chosen.memory_mb, chosen.max_tool_calls)
    return box.run(code, image, toolkit=toolkit, limits=chosen, meta=meta)


def run_programs(
    codes: Sequence[str],
    images: ImageSource | Sequence[ImageSource],
    *,
    toolkit: Toolkit | None = None,
    timeout: float | None = None,
    limits: SandboxLimits | None = None,
    sandbox: Sandbox | None = None,
    max_workers: int | None = None,
    metas: Sequence[dict[str, Any] | None] | None = None,
) -> list[Execution]:
    """Run many programs concurrently; one image for all, or one per program.

    ``metas`` (one JSON dict per program, or None) go into each trace's ``meta``.

    Returns:
        One :class:`Execution` per program, in order.
    """
    box = sandbox or default_sandbox()
    chosen = limits or box.limits
    if timeout is not None:
        chosen = SandboxLimits(timeout, chosen.cpu_seconds, chosen.memory_mb, chosen.max_tool_calls)
    return box.run_many(codes, images, toolkit=toolkit, limits=chosen, max_workers=max_workers, metas=metas)
