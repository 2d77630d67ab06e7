"""Running untrusted programs: the sandbox's process lifecycle.

:class:`Sandbox` starts the zygote (:mod:`vpd.programs.sandbox.zygote`) once, then runs
each program in a fresh worker forked from it (:mod:`vpd.programs.sandbox.worker`). The
host keeps the models and the pixels: one thread per running program talks to its worker
(:class:`~vpd.programs.sandbox.run.ProgramRun`), serving its tool calls through the
:class:`~vpd.Toolkit` and recording each as it serves it. One watchdog thread
enforces every run's wall-clock deadline with ``SIGKILL`` (which no code in the worker can
catch). Every way a run can end becomes an :class:`~vpd.traces.Execution`, never an
exception.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import errno
import functools
import heapq
import itertools
import json
import marshal
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

from vpd.errors import InvalidArgumentError, SandboxError
from vpd.image import ImageData, ImageSource, load_image
from vpd.programs.checker import check_program, format_errors
from vpd.programs.policy import compile_program
from vpd.programs.sandbox import wire
from vpd.programs.sandbox.batch import Outcome, Started, run_batch
from vpd.programs.sandbox.limits import SandboxLimits
from vpd.programs.sandbox.recording import TraceRecorder, bounded
from vpd.programs.sandbox.run import CPUS, STOP_GRACE, ProgramRun
from vpd.programs.sandbox.runners import Runners
from vpd.traces.execution import Execution
from vpd.traces.trace import ProgramError

if TYPE_CHECKING:
    from vpd.tools.toolkit import Toolkit

__all__ = ["Sandbox", "SandboxLimits", "default_sandbox", "run_program", "run_programs"]

# The worker polls briefly for each tool result before sleeping (see ProgramRun), only
# while no more programs run than there are CPUs.
_WORKER_SPIN_SECONDS = 200e-6
#: Temporary roots are named ``vpd-sandbox-<host pid>-<random>``, so a later host can tell
#: the leftovers of hosts that died without cleaning up (killed, ``os._exit``).
_ROOT_PREFIX = "vpd-sandbox-"
#: How long after its deadline a run's Execution comes back at the latest: the worker's
#: grace to report, and a margin; past it, a tool call still running is abandoned.
_RETURN_AFTER_DEADLINE = STOP_GRACE + 0.15
_UNNAMED_ROOT_AGE = 24 * 3600.0
_ZYGOTE_BOOT = (
    "import json, sys; sys.path[:0] = json.loads(sys.argv[1]); "
    "from vpd.programs.sandbox.zygote import main; sys.exit(main(sys.argv[1:]))"
)


def remove_leftover_roots(directory: str | None = None) -> list[str]:
    """Remove the temporary roots of sandboxes whose host process is gone.

    Args:
        directory: Where to look (default: the temporary directory).

    Returns:
        The folders removed.
    """
    removed = []
    base = directory or tempfile.gettempdir()
    with contextlib.suppress(OSError):
        for entry in os.scandir(base):
            if not entry.name.startswith(_ROOT_PREFIX) or not entry.is_dir(follow_symlinks=False):
                continue
            pid_text = entry.name[len(_ROOT_PREFIX) :].split("-", 1)[0]
            if pid_text.isdigit():
                if int(pid_text) == os.getpid() or _alive(int(pid_text)):
                    continue  # ours, or a live host's
            elif time.time() - entry.stat(follow_symlinks=False).st_mtime < _UNNAMED_ROOT_AGE:
                continue  # named by an earlier version, without the host's pid: only stale ones go
            shutil.rmtree(entry.path, ignore_errors=True)
            if not os.path.exists(entry.path):
                removed.append(entry.path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


@functools.lru_cache(maxsize=256)
def _marshalled(code: str) -> bytes:
    """The program's compiled code as bytes for the worker (same interpreter, so marshal is exact)."""
    return marshal.dumps(compile_program(code).code)


#: Jobs up to this size (header and compiled code, as encoded) go in the control datagram;
#: larger ones in a memory file passed with it, so no program is too large to send.
_MAX_INLINE_JOB = 64 * 1024


def _finished(run: ProgramRun | None) -> bool:
    return run is None or run.finished


class Sandbox:
    """Runs untrusted programs in disposable worker processes.

    Args:
        limits: Default limits of each run.
        spares: Workers kept forked ahead of time, ready for the next programs (0 forks
            each worker on demand: slower start-up, a little less memory).
        max_abandoned: Most tool calls abandoned at their runs' deadlines that may still be
            running (each holds a thread until its tool returns); past it, new runs fail at
            once with an error that says so, until some of those calls return.

    The template process starts on first use and is shared by every run of this sandbox;
    :meth:`close` stops it (use the sandbox as a context manager, or close it yourself; only
    the default sandbox of :func:`~vpd.run_program` is closed at interpreter exit). Its
    temporary directory is removed then, or, if the process died first, by the next
    sandbox started on this machine.

    Runs may be made from many threads at once; each one's conversation with its worker,
    and the host-side tool work it asks for, runs on a thread of the sandbox's own, which
    runs in a copy of the caller's context (``use_toolkit``, ``record_tool_calls`` and any
    other context variable apply to the tools).
    """

    def __init__(self, limits: SandboxLimits | None = None, *, spares: int = 2, max_abandoned: int = 64) -> None:
        if isinstance(spares, bool) or not isinstance(spares, int) or not 0 <= spares <= 64:
            raise InvalidArgumentError(f"spares must be an integer from 0 to 64, got {spares!r}.")
        if isinstance(max_abandoned, bool) or not isinstance(max_abandoned, int) or max_abandoned < 1:
            raise InvalidArgumentError(f"max_abandoned must be a positive integer, got {max_abandoned!r}.")
        self.max_abandoned = max_abandoned
        # Runs abandoned at their deadline whose tool call is still running on a runner thread.
        self.abandoned_runs = 0
        self.limits = limits or SandboxLimits()
        self.spares = spares
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._root: str | None = None
        self._exits: dict[int, int] = {}
        self._exit_cond = threading.Condition()
        # (when, tie-breaker, run, kill): at a run's deadline the watchdog asks it to stop; if it
        # has not reported by STOP_GRACE later, a second entry kills it.
        self._deadlines: list[tuple[float, int, weakref.ref[ProgramRun], bool]] = []
        self._runners = Runners()
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
            remove_leftover_roots()
            host, zygote = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            self._root = tempfile.mkdtemp(prefix=f"{_ROOT_PREFIX}{os.getpid()}-")
            os.chmod(self._root, 0o555)
            # Isolated mode (-I: no environment variables, user site or current directory on
            # the path) from a neutral directory: the zygote's path is exactly the host's
            # import path, given here, and nothing of the host's temporary paths shows.
            paths = json.dumps([os.path.abspath(p) for p in sys.path if p])
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-B",
                    "-c",
                    _ZYGOTE_BOOT,
                    paths,
                    str(zygote.fileno()),
                    self._root,
                    str(self.spares),
                ],
                pass_fds=(zygote.fileno(),),
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                cwd="/",
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
                raise SandboxError(
                    "The sandbox's template process failed to start: "
                    + bounded(err.decode(errors="replace")[-1500:] or ready, 1600)
                )
            if self._process.stderr:
                self._process.stderr.close()
            host.settimeout(None)
            self.isolation = dict(ready.get("isolation", {}))
            self._control = host
            threading.Thread(target=self._read_control, args=(host,), name="vpd-sandbox-control", daemon=True).start()
            return host

    def _submit(self, payload: bytes, worker: socket.socket) -> None:
        """Hand a job to the template process, restarting it once if it died.

        A job larger than :data:`_MAX_INLINE_JOB` travels in a memory file, whatever its size.
        """
        memfd = None
        datagram, fds = payload, [worker.fileno()]
        if len(payload) > _MAX_INLINE_JOB:
            memfd = os.memfd_create("vpd-job", os.MFD_CLOEXEC)
            view = memoryview(payload)
            while view:
                view = view[os.write(memfd, view) :]
            datagram, fds = wire.MEMFD_JOB, [worker.fileno(), memfd]
        try:
            self._send_job(datagram, fds)
        finally:
            if memfd is not None:
                os.close(memfd)

    def _send_job(self, datagram: bytes, fds: list[int]) -> None:
        for attempt in (1, 2):
            control = self._ensure_started()
            try:
                with self._send_lock:
                    socket.send_fds(control, [datagram], fds)
                return
            except OSError as exc:
                if attempt == 2 or exc.errno == errno.EMSGSIZE:
                    raise SandboxError(f"The sandbox could not start the program: {exc}.") from exc
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

    def watch(self, run: ProgramRun, deadline: float, *, kill: bool = False) -> None:
        """Have the watchdog stop ``run`` at ``deadline`` (monotonic seconds) unless it finished.

        With ``kill``, kill its worker then instead (the second step of stopping a run).
        """
        with self._deadline_cond:
            # A weak reference: a finished run's trace and masks are not kept until its deadline.
            heapq.heappush(self._deadlines, (deadline, next(self._watch_counter), weakref.ref(run), kill))
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
                deadline, _, ref, kill = self._deadlines[0]
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    self._deadline_cond.wait(remaining)
                    continue
                heapq.heappop(self._deadlines)
                run = ref()
                if run is None:
                    continue
                if kill:
                    run.kill()
                    continue
                kill_at = run.expire()
                if kill_at is not None:
                    heapq.heappush(self._deadlines, (kill_at, next(self._watch_counter), ref, True))

    def exit_status(self, pid: int, wait: float) -> int | None:
        """A worker's exit status as the zygote reported it, waiting up to ``wait`` seconds (None if unknown)."""
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

        if not isinstance(code, str):
            raise InvalidArgumentError(f"A program must be a string, not {type(code).__name__}.")
        started = self.start_run(code, load_image(image), toolkit or current_toolkit(), limits or self.limits, meta)
        if isinstance(started, Execution):
            return started
        # The conversation (and the tool work it serves) runs on a thread of its own, so that
        # this call returns at the deadline even when a tool is still running. It runs in a
        # copy of this thread's context: tools see the caller's use_toolkit, record_tool_calls...
        future: Future[Outcome] = Future()
        context = contextvars.copy_context()
        try:
            self.spawn(lambda: future.set_result(context.run(self.serve_run, started)))
        except BaseException:
            self.discard_run(started)
            raise
        try:
            outcome = future.result(timeout=started.returns_by - time.monotonic())
        except FutureTimeout:
            outcome = self.abandon_run(started) or future.result()  # (None: it ended meanwhile)
        return self.execution_of(started, outcome)

    # The steps of a run, shared by run() and run_many() (vpd.programs.sandbox.batch).
    def start_run(
        self, code: str, data: ImageData, toolkit: Toolkit, limits: SandboxLimits, meta: dict[str, Any] | None
    ) -> Started | Execution:
        """Check and compile the program and hand it to a worker; an Execution if it cannot run."""
        started = time.perf_counter()
        info = {"sha256": data.sha256, "width": data.width, "height": data.height}
        try:
            errors = check_program(code, toolkit.tools)
        except RecursionError:
            errors = [ProgramError("static-check", "The program is nested too deeply to check.")]
        if not errors:
            try:
                compiled = _marshalled(code)  # compiled once, here; the worker runs this code object
            except (ValueError, RecursionError):  # marshal refuses a code object nested too deeply
                errors = [ProgramError("compile", "The program is nested too deeply to run.")]
        if not errors and self.abandoned_runs >= self.max_abandoned:
            errors = [ProgramError("tool", self._too_many_abandoned())]
        if errors:
            error = ProgramError(errors[0].kind, format_errors(errors), errors[0].line)
            return TraceRecorder().execution(code, info, None, error, time.perf_counter() - started, 0.0, meta)
        host, worker = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        job = {
            "type": "run",
            "image": info,
            "inputs": _entry_inputs(meta),
            "tools": [{"name": s.name, "kind": s.kind} for s in toolkit.tools.specs()],
            "limits": {"cpu_seconds": limits.cpu_seconds, "memory_bytes": limits.memory_mb * 1024 * 1024},
            "spin": _WORKER_SPIN_SECONDS if self.active_runs < CPUS else 0.0,
        }
        run = ProgramRun(self, host, data, toolkit, limits, program_lines=len(code.splitlines()) + 1)
        payload = json.dumps(job, ensure_ascii=False).encode("utf-8", "replace") + b"\0" + compiled
        try:
            self._submit(payload, worker)
        except BaseException:
            host.close()
            raise
        finally:
            worker.close()
        with self._active_lock:
            self.active_runs += 1
        deadline = time.monotonic() + limits.timeout
        return Started(run, code, info, meta, started, deadline, deadline + _RETURN_AFTER_DEADLINE)

    def _too_many_abandoned(self) -> str:
        return (
            f"Not run: {self.abandoned_runs} tool calls abandoned at their runs' deadlines are still running "
            f"in this process (the limit is {self.max_abandoned}), so the tools are slower than the runs' "
            "timeout. Raise the timeout or make the tools faster; runs start again as those calls return."
        )

    def serve_run(self, started: Started) -> Outcome:
        """Talk to the worker until the run ends (on a runner thread); never raises."""
        run = started.run
        try:
            return run.serve(started.deadline)
        except BaseException as exc:  # a bug of ours or of a tool: never lose the batch over one run
            run.kill()
            return None, ProgramError("worker-crash", bounded(f"The host failed serving the run: {exc!r}"))
        finally:
            # Closed here, by its only user: an abandoned run's socket outlives the call that
            # abandoned it until its tool call returns, so its descriptor is never reused early.
            run.sock.close()
            with self._active_lock:
                self.active_runs -= 1
                run.served = True
                if run.abandoned:
                    self.abandoned_runs -= 1

    def abandon_run(self, started: Started) -> Outcome | None:
        """Abandon a run still being served past its deadline; None if its serving ended meanwhile."""
        run = started.run
        with self._active_lock:
            if run.served:
                return None
            run.abandoned = True
            self.abandoned_runs += 1
        return run.abandon()

    def execution_of(self, started: Started, outcome: Outcome) -> Execution:
        """The run's Execution, from what it recorded and how it ended."""
        answer, error = outcome
        wall = time.perf_counter() - started.wall_start
        run = started.run
        return run.recorder.execution(started.code, started.info, answer, error, wall, run.server.seconds, started.meta)

    def discard_run(self, started: Started) -> None:
        """End a started run that nobody will serve (no thread could be started for it)."""
        run = started.run
        run.kill()
        run.sock.close()
        with self._active_lock:
            self.active_runs -= 1
            run.served = True

    def spawn(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on a runner thread of this sandbox.

        Raises:
            SandboxError: No thread can be started (the process is out of threads or memory).
        """
        try:
            self._runners.submit(fn)
        except RuntimeError as exc:  # "can't start new thread"
            raise SandboxError(
                f"Could not start a thread to serve a program ({exc}); the process is out of threads or memory."
            ) from exc

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
        """Run many programs concurrently (see :func:`run_programs` and :mod:`~vpd.programs.sandbox.batch`)."""
        from vpd.tools.toolkit import current_toolkit

        toolkit = toolkit or current_toolkit()
        if isinstance(codes, str) or not isinstance(codes, Sequence):
            raise InvalidArgumentError("codes must be a list of programs (strings); for one program use run().")
        if metas is not None and len(metas) != len(codes):
            raise InvalidArgumentError(f"Got {len(codes)} programs but {len(metas)} metas; pass one per program.")
        for position, code in enumerate(codes):
            if not isinstance(code, str):
                raise InvalidArgumentError(f"Program {position} must be a string, not {type(code).__name__}.")
        if max_workers is not None and (isinstance(max_workers, bool) or not isinstance(max_workers, int)):
            raise InvalidArgumentError(f"max_workers must be a positive integer, got {max_workers!r}.")
        if max_workers is not None and max_workers < 1:
            raise InvalidArgumentError(f"max_workers must be a positive integer, got {max_workers!r}.")
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
        jobs = list(zip(codes, per_program, metas or [None] * len(codes)))
        workers = max_workers or max(2, (os.cpu_count() or 2) * 2)
        return run_batch(self, jobs, toolkit, limits or self.limits, workers)


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


def _entry_inputs(meta: dict[str, Any] | None) -> dict[str, Any]:
    """The run's question and answer choices from its meta, for execute_command's extra parameters."""
    meta = meta or {}
    question = meta.get("question")
    choices = meta.get("choices")
    return {
        "question": question if isinstance(question, str) else None,
        "choices": [str(c) for c in choices] if isinstance(choices, (list, tuple)) else None,
        # Programs written from a ViperGPT prompt get its API defaults (llm_query's long_answer).
        "api": "vipergpt" if meta.get("prompt_style") == "vipergpt" else "vpd",
    }


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
    process; its tool calls are served (and traced) here by ``toolkit``. Programs written
    for ViperGPT may declare more parameters: ``query`` (or ``question``) gets
    ``meta["question"]``, ``possible_answers`` (or ``choices``) ``meta["choices"]``, display
    parameters (``my_fig``...) None, and API names (``ImagePatch``...) the API itself.
    With ``meta["prompt_style"] == "vipergpt"`` (programs written from a ViperGPT prompt),
    ``llm_query``'s ``long_answer`` defaults to True, as in ViperGPT.

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
        SandboxError: The sandbox itself cannot start.
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
