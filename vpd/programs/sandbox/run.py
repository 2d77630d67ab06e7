"""The host's conversation with one program's worker, from its first message to its end.

:class:`ProgramRun` receives the worker's messages (hello, trace events, tool requests,
done), hands tool requests to its :class:`~vpd.programs.sandbox.serving.ToolServer` and
the events to its :class:`~vpd.programs.sandbox.recording.TraceRecorder`, and turns every
way the run can end into an answer or a :class:`~vpd.traces.ProgramError`: done, an error
the worker reported, a crash, a malformed message, the deadline (the sandbox's watchdog
calls :meth:`ProgramRun.expire`), or a broken rule. It never raises for anything the
worker does.

**Stopping a run.** At the deadline, or at the first broken rule (too many tool calls, an
unknown operation), the host asks the worker to stop with ``SIGUSR1`` and serves nothing
more: the worker sends the events it still holds and how many it could not record, says
``stopped`` and exits. If it does not within :data:`STOP_GRACE` seconds (it is stuck in
a long computation), the watchdog kills it and the trace is marked truncated: what the
worker held then is unknown. So the trace is complete, or says that it is not, at every
way a run can end.
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

__all__ = ["CPUS", "STOP_GRACE", "ProgramRun", "RunHost"]

# Polling instead of sleeping while waiting for the worker saves the wake-up latency of a
# blocking receive (tens of microseconds per message on virtual machines) when a request
# comes fast; it is only done while no more programs run than there are CPUs, so it never
# takes a CPU from other work.
_SPIN_SECONDS = 100e-6
#: CPUs this process may run on.
CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
#: Seconds a worker asked to stop has to report its last events before it is killed.
STOP_GRACE = 0.1


class RunHost(Protocol):
    """What a run needs from the sandbox that started it."""

    active_runs: int

    def watch(self, run: ProgramRun, deadline: float) -> None:
        """Have ``run.expire()`` called at ``deadline`` (monotonic seconds) unless it finished."""

    def exit_status(self, pid: int, wait: float) -> int | None:
        """The worker's exit status, waiting up to ``wait`` seconds for it (None if unknown)."""


class ProgramRun:
    """The host's side of one program run (one thread talks to the worker).

    Args:
        host: The sandbox (deadlines, exit statuses, load).
        sock: The host's end of the socket pair to the worker.
        image: The image the program runs on.
        toolkit: What serves its tool requests.
        limits: Its limits.
        program_lines: How many lines the program has (no line count may name another).
    """

    def __init__(
        self,
        host: RunHost,
        sock: socket.socket,
        image: ImageData,
        toolkit: Toolkit,
        limits: SandboxLimits,
        *,
        program_lines: int,
    ) -> None:
        self.host = host
        self.sock = sock
        self.program_lines = program_lines
        self.limits = limits
        self.server = ToolServer(toolkit, image, limits.max_tool_calls)
        self.recorder = TraceRecorder()
        self.pid: int | None = None
        self._pidfd: int | None = None
        self._kill_lock = threading.Lock()
        # Held while receiving from the worker, so that abandoning a run can read its last
        # messages only when nobody else is.
        self._receiving = threading.Lock()
        # Why the host is stopping the run (the deadline, a broken rule); None while it runs.
        self._stopping: ProgramError | None = None
        # Whether the worker reported everything it held (its "done" or "stopped" arrived).
        self._reported = False
        self.finished = False
        # Set by the sandbox under its lock: the serving thread returned; the run was abandoned.
        self.served = False
        self.abandoned = False

    # -- the conversation ---------------------------------------------------------------------
    def serve(self, deadline: float) -> tuple[Any, ProgramError | None]:
        """Talk to the worker until the run ends; the answer, or why there is none."""
        # The deadline is enforced by the sandbox's watchdog (it stops, then kills the worker),
        # so receiving needs no per-message timeout.
        self.host.watch(self, deadline)
        try:
            answer, error = self._conversation(deadline)
            if self._stopping is not None:  # whatever the conversation saw, the host stopped it first
                answer, error = None, self._at_stop_line(self._stopping)
            if not self._reported:
                self.recorder.incomplete = True
            return answer, error
        finally:
            self.finished = True
            self.kill()

    def _conversation(self, deadline: float) -> tuple[Any, ProgramError | None]:
        while True:
            try:
                # Poll briefly after a call: a program's next call often follows within microseconds.
                spin = _SPIN_SECONDS if self.server.calls and self.host.active_runs <= CPUS else 0.0
                with self._receiving:
                    message = wire.receive(self.sock, spin=spin)
            except (wire.WireError, OSError) as exc:
                self.kill()
                return None, ProgramError("worker-crash", f"The worker sent a malformed message ({exc}).")
            if message is None:
                return None, self._stopping or self._died()
            kind = message.get("type")
            if kind == "hello" and self.pid is None:
                self._hello(message)
                continue
            if kind not in ("events", "call", "done", "stopped"):
                self.kill()
                return None, ProgramError(
                    "worker-crash", f"The worker sent an unexpected message {bounded(kind, 50)!r}."
                )
            self.recorder.note_worker_dropped(message.get("dropped"))
            if "events" in message and not self.recorder.add_worker_events(message["events"]):
                self.kill()
                return None, ProgramError("worker-crash", "The worker sent malformed trace events.")
            if kind == "call":
                if self._stopping is not None:
                    continue  # stopping: nothing more is served; the worker reports and leaves
                if time.monotonic() >= deadline:
                    self.stop(self._timeout())
                    continue
                if not self._call(message):
                    return None, self._died()
                if self.server.violation:  # the first broken rule ends the run
                    self.stop(ProgramError("violation", self.server.violation))
            elif kind == "done":
                self._reported = True
                self.recorder.note_lines(message, self.program_lines)
                return self._done(message)
            elif kind == "stopped":
                self._reported = True
                self.recorder.note_lines(message, self.program_lines)
                return None, self._stopping or ProgramError("worker-crash", "The worker stopped unasked.")

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

    # -- stopping -----------------------------------------------------------------------------
    def expire(self) -> float | None:
        """Called by the watchdog at the deadline: stop the run as a timeout.

        Returns:
            When to kill the worker if it has not reported by then (monotonic seconds), or
            None when it was killed already.
        """
        return self.stop(self._timeout())

    def stop(self, outcome: ProgramError) -> float | None:
        """Ask the worker to report and leave (``SIGUSR1``); the run ends with ``outcome``.

        Returns:
            When to kill the worker if it has not reported by then, or None when there was
            nothing to ask (it was killed at once).
        """
        if self._stopping is None:
            self._stopping = outcome
        with self._kill_lock:
            if self._pidfd is not None:
                with contextlib.suppress(OSError):
                    signal.pidfd_send_signal(self._pidfd, signal.SIGUSR1)
                    return time.monotonic() + STOP_GRACE
        # Not started yet (no hello): nothing to report; end it and wake the receiver.
        self.kill()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        return None

    def abandon(self) -> tuple[Any, ProgramError]:
        """End a run whose serving thread is still inside a tool call past the deadline.

        The worker is killed; its last messages are read when nobody else is reading; the
        trace takes nothing more (a tool call that finishes later is discarded).

        Returns:
            No answer, and the timeout with what was still running.
        """
        self.stop(self._stopping or self._timeout())
        deadline = time.monotonic() + STOP_GRACE
        if self._receiving.acquire(timeout=0):  # the serving thread is inside a tool, not receiving
            try:
                while not self._reported and time.monotonic() < deadline:
                    message = wire.receive_nowait(self.sock, deadline)
                    if message is None:
                        break
                    if message.get("type") == "hello" and self.pid is None:
                        self._hello(message)  # learns the pid: the worker is then killed below
                        continue
                    self.recorder.note_worker_dropped(message.get("dropped"))
                    if "events" in message:
                        self.recorder.add_worker_events(message["events"])
                    self._reported = message.get("type") in ("stopped", "done")
                    if self._reported:
                        self.recorder.note_lines(message, self.program_lines)
            except (wire.WireError, OSError):
                pass
            finally:
                self._receiving.release()
        self.kill()
        if not self._reported:
            self.recorder.incomplete = True
        self.recorder.seal()
        self.finished = True
        assert self._stopping is not None
        outcome = self._at_stop_line(self._stopping)
        if outcome.kind == "timeout":
            why = (
                " A tool call was still running; its result is discarded."
                if self.server.busy
                else " The host could not serve it in time."
            )
            outcome = ProgramError("timeout", outcome.message + why, outcome.line)
        return None, outcome

    def _at_stop_line(self, outcome: ProgramError) -> ProgramError:
        """``outcome`` at the program line the worker was on when stopped (where a timeout landed)."""
        if outcome.line is None and self.recorder.stop_line is not None:
            return ProgramError(outcome.kind, outcome.message, self.recorder.stop_line)
        return outcome

    def _hello(self, message: dict[str, Any]) -> None:
        pid = message.get("pid")
        if isinstance(pid, int) and pid > 1:
            self.pid = pid
            with self._kill_lock, contextlib.suppress(OSError, AttributeError):
                self._pidfd = os.pidfd_open(pid)
            if self._stopping is not None:  # the deadline passed while the worker was starting
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
        error = message.get("error")
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
