"""How one program run ended: :class:`Execution`, the result of ``vpd.run_program``.

A record like :class:`~vpd.traces.trace.Trace`: built by the sandbox's host, read by the
solver, the renderers and the distillation pipeline, none of which needs the process
manager that made it.

This module depends on the standard library only; ``__repr__`` and ``_repr_html_`` import
their renderer when called (the display exception of the layer contract).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vpd.traces.trace import ProgramError, Trace

__all__ = ["Execution"]


@dataclass(frozen=True)
class Execution:
    """How one program run ended.

    Attributes:
        answer: The program's answer as JSON (str, int, float, bool, None, lists and dicts), or None.
        error: Why it failed (:class:`~vpd.traces.trace.ProgramError`), or None.
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
