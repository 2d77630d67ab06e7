"""Readable traces: notebook HTML, terminal text and the ``vpd show`` report.

Views read records only (:mod:`vpd.traces`), never the sandbox or the solver.

* :func:`render_trace` / :func:`render_execution` / :func:`render_candidates`: notebook HTML
  (also what ``Trace._repr_html_`` and ``Execution._repr_html_`` show).
* :func:`format_trace` / :func:`format_execution` / :func:`format_solution`: terminal
  summaries (the ``repr``; ``vpd solve`` prints the last).
* :func:`write_report`: traces (read with :func:`vpd.traces.read_traces`) to one
  self-contained HTML report (``vpd show``).

The paper's execution-trace text is :func:`vpd.traces.trace_to_text`. Boxes are
``[x0, y0, x1, y1]`` pixels, origin at the top-left corner, as in the trace.
"""

from vpd.render.html import render_candidates, render_execution, render_trace
from vpd.render.report import ReportStats, build_report, write_report
from vpd.render.text import CandidateLike, SolutionLike, format_execution, format_solution, format_trace
from vpd.render.view import BOX_CONVENTION, TraceView, build_view

__all__ = [
    "BOX_CONVENTION",
    "CandidateLike",
    "ReportStats",
    "SolutionLike",
    "TraceView",
    "build_report",
    "build_view",
    "format_execution",
    "format_solution",
    "format_trace",
    "render_candidates",
    "render_execution",
    "render_trace",
    "write_report",
]
