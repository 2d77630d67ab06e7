"""vpd: Visual Program Distillation.

An LLM writes a short Python program over the typed :class:`ImagePatch` API; its methods
call vision tools (detection, segmentation, depth, OCR, VQA, an LLM) served by a
:class:`Toolkit`; every call is traced; correct traces become chain-of-thought data for
distilling a vision-language model.

``import vpd`` is light: models and heavy libraries load on first use.
"""

from vpd.errors import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    DatasetError,
    ImageError,
    InvalidArgumentError,
    RegistrationError,
    SandboxError,
    ToolError,
    TraceFileError,
    VPDError,
)
from vpd.helpers import best_image_match, bool_to_yesno, coerce_to_numeric, distance, llm_query
from vpd.image import ImageData, load_image
from vpd.patch import ImagePatch
from vpd.programs.completions import CompletionCache
from vpd.programs.generation import GenerationConfig, ProgramGenerator, ProgramSample
from vpd.programs.library import Example, ExampleLibrary
from vpd.programs.sandbox import Sandbox, SandboxLimits, run_program, run_programs
from vpd.solve import Candidate, Solution, Solver, SolveTimings, solve
from vpd.tools.backend import Backend
from vpd.tools.cache import ResultCache
from vpd.tools.config import BackendSpec, ToolkitConfig
from vpd.tools.events import record_tool_calls
from vpd.tools.registry import register_backend
from vpd.tools.toolkit import Toolkit, current_toolkit, set_default_toolkit, use_toolkit
from vpd.tools.user_tools import ToolSpec, tool, tool_registry
from vpd.traces import (
    Assignment,
    Execution,
    PrintOutput,
    ProgramError,
    ToolCall,
    Trace,
    TraceWriter,
    judge,
    normalize_answer,
    read_traces,
    vote,
)

__version__ = "0.1.0.dev0"

__all__ = [
    # answering questions
    "Candidate",
    "Solution",
    "SolveTimings",
    "Solver",
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
    "Sandbox",
    "SandboxLimits",
    "run_program",
    "run_programs",
    # records of runs
    "Assignment",
    "Execution",
    "PrintOutput",
    "ProgramError",
    "ToolCall",
    "Trace",
    "TraceWriter",
    "judge",
    "read_traces",
    # images
    "ImageData",
    "load_image",
    # tools
    "Backend",
    "BackendSpec",
    "ResultCache",
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
    "__version__",
]
