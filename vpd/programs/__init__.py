"""Programs: the API prompt, generation, the sandbox, execution and tracing."""

from vpd.programs.api import render_api
from vpd.programs.checker import check_program
from vpd.programs.library import Example, ExampleLibrary
from vpd.programs.prompt import estimate_tokens, render_prompt, repair_messages
from vpd.programs.sandbox import Execution, Sandbox, SandboxLimits, run_program, run_programs
from vpd.programs.trace import Assignment, PrintOutput, ProgramError, ToolCall, Trace

__all__ = [
    "Assignment",
    "Example",
    "ExampleLibrary",
    "Execution",
    "PrintOutput",
    "ProgramError",
    "Sandbox",
    "SandboxLimits",
    "ToolCall",
    "Trace",
    "check_program",
    "estimate_tokens",
    "render_api",
    "render_prompt",
    "repair_messages",
    "run_program",
    "run_programs",
]
