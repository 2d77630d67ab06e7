"""vpd: Visual Program Distillation.

An LLM writes a short Python program over the typed :class:`ImagePatch` API; its methods
call vision tools (detection, segmentation, depth, OCR, VQA, an LLM) served by a
:class:`Toolkit`; every call is traced; correct traces become chain-of-thought data for
distilling a vision-language model.

``import vpd`` is light: models and heavy libraries load on first use.
"""

from vpd.answers import normalize_answer, vote
from vpd.errors import (
    ConfigError,
    ImageError,
    InvalidArgumentError,
    ToolError,
    ToolRegistrationError,
    ToolUnavailable,
    VPDError,
)
from vpd.helpers import best_image_match, bool_to_yesno, coerce_to_numeric, distance, llm_query
from vpd.image import ImageData, load_image
from vpd.patch import ImagePatch
from vpd.programs.completions import CompletionCache
from vpd.programs.generation import GenerationConfig, ProgramGenerator, ProgramSample
from vpd.programs.library import Example, ExampleLibrary
from vpd.programs.sandbox import Execution, Sandbox, SandboxLimits, run_program, run_programs
from vpd.programs.trace import ProgramError, Trace
from vpd.solve import Candidate, Solution, SolveTimings, solve
from vpd.tools.backend import Backend
from vpd.tools.cache import ResultCache
from vpd.tools.config import BackendSpec, ToolkitConfig
from vpd.tools.events import ToolEvent, record_tool_calls
from vpd.tools.registry import register_backend
from vpd.tools.toolkit import Toolkit, current_toolkit, set_default_toolkit, use_toolkit
from vpd.tools.user_tools import ToolSpec, tool, tool_registry

__version__ = "0.1.0.dev0"

__all__ = [
    # answering questions
    "Candidate",
    "Solution",
    "SolveTimings",
    "normalize_answer",
    "solve",
    "vote",
    # writing programs
    "CompletionCache",
    "Example",
    "ExampleLibrary",
    "GenerationConfig",
    "ProgramGenerator",
    "ProgramSample",
    # the program API
    "ImagePatch",
    "best_image_match",
    "bool_to_yesno",
    "coerce_to_numeric",
    "distance",
    "llm_query",
    # running programs
    "Execution",
    "ProgramError",
    "Sandbox",
    "SandboxLimits",
    "Trace",
    "run_program",
    "run_programs",
    # images
    "ImageData",
    "load_image",
    # tools
    "Backend",
    "BackendSpec",
    "ResultCache",
    "ToolEvent",
    "ToolSpec",
    "Toolkit",
    "ToolkitConfig",
    "current_toolkit",
    "record_tool_calls",
    "register_backend",
    "set_default_toolkit",
    "tool",
    "tool_registry",
    "use_toolkit",
    # errors
    "ConfigError",
    "ImageError",
    "InvalidArgumentError",
    "ToolError",
    "ToolRegistrationError",
    "ToolUnavailable",
    "VPDError",
    "__version__",
]
