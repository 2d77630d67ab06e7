"""``vpd show``: reading JSONL traces (good and bad lines, images) and writing the HTML report."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import re
import time
from pathlib import Path

import pytest
from support import synthetic_trace, write_images, write_jsonl

from vpd import cli
from vpd.errors import TraceFileError
from vpd.render import write_report
from vpd.render.report import DEFAULT_MAX_IMAGE_BYTES, OMITTED_NOTE, build_report, embed_json
from vpd.traces import ProgramError, ToolCall, Trace, TraceRecord, read_traces

ESCAPE = "</script><script>window.__pwned = 1</script><!--"


def trace(answer: object = "2", **meta: object) -> Trace:
    return Trace(
        program="def execute_command(image):\n    return 2\n",
        image={"sha256": "ab" * 32, "width": 64, "height": 48},
        events=(
            ToolCall(
                0, "find", "detect", "fake", None, {"object_name": "cup"}, [{"box": [1, 2, 3, 4]}], None, 2, 0.0, False
            ),
        ),
        answer=answer,
        meta=dict(meta),
    )


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def index_of(html: str) -> str:
    """The JSON index of the traces (no images in it)."""
    match = re.search(r'<script type="application/json" id="vpd-data">(.*?)</script>', html, re.S)
    assert match is not None
    return match.group(1)


def data_of(html: str) -> dict:
    return json.loads(index_of(html))


IMAGE_BLOCK = re.compile(
    r'<script type="text/plain" id="vpd-img-(i\d+)" data-sha256="([0-9a-f]{64})" data-w="(\d+)" data-h="(\d+)">'
    r"(data:image/(?:jpeg|png);base64,[A-Za-z0-9+/=]+)</script>\n"
)


THUMB_BLOCK = re.compile(
    r'<script type="text/plain" id="vpd-th-(i\d+)">(data:image/(?:jpeg|png);base64,[A-Za-z0-9+/=]+)</script>'
)


def image_bytes(html: str) -> int:
    """What the budget counts: the images' data URLs and their row thumbnails'."""
    return sum(len(url) for url in image_blocks(html).values()) + sum(len(m[1]) for m in THUMB_BLOCK.findall(html))


def image_blocks(html: str) -> dict[str, str]:
    """The data URL of each image block, by key."""
    return {match.group(1): match.group(5) for match in IMAGE_BLOCK.finditer(html)}


def noise_images(folder: Path, count: int, *, seed: int = 0) -> list[Path]:
    """``count`` distinct 64x48 noise PNGs (about 9 kB each, quick to write and to encode)."""
    from PIL import Image

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for j in range(count):
        path = folder / f"n{j}.png"
        Image.frombytes("RGB", (64, 48), rng.randbytes(64 * 48 * 3)).save(path, compress_level=1)
        paths.append(path)
    return paths


def test_bare_traces_and_records(tmp_path: Path) -> None:
    write_images(tmp_path / "images", count=1)
    source = write(
        tmp_path / "t.jsonl",
        [
            trace().to_json(),
            "",
            json.dumps({"trace": trace("3").to_dict(), "question": "How many?", "label": "three", "id": "q1"}),
            json.dumps(
                {"trace": trace(meta_only=1, question="From meta", label="2").to_dict(), "image": "images/img0.png"}
            ),
            json.dumps(
                {"trace": trace().to_dict(), "label": 2, "correct": False, "rationale": "Two cups.", "split": "dev"}
            ),
        ],
    )
    records = read_traces(source).records
    assert [r.id for r in records] == ["t.jsonl:1", "q1", "t.jsonl:4", "t.jsonl:5"]
    assert [r.question for r in records] == [None, "How many?", "From meta", None]
    assert [r.correct for r in records] == [None, True, True, False]  # "3" == "three" after normalisation
    assert records[2].image_path == tmp_path / "images" / "img0.png" and records[2].image_problem is None
    assert records[3].rationale == "Two cups." and records[3].extra == {"split": "dev"}


BAD_LINES = [
    ("{not json", "not JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"version": "vpd.trace/999", "program": "", "image": {}}', "Unsupported trace version"),
    ('{"version": "vpd.trace/1", "image": {}}', "missing key 'program'"),
    ('{"version": "vpd.trace/1", "program": 3, "image": {}}', "'program' must be a string"),
    ('{"version": "vpd.trace/1", "program": "", "image": {}, "events": [{"type": "teleport"}]}', "Unknown trace event"),
    ('{"version": "vpd.trace/1", "program": "", "image": {}, "wall_seconds": NaN}', "NaN is not JSON"),
    ('{"trace": 5}', "'trace' must be an object"),
    (json.dumps({"trace": trace().to_dict(), "question": 5}), "'question' must be a string"),
    (json.dumps({"trace": trace().to_dict(), "correct": "yes"}), "'correct' must be true, false or null"),
]


def test_bad_lines_are_named_or_skipped(tmp_path: Path) -> None:
    lines = [trace().to_json()] + [line for line, _ in BAD_LINES]
    source = write(tmp_path / "bad.jsonl", lines)
    with source.open("ab") as out:
        out.write(b'{"trace": "\xff"}\n')
    with pytest.raises(TraceFileError) as info:
        read_traces(source)
    message = str(info.value)
    assert message.startswith("11 bad lines in the traces (pass --skip-bad to skip them):")
    assert "bad.jsonl:2: not JSON" in message and "... and 6 more" in message
    loaded = read_traces(source, skip_bad=True)
    assert len(loaded.records) == 1
    assert [b.line for b in loaded.bad] == list(range(2, 13))
    for bad, (_, reason) in zip(loaded.bad, BAD_LINES):
        assert reason in bad.reason, (bad, reason)
    assert "not valid UTF-8" in loaded.bad[-1].reason


def test_missing_files_and_images(tmp_path: Path) -> None:
    with pytest.raises(TraceFileError, match="Traces file not found"):
        read_traces(tmp_path / "nope.jsonl")
    with pytest.raises(TraceFileError, match="images folder"):
        read_traces(write(tmp_path / "t.jsonl", [trace().to_json()]), images_dir=tmp_path / "nope")
    (name, sha), *_ = write_images(tmp_path / "pics", count=2)
    by_sha = Trace(program="", image={"sha256": sha, "width": 320, "height": 240})
    source = write(
        tmp_path / "t.jsonl",
        [
            by_sha.to_json(),  # found as pics/<sha256>.png
            json.dumps({"trace": trace().to_dict(), "image": "img1.png"}),  # relative to --images
            json.dumps({"trace": trace().to_dict(), "image": "gone.png"}),
            trace().to_json(),  # no path, no file named after its hash
        ],
    )
    (tmp_path / name).rename(tmp_path / "pics" / f"{sha}.png")
    records = read_traces(source, images_dir=tmp_path / "pics").records
    assert records[0].image_path == tmp_path / "pics" / f"{sha}.png"
    assert records[1].image_path == tmp_path / "pics" / "img1.png"
    assert records[2].image_path is None and "image not found" in (records[2].image_problem or "")
    assert records[3].image_path is None and "no image named abababababab" in (records[3].image_problem or "")
    html, counts = build_report(records)
    assert {k: counts[k] for k in ("traces", "images", "missing_images", "images_shrunk", "images_omitted")} == {
        "traces": 4,
        "images": 2,
        "missing_images": 2,
        "images_shrunk": 0,
        "images_omitted": 0,
    }
    entries = data_of(html)["traces"]
    assert [e["img"] for e in entries] == ["i0", "i1", None, None]
    assert "image not found" in entries[2]["imgNote"]
    assert sorted(image_blocks(html)) == ["i0", "i1"] and "r-budget" not in html
    # the same image under two paths is embedded once
    twin = tmp_path / "pics" / "twin.png"
    twin.write_bytes(records[1].image_path.read_bytes())  # type: ignore[union-attr]
    again = [records[0], records[1], TraceRecord(trace=trace(), id="twin", source="x:1", image_path=twin)]
    html, counts = build_report(again)
    assert counts["images"] == 2 and [e["img"] for e in data_of(html)["traces"]] == ["i0", "i1", "i1"]


def test_embedded_json_cannot_escape_its_script() -> None:
    value = {"text": ESCAPE + "\u2028&<>", "n": 1}
    text = embed_json(value)
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == value


def test_report_is_self_contained_and_escaped(tmp_path: Path) -> None:
    hostile = Trace(
        program=f"def execute_command(image):\n    return '{ESCAPE}'\n",
        image={"sha256": "cd" * 32, "width": 64, "height": 48},
        answer=ESCAPE,
        error=None,
        meta={"question": ESCAPE, "label": ESCAPE, "rationale": ESCAPE},
    )
    failed = Trace(program="x", image={}, error=ProgramError("runtime", ESCAPE, 1))
    source = write(
        tmp_path / "t.jsonl",
        [hostile.to_json(), failed.to_json(), json.dumps({"trace": hostile.to_dict(), ESCAPE: ESCAPE})],
    )
    loaded = read_traces(source)
    html, _ = build_report(loaded.records, title=ESCAPE)
    # exactly our two script elements: the JSON data and the app (no images: no image blocks)
    assert html.count("<script") == 2 and html.count("</script>") == 2
    assert "<title>&lt;/script&gt;&lt;script&gt;" in html
    data = data_of(html)
    assert data["traces"][0]["q"] == ESCAPE and data["traces"][0]["a"] == ESCAPE and data["traces"][0]["r"] == ESCAPE
    assert data["traces"][1]["k"] == "runtime" and data["traces"][1]["v"]["error"]["message"] == ESCAPE
    assert data["traces"][2]["x"] == {ESCAPE: ESCAPE}
    # nothing is loaded from anywhere: no URL but the SVG namespace, and a CSP that names the inline code
    assert set(re.findall(r"https?://[^\s\"')]+", html)) == {"http://www.w3.org/2000/svg"}
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert csp is not None and "default-src 'none'" in csp.group(1)
    script = re.search(r"<script>(.*)</script>", html, re.S)
    assert script is not None
    digest = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp.group(1)


@pytest.mark.slow
def test_ten_thousand_traces(tmp_path: Path) -> None:
    images = write_images(tmp_path / "images")
    source = tmp_path / "traces.jsonl"
    write_jsonl(source, 10_000, images=images)
    started = time.perf_counter()
    loaded = read_traces(source)
    read_seconds = time.perf_counter() - started
    stats = write_report(loaded.records, tmp_path / "report.html")
    print(
        f"\n10,000 traces: read {read_seconds:.1f} s, report {stats.seconds:.1f} s, "
        f"{stats.bytes / 1e6:.1f} MB ({stats.images} images)"
    )
    assert stats.traces == 10_000 and stats.images == 50 and stats.missing_images == 0
    assert stats.bytes < 40_000_000 and stats.seconds < 30


@pytest.mark.slow
def test_one_image_per_trace_and_the_budget(tmp_path: Path) -> None:
    """3,000 traces, each with its own image: one block per image, a small index, and the budget."""
    from PIL import Image

    n = 3000
    paths = noise_images(tmp_path / "noise", n)
    records = [
        TraceRecord(trace=trace(), id=f"t{i}", source=f"t.jsonl:{i + 1}", question=f"question {i}", image_path=path)
        for i, path in enumerate(paths)
    ]
    html, counts = build_report(records)
    blocks = image_blocks(html)
    assert len(blocks) == counts["images"] == n and html.count('<script type="text/plain" id="vpd-img-') == n
    assert counts["images_shrunk"] == counts["images_omitted"] == counts["missing_images"] == 0
    assert (counts["image_side"], counts["image_quality"]) == (448, 75)
    assert counts["image_bytes"] == image_bytes(html) < DEFAULT_MAX_IMAGE_BYTES
    assert len(THUMB_BLOCK.findall(html)) == 0  # images this small are their own row thumbnails
    assert "r-budget" not in html
    # the blocks come after the page's script (the list works while they load), the index names them only
    assert html.index("<script>") < html.index('id="vpd-img-i0"') < html.index(f'id="vpd-img-i{n - 1}"')
    index = index_of(html)
    assert "data:" not in index and "base64" not in index
    assert [e["img"] for e in json.loads(index)["traces"]] == [f"i{i}" for i in range(n)]
    bare_index = index_of(build_report(records, images=False)[0])
    assert len(index) < len(bare_index) + 20 * n  # the images add only their key to the index
    assert len(index) < 4_000_000
    first = Image.open(io.BytesIO(base64.b64decode(blocks["i0"].split(",", 1)[1])))
    assert first.size == (64, 48)

    # a budget under the total (of the first 600): every image shrinks (here: lower JPEG quality), none is left out
    budget = sum(len(blocks[f"i{i}"]) for i in range(600)) * 9 // 10
    html, shrunk = build_report(records[:600], max_total_image_bytes=budget)
    assert shrunk["images"] == shrunk["images_shrunk"] == 600 and shrunk["images_omitted"] == 0
    assert shrunk["image_quality"] < 75 and shrunk["image_bytes"] <= budget
    assert len(image_blocks(html)) == 600 and "images shrunk to" in html and "images omitted" not in html
    assert all(url.startswith("data:image/jpeg;") for url in image_blocks(html).values())

    # a budget even the smallest images exceed: as many as fit, the others omitted and said so
    budget = counts["image_bytes"] // 10
    stats = write_report(records, tmp_path / "r.html", max_total_image_bytes=budget)
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    blocks = image_blocks(html)
    assert (stats.image_side, stats.image_quality) == (128, 40)  # the smallest size
    assert 0 < stats.images == len(blocks) < n and stats.images_shrunk == stats.images
    assert stats.images_omitted == n - stats.images == stats.omitted_traces == stats.missing_images
    assert budget - max(len(url) for url in blocks.values()) < stats.image_bytes <= budget
    assert stats.image_bytes == image_bytes(html)
    entries = data_of(html)["traces"]
    omitted = [e for e in entries if e["img"] is None]
    assert len(omitted) == stats.images_omitted and all(e["imgNote"] == OMITTED_NOTE for e in omitted)
    assert {e["img"] for e in entries if e["img"] is not None} == set(blocks)
    assert len(stats.warnings) == 2 and "shrunk" in stats.warnings[0]
    assert f"{stats.images_omitted} of {n} images omitted" in stats.warnings[1]
    assert f"{stats.images_omitted} images omitted (size budget)" in html
    assert stats.bytes == (tmp_path / "r.html").stat().st_size


def test_cli_image_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = noise_images(tmp_path / "noise", 40)
    source = write(tmp_path / "t.jsonl", [json.dumps({"trace": trace().to_dict(), "image": str(p)}) for p in paths])
    out = io.StringIO()
    assert cli.main(["show", str(source), "-o", str(tmp_path / "r.html"), "--max-image-mb", "0.02"], out=out) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("vpd: warning: ")]
    assert len(warnings) == 2 and "images shrunk" in warnings[0] and "of 40 images omitted" in warnings[1]
    assert "0.02 MB" in warnings[1]
    assert "traces shown without their image" in out.getvalue()
    assert cli.main(["show", str(source), "-o", str(tmp_path / "r.html")], out=io.StringIO()) == 0
    assert "warning" not in capsys.readouterr().err
    for bad in ("0", "-1", "nan", "inf"):
        assert cli.main(["show", str(source), "-o", str(tmp_path / "r.html"), "--max-image-mb", bad]) == 1
        assert "--max-image-mb must be a positive number" in capsys.readouterr().err


def test_no_images_option(tmp_path: Path) -> None:
    images = write_images(tmp_path / "images", count=2)
    source = tmp_path / "t.jsonl"
    write_jsonl(source, 4, images=images)
    html, counts = build_report(read_traces(source).records, images=False)
    assert counts["images"] == 0 and "data:image" not in html
    assert data_of(html)["traces"][0]["imgNote"] == "images not embedded (--no-images)"


def test_cli_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(1)
    images = write_images(tmp_path / "images", count=3)
    source = tmp_path / "traces.jsonl"
    write_jsonl(source, 20, images=images)
    out = io.StringIO()
    assert cli.main(["show", str(source), "-o", str(tmp_path / "r.html")], out=out) == 0
    assert out.getvalue().startswith(f"wrote {tmp_path / 'r.html'}: 20 traces, 3 images,")
    assert cli.main(["show", str(source)], out=io.StringIO()) == 0 and (tmp_path / "traces.html").is_file()
    with source.open("a") as handle:
        handle.write("oops\n" + synthetic_trace(99, rng).to_json() + "\n")
    assert cli.main(["show", str(source), "-o", str(tmp_path / "r.html")], out=io.StringIO()) == 1
    assert "traces.jsonl:21: not JSON" in capsys.readouterr().err
    out = io.StringIO()
    assert cli.main(["show", str(source), "-o", str(tmp_path / "r.html"), "--skip-bad"], out=out) == 0
    assert "21 traces" in out.getvalue() and "1 bad lines skipped" in out.getvalue()
    assert "vpd: skipped" in capsys.readouterr().err
    assert "1 bad input line skipped" in (tmp_path / "r.html").read_text(encoding="utf-8")
    assert cli.main(["show", str(tmp_path / "missing.jsonl")], out=io.StringIO()) == 1
    assert cli.main(["show", str(source), "-o", str(source)], out=io.StringIO()) == 1
    assert "would overwrite its input" in capsys.readouterr().err


def test_assets_ship_with_the_package() -> None:
    """The report's CSS and script are package data (else a wheel's `vpd show` cannot work)."""
    import fnmatch
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["vpd"]
    for asset in sorted((root / "vpd" / "render" / "assets").iterdir()):
        name = f"render/assets/{asset.name}"
        assert any(fnmatch.fnmatch(name, p) for p in patterns), (
            f"add {name!r} (e.g. 'render/assets/*') to [tool.setuptools.package-data] vpd in pyproject.toml"
        )
