"""The host's conversation with one program's worker, from its first message to its end.

:class:`ProgramRun` receives the worker's messages (hello, trace events, tool requests,
done), hands tool requests to its :class:`~vpd.programs.sandbox.serving.ToolServer` and
the events to its :class:`~vpd.programs.sandbox.recording.TraceRecorder`, and turns every
way the run can end into an answer or a :class:`~vpd.traces.ProgramError`: done, an error
the worker reported, a crash, a malformed message, the deadline (the sandbox's watchdog
calls :meth:`ProgramRun.expire`), or a broken rule. It never raises for anything the
worker does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from vpd.programs.sandbox import wire
from vpd.programs.sandbox.recording import TraceRecorder, bounded
from vpd.programs.sandbox.serving import ToolServer
from vpd.traces.trace import ERROR_KINDS, ProgramError

if TYPE_CHECKING:
    from vpd.image import ImageData
    from vpd.programs.sandbox.limits import SandboxLimits
    from vpd.tools.toolkit import Toolkit

__all__ = ["CPUS", "ProgramRun", "RunHost"]

# Polling instead of sleeping while waiting for the worker saves the wake-up latency of a
# blocking receive (tens of microseconds per message on virtual machines) when a request
# comes fast; it is only done while no more programs run than there are CPUs, so it never
# takes a CPU from other work.
_SPIN_SECONDS = 100e-6
#: CPUs this process may run on.
CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class RunHost(Protocol):
    """What a run needs from the sandbox that started it."""

    active_runs: int

    def watch(self, run: ProgramRun, deadline: float) -> None:
        """Have ``run.expire()`` called at ``deadline`` (monotonic seconds) unless it finished."""

    def exit_status(self, pid: int, wait: float) -> int | None:
        """The worker's exit status, waiting up to ``wait`` seconds for it (None if unknown)."""


class ProgramRun:
    """The host's side of one program run (one thread).

    Args:
        host: The sandbox (deadlines, exit statuses, load).
        sock: The host's end of the socket pair to the worker.
        image: The image the program runs on.
        toolkit: What serves its tool requests.
        limits: Its limits.
    """

    def __init__(
        self, host: RunHost, sock: socket.socket, image: ImageData, toolkit: Toolkit, limits: SandboxLimits
    ) -> None:
        self.host = host
        self.sock = sock
        self.limits = limits
        self.server = ToolServer(toolkit, image, limits.max_tool_calls)
        self.recorder = TraceRecorder()
        self.pid: int | None = None
        self._pidfd: int | None = None
        self._kill_lock = threading.Lock()
        self._expired = threading.Event()
        self.finished = False

    def serve(self, deadline: float) -> tuple[Any, ProgramError | None]:
        """Talk to the worker until the run ends; the answer, or why there is none."""
        # The deadline is enforced by the sandbox's watchdog (it kills the worker and shuts
        # this socket down), so receiving needs no per-message timeout.
        self.host.watch(self, deadline)
        try:
            answer, error = self._conversation(deadline)
            if self._expired.is_set():  # whatever the conversation saw, the deadline came first
                return None, self._timeout()
            return answer, error
        finally:
            self.finished = True
            self.kill()

    def _conversation(self, deadline: float) -> tuple[Any, ProgramError | None]:
        while True:
            try:
                # Poll briefly after a call: a program's next call often follows within microseconds.
                spin = _SPIN_SECONDS if self.server.calls and self.host.active_runs <= CPUS else 0.0
                message = wire.receive(self.sock, spin=spin)
            except (wire.WireError, OSError) as exc:
                self.kill()
                return None, ProgramError("worker-crash", f"The worker sent a malformed message ({exc}).")
            if message is None:
                return None, self._died()
            kind = message.get("type")
            if kind == "call" and time.monotonic() >= deadline:
                return None, self._timeout()
            if kind == "hello" and self.pid is None:
                self._hello(message)
            elif kind == "events":
                if not self.recorder.add_worker_events(message.get("events")):
                    self.kill()
                    return None, ProgramError("worker-crash", "The worker sent malformed trace events.")
            elif kind == "call":
                if "events" in message and not self.recorder.add_worker_events(message["events"]):
                    self.kill()
                    return None, ProgramError("worker-crash", "The worker sent malformed trace events.")
                if not self._call(message):
                    return None, self._died()
            elif kind == "done":
                return self._done(message)
            else:
                self.kill()
                return None, ProgramError(
                    "worker-crash", f"The worker sent an unexpected message {bounded(kind, 50)!r}."
                )

    def _call(self, message: dict[str, Any]) -> bool:
        """Serve one tool request; False when the reply cannot be delivered (the worker is gone)."""
        op, args, line = message.get("op"), message.get("args"), message.get("line")
        line = line if isinstance(line, int) and not isinstance(line, bool) else None
        served = self.server.serve(op, args)
        reply = served.reply
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
        failed = reply["error"].get("message", "rejected") if "error" in reply else None
        self.recorder.add_tool_calls(op, args, line, served.calls, failed, served.seconds)
        return delivered

    def expire(self) -> None:
        """Called by the watchdog at the deadline: stop the worker and wake the serving thread."""
        self._expired.set()
        self.kill()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def _hello(self, message: dict[str, Any]) -> None:
        pid = message.get("pid")
        if isinstance(pid, int) and pid > 1:
            self.pid = pid
            with self._kill_lock, contextlib.suppress(OSError, AttributeError):
                self._pidfd = os.pidfd_open(pid)
            if self._expired.is_set():  # the deadline passed while the worker was starting
                self.kill()

    def kill(self) -> None:
        """Kill the worker (by pidfd: never another process that reused its pid)."""
        with self._kill_lock:  # the watchdog and the serving thread may both get here
            if self._pidfd is not None:
                with contextlib.suppress(OSError):
                    signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
                with contextlib.suppress(OSError):
                    os.close(self._pidfd)
                self._pidfd = None

    def _timeout(self) -> ProgramError:
        self.kill()
        return ProgramError("timeout", f"The program did not finish within {self.limits.timeout:g} s and was stopped.")

    def _died(self) -> ProgramError:
        code = self.host.exit_status(self.pid, wait=1.0) if self.pid else None
        if code == -signal.SIGXCPU:
            return ProgramError("timeout", f"The program used more than {self.limits.cpu_seconds:g} s of CPU time.")
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return ProgramError("worker-crash", f"The worker was killed by {name} before finishing.")
        return ProgramError("worker-crash", f"The worker exited (status {code}) before finishing.")

    def _done(self, message: dict[str, Any]) -> tuple[Any, ProgramError | None]:
        dropped = message.get("dropped", 0)
        if isinstance(dropped, int) and not isinstance(dropped, bool):
            self.recorder.dropped += max(0, dropped)
        error = message.get("error")
        if self.server.violation:
            return None, ProgramError("violation", self.server.violation)
        if error is not None:
            if not isinstance(error, dict) or error.get("kind") not in ERROR_KINDS:
                return None, ProgramError("worker-crash", "The worker reported a malformed error.")
            line = error.get("line")
            return None, ProgramError(
                str(error["kind"]),
                bounded(error.get("message", "")),
                line if isinstance(line, int) and not isinstance(line, bool) else None,
            )
        answer = message.get("answer")
        problem = wire.answer_problem(answer)  # the worker's own limits, counted the same way
        if problem is not None:
            return None, ProgramError("answer", problem[:1].upper() + problem[1:] + ".")
        return answer, None
