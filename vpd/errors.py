"""The exception tree of vpd.

Every error vpd raises on purpose derives from :class:`VPDError`, so callers can
catch one type. Messages say what went wrong *and* what to do about it.

    VPDError
    ├── ConfigError            bad settings: unknown capability/backend, bad TOML, bad env var
    ├── ImageError             missing, unreadable or corrupt image input
    ├── InvalidArgumentError   a tool or ImagePatch method called with bad arguments
    ├── ToolRegistrationError  @vpd.tool misuse: bad name, duplicate, missing docstring/type hints
    └── ToolError              a tool failed while running
        └── ToolUnavailable    a capability cannot run here (missing extra, weights, or LLM)
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ImageError",
    "InvalidArgumentError",
    "ToolError",
    "ToolRegistrationError",
    "ToolUnavailable",
    "VPDError",
]


class VPDError(Exception):
    """Root of every exception raised by vpd."""


class ConfigError(VPDError, ValueError):
    """A setting is invalid: unknown capability or backend, bad TOML, bad environment variable."""


class ImageError(VPDError, ValueError):
    """An image could not be loaded or is not usable (missing file, corrupt bytes, bad array)."""


class InvalidArgumentError(VPDError, ValueError):
    """A tool or ImagePatch method got an argument it cannot use (wrong type, empty query, ...)."""


class ToolRegistrationError(VPDError, ValueError):
    """A tool or backend could not be registered (bad name, duplicate, missing docstring or hints)."""


class ToolError(VPDError, RuntimeError):
    """A tool failed while running. ``tool`` names the capability or tool, ``backend`` the backend."""

    def __init__(self, message: str, *, tool: str | None = None, backend: str | None = None) -> None:
        super().__init__(message)
        self.tool = tool
        self.backend = backend


class ToolUnavailable(ToolError):
    """A capability cannot run in this environment.

    Raised, for example, when an optional dependency is missing (the message names the
    ``pip install 'vpd[...]'`` extra), when model weights are neither cached nor reachable,
    or when no LLM is configured.
    """
