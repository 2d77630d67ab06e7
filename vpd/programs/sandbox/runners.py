"""Threads that run program conversations, as many as are needed.

A run's conversation (and the host-side tool work it serves) runs on one of these threads
while the caller waits with the run's deadline, so the caller gets its Execution back at
the deadline even when a tool is still working. A thread whose tool call was abandoned
stays busy until the call returns; a new run then gets another thread, never a queue
behind it. Idle threads are reused, and leave after a minute without work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["Runners"]

T = TypeVar("T")
_IDLE_SECONDS = 60.0


class Runners:
    """A pool of daemon threads that grows whenever every thread is busy."""

    def __init__(self, name: str = "vpd-run") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._idle: list[_Runner] = []
        self._count = 0

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``fn(*args)`` on an idle thread, or a new one; its result comes in the future."""
        future: Future[T] = Future()
        with self._lock:
            runner = self._idle.pop() if self._idle else None
            if runner is None:
                self._count += 1
                runner = _Runner(self, f"{self._name}-{self._count}")
        runner.give(fn, args, future)
        return future

    def _rest(self, runner: _Runner) -> None:
        with self._lock:
            self._idle.append(runner)

    def _leave(self, runner: _Runner) -> bool:
        """Whether ``runner`` may leave (it was idle too long and nobody took it meanwhile)."""
        with self._lock:
            if runner in self._idle:
                self._idle.remove(runner)
                return True
            return False


class _Runner:
    def __init__(self, pool: Runners, name: str) -> None:
        self._pool = pool
        self._work: tuple[Callable[..., Any], tuple[Any, ...], Future[Any]] | None = None
        self._ready = threading.Condition()
        threading.Thread(target=self._loop, name=name, daemon=True).start()

    def give(self, fn: Callable[..., Any], args: tuple[Any, ...], future: Future[Any]) -> None:
        with self._ready:
            self._work = (fn, args, future)
            self._ready.notify()

    def _loop(self) -> None:
        while True:
            with self._ready:
                if self._work is None and not self._ready.wait_for(lambda: self._work is not None, _IDLE_SECONDS):
                    if self._pool._leave(self):
                        return
                    self._ready.wait_for(lambda: self._work is not None)
                assert self._work is not None
                fn, args, future = self._work
                self._work = None
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # handed to the caller, never lost
                    future.set_exception(exc)
            del fn, args, future
            self._pool._rest(self)
