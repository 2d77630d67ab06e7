"""The template process that hands one disposable worker to each program.

The host starts it once (``python -I -c ... PATHS FD ROOT SPARES``, isolated, from ``/``,
its import path given by the host): a small interpreter that imports the worker code, then
isolates itself (its own empty network namespace, an empty root directory and an
unprivileged user where the kernel and privileges allow), and waits for jobs on a Unix
SEQPACKET socket. It keeps a few workers forked ahead of time, each already past its job-
independent set-up (signals, descriptors, environment). A job carries the program (compiled
by the host, so nothing is compiled twice) and the worker end of a socket pair; the zygote
passes both to a spare worker, which sets the per-program limits (CPU time, address space,
no files, no new processes, no core dumps) and runs the program, talking to the host
directly; the zygote then forks a replacement. Forking from this small process, never from
the host that holds the models, keeps a fork near a millisecond, and forking ahead takes
even that off a program's start-up.

The zygote reports each worker's exit status to the host and exits when the host closes
the control socket, killing every worker, spare or running.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import json
import marshal
import math
import os
import resource
import select
import signal
import socket
import sys
from typing import Any

from vpd.programs.sandbox import wire

__all__ = ["main"]

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_PDEATHSIG = 1
_NOBODY = 65534
#: Largest job message (the compiled program included).
_MAX_JOB_BYTES = 1 << 20
#: The template's address-space size, measured before isolation (no /proc after chroot).
_BASE_VM = [512 * 1024 * 1024]


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    # Loaded once in the zygote, so forked workers do not pay for it.
    return ctypes.CDLL(None, use_errno=True)


def _isolate(root: str | None) -> dict[str, Any]:
    """Isolate the zygote once; every worker inherits it. Returns what succeeded."""
    done: dict[str, Any] = {"network": False, "chroot": False, "unprivileged": os.getuid() != 0}
    libc = _libc()
    is_root = os.getuid() == 0
    flags = _CLONE_NEWNET if is_root else (_CLONE_NEWUSER | _CLONE_NEWNET)
    if libc.unshare(flags) == 0:
        done["network"] = True
    if is_root and root:
        with contextlib.suppress(OSError):
            os.chroot(root)
            os.chdir("/")
            done["chroot"] = True
    if is_root:
        with contextlib.suppress(OSError):
            os.setgroups([])
            os.setgid(_NOBODY)
            os.setuid(_NOBODY)
            done["unprivileged"] = True
    libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    return done


def _vm_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 512 * 1024 * 1024


def _spare(link: socket.socket) -> None:
    """In a pre-forked worker: get ready, wait for a job, then limits and the program (never returns).

    Everything that does not depend on the job (signals, descriptors, the environment)
    happens before the job arrives, so a program's start-up cost is only the hand-off.
    """
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        keep = link.fileno()
        os.closerange(3, keep)
        os.closerange(keep + 1, 65536)
        os.environ.clear()
        from vpd.programs.sandbox.worker import run_worker

        try:
            data, fds, _, _ = socket.recv_fds(link, _MAX_JOB_BYTES, 2)
        except OSError:
            os._exit(0)
        link.close()
        if not data or not fds:
            os._exit(0)  # the zygote is shutting down
        if data == wire.MEMFD_JOB and len(fds) == 2:  # a large job comes in a memory file
            data = _read_all(fds.pop())
        job, code = _decode_job(data)
        _limit(job.get("limits", {}))
        run_worker(socket.socket(fileno=fds[0]), job, code)
    finally:
        os._exit(71)


def _read_all(fd: int) -> bytes:
    """Read a memory file from its start, then close it (before the descriptor limit applies)."""
    chunks = []
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _decode_job(data: bytes) -> tuple[dict[str, Any], Any]:
    """A job is JSON, a NUL byte, and the host's compiled code (marshal): never compiled here."""
    header, _, code = data.partition(b"\0")
    return json.loads(header), marshal.loads(code)


def _limit(limits: dict[str, Any]) -> None:
    cpu = max(1, math.ceil(float(limits.get("cpu_seconds", 10))))
    memory = int(limits.get("memory_bytes", 512 * 1024 * 1024))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (_BASE_VM[0] + memory, _BASE_VM[0] + memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    # No new descriptors at all: the socket to the host is already open (limits apply
    # when a descriptor is created, not when it is used).
    resource.setrlimit(resource.RLIMIT_NOFILE, (3, 3))
    sys.setrecursionlimit(max(100, int(limits.get("recursion", 300))))
    gc.enable()


def _report(control: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        control.send(json.dumps(message).encode())


class _Pool:
    """The zygote's children: spare workers waiting for a job, and running ones."""

    def __init__(self, spares: int) -> None:
        self.size = spares
        self.spares: list[tuple[int, socket.socket]] = []
        self.running: set[int] = set()

    def fill(self) -> None:
        while len(self.spares) < self.size:
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            pid = os.fork()
            if pid == 0:
                mine.close()
                _spare(theirs)
            theirs.close()
            self.spares.append((pid, mine))

    def start(self, data: bytes, fds: list[int]) -> None:
        """Hand a job and its socket (and memory file) to a spare worker (forking one if none is left)."""
        while True:
            if not self.spares:
                self.fill()
            pid, link = self.spares.pop(0)
            try:
                socket.send_fds(link, [data], fds)
            except OSError:  # that spare died: try the next one
                link.close()
                continue
            link.close()
            self.running.add(pid)
            return

    def reap(self, control: socket.socket) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.running:
                self.running.discard(pid)
                _report(control, {"type": "exit", "pid": pid, "code": os.waitstatus_to_exitcode(status)})
            else:  # a spare that died before its job
                for entry in [e for e in self.spares if e[0] == pid]:
                    entry[1].close()
                    self.spares.remove(entry)

    def kill_all(self) -> None:
        for pid in [*self.running, *(pid for pid, _ in self.spares)]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    """Run the zygote on the control socket whose descriptor is ``argv[1]`` (``argv[0]`` unread)."""
    args = sys.argv if argv is None else argv
    control = socket.socket(fileno=int(args[1]))
    root = args[2] if len(args) > 2 and args[2] else None
    spares = int(args[3]) if len(args) > 3 else 2

    # Import everything a worker needs before isolating: after chroot nothing more can be
    # imported. (Workers never compile: the host sends compiled code.)
    import RestrictedPython.Guards  # noqa: F401

    import vpd.helpers
    import vpd.programs.sandbox.worker  # noqa: F401

    devnull = os.open(os.devnull, os.O_RDWR)
    _BASE_VM[0] = _vm_bytes()
    isolation = _isolate(root)
    for std in (0, 1, 2):
        os.dup2(devnull, std)
    os.close(devnull)

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    pool = _Pool(max(0, spares))
    gc.freeze()  # keep the heap's pages shared with the workers (fewer copy-on-write faults)
    pool.fill()
    _report(control, {"type": "ready", "pid": os.getpid(), "isolation": isolation})
    try:
        while True:
            ready, _, _ = select.select([control.fileno(), wake_r], [], [], 1.0)
            if wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 512)
            pool.reap(control)
            if control.fileno() not in ready:
                continue
            try:
                data, fds, _, _ = socket.recv_fds(control, _MAX_JOB_BYTES, 2)
            except OSError:
                break
            if not data:
                break
            if fds and (len(fds) == 1 or data == wire.MEMFD_JOB):
                pool.start(data, fds)
            for fd in fds:
                os.close(fd)
            # The replacement is forked after the hand-off, off the program's critical path.
            pool.fill()
    finally:
        pool.kill_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
