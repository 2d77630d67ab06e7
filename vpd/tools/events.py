"""Events the toolkit emits for every tool call it serves.

The tracer (``vpd.programs``) and benchmarks subscribe with :func:`record_tool_calls`;
the toolkit itself never keeps them. Subscriptions are per context (thread or asyncio
task), so a host serving many programs at once keeps their events apart.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ToolEvent", "emit", "record_tool_calls"]


@dataclass(frozen=True)
class ToolEvent:
    """One tool call as the toolkit served it.

    Attributes:
        operation: What the program asked for: ``find``, ``ocr``, ``simple_query``, ... or a
            user tool's name.
        capability: The capability that answered (``detect``, ``ocr``, ...; ``tool`` for user tools).
        backend: Backend name (``owlv2``, ``nanodet``, ...).
        model: Model id or path, if any.
        image: The image's content hash (first 16 hex digits), if an image was involved.
        box: ``(x0, y0, x1, y1)`` of the region the tool looked at (top-left origin), if any.
        inputs: The call's arguments, JSON-safe.
        output: A JSON-safe summary of the result (boxes, text, numbers, booleans).
        seconds: Wall time of the call (near zero on a cache hit).
        cache_hit: Whether the result came from the result cache.
        error: The error message, if the call failed.
        details: Extra, backend-specific facts (e.g. which COCO class answered a query).
    """

    operation: str
    capability: str
    backend: str
    model: str | None
    image: str | None
    box: tuple[int, int, int, int] | None
    inputs: dict[str, Any]
    output: Any
    seconds: float
    cache_hit: bool
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


_listeners: contextvars.ContextVar[tuple[Callable[[ToolEvent], None], ...]] = contextvars.ContextVar(
    "vpd_tool_listeners", default=()
)


def emit(event: ToolEvent) -> None:
    """Send ``event`` to the listeners of the current context."""
    for listener in _listeners.get():
        listener(event)


@contextlib.contextmanager
def record_tool_calls(listener: Callable[[ToolEvent], None] | None = None) -> Iterator[list[ToolEvent]]:
    """Collect the tool events emitted in this context.

    Example:
        >>> with record_tool_calls() as events:
        ...     patch.find("cup")
        >>> [e.operation for e in events]
        ['find']

    Args:
        listener: Also call this for each event, as it happens.

    Yields:
        The list the events are appended to.
    """
    events: list[ToolEvent] = []

    def collect(event: ToolEvent) -> None:
        events.append(event)
        if listener is not None:
            listener(event)

    token = _listeners.set((*_listeners.get(), collect))
    try:
        yield events
    finally:
        _listeners.reset(token)
