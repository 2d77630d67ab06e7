"""Which program lines ran, how often, which ``return`` was taken and where a stop landed.

The compiled program counts its own lines (see :data:`vpd.programs.policy.LINE_COUNTS`): a
list increment before the first statement on each line, so counting costs next to nothing
even in hot loops and runs only in program code. A compound statement's line counts when
reached (a loop header once per entry), a body's lines each time they run.

The counts reach the host in the worker's ``done`` or ``stopped`` message and become
:attr:`vpd.traces.trace.Trace.line_counts`; the views mark lines that ran apart from lines
that did not.
"""

from __future__ import annotations

from types import CodeType, FrameType
from typing import Any

from vpd.programs.policy import LINE_COUNTS, PROGRAM_FILENAME, RETURN_LINE

__all__ = ["MAX_LINES_CHARS", "LineCounts", "program_frame_line"]

#: Most characters the line counts may take in the worker's last message (it also carries the
#: answer and the last events, within the wire's limit); past it they are not sent.
MAX_LINES_CHARS = 24_000


def program_frame_line(frame: FrameType | None) -> int | None:
    """The program line ``frame`` (or the nearest program frame it was called from) is at."""
    while frame is not None:
        if frame.f_code.co_filename == PROGRAM_FILENAME:
            return frame.f_lineno
        frame = frame.f_back
    return None


def _last_line(code: CodeType) -> int:
    """The highest line any instruction of ``code`` (or of code nested in it) is on."""
    last = max((line for _, _, line in code.co_lines() if line is not None), default=0)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            last = max(last, _last_line(const))
    return last


class LineCounts:
    """The lists a compiled program counts its lines into (put in its scope by :meth:`install`)."""

    def __init__(self, code: CodeType) -> None:
        self.counts = [0] * (_last_line(code) + 2)
        self.returned: list[int | None] = [None]

    def install(self, scope: dict[str, Any]) -> None:
        """Put the counters in the program's globals (names programs cannot write)."""
        scope[LINE_COUNTS] = self.counts
        scope[RETURN_LINE] = self.returned

    def report(self, *, answered: bool) -> dict[str, Any]:
        """For the host's message: ``{"lines": [count of line 0, of line 1, ...], "return_line": n or None}``.

        Dense (a count per line up to the last that ran), so the message stays small; a
        program that ran so many lines that even this would crowd its message sends
        ``"lines": None`` (counts not recorded) rather than fail the run.
        """
        last = max((line for line, count in enumerate(self.counts) if count), default=0)
        lines: list[int] | None = self.counts[: last + 1]
        if len(str(lines)) > MAX_LINES_CHARS:
            lines = None
        return {"lines": lines, "return_line": self.returned[0] if answered else None}
