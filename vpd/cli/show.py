"""``vpd show``: one self-contained HTML report to browse traces, or synthesis and evaluation runs.

``vpd show TRACES.jsonl [...]`` writes the trace report (:func:`vpd.render.write_report`);
``vpd show RUN [RUN...]`` (folders written by ``vpd synthesize`` or ``vpd eval``) writes the
run report (:func:`vpd.render.write_run_report`), comparing the runs when there are
several. This module reads the inputs, checks the options and says what was written,
skipped or shrunk.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, TextIO

from vpd.errors import InvalidArgumentError
from vpd.render.report import DEFAULT_MAX_IMAGE_BYTES, write_report
from vpd.render.run_report import write_run_report
from vpd.render.runs import load_runs
from vpd.traces.files import read_traces

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Add the ``show`` command to the ``vpd`` parser's subparsers."""
    show = sub.add_parser(
        "show",
        help="write one self-contained HTML report to browse traces, or synthesis and evaluation runs",
        description=(
            "Write one self-contained HTML file (no network) to browse traces or runs. TRACES.jsonl: a list "
            "with question, answer, label, correct or not and error kind; filters and search; the full view of "
            "each trace (one trace per line as Trace.to_json() writes it, or {'trace': ..., 'question': ..., "
            "'label': ..., 'image': PATH, 'correct': ..., 'rationale': ..., 'id': ...}, see vpd.traces.files). "
            "RUN folders (vpd synthesize's, vpd eval's, or one system of vpd eval): a summary per run, one row "
            "per example with each run's outcome, the k candidates of a synthesis run with why each failed and "
            "their traces, the verified share at k = 1..K; several runs are compared, differing examples first."
        ),
    )
    show.add_argument(
        "traces", nargs="+", metavar="TRACES.jsonl|RUN", help="JSONL file(s) of traces, or run folder(s) to compare"
    )
    show.add_argument("-o", "--output", metavar="REPORT.html", help="where to write (default: the first input, .html)")
    show.add_argument(
        "--images",
        metavar="DIR",
        help="folder of the images: relative 'image' paths resolve here (default: the JSONL's folder); "
        "traces without a path look for DIR/<sha256>.png|jpg|jpeg|webp",
    )
    show.add_argument("--skip-bad", action="store_true", help="skip bad lines (reported) instead of failing")
    show.add_argument("--title", help="page title (default: the input file names)")
    show.add_argument("--max-image-side", type=int, default=448, metavar="PX", help="longest image side (default 448)")
    show.add_argument(
        "--max-image-mb",
        type=float,
        default=DEFAULT_MAX_IMAGE_BYTES / 1e6,
        metavar="MB",
        help="budget for all embedded images (default %(default)g MB): images shrink to fit it, and when even "
        "128 px images do not fit, the traces that do not fit show 'image omitted' (a warning says so)",
    )
    show.add_argument("--no-images", action="store_true", help="embed no images (boxes on blank canvases)")
    show.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``vpd show``; returns the exit code."""
    if args.max_image_side < 16:
        raise InvalidArgumentError(f"--max-image-side must be at least 16 pixels, got {args.max_image_side}.")
    if not (args.max_image_mb > 0 and math.isfinite(args.max_image_mb)):
        raise InvalidArgumentError(f"--max-image-mb must be a positive number of megabytes, got {args.max_image_mb:g}.")
    # Folders are runs (their records.jsonl, passed as a file, is shown as traces: one per candidate).
    folders = [Path(p).is_dir() for p in args.traces]
    if any(folders):
        if not all(folders):
            files = ", ".join(p for p, r in zip(args.traces, folders) if not r)
            raise InvalidArgumentError(
                f"vpd show takes either trace files or run folders, not both: {files} is a file. "
                "Make one report of each (a run's records.jsonl shows its candidates as traces; pass its folder "
                "for the run view)."
            )
        return _show_runs(args, out)
    output = Path(args.output) if args.output else Path(args.traces[0]).with_suffix(".html")
    if any(output.resolve() == Path(p).resolve() for p in args.traces):
        raise InvalidArgumentError(f"The report would overwrite its input {str(output)!r}; pass -o REPORT.html.")
    loaded = read_traces(args.traces, images_dir=args.images, skip_bad=args.skip_bad)
    for bad in loaded.bad[:10]:
        print(f"vpd: skipped {bad}", file=sys.stderr)
    if len(loaded.bad) > 10:
        print(f"vpd: ... and {len(loaded.bad) - 10} more bad lines skipped", file=sys.stderr)
    title = args.title or "vpd traces: " + ", ".join(Path(p).name for p in args.traces)
    stats = write_report(
        loaded.records,
        output,
        title=title,
        bad=loaded.bad,
        max_image_side=args.max_image_side,
        images=not args.no_images,
        max_total_image_bytes=round(args.max_image_mb * 1e6),
    )
    for warning in stats.warnings:
        print(f"vpd: warning: {warning}", file=sys.stderr)
    out.write(
        f"wrote {stats.path}: {stats.traces} traces, {stats.images} images, {stats.bytes / 1e6:.1f} MB "
        f"in {stats.seconds:.1f} s\n"
    )
    if stats.skipped_lines:
        out.write(f"  {stats.skipped_lines} bad lines skipped (listed in the report's header)\n")
    if stats.missing_images:
        out.write(f"  {stats.missing_images} traces shown without their image (boxes on blank canvases)\n")
    return 0


def _show_runs(args: argparse.Namespace, out: TextIO) -> int:
    """``vpd show RUN [RUN...]``: the run report."""
    runs = load_runs(args.traces)
    first = Path(args.traces[0])
    default = (first.parent if first.is_file() else first).resolve()
    output = Path(args.output) if args.output else default.with_name(default.name + ".html")
    if output.exists() and output.is_dir():
        raise InvalidArgumentError(f"{output} is a folder; pass -o REPORT.html.")
    names = ", ".join(run.name for run in runs)
    title = args.title or ("vpd runs: " if len(runs) > 1 else "vpd run: ") + names
    stats = write_run_report(
        runs,
        output,
        title=title,
        images_dir=args.images,
        max_image_side=args.max_image_side,
        images=not args.no_images,
        max_total_image_bytes=round(args.max_image_mb * 1e6),
    )
    for warning in stats.warnings:
        print(f"vpd: warning: {warning}", file=sys.stderr)
    compared = f", {stats.differing} where they differ" if stats.runs > 1 else ""
    out.write(
        f"wrote {stats.path}: {stats.runs} run{'s' if stats.runs != 1 else ''} ({names}), {stats.examples} examples"
        f"{compared}, {stats.traces} traces, {stats.images} images, {stats.bytes / 1e6:.1f} MB "
        f"in {stats.seconds:.1f} s\n"
    )
    if stats.missing_images:
        out.write(f"  {stats.missing_images} examples shown without their image\n")
    return 0
