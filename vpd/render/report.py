"""``vpd show``: one self-contained HTML file to browse thousands of traces.

The file needs no network and loads nothing: its CSS and script are inline (allowed by a
Content-Security-Policy that names their hashes and permits nothing else but ``data:``
images), the traces are embedded once as a small JSON index (each reduced to its
:class:`~vpd.render.view.TraceView`, images named by a key), and each image once as a
size-capped JPEG data URL in its own inert ``<script type="text/plain" id="vpd-img-KEY">``
block after the page's script, shared by every trace that ran on it. No single string
holds all the images: the page reads an image's block only when a trace that uses it is
shown (crop thumbnails only once they scroll into view), renders only the visible rows of
the list and one trace view at a time, so it stays responsive with tens of thousands of
traces and images.

**Size budget.** The embedded images (their data URLs, i.e. bytes of the file) are kept
under ``max_total_image_bytes`` (150 MB by default; ``vpd show --max-image-mb``). When a
sample of the images says the requested size would not fit, all images are written
smaller (JPEG quality 60, then smaller sides, down to 128 px at quality 40); when even
that does not fit, images are embedded for as many traces as fit (most used images
first) and the others say ``image omitted: report size budget``. Either is reported: in
the page's header, in :class:`ReportStats` (counts and ``warnings``) and by ``vpd show``
on stderr.

Keyboard: ``/`` search, ``↓``/``↑`` or ``j``/``k`` move through the list (the selected
trace opens beside it), ``PgUp``/``PgDn``/``Home``/``End``, ``Enter`` moves into the trace
view, ``Esc`` back to the list. The filters and the selected trace are kept in the URL's
``#`` part, so a link can point at one trace.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vpd.render.html import LINE_KEY, esc, stylesheet
from vpd.render.view import BOX_CONVENTION, build_view
from vpd.traces.files import BadLine, TraceRecord
from vpd.traces.text import answer_text, clip, one_line, shown

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "OMITTED_NOTE",
    "ReportStats",
    "build_report",
    "embed_json",
    "write_report",
]

_MAX_EXTRA = 4000

#: Default budget for the embedded images of a report: bytes of their data URLs (150 MB).
DEFAULT_MAX_IMAGE_BYTES = 150_000_000
#: What a trace whose image did not fit the budget says instead of showing it.
OMITTED_NOTE = "image omitted: report size budget"

_QUALITY = 75  # JPEG quality at the requested size
_SHRUNK_QUALITY = 60  # ... once images must shrink to fit the budget
_FLOOR_QUALITY = 40  # ... at the smallest size
_MIN_SIDE = 128  # the smallest longest side images shrink to
_IMAGE_CAP = 45_000  # target bytes of one encoded image
_SAMPLE = 48  # images encoded to estimate the total size
#: Longest side of a list row's thumbnail, in pixels (shown smaller, sharp on dense screens).
THUMB_SIDE = 56


@dataclass(frozen=True)
class ReportStats:
    """What :func:`write_report` wrote.

    Attributes:
        path: The HTML file.
        traces: Traces in the report.
        images: Distinct images embedded.
        missing_images: Traces shown without their image (not found, unreadable, or omitted).
        skipped_lines: Bad input lines skipped (listed in the report's header).
        bytes: Size of the file.
        seconds: Time taken.
        images_shrunk: Images written smaller than asked (side and/or JPEG quality) to fit
            the image budget (all embedded images, or none).
        images_omitted: Distinct images left out because they did not fit the budget even
            at the smallest size.
        omitted_traces: Traces showing ``image omitted: report size budget`` instead.
        image_bytes: Bytes of the embedded images (their data URLs).
        image_side: Longest side the images were written at (at most), in pixels.
        image_quality: JPEG quality they were written at (at most).
        warnings: One line for each thing the budget changed (also in the report's header).
    """

    path: Path
    traces: int
    images: int
    missing_images: int
    skipped_lines: int
    bytes: int
    seconds: float
    images_shrunk: int = 0
    images_omitted: int = 0
    omitted_traces: int = 0
    image_bytes: int = 0
    image_side: int = 0
    image_quality: int = 0
    warnings: tuple[str, ...] = ()


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


def write_parts(parts: Iterable[str], target: Path) -> int:
    """Write a page's parts to ``target`` one by one (never one string of all the images); its size in bytes."""
    size = 0
    with target.open("wb") as out:
        for part in parts:
            data = part.encode("utf-8")
            out.write(data)
            size += len(data)
    return size


def page_script(page: str) -> str:
    """The script of a ``vpd show`` page: the shared trace view (``view.js``) and the page's own, in one scope."""
    return '(function () {\n  "use strict";\n' + _asset("view.js") + "\n" + _asset(page) + "})();\n"


# -- images and their budget ------------------------------------------------------------------


@dataclass(frozen=True)
class _Image:
    url: str
    sha256: str
    width: int
    height: int
    thumb: str = ""  # a small data URL for list rows, when asked


@dataclass
class _ImagePlan:
    """Which images go in the report, at what size (see :func:`_plan_images`)."""

    images: dict[str, _Image] = field(default_factory=dict)  # embedded, by key
    keys: dict[Path, str] = field(default_factory=dict)  # key of each embedded path
    notes: dict[Path, str] = field(default_factory=dict)  # why a path is not embedded
    level: tuple[int, int] = (0, 0)  # (longest side, JPEG quality) written
    asked: tuple[int, int] = (0, 0)
    budget: int | None = None
    shrunk: int = 0
    omitted: int = 0

    @property
    def bytes(self) -> int:
        return sum(len(image.url) + len(image.thumb) for image in self.images.values())


def _levels(max_side: int) -> list[tuple[int, int]]:
    """Encodings tried in turn to fit the budget: ``(longest side, JPEG quality)``, largest first."""
    floor = min(max_side, _MIN_SIDE)
    levels = [(max_side, _QUALITY), (max_side, _SHRUNK_QUALITY)]
    side = max_side
    while side > floor:
        side = max(floor, int(side * 0.8))
        levels.append((side, _SHRUNK_QUALITY))
    levels.append((floor, _FLOOR_QUALITY))
    return list(dict.fromkeys(levels))


@dataclass(frozen=True)
class _Source:
    pil: PILImage.Image  # the image, or (for the sample, kept in memory) a copy at the largest size written
    sha256: str
    width: int
    height: int


def _load(path: Path, max_side: int | None = None) -> _Source | str:
    from vpd.errors import ImageError
    from vpd.image import load_image
    from vpd.render.images import fit

    try:
        image = load_image(path)
    except (ImageError, OSError) as exc:
        return f"cannot read {path.name}: {exc}"
    pil = image.pil if max_side is None else fit(image.pil, max_side)
    return _Source(pil, image.sha256, image.width, image.height)


def _encode(image: _Source, level: tuple[int, int], thumb_side: int = 0) -> _Image:
    from vpd.render.images import data_url

    side, quality = level
    url = data_url(image.pil, max_side=side, quality=quality, max_bytes=_IMAGE_CAP)
    thumb = data_url(image.pil, max_side=thumb_side, quality=_FLOOR_QUALITY) if thumb_side else ""
    if thumb and len(thumb) * 3 > len(url):
        thumb = ""  # a small image is its own thumbnail (the page falls back to it)
    if "<" in url or "<" in thumb:  # pragma: no cover - base64 never has one; the block must not be closable
        raise ValueError("an image data URL must not contain '<'")
    return _Image(url, image.sha256, image.width, image.height, thumb)


def _plan_images(
    image_paths: Sequence[Path | None],
    max_side: int,
    budget: int | None,
    workers: int | None,
    thumb_side: int = 0,
) -> _ImagePlan:
    """Encode each distinct image once, at the largest size that keeps all of them within ``budget``.

    A sample of the images (up to 48, spread over the run) is encoded at each size in turn
    until the estimated total fits (with 10 % to spare unless the sample is every image);
    then all images are encoded at that size. Should they still not fit, the next smaller
    size whose size ratio predicts a fit is used; at the smallest size, images are kept,
    most used first, while they fit, and the others omitted. Identical images (same
    sha256) under different paths are embedded once.
    """
    paths = list(dict.fromkeys(p for p in image_paths if p is not None))
    uses = Counter(p for p in image_paths if p is not None)
    levels = _levels(max_side)
    plan = _ImagePlan(level=levels[0], asked=levels[0], budget=budget)
    if not paths:
        return plan
    last = len(levels) - 1
    if len(paths) <= _SAMPLE:
        sample = paths
    else:
        sample = list(dict.fromkeys(paths[i * (len(paths) - 1) // (_SAMPLE - 1)] for i in range(_SAMPLE)))
    with ThreadPoolExecutor(max_workers=workers or min(16, (os.cpu_count() or 2))) as pool:
        loaded = dict(zip(sample, pool.map(lambda path: _load(path, max_side), sample)))
        readable = [p for p in sample if not isinstance(loaded[p], str)]
        cache: dict[tuple[Path, int], _Image] = {}
        means: dict[int, float] = {}

        def mean(level: int) -> float:
            """Mean data-URL length of the sample at ``levels[level]``."""
            if level not in means:

                def encode_sample(path: Path) -> _Image:
                    image = loaded[path]
                    assert not isinstance(image, str)
                    return _encode(image, levels[level], thumb_side)

                for path, image in zip(readable, pool.map(encode_sample, readable)):
                    cache[(path, level)] = image
                sizes = [len(cache[(p, level)].url) + len(cache[(p, level)].thumb) for p in readable]
                means[level] = sum(sizes) / max(1, len(readable))
            return means[level]

        level = 0
        if budget is not None:
            spare = 1.0 if len(sample) == len(paths) else 0.9
            while level < last and mean(level) * len(paths) > spare * budget:
                level += 1

        while True:

            def encode(path: Path, level: int = level) -> _Image | str:
                if (path, level) in cache:
                    return cache[(path, level)]
                image = loaded[path] if path in loaded else _load(path)
                return image if isinstance(image, str) else _encode(image, levels[level], thumb_side)

            plan = _ImagePlan(level=levels[level], asked=levels[0], budget=budget)
            by_sha: dict[str, str] = {}
            for path, result in zip(paths, pool.map(encode, paths)):
                if isinstance(result, str):
                    plan.notes[path] = result
                    continue
                key = by_sha.setdefault(result.sha256, f"i{len(plan.images)}")
                plan.images.setdefault(key, result)
                plan.keys[path] = key
            total = plan.bytes
            if budget is None or total <= budget or level == last:
                break
            base = mean(level)
            following = level + 1
            while following < last and base > 0 and total * mean(following) / base > 0.95 * budget:
                following += 1
            level = following
    loaded.clear()

    if budget is not None and total > budget:
        key_uses: Counter[str] = Counter()
        for path, key in plan.keys.items():
            key_uses[key] += uses[path]
        spent = 0
        kept = set()
        for key in sorted(plan.images, key=lambda k: (-key_uses[k], int(k[1:]))):
            size = len(plan.images[key].url) + len(plan.images[key].thumb)
            if spent + size <= budget:
                kept.add(key)
                spent += size
        plan.omitted = len(plan.images) - len(kept)
        plan.images = {k: v for k, v in plan.images.items() if k in kept}
        for path, key in list(plan.keys.items()):
            if key not in kept:
                del plan.keys[path]
                plan.notes[path] = OMITTED_NOTE
    plan.shrunk = len(plan.images) if plan.level != plan.asked else 0
    return plan


def _budget_warnings(plan: _ImagePlan, omitted_traces: int) -> list[tuple[str, str]]:
    """``(short, full)`` for each change the budget made (header badge and its tooltip / stderr line)."""
    if plan.budget is None:
        return []
    budget = f"{plan.budget / 1e6:g} MB"
    (side, quality), (asked_side, asked_quality) = plan.level, plan.asked
    found = []
    if plan.shrunk:
        found.append(
            (
                f"images shrunk to {side} px (size budget)",
                f"{plan.shrunk} images shrunk to fit the report's image budget of {budget}: at most {side} px "
                f"a side, JPEG quality {quality} (asked {asked_side} px, quality {asked_quality})",
            )
        )
    if plan.omitted:
        found.append(
            (
                f"{plan.omitted} images omitted (size budget)",
                f"{plan.omitted} of {plan.omitted + len(plan.images)} images omitted: even at {side} px and JPEG "
                f"quality {quality} they do not fit the report's image budget of {budget}; {omitted_traces} traces "
                f"show '{OMITTED_NOTE}' (raise the budget, --max-image-mb, or split the traces)",
            )
        )
    return found


def _image_blocks(images: dict[str, _Image]) -> Iterator[str]:
    """One inert block per image: not executed (not a script type), read by the page on demand."""
    for key, image in images.items():
        yield (
            f'<script type="text/plain" id="vpd-img-{key}" data-sha256="{esc(image.sha256)}" '
            f'data-w="{image.width}" data-h="{image.height}">{image.url}</script>\n'
        )
        if image.thumb:
            yield f'<script type="text/plain" id="vpd-th-{key}">{image.thumb}</script>\n'


# -- the page ---------------------------------------------------------------------------------


def _entry(record: TraceRecord, image_key: str | None, image_note: str | None) -> dict[str, Any]:
    view = build_view(record.trace)
    extra = None
    if record.extra:
        extra = {one_line(str(k), 100): shown(answer_text(v), _MAX_EXTRA) for k, v in list(record.extra.items())[:50]}
    error = record.trace.error
    return {
        "id": one_line(record.id, 200),
        "src": one_line(record.source, 300),
        "q": shown(record.question, 2000) if record.question is not None else None,
        "a": view.answer,
        "l": shown(answer_text(record.label), 2000) if record.label is not None else None,
        "c": record.correct,
        "k": one_line(error.kind, 40) if error is not None else "",
        "img": image_key,
        "imgNote": image_note,
        "r": shown(record.rationale, 20_000) if record.rationale else None,
        "x": extra,
        "v": view.to_dict(),
    }


@dataclass
class _Built:
    head: str  # everything up to and including the page's script
    images: dict[str, _Image]
    counts: dict[str, int]
    warnings: list[str]

    def parts(self) -> Iterator[str]:
        yield self.head
        yield from _image_blocks(self.images)
        yield _END


def _build(
    records: Sequence[TraceRecord],
    *,
    title: str,
    bad: Sequence[BadLine],
    max_image_side: int,
    images: bool,
    workers: int | None,
    max_total_image_bytes: int | None,
) -> _Built:
    if max_total_image_bytes is not None and max_total_image_bytes < 0:
        raise ValueError(f"max_total_image_bytes must be at least 0, got {max_total_image_bytes}")
    if images:
        plan = _plan_images(
            [r.image_path for r in records], max_image_side, max_total_image_bytes, workers, thumb_side=THUMB_SIDE
        )
    else:
        plan = _ImagePlan(level=(max_image_side, _QUALITY), asked=(max_image_side, _QUALITY))
    entries = []
    missing = omitted_traces = 0
    for record in records:
        path = record.image_path
        key = plan.keys.get(path) if path is not None else None
        note = record.image_problem or (plan.notes.get(path) if path is not None else None)
        if not images and path is not None:
            note = "images not embedded (--no-images)"
        if key is None:
            missing += 1
            omitted_traces += note == OMITTED_NOTE
        entries.append(_entry(record, key, note))
    data = {"title": title, "convention": BOX_CONVENTION, "lineKey": LINE_KEY, "traces": entries}
    css = stylesheet() + _asset("report.css")
    script = page_script("traces.js")
    badges = []
    if bad:
        listed = "\n".join(str(b) for b in bad[:20]) + (f"\n… and {len(bad) - 20} more" if len(bad) > 20 else "")
        badges.append(
            f'<span class="r-warn" title="{esc(listed)}">{len(bad)} bad input line{"s" if len(bad) != 1 else ""} '
            "skipped</span>"
        )
    warnings = _budget_warnings(plan, omitted_traces)
    for short, full in warnings:
        badges.append(f'<span class="r-warn r-budget" title="{esc(full)}">{esc(short)}</span>')
    head = _PAGE.format(
        body="",
        csp=_csp(css, script),
        title=esc(title),
        css=css,
        skipped="\n".join(badges),
        data=embed_json(data),
        script=script,
    )
    counts = {
        "traces": len(entries),
        "images": len(plan.images),
        "missing_images": missing,
        "images_shrunk": plan.shrunk,
        "images_omitted": plan.omitted,
        "omitted_traces": omitted_traces,
        "image_bytes": plan.bytes,
        "image_side": plan.level[0],
        "image_quality": plan.level[1],
    }
    return _Built(head, plan.images, counts, [full for _, full in warnings])


def build_report(
    records: Sequence[TraceRecord],
    *,
    title: str = "vpd traces",
    bad: Sequence[BadLine] = (),
    max_image_side: int = 448,
    images: bool = True,
    workers: int | None = None,
    max_total_image_bytes: int | None = DEFAULT_MAX_IMAGE_BYTES,
) -> tuple[str, dict[str, int]]:
    """The report's HTML (see the module docstring) and counts of what it holds.

    Args:
        records: The traces (from :func:`~vpd.traces.read_traces`).
        title: The page title.
        bad: Input lines that were skipped (listed in the header).
        max_image_side: Longest side of the embedded images, in pixels.
        images: Embed the images (False: boxes on blank canvases only, a much smaller file).
        workers: Threads encoding images (default: up to 16).
        max_total_image_bytes: Budget for all embedded images (bytes of their data URLs);
            images shrink, then are omitted, to fit it (see the module docstring). None: no limit.

    Returns:
        ``(html, counts)``: counts has ``traces``, ``images`` (distinct, embedded),
        ``missing_images`` (traces without theirs), ``images_shrunk``, ``images_omitted``,
        ``omitted_traces``, ``image_bytes``, ``image_side`` and ``image_quality`` (see
        :class:`ReportStats`).
    """
    built = _build(
        records,
        title=title,
        bad=bad,
        max_image_side=max_image_side,
        images=images,
        workers=workers,
        max_total_image_bytes=max_total_image_bytes,
    )
    return "".join(built.parts()), built.counts


def _csp(css: str, script: str) -> str:
    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"

    # The image blocks are <script type="text/plain">: data, never executed, so script-src
    # does not apply to them and they need no hash.
    return (
        f"default-src 'none'; img-src data:; style-src {digest(css)}; script-src {digest(script)}; "
        "base-uri 'none'; form-action 'none'"
    )


#: The start of every ``vpd show`` page, up to its body (``{body}``: the body's extra classes).
PAGE_HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="vpd show">
<title>{title}</title>
<style>{css}</style>
</head>
<body class="vpd-page{body}">
"""

_PAGE = (
    PAGE_HEAD
    + """<header class="r-top">
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
<span class="r-help">/ search · ↑↓ or j k move · Enter open · Esc list · click a column to sort</span>
</header>
<section id="r-summary" class="r-summary" aria-label="Summary"></section>
<main class="r-main">
<div class="r-side">
<div class="r-head"><span data-sort="n" title="sort by position">#</span><span data-sort="st" title="sort by outcome">\
</span><span></span><span data-sort="q" title="sort by question">question</span>\
<span data-sort="a" title="sort by answer">answer</span><span data-sort="l" title="sort by label">label</span>\
<span data-sort="k" title="sort by error kind">error</span></div>
<div id="r-list" class="r-list" role="listbox" tabindex="0" aria-label="Traces">\
<div id="r-spacer" class="r-spacer"></div></div>
</div>
<section id="r-detail" class="r-detail" tabindex="-1" aria-label="Selected trace" aria-live="polite"></section>
</main>
<script type="application/json" id="vpd-data">{data}</script>
<script>{script}</script>
"""
)
# The image blocks go between the page's script and the end, so the list works while they load.
_END = "</body>\n</html>\n"


def write_report(
    records: Sequence[TraceRecord],
    path: str | Path,
    *,
    title: str = "vpd traces",
    bad: Sequence[BadLine] = (),
    max_image_side: int = 448,
    images: bool = True,
    workers: int | None = None,
    max_total_image_bytes: int | None = DEFAULT_MAX_IMAGE_BYTES,
) -> ReportStats:
    """Write the report for ``records`` to ``path`` (see :func:`build_report` for the arguments).

    Returns:
        What was written; :attr:`ReportStats.warnings` says what the image budget changed.
    """
    start = time.perf_counter()
    built = _build(
        records,
        title=title,
        bad=bad,
        max_image_side=max_image_side,
        images=images,
        workers=workers,
        max_total_image_bytes=max_total_image_bytes,
    )
    target = Path(path)
    size = write_parts(built.parts(), target)
    counts = built.counts
    return ReportStats(
        path=target,
        traces=counts["traces"],
        images=counts["images"],
        missing_images=counts["missing_images"],
        skipped_lines=len(bad),
        bytes=size,
        seconds=time.perf_counter() - start,
        images_shrunk=counts["images_shrunk"],
        images_omitted=counts["images_omitted"],
        omitted_traces=counts["omitted_traces"],
        image_bytes=counts["image_bytes"],
        image_side=counts["image_side"],
        image_quality=counts["image_quality"],
        warnings=tuple(built.warnings),
    )
