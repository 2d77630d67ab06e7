"""Readable traces: notebook HTML, terminal text and the ``vpd show`` report.

Views read records only (:mod:`vpd.traces`), never the sandbox or the solver.

* :func:`render_trace` / :func:`render_execution` / :func:`render_candidates`: notebook HTML
  (also what ``Trace._repr_html_`` and ``Execution._repr_html_`` show).
* :func:`format_trace` / :func:`format_execution` / :func:`format_solution`: terminal
  summaries (the ``repr``; ``vpd solve`` prints the last).
* :func:`write_report`: traces (read with :func:`vpd.traces.read_traces`) to one
  self-contained HTML report (``vpd show``).
* :func:`load_runs` / :func:`write_run_report`: synthesis and evaluation runs (``vpd show
  RUN...``): summaries, one row per example with its k candidates, the verified share at
  k, comparisons; a :class:`Run` also shows itself in a notebook (:func:`render_runs`).

The paper's execution-trace text is :func:`vpd.traces.trace_to_text`. Boxes are
``[x0, y0, x1, y1]`` pixels, origin at the top-left corner, as in the trace.
"""

from vpd.render.html import render_candidates, render_execution, render_trace
from vpd.render.report import ReportStats, build_report, write_report
from vpd.render.run_report import RunReportStats, build_run_report, write_run_report
from vpd.render.runs import Run, load_run, load_runs, render_runs
from vpd.render.text import CandidateLike, SolutionLike, format_execution, format_solution, format_trace
from vpd.render.view import BOX_CONVENTION, TraceView, build_view

__all__ = [
    "BOX_CONVENTION",
    "CandidateLike",
    "ReportStats",
    "Run",
    "RunReportStats",
    "SolutionLike",
    "TraceView",
    "build_report",
    "build_run_report",
    "build_view",
    "format_execution",
    "format_solution",
    "format_trace",
    "load_run",
    "load_runs",
    "render_candidates",
    "render_execution",
    "render_trace",
    "render_runs",
    "write_report",
    "write_run_report",
]
