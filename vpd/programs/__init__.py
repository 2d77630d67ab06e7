"""Programs: the API prompt, worked examples, generation, static checks and the sandbox.

The records a program run produces (``Trace``, ``Execution``) live in :mod:`vpd.traces`.
"""

from vpd.programs.api import render_api
from vpd.programs.checker import check_program
from vpd.programs.library import Example, ExampleLibrary
from vpd.programs.prompt import estimate_tokens, render_prompt, repair_messages
from vpd.programs.sandbox import Sandbox, SandboxLimits, run_program, run_programs

__all__ = [
    "Example",
    "ExampleLibrary",
    "Sandbox",
    "SandboxLimits",
    "check_program",
    "estimate_tokens",
    "render_api",
    "render_prompt",
    "repair_messages",
    "run_program",
    "run_programs",
]
