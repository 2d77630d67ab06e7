"""The tool calls the toolkit serves, as they happen.

For every operation it serves, the toolkit emits one :class:`~vpd.traces.ToolCall` record
(the same record a trace holds; ``index`` -1 and ``line`` None until a recorder places it).
The sandbox's recorder and benchmarks subscribe with :func:`record_tool_calls`; the
toolkit itself never keeps them. Subscriptions are per context (thread or asyncio task),
so a host serving many programs at once keeps their calls apart.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

from vpd.traces.trace import ToolCall

__all__ = ["emit", "record_tool_calls"]

_listeners: contextvars.ContextVar[tuple[Callable[[ToolCall], None], ...]] = contextvars.ContextVar(
    "vpd_tool_listeners", default=()
)


def emit(call: ToolCall) -> None:
    """Send ``call`` to the listeners of the current context."""
    for listener in _listeners.get():
        listener(call)


@contextlib.contextmanager
def record_tool_calls(
    listener: Callable[[ToolCall], None] | None = None, *, numbered: bool = True
) -> Iterator[list[ToolCall]]:
    """Collect the tool calls served in this context, numbered in the order they happened.

    Example:
        >>> with record_tool_calls() as calls:
        ...     patch.find("cup")
        >>> [c.operation for c in calls]
        ['find']

    Args:
        listener: Also call this for each call, as it happens.
        numbered: Set ``index`` to each call's position in the list; False keeps the records
            as emitted (``index`` -1), for a recorder that places them in a run itself.

    Yields:
        The list the calls are appended to.
    """
    calls: list[ToolCall] = []

    def collect(call: ToolCall) -> None:
        placed = call.placed(len(calls)) if numbered else call
        calls.append(placed)
        if listener is not None:
            listener(placed)

    token = _listeners.set((*_listeners.get(), collect))
    try:
        yield calls
    finally:
        _listeners.reset(token)
