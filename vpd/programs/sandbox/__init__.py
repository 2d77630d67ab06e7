"""The sandbox: untrusted programs run in disposable worker processes, every tool call traced.

Split by role:

* :mod:`~vpd.programs.sandbox.host`: :class:`Sandbox`, the process lifecycle (the zygote,
  the watchdog, running one program or many) and :func:`run_program` / :func:`run_programs`;
* :mod:`~vpd.programs.sandbox.limits`: :class:`SandboxLimits`;
* :mod:`~vpd.programs.sandbox.run`: the host's conversation with one worker;
* :mod:`~vpd.programs.sandbox.serving`: serving a program's tool requests through a toolkit;
* :mod:`~vpd.programs.sandbox.recording`: recording the trace, bounded;
* :mod:`~vpd.programs.sandbox.zygote`: the template process that forks workers;
* :mod:`~vpd.programs.sandbox.worker`: what runs in a worker (guards, scope, tool client);
* :mod:`~vpd.programs.sandbox.wire`: the messages between host and worker.

The records a run produces (:class:`~vpd.traces.Execution`, :class:`~vpd.traces.Trace`)
live in :mod:`vpd.traces`.
"""

from vpd.programs.sandbox.host import Sandbox, default_sandbox, run_program, run_programs
from vpd.programs.sandbox.limits import SandboxLimits

__all__ = ["Sandbox", "SandboxLimits", "default_sandbox", "run_program", "run_programs"]
