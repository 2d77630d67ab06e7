"""The records of program runs, and everything that reads or writes them.

The bottom layer of vpd (it imports nothing but the standard library and
:mod:`vpd.errors`): the sandbox writes these records, and the solver, the renderers and
the distillation pipeline read them.

* :class:`Trace` (with :class:`ToolCall`, :class:`Assignment`, :class:`PrintOutput`,
  :class:`ProgramError`) and :class:`Execution`: what one program run did and how it ended.
* :func:`read_traces` / :func:`iter_traces` / :class:`TraceWriter`: JSONL files of traces.
* :func:`normalize_answer`, :func:`vote`, :func:`judge`: answers compared and counted.
* :func:`trace_to_text`: the paper's execution-trace text, the rationale rewriter's input.
"""

from vpd.traces.answers import judge, normalize_answer, vote
from vpd.traces.execution import Execution
from vpd.traces.files import (
    BadLine,
    ParsedRecord,
    TraceRecord,
    TraceRecords,
    iter_traces,
    parse_line,
    parse_record,
    read_traces,
)
from vpd.traces.text import BoxFormat, trace_to_text
from vpd.traces.trace import (
    ERROR_KINDS,
    OMITTED,
    TRACE_VERSION,
    Assignment,
    ErrorKind,
    PrintOutput,
    ProgramError,
    ToolCall,
    Trace,
    TraceEvent,
)
from vpd.traces.writer import TraceWriter

__all__ = [
    "ERROR_KINDS",
    "OMITTED",
    "TRACE_VERSION",
    "Assignment",
    "BadLine",
    "BoxFormat",
    "ErrorKind",
    "Execution",
    "ParsedRecord",
    "PrintOutput",
    "ProgramError",
    "ToolCall",
    "Trace",
    "TraceEvent",
    "TraceRecord",
    "TraceRecords",
    "TraceWriter",
    "iter_traces",
    "judge",
    "normalize_answer",
    "parse_line",
    "parse_record",
    "read_traces",
    "trace_to_text",
    "vote",
]
