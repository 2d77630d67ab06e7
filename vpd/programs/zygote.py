"""The template process that forks one disposable worker per program.

The host starts it once (``python -m vpd.programs.zygote FD``): a small interpreter that
imports the program runtime, then isolates itself (its own empty network namespace, an
empty root directory and an unprivileged user where the kernel and privileges allow),
and waits for jobs on a Unix SEQPACKET socket. Each job carries the program and the worker
end of a socket pair; the zygote forks, the child sets per-program limits (CPU time,
address space, no files, no new processes, no core dumps, an empty environment) and runs
the program, talking to the host directly. Forking from this small process, never from the
host that holds the models, keeps a program's start-up cost near a millisecond.

The zygote reports each child's exit status to the host and exits when the host closes the
control socket, killing any child still running.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import json
import os
import resource
import select
import signal
import socket
import sys
from typing import Any

__all__ = ["main"]

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_PDEATHSIG = 1
_NOBODY = 65534


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


def _child(fd: int, job: dict[str, Any], code: Any, base_vm: int) -> None:
    """In the forked worker: limits, then run the program (never returns)."""
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        os.closerange(3, fd)
        os.closerange(fd + 1, 65536)
        limits = job.get("limits", {})
        cpu = max(1, int(limits.get("cpu_seconds", 10)))
        memory = int(limits.get("memory_bytes", 512 * 1024 * 1024))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_AS, (base_vm + memory, base_vm + memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
        # No new descriptors at all: the socket to the host is already open (limits apply
        # when a descriptor is created, not when it is used).
        resource.setrlimit(resource.RLIMIT_NOFILE, (3, 3))
        os.environ.clear()
        sys.setrecursionlimit(max(100, int(limits.get("recursion", 300))))
        gc.enable()
        from vpd.programs.runtime import run_worker

        run_worker(socket.socket(fileno=fd), job, code)
    finally:
        os._exit(71)


def _report(control: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        control.send(json.dumps(message).encode())


def main(argv: list[str] | None = None) -> int:
    """Run the zygote on the control socket whose descriptor is ``argv[1]``."""
    args = sys.argv if argv is None else argv
    control = socket.socket(fileno=int(args[1]))
    root = args[2] if len(args) > 2 and args[2] else None

    # Import and warm up everything a worker needs before isolating: after chroot nothing
    # more can be imported.
    import vpd.helpers
    import vpd.programs.runtime  # noqa: F401
    from vpd.programs.policy import compile_program as cached

    # A small cache of its own: the host's may hold thousands of programs, and every byte
    # this process holds counts against each worker's address-space limit.
    compile_program = functools.lru_cache(maxsize=16)(cached.__wrapped__)
    compile_program("def execute_command(image):\n    return 1\n")

    devnull = os.open(os.devnull, os.O_RDWR)
    base_vm = _vm_bytes()
    isolation = _isolate(root)
    for std in (0, 1, 2):
        os.dup2(devnull, std)
    os.close(devnull)

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: set[int] = set()
    gc.freeze()  # keep the heap's pages shared with the workers (fewer copy-on-write faults)
    _report(control, {"type": "ready", "pid": os.getpid(), "isolation": isolation})
    try:
        while True:
            ready, _, _ = select.select([control.fileno(), wake_r], [], [], 1.0)
            if wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 512)
            _reap(children, control)
            if control.fileno() not in ready:
                continue
            try:
                data, fds, _, _ = socket.recv_fds(control, 1 << 20, 1)
            except OSError:
                break
            if not data:
                break
            job = json.loads(data)
            if job.get("type") != "run" or len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                continue
            compiled = compile_program(job["code"])
            if not compiled.ok:
                os.close(fds[0])  # the host compiled it first; this only happens on a mismatch
                continue
            pid = os.fork()
            if pid == 0:
                _child(fds[0], job, compiled.code, base_vm)
            os.close(fds[0])
            children.add(pid)
    finally:
        for pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    return 0


def _reap(children: set[int], control: socket.socket) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        children.discard(pid)
        code = os.waitstatus_to_exitcode(status)
        _report(control, {"type": "exit", "pid": pid, "code": code})


if __name__ == "__main__":
    sys.exit(main())
