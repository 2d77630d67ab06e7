"""Readable traces: notebook HTML, terminal text, the execution-trace text, the ``vpd show`` report.

* :func:`render_trace` / :func:`render_execution` / :func:`render_candidates`: notebook HTML
  (also what ``Trace._repr_html_`` and ``Execution._repr_html_`` show).
* :func:`trace_to_text`: the paper's execution-trace text, for distillation.
* :func:`format_trace` / :func:`format_execution` / :func:`format_solution`: terminal
  summaries (the ``repr``; ``vpd solve`` prints the last).
* :func:`read_traces` / :func:`write_report`: a JSONL file of traces to one self-contained
  HTML report (``vpd show``).

Boxes are ``[x0, y0, x1, y1]`` pixels, origin at the top-left corner, as in the trace.
"""

from vpd.render.html import render_candidates, render_execution, render_trace
from vpd.render.records import BadLine, TraceRecord, TraceRecords, read_traces
from vpd.render.report import ReportStats, build_report, write_report
from vpd.render.text import format_execution, format_solution, format_trace, trace_to_text
from vpd.render.view import BOX_CONVENTION, TraceView, build_view

__all__ = [
    "BOX_CONVENTION",
    "BadLine",
    "ReportStats",
    "TraceRecord",
    "TraceRecords",
    "TraceView",
    "build_report",
    "build_view",
    "format_execution",
    "format_solution",
    "format_trace",
    "read_traces",
    "render_candidates",
    "render_execution",
    "render_trace",
    "trace_to_text",
    "write_report",
]
