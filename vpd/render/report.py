"""``vpd show``: one self-contained HTML file to browse thousands of traces.

The file needs no network and loads nothing: its CSS and script are inline (allowed by a
Content-Security-Policy that names their hashes and permits nothing else but ``data:``
images), the traces are embedded once as JSON (each reduced to its
:class:`~vpd.render.view.TraceView`), and each image once as a size-capped JPEG data URL
shared by every trace that ran on it. The page renders only the visible rows of the list
and one trace view at a time, so it stays responsive with tens of thousands of traces.

Keyboard: ``/`` search, ``↓``/``↑`` or ``j``/``k`` move through the list (the selected
trace opens beside it), ``PgUp``/``PgDn``/``Home``/``End``, ``Enter`` moves into the trace
view, ``Esc`` back to the list. The filters and the selected trace are kept in the URL's
``#`` part, so a link can point at one trace.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from vpd.render.html import esc, stylesheet
from vpd.render.records import BadLine, TraceRecord, read_traces
from vpd.render.text import answer_text, clip, one_line
from vpd.render.view import BOX_CONVENTION, build_view

__all__ = ["ReportStats", "add_show_command", "build_report", "embed_json", "write_report"]

_MAX_EXTRA = 4000


@dataclass(frozen=True)
class ReportStats:
    """What :func:`write_report` wrote.

    Attributes:
        path: The HTML file.
        traces: Traces in the report.
        images: Distinct images embedded.
        missing_images: Traces shown without their image.
        skipped_lines: Bad input lines skipped (listed in the report's header).
        bytes: Size of the file.
        seconds: Time taken.
    """

    path: Path
    traces: int
    images: int
    missing_images: int
    skipped_lines: int
    bytes: int
    seconds: float


def embed_json(value: Any) -> str:
    r"""JSON that is safe inside an HTML ``<script>`` element.

    ``<``, ``>`` and ``&`` are written as ``\u003c``, ``\u003e`` and ``\u0026`` (so no text
    can close the element, e.g. ``</script>``, or open a comment), and U+2028/U+2029 escaped.
    """
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for raw, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return clip(text, len(text))


def _asset(name: str) -> str:
    return resources.files("vpd.render").joinpath(f"assets/{name}").read_text(encoding="utf-8")


def _encode_image(path: Path, max_side: int) -> dict[str, Any]:
    from vpd.image import load_image
    from vpd.render.images import data_url

    image = load_image(path)
    return {
        "url": data_url(image.pil, max_side=max_side, quality=75, max_bytes=45_000),
        "sha256": image.sha256,
        "w": image.width,
        "h": image.height,
    }


def _images(
    records: Sequence[TraceRecord], max_side: int, workers: int | None
) -> tuple[dict[str, dict[str, Any]], dict[Path, str], dict[Path, str]]:
    """Encode each distinct image once: ``(images by key, key by path, problem by path)``."""
    from vpd.errors import ImageError

    paths = list(dict.fromkeys(r.image_path for r in records if r.image_path is not None))
    keys: dict[Path, str] = {}
    problems: dict[Path, str] = {}
    images: dict[str, dict[str, Any]] = {}

    def encode(path: Path) -> dict[str, Any] | str:
        try:
            return _encode_image(path, max_side)
        except (ImageError, OSError) as exc:
            return f"cannot read {path.name}: {exc}"

    with ThreadPoolExecutor(max_workers=workers or min(16, (os.cpu_count() or 2))) as pool:
        for path, result in zip(paths, pool.map(encode, paths)):
            if isinstance(result, str):
                problems[path] = result
            else:
                key = f"i{len(images)}"
                images[key] = result
                keys[path] = key
    return images, keys, problems


def _entry(record: TraceRecord, image_key: str | None, image_note: str | None) -> dict[str, Any]:
    view = build_view(record.trace)
    extra = None
    if record.extra:
        extra = {one_line(str(k), 100): clip(answer_text(v), _MAX_EXTRA) for k, v in list(record.extra.items())[:50]}
    error = record.trace.error
    return {
        "id": one_line(record.id, 200),
        "src": one_line(record.source, 300),
        "q": clip(record.question, 2000) if record.question is not None else None,
        "a": view.answer,
        "l": clip(answer_text(record.label), 2000) if record.label is not None else None,
        "c": record.correct,
        "k": one_line(error.kind, 40) if error is not None else "",
        "img": image_key,
        "imgNote": image_note,
        "r": clip(record.rationale, 20_000) if record.rationale else None,
        "x": extra,
        "v": view.to_dict(),
    }


def build_report(
    records: Sequence[TraceRecord],
    *,
    title: str = "vpd traces",
    bad: Sequence[BadLine] = (),
    max_image_side: int = 448,
    images: bool = True,
    workers: int | None = None,
) -> tuple[str, dict[str, int]]:
    """The report's HTML (see the module docstring) and counts of what it holds.

    Args:
        records: The traces (from :func:`~vpd.render.records.read_traces`).
        title: The page title.
        bad: Input lines that were skipped (listed in the header).
        max_image_side: Longest side of the embedded images, in pixels.
        images: Embed the images (False: boxes on blank canvases only, a much smaller file).
        workers: Threads encoding images (default: up to 16).

    Returns:
        ``(html, {"traces", "images", "missing_images"})``.
    """
    encoded, keys, problems = _images(records, max_image_side, workers) if images else ({}, {}, {})
    entries = []
    missing = 0
    for record in records:
        path = record.image_path
        key = keys.get(path) if path is not None else None
        note = record.image_problem or (problems.get(path) if path is not None else None)
        if not images and path is not None:
            note = "images not embedded (--no-images)"
        if key is None:
            missing += 1
        entries.append(_entry(record, key, note))
    data = {
        "title": title,
        "convention": BOX_CONVENTION,
        "traces": entries,
        "images": encoded,
    }
    css = stylesheet() + _asset("report.css")
    script = _asset("report.js")
    skipped = ""
    if bad:
        listed = "\n".join(str(b) for b in bad[:20]) + (f"\n… and {len(bad) - 20} more" if len(bad) > 20 else "")
        skipped = (
            f'<span class="r-warn" title="{esc(listed)}">{len(bad)} bad input line{"s" if len(bad) != 1 else ""} '
            "skipped</span>"
        )
    page = _PAGE.format(
        csp=_csp(css, script),
        title=esc(title),
        css=css,
        skipped=skipped,
        data=embed_json(data),
        script=script,
    )
    return page, {"traces": len(entries), "images": len(encoded), "missing_images": missing}


def _csp(css: str, script: str) -> str:
    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"

    return (
        f"default-src 'none'; img-src data:; style-src {digest(css)}; script-src {digest(script)}; "
        "base-uri 'none'; form-action 'none'"
    )


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="vpd show">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header class="r-top">
<h1>{title}</h1>
<input id="r-q" type="search" placeholder="Search question, answer, label, error, program  ( / )"
 aria-label="Search traces" autocomplete="off" spellcheck="false">
<select id="r-status" aria-label="Filter by outcome">
<option value="all">all outcomes</option>
<option value="correct">correct</option>
<option value="wrong">wrong answer</option>
<option value="failed">failed (error)</option>
<option value="bad">wrong or failed</option>
<option value="nolabel">no label</option>
</select>
<select id="r-kind" aria-label="Filter by error kind">
<option value="any">any error kind</option>
<option value="none">no error</option>
</select>
<span id="r-count" class="r-count" role="status"></span>
{skipped}
<span class="r-help">/ search · ↑↓ or j k move · Enter open · Esc list</span>
</header>
<main class="r-main">
<div class="r-side">
<div class="r-head" aria-hidden="true"><span>#</span><span></span><span>question</span><span>answer</span>\
<span>label</span><span>error</span></div>
<div id="r-list" class="r-list" role="listbox" tabindex="0" aria-label="Traces">\
<div id="r-spacer" class="r-spacer"></div></div>
</div>
<section id="r-detail" class="r-detail" tabindex="-1" aria-label="Selected trace" aria-live="polite"></section>
</main>
<script type="application/json" id="vpd-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""


def write_report(
    records: Sequence[TraceRecord],
    path: str | Path,
    *,
    title: str = "vpd traces",
    bad: Sequence[BadLine] = (),
    max_image_side: int = 448,
    images: bool = True,
    workers: int | None = None,
) -> ReportStats:
    """Write the report for ``records`` to ``path`` (see :func:`build_report` for the arguments).

    Returns:
        What was written.
    """
    start = time.perf_counter()
    page, counts = build_report(
        records, title=title, bad=bad, max_image_side=max_image_side, images=images, workers=workers
    )
    target = Path(path)
    data = page.encode("utf-8")
    target.write_bytes(data)
    return ReportStats(
        path=target,
        traces=counts["traces"],
        images=counts["images"],
        missing_images=counts["missing_images"],
        skipped_lines=len(bad),
        bytes=len(data),
        seconds=time.perf_counter() - start,
    )


# -- the command ------------------------------------------------------------------------------


def add_show_command(subparsers: Any) -> None:
    """Register ``vpd show`` on the ``vpd`` command's subparsers."""
    show = subparsers.add_parser(
        "show",
        help="write one self-contained HTML report to browse a JSONL file of traces",
        description=(
            "Write one self-contained HTML file (no network) to browse traces: a list with question, answer, "
            "label, correct or not and error kind; filters and search; the full view of each trace. Input: "
            "one trace per line as Trace.to_json() writes it, or {'trace': ..., 'question': ..., 'label': ..., "
            "'image': PATH, 'correct': ..., 'rationale': ..., 'id': ...} (see vpd.render.records)."
        ),
    )
    show.add_argument("traces", nargs="+", metavar="TRACES.jsonl", help="JSONL file(s) of traces")
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
    show.add_argument("--no-images", action="store_true", help="embed no images (boxes on blank canvases)")
    show.set_defaults(func=run_show)


def run_show(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``vpd show`` (arguments from :func:`add_show_command`); returns the exit code."""
    from vpd.errors import InvalidArgumentError

    if args.max_image_side < 16:
        raise InvalidArgumentError(f"--max-image-side must be at least 16 pixels, got {args.max_image_side}.")
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
    )
    out.write(
        f"wrote {stats.path}: {stats.traces} traces, {stats.images} images, {stats.bytes / 1e6:.1f} MB "
        f"in {stats.seconds:.1f} s\n"
    )
    if stats.skipped_lines:
        out.write(f"  {stats.skipped_lines} bad lines skipped (listed in the report's header)\n")
    if stats.missing_images:
        out.write(f"  {stats.missing_images} traces shown without their image (boxes on blank canvases)\n")
    return 0
