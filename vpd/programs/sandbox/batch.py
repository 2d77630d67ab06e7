"""Running a batch of programs: runner threads pull the programs, the caller keeps the deadlines.

Each of ``workers`` runner threads takes the next program, starts it and serves it, then
takes the next, with no hand-over between programs. The calling thread sleeps until the
soonest deadline of the runs in progress (or the batch's end); a run still being served
then (its tool call is still running) is abandoned: its Execution is made at once, and a
new runner thread takes its place, so the batch goes on while the abandoned call finishes
on the old thread, whose result is then discarded.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from vpd.traces.execution import Execution
from vpd.traces.trace import ProgramError

if TYPE_CHECKING:
    from vpd.image import ImageData
    from vpd.programs.sandbox.limits import SandboxLimits
    from vpd.programs.sandbox.run import ProgramRun
    from vpd.tools.toolkit import Toolkit

__all__ = ["BatchHost", "Started", "run_batch"]

Outcome = tuple[Any, "ProgramError | None"]


@dataclass(frozen=True)
class Started:
    """A run handed to its worker, with what its Execution needs."""

    run: ProgramRun
    code: str
    info: dict[str, Any]
    meta: dict[str, Any] | None
    wall_start: float
    #: When the program's time is up (monotonic seconds).
    deadline: float
    #: When its Execution comes back at the latest (a tool call still running is abandoned).
    returns_by: float


class BatchHost(Protocol):
    """What a batch needs from the sandbox that runs it."""

    def start_run(
        self, code: str, image: ImageData, toolkit: Toolkit, limits: SandboxLimits, meta: dict[str, Any] | None
    ) -> Started | Execution:
        """Hand a program to a worker, or its Execution when it cannot run (it failed its checks)."""

    def serve_run(self, started: Started) -> Outcome:
        """Serve the run until it ends; never raises (a failure of the host is the outcome)."""

    def abandon_run(self, started: Started) -> Outcome | None:
        """Abandon a run still being served; None when its serving ended meanwhile."""

    def execution_of(self, started: Started, outcome: Outcome) -> Execution:
        """The run's Execution."""

    def discard_run(self, started: Started) -> None:
        """End a started run that nobody will serve."""

    def spawn(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on a runner thread of its own (raises when no thread can be started)."""


def run_batch(
    host: BatchHost,
    jobs: Sequence[tuple[str, ImageData, dict[str, Any] | None]],
    toolkit: Toolkit,
    limits: SandboxLimits,
    workers: int,
) -> list[Execution]:
    """Run ``jobs`` (code, image, meta), at most ``workers`` at a time; their Executions in order.

    Runner threads run in copies of the calling thread's context.

    Raises:
        BaseException: What starting a run raised (the sandbox cannot start); the runs in
            progress are abandoned first.
    """
    return _Batch(host, jobs, toolkit, limits).run(workers)


class _Batch:
    def __init__(
        self,
        host: BatchHost,
        jobs: Sequence[tuple[str, ImageData, dict[str, Any] | None]],
        toolkit: Toolkit,
        limits: SandboxLimits,
    ) -> None:
        self._host = host
        self._jobs = jobs
        self._toolkit = toolkit
        self._limits = limits
        self._context = contextvars.copy_context()
        self._results: list[Execution | None] = [None] * len(jobs)
        self._left = len(jobs)
        self._next = 0
        # The runs being served, by index; whoever removes one (its runner when its serving
        # ends, the caller at its deadline) makes its Execution.
        self._serving: dict[int, Started] = {}
        # Runs found past their deadline whose serving had just ended: their runners finish them.
        self._ending: set[int] = set()
        self._failure: BaseException | None = None
        self._changed = threading.Condition()

    def run(self, workers: int) -> list[Execution]:
        try:
            for _ in range(min(workers, len(self._jobs))):
                self._spawn()
            self._keep_deadlines()
        finally:
            self._abandon_all()  # only when starting a run failed, or this thread was interrupted
        if self._failure is not None:
            raise self._failure
        results = self._results
        assert all(r is not None for r in results), "every program has its Execution"
        return [r for r in results if r is not None]

    def _spawn(self) -> None:
        # A context runs on one thread at a time: each runner gets a copy of the caller's.
        context = self._context.copy()
        self._host.spawn(lambda: context.run(self._pull))

    def _keep_deadlines(self) -> None:
        with self._changed:
            while self._left and self._failure is None:
                soonest = min((s.returns_by for i, s in self._serving.items() if i not in self._ending), default=None)
                timeout = None if soonest is None else max(0.0, soonest - time.monotonic())
                if timeout is None or timeout > 0:
                    self._changed.wait(timeout)
                now = time.monotonic()
                late = [i for i, s in self._serving.items() if s.returns_by <= now and i not in self._ending]
                for index in late:
                    started = self._serving.pop(index)
                    self._changed.release()
                    try:
                        outcome = self._host.abandon_run(started)
                    finally:
                        self._changed.acquire()
                    if outcome is None:  # its serving ended meanwhile: its runner makes the Execution
                        self._serving[index] = started
                        self._ending.add(index)
                        continue
                    self._done(index, self._host.execution_of(started, outcome))
                    if self._next < len(self._jobs):
                        self._spawn()  # the abandoned runner is busy with the tool: another takes its place

    def _pull(self) -> None:
        """A runner: start and serve the next program until none is left."""
        while True:
            with self._changed:
                if self._next >= len(self._jobs) or self._failure is not None:
                    return
                index = self._next
                self._next += 1
            code, image, meta = self._jobs[index]
            try:
                started = self._host.start_run(code, image, self._toolkit, self._limits, meta)
            except BaseException as exc:  # the sandbox cannot start: the batch raises it
                with self._changed:
                    self._failure = exc
                    self._changed.notify()
                return
            if isinstance(started, Execution):
                with self._changed:
                    self._done(index, started)
                continue
            with self._changed:
                self._serving[index] = started
                if len(self._serving) == 1:
                    self._changed.notify()  # the caller was waiting without a deadline
            outcome = self._host.serve_run(started)
            with self._changed:
                self._ending.discard(index)
                if self._serving.pop(index, None) is None:
                    return  # abandoned at its deadline: its Execution is made, another runner took over
            execution = self._host.execution_of(started, outcome)
            with self._changed:
                self._done(index, execution)

    def _done(self, index: int, execution: Execution) -> None:
        """Record one program's Execution (the lock is held)."""
        self._results[index] = execution
        self._left -= 1
        if not self._left:
            self._changed.notify()

    def _abandon_all(self) -> None:
        with self._changed:
            self._next = len(self._jobs)  # runners take nothing more
            serving, self._serving = self._serving, {}
        for started in serving.values():
            self._host.abandon_run(started)
