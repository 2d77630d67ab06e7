"""Programs: the API prompt, generation, the sandbox, execution and tracing."""

from vpd.programs.api import render_api

__all__ = ["render_api"]
