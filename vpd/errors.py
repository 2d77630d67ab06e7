"""The exception tree of vpd.

Every error vpd raises on purpose derives from :class:`VPDError`, so callers can
catch one type. Messages say what went wrong *and* what to do about it.

    VPDError
    ├── ConfigError            bad settings: unknown capability/backend, bad TOML, bad env var
    ├── ImageError             missing, unreadable or corrupt image input
    ├── InvalidArgumentError   a tool or ImagePatch method called with bad arguments
    ├── RegistrationError      @vpd.tool or register_backend misuse: bad name, duplicate, missing hints
    ├── BackendError           a backend (a model behind a capability) failed while running
    │   └── BackendUnavailable a capability cannot run here (missing extra, weights, or LLM)
    ├── ToolError              a user tool (``@vpd.tool``) raised, or returned what no program can take
    ├── SandboxError           the sandbox itself cannot run programs (not a program's failure)
    ├── TraceFileError         a file of traces cannot be read or appended to (bad lines named by number)
    └── DatasetError           a benchmark's files cannot be read, or have bad rows (named by line or index)

A program that fails is data, not an exception: its :class:`~vpd.traces.Execution` says why.

This module depends on the standard library only.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "ConfigError",
    "DatasetError",
    "ImageError",
    "InvalidArgumentError",
    "RegistrationError",
    "SandboxError",
    "ToolError",
    "TraceFileError",
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


class RegistrationError(VPDError, ValueError):
    """A user tool or a backend could not be registered (bad name, duplicate, missing docstring or hints)."""


class BackendError(VPDError, RuntimeError):
    """A backend failed while running. ``capability`` names what it serves, ``backend`` the backend."""

    def __init__(self, message: str, *, capability: str | None = None, backend: str | None = None) -> None:
        super().__init__(message)
        self.capability = capability
        self.backend = backend


class BackendUnavailable(BackendError):
    """A capability cannot run in this environment.

    Raised, for example, when an optional dependency is missing (the message names the
    ``pip install 'vpd[...]'`` extra), when model weights are neither cached nor reachable,
    or when no LLM is configured.
    """


class ToolError(VPDError, RuntimeError):
    """A user tool (registered with ``@vpd.tool``) raised, or returned a value no program can take.

    ``tool`` names the tool; the tool's own exception, if any, is chained.
    """

    def __init__(self, message: str, *, tool: str | None = None) -> None:
        super().__init__(message)
        self.tool = tool


class SandboxError(VPDError, RuntimeError):
    """The sandbox itself cannot run programs (its template process failed to start).

    A program that fails never raises this: its :class:`~vpd.traces.Execution` records why.
    """


class TraceFileError(VPDError, ValueError):
    """A JSONL file of traces cannot be read or appended to.

    Bad lines are named by file and line number; ``read_traces(..., skip_bad=True)`` skips
    and lists them instead.
    """


class DatasetError(VPDError, ValueError):
    """A dataset (a benchmark's questions and answers) cannot be read, or has bad rows.

    Raised for a missing or unreadable file, a format that cannot be recognised, or
    missing labels; and for bad rows with ``load_dataset(..., on_bad="raise")``, named by
    file and line (or index) and id. With ``on_bad="skip"`` bad rows are listed in
    ``Dataset.skipped`` instead.
    """
