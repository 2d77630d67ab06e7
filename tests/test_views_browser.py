"""The views measured in headless Chromium: layout at any width, lines that ran, image ↔ code
linking, dark theme, and the run report (synthesis candidates, comparisons, 10,000 examples).

Uses the DevTools-pipe browser of ``test_report_browser`` (Debian's ``chromium``; skipped
without it, except under CI). Screenshots go to ``test-artifacts/`` (git-ignored).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pytest
from support import RUN_HOSTILE, make_runs, synthetic_trace, write_images
from test_report_browser import ARTIFACTS, Browser, browser  # noqa: F401 - the fixture

import vpd
from vpd.render import load_runs, render_candidates, render_trace, write_report, write_run_report
from vpd.testing import Scene, SceneObject
from vpd.traces import TraceRecord

#: The calls beside a program line keep at least this width (px) on a wide page, and go
#: under the line with at least the narrow width on a phone-sized one.
MIN_CALLS_WIDE = 240
MIN_CALLS_NARROW = 300

LONG = (
    "    names = [c.simple_query('What is this animal called, in one word, please?') for c in cats"
    " if c.exists('cat') and c.verify_property('cat', 'furry') and c.width > 1 and c.height > 1"
    " and c.horizontal_center > 0]"
)
PROGRAM = "\n".join(
    [
        "def execute_command(image):",
        "    patch = ImagePatch(image)",
        "    cats = patch.find('cat')",
        LONG,
        "    if len(cats) > 5:",
        "        return 'many'",
        "    return len(cats)",
    ]
)


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene(320, 240, [SceneObject("cat", (10, 10, 60, 60)), SceneObject("cat", (100, 10, 150, 60))])


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory, scene: Scene) -> dict[str, Path]:
    """The same run in the report, in notebook HTML, and in the solve page (two candidates)."""
    assert len(LONG) >= 200
    folder = tmp_path_factory.mktemp("views")
    run = vpd.run_program(PROGRAM, scene.image, toolkit=scene.toolkit())
    assert run.ok and run.trace.line_counts is not None
    image = folder / "scene.png"
    scene.image.save(image)
    record = TraceRecord(trace=run.trace, id="long", source="t:1", question="How many cats?", label="2",
                         correct=True, image_path=image)  # fmt: skip
    write_report([record], folder / "report.html", title="layout")
    wrap = "<!DOCTYPE html><html><head><meta charset='utf-8'></head><body style='margin:8px'>{}</body></html>"
    (folder / "notebook.html").write_text(wrap.format(render_trace(run.trace, scene.image)), encoding="utf-8")
    other = vpd.run_program(PROGRAM.replace("> 5", "> 1"), scene.image, toolkit=scene.toolkit())
    solve = render_candidates([run, other], scene.image, question="How many cats?", answer="2")
    (folder / "solve.html").write_text(wrap.format(solve), encoding="utf-8")
    return {"report": folder / "report.html", "notebook": folder / "notebook.html", "solve": folder / "solve.html"}


def _open(browser: Browser, url: str, width: int, height: int = 900, dark: bool = False) -> None:  # noqa: F811
    browser.open_page(width, height)
    if dark:
        browser.send("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    browser.send("Page.navigate", {"url": url})
    # Not wait_event("Page.loadEventFired"): an earlier page's event (the same browser) would do.
    page = json.dumps(url.split("#", 1)[0])
    browser.wait_for(f"location.href.split('#')[0] === {page} && document.readyState === 'complete'")


_CALLS = """(() => {
  const rows = [...document.querySelectorAll("tr[data-line='4']")];
  return rows.filter(r => r.offsetParent !== null).map(r => {
    const ev = r.querySelector("td.vpd-ev").getBoundingClientRect();
    const src = r.querySelector("td.vpd-src").getBoundingClientRect();
    const code = r.closest(".vpd-code");
    return {ev: [ev.left, ev.right, ev.width, ev.top], src: [src.left, src.right, src.width, src.bottom],
            view: document.documentElement.clientWidth, codeOverflow: code.scrollWidth - code.clientWidth,
            calls: r.querySelectorAll(".vpd-call").length};
  });
})()"""


@pytest.mark.slow
@pytest.mark.parametrize("width", [1400, 420])
def test_the_calls_beside_a_long_line_stay_visible(browser: Browser, pages: dict[str, Path], width: int) -> None:  # noqa: F811
    for name in ("report", "notebook", "solve"):
        url = pages[name].as_uri() + ("#i=1" if name == "report" else "")
        _open(browser, url, width)
        if name == "report":
            browser.wait_for("document.querySelector('#r-view') !== null")
        else:
            browser.js("document.querySelectorAll('details').forEach(d => d.open = true)")
        rows = browser.js(_CALLS)
        assert rows, f"{name}: line 4 is not shown"
        for row in rows:
            left, right, calls_width, top = row["ev"]
            assert row["calls"] >= 4, f"{name}: the calls of line 4 are missing"
            assert right <= row["view"] + 1 and left >= 0, (
                f"{name} at {width}px: the calls column is off the page {row}"
            )
            assert row["codeOverflow"] <= 1, f"{name} at {width}px: the code pane scrolls sideways {row}"
            if width >= 1000:
                assert calls_width >= MIN_CALLS_WIDE, f"{name} at {width}px: calls column {calls_width:.0f}px wide"
                assert left >= row["src"][1] - 1, f"{name}: the calls are not beside the code"
            else:
                assert calls_width >= MIN_CALLS_NARROW, f"{name} at {width}px: calls {calls_width:.0f}px wide"
                assert top >= row["src"][3] - 1, f"{name}: on a narrow page the calls go under their line"
        browser.screenshot(ARTIFACTS / f"layout-{name}-{width}.png")
        assert browser.problems() == []


@pytest.mark.slow
def test_lines_that_ran_and_box_to_line_linking(browser: Browser, pages: dict[str, Path]) -> None:  # noqa: F811
    _open(browser, pages["report"].as_uri() + "#i=1", 1400)
    browser.wait_for("document.querySelector('#r-view img') && document.querySelector('#r-view img').complete")
    marks = browser.js(
        "[...document.querySelectorAll('#r-view .vpd-prog tr[data-line]')].map(r => [r.dataset.line, r.className,"
        " getComputedStyle(r.querySelector('td.vpd-src')).opacity])"
    )
    by_line = {int(n): (cls, float(opacity)) for n, cls, opacity in marks}
    assert "vpd-ran" in by_line[5][0] and "vpd-notrun" in by_line[6][0]  # the if ran, its return did not
    assert "vpd-returned" in by_line[7][0]
    assert by_line[6][1] < 1.0 and by_line[5][1] == 1.0  # not-run lines look different
    assert "green edge" in browser.js("document.querySelector('#r-view .vpd-key').textContent")

    # click the smallest box on the image: its line, its legend row and its chip light up
    box = browser.js(
        "(() => { const g = [...document.querySelectorAll('#r-view svg.vpd-overlay g.vpd-box')];"
        " const r = g.map(x => [x, x.querySelector('rect').getBoundingClientRect()]);"
        " r.sort((a, b) => a[1].width * a[1].height - b[1].width * b[1].height);"
        " const rect = r[0][1], x = rect.left + rect.width / 2, y = rect.top + rect.height / 2;"
        " const node = document.elementFromPoint(x, y).closest('[data-box]');"  # the box on top there
        " return {n: node.dataset.box, line: node.dataset.boxLine, x: x, y: y}; })()"
    )
    for kind in ("mousePressed", "mouseReleased"):
        browser.send(
            "Input.dispatchMouseEvent", {"type": kind, "x": box["x"], "y": box["y"], "button": "left", "clickCount": 1}
        )
    line = box["line"]
    assert browser.js(f"document.querySelector(\"#r-view tr[data-line='{line}']\").classList.contains('vpd-hot')")
    hot = browser.js(f"[...document.querySelectorAll(\"#r-view .vpd-hot[data-box='{box['n']}']\")].map(n => n.tagName)")
    assert {"g", "TR", "SPAN"} <= set(hot)  # the box, its legend row, its chip
    browser.screenshot(ARTIFACTS / "linking-box-to-line.png")
    # and the reverse: selecting a line lights up all of its boxes (and only them)
    boxes = f"#r-view g.vpd-box[data-box-line='{line}']"
    src = f"document.querySelector(\"#r-view tr[data-line='{line}'] td.vpd-src\")"
    on_line = browser.js(f'document.querySelectorAll("{boxes}").length')
    assert on_line >= 2  # line 4: exists() and verify_property() evidence, twice each
    browser.js(f"{src}.click()")
    assert browser.js(f'document.querySelectorAll("{boxes}.vpd-hot").length') == on_line
    assert browser.js("document.querySelectorAll('#r-view g.vpd-box.vpd-hot').length") == on_line  # only them
    browser.js(f"{src}.click()")  # unpinned: nothing lit
    assert browser.js("document.querySelectorAll('#r-view .vpd-hot').length") == 0
    browser.js(f"{src}.dispatchEvent(new MouseEvent('mouseover', {{bubbles: true}}))")  # hovering lights them too
    assert browser.js(f'document.querySelectorAll("{boxes}.vpd-hot").length') == on_line
    assert browser.problems() == []


@pytest.mark.slow
def test_dark_theme(browser: Browser, pages: dict[str, Path]) -> None:  # noqa: F811
    _open(browser, pages["report"].as_uri() + "#i=1", 1400, dark=True)
    browser.wait_for("document.querySelector('#r-view') !== null")
    background = browser.js("getComputedStyle(document.body).backgroundColor")
    view = browser.js("getComputedStyle(document.querySelector('#r-view')).backgroundColor")
    assert background == "rgb(19, 22, 28)" and view == "rgb(27, 31, 39)"
    browser.screenshot(ARTIFACTS / "report-dark.png")
    _open(browser, pages["report"].as_uri() + "#i=1", 1400)
    browser.wait_for("document.querySelector('#r-view') !== null")
    assert browser.js("getComputedStyle(document.body).backgroundColor") == "rgb(243, 245, 248)"


@pytest.fixture(scope="module")
def run_pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("run-pages")
    synth, evaluation = make_runs(folder / "runs")
    write_run_report(load_runs([synth]), folder / "synth.html")
    write_run_report(load_runs([evaluation, synth]), folder / "compare.html")
    return {"synth": folder / "synth.html", "compare": folder / "compare.html"}


@pytest.mark.slow
def test_a_synthesis_run_groups_k_candidates_under_each_example(browser: Browser, run_pages: dict[str, Path]) -> None:  # noqa: F811
    _open(browser, run_pages["synth"].as_uri(), 1400)
    browser.wait_for("document.body.dataset.ready === 'true'")
    assert browser.js("document.getElementById('r-count').textContent") == "showing 3 of 3"
    assert browser.js("document.querySelectorAll('#r-summary .vpd-chart rect.vpd-bar').length") == 3  # k = 1..3
    options = browser.js("[...document.getElementById('r-status').options].map(o => o.textContent)")
    assert options == ["all outcomes (3)", "verified (2)", "wrong (1)"]
    assert browser.js("[...document.querySelectorAll('.r-row')].every(r => r.querySelector('img.r-thumb'))")
    # open q1: three candidates side by side, the chosen one's trace open
    row = browser.js(
        "[...document.querySelectorAll('.r-row')].findIndex(r => r.textContent.includes('How many cats are'))"
    )
    browser.js(f"document.querySelectorAll('.r-row')[{row}].click()")
    browser.wait_for("document.querySelectorAll('#r-view .r-cand').length === 3")
    texts = browser.js("[...document.querySelectorAll('#r-view .r-cand')].map(b => b.textContent)")
    assert "wrong" in texts[0] and "correct" in texts[1] and "chosen" in texts[1]
    assert "program 2: what it did" in browser.js("document.getElementById('r-view').textContent")
    browser.js("document.querySelectorAll('#r-view .r-cand')[0].click()")
    browser.wait_for("document.getElementById('r-view').textContent.includes('program 1: what it did')")
    assert browser.js("document.querySelectorAll('#r-view .vpd-prog tr.vpd-returned').length") == 1
    browser.screenshot(ARTIFACTS / "run-synthesis.png")
    # the failed example says why each program failed
    browser.js(
        "const s = document.getElementById('r-status'); s.value = '0:wrong'; s.dispatchEvent(new Event('change'))"
    )
    browser.wait_for("document.querySelectorAll('#r-view .r-cand').length === 3")
    why = browser.js("[...document.querySelectorAll('#r-view .r-why')].map(n => n.textContent)")
    assert any("IndexError" in w for w in why) and any("no valid program" in w or "python" in w.lower() for w in why)
    assert browser.js("typeof window.__pwned") == "undefined"
    assert browser.problems() == []


@pytest.mark.slow
def test_two_runs_compared_differing_examples_first(browser: Browser, run_pages: dict[str, Path]) -> None:  # noqa: F811
    _open(browser, run_pages["compare"].as_uri(), 1400)
    browser.wait_for("document.body.dataset.ready === 'true'")
    heads = browser.js("[...document.querySelectorAll('#r-head span')].map(s => s.textContent)")
    assert heads[3:6] == ["fixed", "teacher", "synth"]
    differ = browser.js("[...document.querySelectorAll('.r-row')].map(r => r.classList.contains('r-differ'))")
    assert differ == sorted(differ, reverse=True) and any(differ)  # differing examples first
    options = browser.js("[...document.getElementById('r-diff').options].map(o => o.textContent)")
    assert options[1].startswith("runs differ (")
    # sort by the teacher's score: the column says so, and the order follows
    browser.js("[...document.querySelectorAll('#r-head span')].find(s => s.textContent === 'teacher').click()")
    assert browser.js("document.querySelector('#r-head [aria-sort]').textContent") == "teacher"
    assert "sort=-r1" in browser.js("location.hash")
    browser.js("document.querySelector('.r-row').click()")
    browser.wait_for("document.querySelectorAll('#r-view .r-runbox').length === 3")
    # each teacher's chosen program opens in the trace view, like a synthesis candidate
    browser.js('document.querySelector(\'#r-view .r-runbox[data-run="1"] .r-cand[data-cand="-1"]\').click()')
    browser.wait_for("document.getElementById('r-view').textContent.includes(\"teacher's program: what it did\")")
    assert browser.js("document.querySelectorAll('#r-view .vpd-prog tr[data-line]').length") >= 2
    browser.screenshot(ARTIFACTS / "run-compare.png")
    text = browser.js("document.body.textContent")
    assert RUN_HOSTILE in text and browser.js("typeof window.__pwned") == "undefined"
    assert browser.problems() == []


def _big_run(folder: Path, examples: int, k: int) -> Path:
    """A synthesis run folder of ``examples`` records with ``k`` synthetic candidates each."""
    rng = random.Random(5)
    images = write_images(folder / "images")
    run = folder / "big"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"kind": "synthesis", "config": {"k": k}}))
    with (run / "records.jsonl").open("w", encoding="utf-8") as out:
        for i in range(examples):
            name, sha = images[i % len(images)]
            candidates: list[dict[str, Any]] = []
            for j in range(k):
                trace = synthetic_trace(i * k + j, rng, sha256=sha)
                outcome = trace.error.kind if trace.error else rng.choice(["correct", "wrong", "wrong"])
                candidates.append(
                    {
                        "index": j,
                        "program": trace.program,
                        "outcome": outcome,
                        "trace": trace.to_dict(),
                        "prediction": None if trace.error else str(trace.answer),
                        "score": 1.0 if outcome == "correct" else 0.0,
                    }
                )
            verified = any(c["outcome"] == "correct" for c in candidates)
            record = {"version": "vpd.synthesis/1", "id": str(i), "question": f"Question {i}: is the zebra striped?",
                      "image": str(folder / "images" / name), "references": ["yes"], "metric": "vqa",
                      "error": None, "candidates": candidates, "verified": verified, "score": float(verified),
                      "chosen": next((c["index"] for c in candidates if c["outcome"] == "correct"), None)}  # fmt: skip
            out.write(json.dumps(record) + "\n")
    return run


@pytest.mark.slow
def test_a_run_of_ten_thousand_examples_opens_quickly(browser: Browser, tmp_path: Path) -> None:  # noqa: F811
    run = _big_run(tmp_path, 10_000, 2)
    started = time.perf_counter()
    stats = write_run_report(load_runs([run]), tmp_path / "big.html")
    build_seconds = time.perf_counter() - started
    assert stats.examples == 10_000 and stats.traces == 20_000
    started = time.perf_counter()
    _open(browser, (tmp_path / "big.html").as_uri() + "#i=9999", 1400)
    browser.wait_for("document.body.dataset.ready === 'true'", timeout=60)
    browser.wait_for("document.querySelectorAll('#r-view .r-cand').length === 2", timeout=60)
    ready_seconds = time.perf_counter() - started
    assert browser.js("document.getElementById('r-count').textContent") == "showing 10000 of 10000"
    assert browser.js("document.querySelectorAll('.r-row').length") < 100  # only the visible rows exist
    started = time.perf_counter()
    browser.js(
        "const q = document.getElementById('r-q'); q.value = 'Question 4242:'; q.dispatchEvent(new Event('input'));"
    )
    browser.wait_for("document.getElementById('r-count').textContent === 'showing 1 of 10000'")
    search_seconds = time.perf_counter() - started
    browser.screenshot(ARTIFACTS / "run-10k.png")
    assert browser.problems() == []
    print(
        f"\nrun of 10,000 examples x 2 candidates: built in {build_seconds:.1f} s ({stats.bytes / 1e6:.0f} MB), "
        f"loaded and the last example open in {ready_seconds:.2f} s, searched in {search_seconds:.2f} s"
    )
    assert ready_seconds < 30 and search_seconds < 10  # generous bounds: a broken page, not a slow machine


@pytest.mark.slow
def test_the_notebook_links_boxes_and_lines_without_a_script(browser: Browser, pages: dict[str, Path]) -> None:  # noqa: F811
    """Notebooks run no script: pointing at a box lights its line, legend row and chip through CSS alone."""
    _open(browser, pages["notebook"].as_uri(), 1400)
    assert browser.js("document.querySelectorAll('script').length") == 0
    hot = browser.js("getComputedStyle(document.querySelector('.vpd')).getPropertyValue('--vpd-hot').trim()")
    point = browser.js(
        "(() => { const r = document.querySelector('svg.vpd-static g[data-box=\"3\"] rect').getBoundingClientRect();"
        " const x = r.left + r.width / 2, y = r.top + r.height / 2;"
        " const g = document.elementFromPoint(x, y).closest('g[data-box]');"  # the box on top there (line 4)
        " return {x: x, y: y, n: g.dataset.box, line: g.dataset.boxLine}; })()"
    )
    n, line = point["n"], point["line"]
    assert line == "4"
    line_bg = f"getComputedStyle(document.querySelector(\"tr[data-line='{line}'] td.vpd-src\")).backgroundColor"
    legend_bg = f"getComputedStyle(document.querySelector(\".vpd-legend tr[data-box='{n}'] td\")).backgroundColor"
    before = browser.js(line_bg)
    browser.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": point["x"], "y": point["y"]})
    lit = browser.js(line_bg)
    assert lit != before and lit == browser.js(legend_bg)
    stroke = f"getComputedStyle(document.querySelector('svg.vpd-static g[data-box=\"{n}\"] rect')).strokeWidth"
    assert browser.js(stroke) == "4px"
    outline = f"getComputedStyle(document.querySelector(\"span.vpd-chip[data-box='{n}']\")).outlineStyle"
    assert browser.js(outline) == "solid"
    browser.screenshot(ARTIFACTS / "notebook-linking.png")
    # pointing at line 3 lights its two find() boxes, not line 4's
    browser.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": 5, "y": 5})
    row = browser.js(
        "(() => { const r = document.querySelector(\"tr[data-line='3'] td.vpd-src\").getBoundingClientRect();"
        " return {x: r.left + 5, y: r.top + r.height / 2}; })()"
    )
    browser.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": row["x"], "y": row["y"]})
    widths = browser.js(
        "[...document.querySelectorAll('svg.vpd-static g')]"
        ".map(g => [g.dataset.boxLine, getComputedStyle(g.querySelector('rect')).strokeWidth])"
    )
    assert sorted(w for line, w in widths if line == "3") == ["4px", "4px"]
    assert all(w == "0px" for line, w in widths if line == "4")
    assert hot and browser.problems() == []
