"""The resource limits of one program run."""

from __future__ import annotations

import math
from dataclasses import dataclass

from vpd.errors import InvalidArgumentError

__all__ = ["SandboxLimits"]


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one program run.

    Attributes:
        timeout: Wall-clock seconds for the whole run, tool calls included.
        cpu_seconds: CPU seconds the worker itself may use (tools run in the host).
        memory_mb: Address space the worker may add on top of the template process.
        max_tool_calls: Tool calls one program may make.
    """

    timeout: float = 60.0
    cpu_seconds: float = 10.0
    memory_mb: int = 512
    max_tool_calls: int = 1000

    def __post_init__(self) -> None:
        for name in ("timeout", "cpu_seconds"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise InvalidArgumentError(f"{name} must be a positive number of seconds, got {value!r}.")
        for name in ("memory_mb", "max_tool_calls"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}.")
