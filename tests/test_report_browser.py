"""The ``vpd show`` report in a real browser: headless Chromium driven over the DevTools protocol.

The browser is Debian's ``chromium`` (``.ci/run`` installs it). It is driven through
``--remote-debugging-pipe`` (JSON messages separated by NUL bytes on file descriptors 3
and 4), so no driver and no Python package are needed. The test checks that the page
logs no error and makes no network request, that search, the outcome filter and the
keyboard work, that images load and boxes are drawn, and that hostile text stays text;
the screenshots are saved under ``test-artifacts/`` (git-ignored).

Without Chromium the test is skipped, except under CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import synthetic_trace, write_images
from test_render_report import noise_images

from vpd.render import write_report
from vpd.traces import TraceRecord, read_traces

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
]
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> </script><!--'
N_TRACES = 10_000
N_DISTINCT = 2_500


def _chromium() -> str:
    for name in (os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return str(shutil.which(name))
    reason = "Chromium is not installed (apt-get install chromium; .ci/run installs it in CI)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}, and CI=true: the browser test must run in CI")
    pytest.skip(reason)


class Browser:
    """A headless Chromium and one page, spoken to over the DevTools pipe."""

    def __init__(self, binary: str, profile: Path, log: Path):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        self._stderr = log.open("wb")
        # fd 3: commands in, fd 4: replies and events out (what --remote-debugging-pipe expects)
        self.process = subprocess.Popen(
            [
                "sh",
                "-c",
                'exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null',
                binary,
                *FLAGS,
                f"--user-data-dir={profile}",
            ],
            stdin=to_browser_r,
            stdout=from_browser_w,
            stderr=self._stderr,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.session: str | None = None

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                break
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            with self._cond:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self.events.append(message)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def send(self, method: str, params: dict[str, Any] | None = None, *, timeout: float = 30) -> dict[str, Any]:
        self._next += 1
        ident = self._next
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if self.session is not None and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while ident not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    raise TimeoutError(f"no reply to {method} (browser exit code {self.process.poll()})")
                self._cond.wait(left)
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise RuntimeError(f"{method} failed: {reply['error']}")
        return reply.get("result", {})

    def open_page(self, width: int, height: int) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    def wait_event(self, method: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events:
                    if event.get("method") == method:
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {method} event")
                self._cond.wait(left)

    def js(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError(f"{expression!r} stayed false")

    def key(self, key: str, code: int) -> None:
        text = key if len(key) == 1 else ""
        for kind in ("keyDown", "keyUp"):
            params = {"type": kind, "key": key, "code": key, "windowsVirtualKeyCode": code, "text": text}
            if kind == "keyUp" or not text:
                params.pop("text")
            self.send("Input.dispatchKeyEvent", params)

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"]))

    def problems(self) -> list[str]:
        """Errors the page reported, and requests that left the file (all must be empty)."""
        found = []
        with self._cond:
            events = list(self.events)
        for event in events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails']}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
            elif method == "Network.requestWillBeSent":
                url = params["request"]["url"]
                if not url.startswith(("file:", "data:")):
                    found.append(f"network request: {url}")
        return found

    def close(self) -> None:
        with contextlib.suppress(TimeoutError, RuntimeError, OSError):
            self.send("Browser.close", timeout=5)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        self._reader.join(timeout=5)
        os.close(self._from_browser)
        self._stderr.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    chromium = _chromium()
    started = Browser(chromium, tmp_path / "profile", tmp_path / "chromium.log")
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def report(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """A report of 10,000 synthetic traces, a few with hostile text, one without its image."""
    import random

    images = write_images(tmp_path / "images")
    rng = random.Random(7)
    lines = []
    expected = {"failed": 0, "zebra": 0}
    for i in range(N_TRACES):
        name, sha = images[i % len(images)]
        trace = synthetic_trace(i, rng, ocr_text=HOSTILE if i < 3 else None, sha256=sha)
        record: dict[str, Any] = {"trace": trace.to_dict(), "image": name}
        if i == 5:
            record["image"] = "images/missing.png"
        if i % 1000 == 17:
            record["question"] = f"Is the zebra {HOSTILE} striped? #{i}"
            expected["zebra"] += 1
        expected["failed"] += not trace.ok
        lines.append(json.dumps(record, ensure_ascii=False))
    lines.insert(10, "{not json")
    source = tmp_path / "traces.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    loaded = read_traces(source, skip_bad=True)
    assert len(loaded.bad) == 1 and loaded.bad[0].line == 11
    output = tmp_path / "report.html"
    stats = write_report(loaded.records, output, title="browser test", bad=loaded.bad)
    assert stats.traces == N_TRACES and stats.images == len(images)
    return output, expected


@pytest.mark.slow
def test_report_in_chromium(browser: Browser, report: tuple[Path, dict[str, int]]) -> None:
    path, expected = report
    browser.open_page(1400, 900)
    started = time.perf_counter()
    browser.send("Page.navigate", {"url": path.as_uri()})
    browser.wait_event("Page.loadEventFired")
    browser.wait_for("document.body.dataset.ready === 'true'")
    load_seconds = time.perf_counter() - started
    assert browser.js("document.getElementById('r-count').textContent") == f"showing {N_TRACES} of {N_TRACES}"
    assert browser.js("document.querySelectorAll('.r-row').length") < 100  # only visible rows exist
    assert "1 bad input line skipped" in browser.js("document.querySelector('.r-warn').textContent")

    # keyboard: into the list, down twice, the second trace opens
    browser.js("document.getElementById('r-list').focus()")
    browser.key("ArrowDown", 40)
    browser.key("j", 74)
    browser.wait_for("document.querySelector('#r-view') && document.querySelector('#r-view').dataset.index === '1'")
    assert browser.js("location.hash") == "#i=2"

    # the first trace: hostile OCR text stays text, its image loads, its boxes are drawn
    browser.key("Home", 36)
    browser.wait_for("document.querySelector('#r-view').dataset.index === '0'")
    browser.wait_for("[...document.querySelectorAll('#r-view img')].every(i => i.complete && i.naturalWidth > 0)")
    assert browser.js("document.querySelectorAll('#r-view img').length") == 1
    boxes = browser.js("document.querySelectorAll('#r-view svg.vpd-overlay > g').length")
    assert boxes == browser.js("document.querySelectorAll('#r-view .vpd-legend tr').length") > 0
    text = browser.js("document.getElementById('r-view').textContent")
    assert "<script>window.__pwned = 1</script>" in text and "not the one the program ran on" not in text
    assert browser.js("typeof window.__pwned") == "undefined"
    assert browser.js("document.querySelectorAll('img[src=x], #r-view script').length") == 0
    browser.screenshot(ARTIFACTS / "report-trace.png")

    # the trace whose image is missing says so and still draws its boxes on a blank canvas
    for _ in range(5):
        browser.key("ArrowDown", 40)
    browser.wait_for("document.querySelector('#r-view').dataset.index === '5'")
    assert "Image not available" in browser.js("document.getElementById('r-view').textContent")

    # search through the keyboard: '/' focuses the box, typing filters
    browser.key("/", 191)
    assert browser.js("document.activeElement.id") == "r-q"
    started = time.perf_counter()
    browser.send("Input.insertText", {"text": "zebra"})
    browser.wait_for(f"document.getElementById('r-count').textContent === 'showing {expected['zebra']} of {N_TRACES}'")
    search_seconds = time.perf_counter() - started
    assert browser.js("[...document.querySelectorAll('.r-row')].every(r => r.textContent.includes('zebra'))")
    assert browser.js("typeof window.__pwned") == "undefined"

    # the outcome filter (search cleared): only failed runs remain
    browser.js(
        "const q = document.getElementById('r-q'); q.value = ''; q.dispatchEvent(new Event('input'));"
        "const s = document.getElementById('r-status'); s.value = 'failed'; s.dispatchEvent(new Event('change'));"
    )
    browser.wait_for(f"document.getElementById('r-count').textContent === 'showing {expected['failed']} of {N_TRACES}'")
    assert browser.js("[...document.querySelectorAll('.r-row')].every(r => r.children[1].textContent === '!')")
    assert browser.js("document.querySelector('#r-view .vpd-badge').textContent").startswith("failed")
    # every filter shows its count, and the summary bar's pills filter too
    option = browser.js("document.querySelector('#r-status option[value=failed]').textContent")
    assert option == f"failed (error) ({expected['failed']})"
    assert (
        browser.js("document.querySelector('#r-summary [data-status=failed]').getAttribute('aria-pressed')") == "true"
    )
    browser.js("document.querySelector('#r-summary [data-status=failed]').click()")  # again: all outcomes
    browser.wait_for(f"document.getElementById('r-count').textContent === 'showing {N_TRACES} of {N_TRACES}'")
    browser.js("document.querySelector('#r-summary [data-status=failed]').click()")
    browser.wait_for(f"document.getElementById('r-count').textContent === 'showing {expected['failed']} of {N_TRACES}'")
    # columns sort: by error kind, then back
    browser.js("document.querySelector('.r-head [data-sort=k]').click()")
    kinds = browser.js("[...document.querySelectorAll('.r-row')].map(r => r.lastChild.textContent)")
    assert kinds == sorted(kinds) and browser.js("document.querySelector('.r-head [aria-sort]').dataset.sort") == "k"
    assert "sort=k" in browser.js("location.hash")
    browser.screenshot(ARTIFACTS / "report-filtered.png")

    # narrow window: list above, the view below, the image before the program
    browser.send(
        "Emulation.setDeviceMetricsOverride", {"width": 700, "height": 1000, "deviceScaleFactor": 1, "mobile": False}
    )
    browser.screenshot(ARTIFACTS / "report-narrow.png")

    assert browser.problems() == []
    print(f"\nreport of {N_TRACES} traces: loaded in {load_seconds:.2f} s, search in {search_seconds:.2f} s")
    assert load_seconds < 20 and search_seconds < 5


@pytest.fixture
def distinct_report(tmp_path: Path) -> tuple[Path, int]:
    """A report of 2,500 traces, each with its own image; every 100th asks about a zebra."""
    import random

    rng = random.Random(3)
    paths = noise_images(tmp_path / "noise", N_DISTINCT)
    records = []
    for i, path in enumerate(paths):
        trace = synthetic_trace(i, rng)
        question = f"Is the zebra {i} striped?" if i % 100 == 42 else f"What colour is thing {i}?"
        records.append(
            TraceRecord(trace=trace, id=f"t{i}", source=f"t.jsonl:{i + 1}", question=question, image_path=path)
        )
    output = tmp_path / "distinct.html"
    stats = write_report(records, output, title="distinct images")
    assert stats.images == N_DISTINCT and stats.missing_images == 0 and not stats.warnings
    return output, stats.bytes


@pytest.mark.slow
def test_report_with_an_image_per_trace(browser: Browser, distinct_report: tuple[Path, int]) -> None:
    """Thousands of image blocks: no CSP or other error, images read on demand, filters still work."""
    path, size = distinct_report
    browser.open_page(1400, 900)
    started = time.perf_counter()
    browser.send("Page.navigate", {"url": path.as_uri() + "#i=" + str(N_DISTINCT)})  # a link to the last trace
    browser.wait_for("document.body && document.body.dataset.ready === 'true'")
    ready_seconds = time.perf_counter() - started
    browser.wait_event("Page.loadEventFired")
    load_seconds = time.perf_counter() - started
    assert browser.js('document.querySelectorAll(\'script[type="text/plain"][id^="vpd-img-"]\').length') == N_DISTINCT
    thumbs = "[...document.querySelectorAll('.r-row img.r-thumb')]"
    assert browser.js(f"{thumbs}.length") > 10  # every visible row has one once the page is loaded
    assert browser.js(f"{thumbs}.every(i => i.src.startsWith('data:image/'))")
    assert browser.js("document.getElementById('r-count').textContent") == f"showing {N_DISTINCT} of {N_DISTINCT}"

    # the linked trace (its image block is the last in the file) shows its own image
    shows_image = (
        "(() => { const v = document.getElementById('r-view'), i = v && v.querySelector('img');"
        " return !!i && i.complete && i.naturalWidth > 0"
        " && i.src === document.getElementById('vpd-img-i' + v.dataset.index).textContent; })()"
    )
    browser.wait_for(f"document.querySelector('#r-view').dataset.index === '{N_DISTINCT - 1}'")
    browser.wait_for(shows_image)
    assert "Loading the image" not in browser.js("document.getElementById('r-view').textContent")

    # filter, then open a match with the keyboard: its image, read from its block
    browser.js("const q = document.getElementById('r-q'); q.value = 'zebra'; q.dispatchEvent(new Event('input'));")
    browser.wait_for(
        f"document.getElementById('r-count').textContent === 'showing {N_DISTINCT // 100} of {N_DISTINCT}'"
    )
    browser.js("document.getElementById('r-list').focus()")
    browser.key("End", 35)
    browser.key("ArrowUp", 38)
    browser.wait_for(f"document.querySelector('#r-view').dataset.index === '{N_DISTINCT - 158}'")
    browser.wait_for(shows_image)
    # crop thumbnails get their image once scrolled into view
    crops = "[...document.querySelectorAll('#r-view .vpd-crop image')]"
    if browser.js(f"{crops}.length"):
        browser.js("document.querySelector('#r-view .vpd-crops').scrollIntoView()")
        browser.wait_for(
            f"{crops}.every(i => i.getAttribute('href') && i.getAttribute('href').startsWith('data:image/'))"
        )
    browser.screenshot(ARTIFACTS / "report-distinct-images.png")

    # no error at all, CSP included; and a CSP violation would have been seen
    assert browser.problems() == []
    browser.js(
        "const s = document.createElement('script'); s.textContent = 'window.__ran = 1'; document.body.append(s);"
    )
    assert browser.js("typeof window.__ran") == "undefined"
    deadline = time.monotonic() + 5
    while not any("Content Security Policy" in p for p in browser.problems()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any("Content Security Policy" in p for p in browser.problems()), browser.problems()
    print(
        f"\nreport of {N_DISTINCT} traces with distinct images ({size / 1e6:.1f} MB): usable in {ready_seconds:.2f} s, "
        f"loaded in {load_seconds:.2f} s"
    )
    assert load_seconds < 20
