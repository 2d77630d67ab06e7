"""``vpd show RUN [RUN...]``: synthesis and evaluation runs in one self-contained HTML file.

The page (same CSP-locked, no-network design as the trace report, :mod:`vpd.render.report`):

* a **summary bar** per run: examples per outcome (verified, wrong, failed, error; for an
  evaluation correct, partial, wrong, no answer, error), the accuracy, and for synthesis the
  candidates per outcome and the verified share at k = 1…K as a chart;
* a **list** of examples, one row each, with a thumbnail, the question, each run's outcome
  and score (and for synthesis a strip of its k candidates' outcomes), the references; the
  columns sort, the filters show their counts, and only the visible rows exist;
* the **example** on demand: for each run side by side, the answer against the references
  with its score, and for synthesis its k candidates with why each failed; any candidate
  (and a teacher's program) opens in the full trace view;
* a **comparison** when several runs are given (teacher vs student, before vs after, two
  models): examples where they differ come first.

The list's data is one small JSON index; each example's candidates and traces sit in their
own inert ``<script type="text/plain" id="vpd-ex-N">`` block, parsed only when the example
opens, and each image once (plus a thumbnail) in blocks after the script, so a run of
10,000 examples opens quickly.

A :class:`~vpd.render.runs.Run` in a notebook shows :func:`vpd.render.runs.render_runs`: the
same summary and a static table of the first examples (notebooks run no script).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vpd.render.html import LINE_KEY, esc, stylesheet
from vpd.render.report import (
    DEFAULT_MAX_IMAGE_BYTES,
    OMITTED_NOTE,
    PAGE_HEAD,
    _asset,
    _budget_warnings,
    _csp,
    _entry,
    _Image,
    _image_blocks,
    _ImagePlan,
    _plan_images,
    embed_json,
    page_script,
    write_parts,
)
from vpd.render.runs import Example, Run, RunOutcome, compare_rows, score_of
from vpd.render.view import BOX_CONVENTION
from vpd.traces.files import TraceRecord, parse_record
from vpd.traces.text import one_line, shown

__all__ = ["RunReportStats", "build_run_report", "write_run_report"]

_THUMB = 56  # longest side of a list thumbnail, in pixels
_TEXT = 2000  # longest question, answer or error kept in the list


@dataclass(frozen=True)
class RunReportStats:
    """What :func:`write_run_report` wrote.

    Attributes:
        path: The HTML file.
        runs: Runs in the report.
        examples: Examples (rows).
        traces: Candidate traces embedded.
        images: Distinct images embedded.
        missing_images: Examples shown without their image.
        differing: Examples the runs differ on (0 with one run).
        bytes: Size of the file.
        seconds: Time taken.
        warnings: What the image budget changed.
    """

    path: Path
    runs: int
    examples: int
    traces: int
    images: int
    missing_images: int
    differing: int
    bytes: int
    seconds: float
    warnings: tuple[str, ...] = ()


def _image_path(run: Run, image: str | None, images_dir: Path | None) -> Path | None:
    if not image:
        return None
    path = Path(image)
    if path.is_absolute():
        return path
    for base in (images_dir, run.path):
        if base is not None and (base / path).is_file():
            return base / path
    return path


def _clip(value: str | None, limit: int = _TEXT) -> str | None:
    return None if value is None else shown(value, limit)


def _candidate(
    candidate: dict[str, Any], position: int, example: Example, image_key: str | None, note: str | None
) -> dict[str, Any]:
    """One synthesis candidate (``position``: its place in the record): outcome, answer, score, error, trace view."""
    entry = None
    raw = candidate.get("trace")
    index = candidate.get("index")
    index = index if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < 10_000 else position
    error = _text(candidate.get("error"))
    if isinstance(raw, dict):
        try:
            trace = parse_record(raw).trace  # the checks the trace files get: views rely on them
        except ValueError as exc:
            error = f"{error + '; ' if error else ''}its trace could not be read ({exc})"
        else:
            outcome = str(candidate.get("outcome"))
            record = TraceRecord(
                trace=trace,
                id=f"{example.id} / program {index + 1}",
                source=f"candidate {index + 1}",
                question=example.question,
                label=", ".join(example.references) or None,
                correct=True if outcome == "correct" else False if outcome == "wrong" else None,
                image_problem=note,
            )
            entry = _entry(record, image_key, note)
    return {
        "i": index,
        "o": one_line(str(candidate.get("outcome")), 40),
        "p": _clip(_text(candidate.get("prediction"))),
        "s": score_of(candidate.get("score")),
        "e": _clip(error),
        "t": entry,
        "code": None if entry is not None else _clip(_text(candidate.get("program")), 64_000),
    }


def _text(value: Any) -> str | None:
    from vpd.traces.text import answer_text

    return None if value is None else value if isinstance(value, str) else answer_text(value)


def _detail(run: Run, outcome: RunOutcome, example: Example, image_key: str | None, note: str | None) -> dict[str, Any]:
    """What an example shows for one run when it opens (its block)."""
    record = outcome.record
    data: dict[str, Any] = {"error": _clip(outcome.error, 20_000)}
    if run.kind == "synthesis":
        candidates = record.get("candidates")
        data["cands"] = [
            _candidate(c, n, example, image_key, note)
            for n, c in enumerate(candidates if isinstance(candidates, list) else [])
            if isinstance(c, dict)
        ]
    else:
        data["program"] = _clip(_text(record.get("program")), 64_000)
        if isinstance(record.get("trace"), dict):  # a teacher's chosen program: its trace view
            teacher = {"index": 0, "outcome": outcome.outcome, "prediction": outcome.prediction,
                       "score": outcome.score, "trace": record["trace"], "program": record.get("program")}  # fmt: skip
            data["trace"] = _candidate(teacher, 0, example, image_key, note)["t"]
        for key in ("rationale", "text"):
            if isinstance(record.get(key), str) and record[key].strip():
                data["explanation"] = _clip(record[key], 20_000)
                break
        votes = record.get("votes")
        if isinstance(votes, dict):
            data["votes"] = {one_line(str(k), 200): v for k, v in list(votes.items())[:20] if score_of(v) is not None}
    return data


def _row(outcome: RunOutcome | None) -> dict[str, Any] | None:
    if outcome is None:
        return None
    return {
        "o": outcome.outcome,
        "s": outcome.score,
        "p": _clip(outcome.prediction),
        "e": _clip(outcome.error, 300),
        "c": list(outcome.candidates),
        "ch": outcome.chosen,
    }


def _run_head(run: Run) -> dict[str, Any]:
    config = {one_line(str(k), 60): one_line(str(v), 300) for k, v in list(run.config.items())[:30]}
    return {"name": one_line(run.name, 100), "kind": run.kind, "path": one_line(str(run.path), 300),
            "config": config, "summary": run.summary()}  # fmt: skip


@dataclass
class _Built:
    head: str
    blocks: list[str]
    images: dict[str, _Image]
    counts: dict[str, int]
    warnings: list[str]

    def parts(self) -> Iterator[str]:
        yield self.head
        yield from self.blocks
        yield from _image_blocks(self.images)
        yield "</body>\n</html>\n"


def _build(
    runs: Sequence[Run],
    *,
    title: str,
    images_dir: Path | None,
    max_image_side: int,
    images: bool,
    workers: int | None,
    max_total_image_bytes: int | None,
) -> _Built:
    if not runs:
        raise ValueError("no runs to show")
    rows = compare_rows(runs)
    # An example's image is the first run's path to it (every run saw the same question).
    paths: list[Path | None] = []
    for example, outcomes, _, _ in rows:
        run = next(r for r, o in zip(runs, outcomes) if o is not None)
        paths.append(_image_path(run, example.image, images_dir))
    if images:
        plan = _plan_images(paths, max_image_side, max_total_image_bytes, workers, thumb_side=_THUMB)
    else:
        plan = _ImagePlan()
    examples, blocks = [], []
    missing = traces = differing = 0
    for position, ((example, outcomes, differ, questions), path) in enumerate(zip(rows, paths)):
        key = plan.keys.get(path) if path is not None else None
        note = None if key is not None else (plan.notes.get(path) if path is not None else "no image path")
        if not images and path is not None:
            note = "images not embedded (--no-images)"
        missing += key is None
        differing += differ
        details = [
            None if o is None else _detail(run, o, example, key, note) for run, o in zip(runs, outcomes)
        ]  # fmt: skip
        traces += sum(1 for d in details if d for c in d.get("cands", []) if c["t"] is not None)
        blocks.append(f'<script type="text/plain" id="vpd-ex-{position}">{embed_json(details)}</script>\n')
        examples.append(
            {
                "id": one_line(example.id, 200),
                "q": _clip(example.question),
                "refs": [_clip(r, 200) for r in example.references[:10]],
                "m": example.metric,
                "img": key,
                "imgNote": note,
                "r": [_row(o) for o in outcomes],
                "d": differ,
                "qs": [_clip(q, 300) for q in questions],  # runs that asked different questions under this id
            }
        )
    data = {
        "title": title,
        "convention": BOX_CONVENTION,
        "lineKey": LINE_KEY,
        "runs": [_run_head(run) for run in runs],
        "examples": examples,
    }
    css = stylesheet() + _asset("report.css") + _asset("runs.css")
    script = page_script("runs.js")
    warnings = _budget_warnings(plan, sum(1 for p in paths if p is not None and plan.notes.get(p) == OMITTED_NOTE))
    badges = "".join(
        f'<span class="r-warn r-budget" title="{esc(full)}">{esc(short)}</span>' for short, full in warnings
    )
    head = _PAGE.format(
        body=" r-runs",
        csp=_csp(css, script),
        title=esc(title),
        css=css,
        badges=badges,
        data=embed_json(data),
        script=script,
    )
    counts = {
        "runs": len(runs),
        "examples": len(examples),
        "traces": traces,
        "images": len(plan.images),
        "missing_images": missing,
        "differing": differing,
    }
    return _Built(head, blocks, plan.images, counts, [full for _, full in warnings])


def build_run_report(
    runs: Sequence[Run],
    *,
    title: str = "vpd runs",
    images_dir: str | Path | None = None,
    max_image_side: int = 448,
    images: bool = True,
    workers: int | None = None,
    max_total_image_bytes: int | None = DEFAULT_MAX_IMAGE_BYTES,
) -> tuple[str, dict[str, int]]:
    """The run report's HTML (see the module docstring) and counts of what it holds.

    Args:
        runs: The runs (from :func:`vpd.render.runs.load_runs`); several are compared.
        title: The page title.
        images_dir: Where relative image paths resolve (default: each run's folder).
        max_image_side: Longest side of the embedded images, in pixels.
        images: Embed the images (False: a much smaller file, no pictures).
        workers: Threads encoding images.
        max_total_image_bytes: Budget for the embedded images (see :mod:`vpd.render.report`).

    Returns:
        ``(html, counts)``: counts has ``runs``, ``examples``, ``traces``, ``images``,
        ``missing_images`` and ``differing``.
    """
    built = _build(
        runs,
        title=title,
        images_dir=Path(images_dir) if images_dir is not None else None,
        max_image_side=max_image_side,
        images=images,
        workers=workers,
        max_total_image_bytes=max_total_image_bytes,
    )
    return "".join(built.parts()), built.counts


def write_run_report(
    runs: Sequence[Run],
    path: str | Path,
    *,
    title: str = "vpd runs",
    images_dir: str | Path | None = None,
    max_image_side: int = 448,
    images: bool = True,
    workers: int | None = None,
    max_total_image_bytes: int | None = DEFAULT_MAX_IMAGE_BYTES,
) -> RunReportStats:
    """Write the run report to ``path`` (see :func:`build_run_report` for the arguments)."""
    start = time.perf_counter()
    built = _build(
        runs,
        title=title,
        images_dir=Path(images_dir) if images_dir is not None else None,
        max_image_side=max_image_side,
        images=images,
        workers=workers,
        max_total_image_bytes=max_total_image_bytes,
    )
    target = Path(path)
    size = write_parts(built.parts(), target)
    counts = built.counts
    return RunReportStats(
        path=target,
        runs=counts["runs"],
        examples=counts["examples"],
        traces=counts["traces"],
        images=counts["images"],
        missing_images=counts["missing_images"],
        differing=counts["differing"],
        bytes=size,
        seconds=time.perf_counter() - start,
        warnings=tuple(built.warnings),
    )


_PAGE = (
    PAGE_HEAD
    + """<header class="r-top">
<h1>{title}</h1>
<input id="r-q" type="search" placeholder="Search question, answer, reference, error  ( / )"
 aria-label="Search examples" autocomplete="off" spellcheck="false">
<select id="r-status" aria-label="Filter by outcome"></select>
<select id="r-cand" aria-label="Filter by a candidate's outcome"></select>
<select id="r-diff" aria-label="Filter by agreement between runs"></select>
<span id="r-count" class="r-count" role="status"></span>
{badges}
<span class="r-help">/ search · ↑↓ or j k move · click a column to sort</span>
</header>
<section id="r-summary" class="r-summary" aria-label="Summary"></section>
<main class="r-main">
<div class="r-side">
<div id="r-head" class="r-head r-ehead"></div>
<div id="r-list" class="r-list" role="listbox" tabindex="0" aria-label="Examples">\
<div id="r-spacer" class="r-spacer"></div></div>
</div>
<section id="r-detail" class="r-detail" tabindex="-1" aria-label="Selected example" aria-live="polite"></section>
</main>
<script type="application/json" id="vpd-data">{data}</script>
<script>{script}</script>
"""
)
