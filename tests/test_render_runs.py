"""Runs read for viewing (vpd.render.runs), the run report and ``vpd show RUN...``, the notebook view."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support import RUN_HOSTILE, make_runs

from vpd.cli import main
from vpd.errors import TraceFileError
from vpd.render import build_run_report, load_run, load_runs, render_runs, write_run_report
from vpd.render.runs import compare_rows

pytest.importorskip("litellm")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_runs(tmp_path_factory.mktemp("runs"))


def test_a_synthesis_run_reads_as_examples_with_their_candidates(runs: tuple[Path, Path]) -> None:
    synth, _ = runs
    run = load_run(synth)
    assert run.kind == "synthesis" and run.k == 3 and sorted(e.id for e in run.examples) == ["q1", "q2", "q3"]
    q1, q2 = run.outcomes["q1"], run.outcomes["q2"]
    assert q1.outcome == "verified" and q1.candidates == ("wrong", "correct", "correct") and q1.chosen == 1
    assert q2.outcome == "wrong" and q2.candidates == ("runtime", "no-code", "wrong")
    assert run.counts() == {"verified": 2, "wrong": 1}
    assert run.verified_at() == [0, 2, 2]  # no example right with sample 0 alone; two from sample 1 on
    assert run.candidate_counts()["correct"] == 4
    summary = run.summary()
    assert summary["k"] == 3 and summary["verified_at"] == [0, 2, 2] and abs(summary["accuracy"] - 2 / 3) < 1e-9
    assert load_run(synth / "records.jsonl").outcomes.keys() == run.outcomes.keys()  # its records file opens it too


def test_an_evaluation_folder_opens_as_its_systems_compared(runs: tuple[Path, Path]) -> None:
    _, folder = runs
    teacher, fixed = sorted(load_runs([folder]), key=lambda r: r.name, reverse=True)
    assert {teacher.name, fixed.name} == {"teacher", "fixed"} and teacher.kind == "eval"
    assert fixed.counts() == {"correct": 3} and fixed.accuracy() == 1.0
    assert teacher.outcomes["q1"].prediction == "3" and teacher.outcomes["q1"].outcome == "wrong"
    rows = compare_rows([teacher, fixed])
    assert [(e.id, differ) for e, _, differ, _ in rows] == [("q1", True), ("q2", True), ("q3", True)]
    same = compare_rows([fixed, fixed])
    assert not any(row.differ for row in same) and not any(row.questions for row in same)


def test_examples_missing_from_a_run_and_a_torn_record(runs: tuple[Path, Path], tmp_path: Path) -> None:
    synth, _ = runs
    copy = tmp_path / "partial"
    copy.mkdir()
    (copy / "run.json").write_text((synth / "run.json").read_text())
    lines = (synth / "records.jsonl").read_text().splitlines(keepends=True)
    (copy / "records.jsonl").write_text(lines[0] + lines[1][:40])  # the second record was being written
    partial = load_run(copy)
    kept = json.loads(lines[0])["id"]
    assert list(partial.outcomes) == [kept]
    rows = compare_rows([load_run(synth), partial])
    assert sorted((e.id, o[1] is None, differ) for e, o, differ, _ in rows) == sorted(
        (ident, ident != kept, ident != kept) for ident in ("q1", "q2", "q3")
    )


def test_not_a_run_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TraceFileError, match="is not a run"):
        load_runs([tmp_path])
    (tmp_path / "run.json").write_text('{"kind": "training"}')
    with pytest.raises(TraceFileError, match="kind 'training'"):
        load_runs([tmp_path])
    (tmp_path / "run.json").write_text('{"kind": "synthesis"}')
    (tmp_path / "records.jsonl").write_text('{"id": 1}\nnot json\n{"id": 2}\n')
    with pytest.raises(TraceFileError, match="records.jsonl:2"):
        load_runs([tmp_path])


def _data(page: str) -> dict:
    block = re.search(r'<script type="application/json" id="vpd-data">(.*?)</script>', page, re.S)
    assert block is not None
    return json.loads(block.group(1))


def test_the_report_holds_the_summary_rows_and_each_examples_candidates(runs: tuple[Path, Path]) -> None:
    synth, folder = runs
    page, counts = build_run_report(load_runs([synth]))
    assert counts == {"runs": 1, "examples": 3, "traces": 8, "images": 1, "missing_images": 0, "differing": 0}
    data = _data(page)
    assert data["runs"][0]["summary"]["verified_at"] == [0, 2, 2]
    position = [e["id"] for e in data["examples"]].index("q1")
    first = data["examples"][position]
    assert first["r"][0]["o"] == "verified" and first["r"][0]["c"] == ["wrong", "correct", "correct"]
    assert first["refs"] == ["2"] and first["img"] == "i0"
    block = re.search(rf'<script type="text/plain" id="vpd-ex-{position}">(.*?)</script>', page, re.S)
    assert block is not None
    details = json.loads(block.group(1))
    candidates = details[0]["cands"]
    assert [c["o"] for c in candidates] == ["wrong", "correct", "correct"]
    view = candidates[1]["t"]["v"]
    assert view["return_line"] == 5 and view["line_runs"][2] == 1 and view["line_runs"][3] == 0  # if taken, 99 not
    assert '<script type="text/plain" id="vpd-th-i0">data:image/' in page  # the row thumbnail
    assert "Content-Security-Policy" in page and "script-src 'sha256-" in page

    compared, counts = build_run_report(load_runs([folder]))
    assert counts["runs"] == 2 and counts["differing"] == 3
    assert [r["name"] for r in _data(compared)["runs"]] == ["fixed", "teacher"]
    block = re.search(r'<script type="text/plain" id="vpd-ex-0">(.*?)</script>', compared, re.S)
    assert block is not None
    fixed, teacher = json.loads(block.group(1))
    assert teacher["trace"]["v"]["program_lines"][0] == "def execute_command(image):"  # the teacher's trace
    assert teacher["trace"]["v"]["return_line"] is not None and fixed["program"]


def test_hostile_text_in_a_run_stays_data(runs: tuple[Path, Path]) -> None:
    synth, folder = runs
    page, _ = build_run_report(load_runs([synth, folder]))
    assert RUN_HOSTILE not in page and "<img src=x" not in page
    assert "</script><img" not in page
    data = _data(page)
    assert any(RUN_HOSTILE in (e["q"] or "") for e in data["examples"])  # kept exactly, as data
    html = render_runs(load_runs([synth, folder]))
    assert RUN_HOSTILE not in html and "&lt;script&gt;window.__pwned = 3" in html


def test_the_notebook_view_summarises_and_lists(runs: tuple[Path, Path]) -> None:
    synth, folder = runs
    run = load_run(synth)
    html = run._repr_html_()
    assert "verified 2" in html and "wrong 1" in html and "candidates: correct 4" in html
    assert '<svg class="vpd-chart"' in html and "k=2 67%" in html  # the verified@k chart
    assert html.count('class="vpd-cand vpd-c-') == 9  # every candidate's outcome square
    assert repr(run) == "Run('synth', synthesis, 3 examples: verified 2, wrong 1)"
    two = render_runs(load_runs([folder]), limit=2)
    assert two.count('<tr class="vpd-differ">') == 2 and "1 more examples" in two


def test_vpd_show_on_runs(runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    synth, folder = runs
    out = tmp_path / "report.html"
    assert main(["show", str(synth), str(folder), "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert "3 runs (synth, fixed, teacher), 3 examples, 3 where they differ, 8 traces" in said
    assert out.read_text().startswith("<!DOCTYPE html>")
    traces = tmp_path / "traces.jsonl"
    traces.write_text("")
    assert main(["show", str(synth), str(traces), "-o", str(out)]) != 0
    assert "either trace files or run folders" in capsys.readouterr().err
    assert main(["show", str(synth / "records.jsonl"), "-o", str(out)]) == 0  # a file: its candidates as traces
    assert ": 8 traces, 1 images" in capsys.readouterr().out  # the no-code candidate ran nothing
    stats = write_run_report(load_runs([synth]), tmp_path / "no-images.html", images=False)
    assert stats.images == 0 and stats.missing_images == 3 and stats.traces == 8  # the no-code candidate has no trace


def test_hostile_names_answers_references_and_errors_stay_text(runs: tuple[Path, Path], tmp_path: Path) -> None:
    synth, _ = runs
    hostile = tmp_path / '<img src=x onerror="alert(1)">'
    hostile.mkdir()
    config = json.loads((synth / "run.json").read_text())
    config["config"]["model"] = RUN_HOSTILE
    (hostile / "run.json").write_text(json.dumps(config))
    records = [json.loads(line) for line in (synth / "records.jsonl").read_text().splitlines()]
    for record in records:
        record["references"] = [RUN_HOSTILE]
        record["error"] = None
        for candidate in record["candidates"]:
            candidate["prediction"] = RUN_HOSTILE
            candidate["error"] = RUN_HOSTILE
    (hostile / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    loaded = load_runs([hostile])
    page, _ = build_run_report(loaded)
    assert "<img src=x" not in page and RUN_HOSTILE not in page
    assert page.count("</script>") == page.count("<script")  # no text closed a block early
    data = _data(page)
    assert data["runs"][0]["name"] == hostile.name and data["examples"][0]["refs"] == [RUN_HOSTILE]
    html = render_runs(loaded)
    assert "<img src=x" not in html and RUN_HOSTILE not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html


def test_malformed_records_show_what_is_wrong_instead_of_failing(runs: tuple[Path, Path], tmp_path: Path) -> None:
    synth, _ = runs
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text((synth / "run.json").read_text())
    records = [json.loads(line) for line in (synth / "records.jsonl").read_text().splitlines()]
    record = next(r for r in records if r["id"] == "q1")  # every candidate has a trace (records come as they finish)
    first, second, third = record["candidates"]
    first["index"] = "x"  # not an index: its place in the record is used
    second["trace"]["events"] = [1]  # not an event
    third["score"] = float("nan")
    third["trace"]["events"][0]["seconds"] = "slow"
    no_id = dict(record, id=None)
    odd = dict(record, id="odd", candidates=5, score=10**400)  # not a list; a score no float holds
    nan = json.loads(json.dumps(record))
    nan["id"] = "nan"
    nan["candidates"][0]["trace"]["wall_seconds"] = float("nan")  # json.loads reads NaN
    lines = [json.dumps(record), json.dumps(no_id), json.dumps(dict(no_id, question="another"))]
    lines += [json.dumps(odd), json.dumps(nan)]
    (broken / "records.jsonl").write_text("\n".join(lines) + "\n")
    run = load_run(broken)
    assert [e.id for e in run.examples][1:3] == ["(no id: record 2)", "(no id: record 3)"]  # never merged
    assert run.outcomes["odd"].candidates == () and run.outcomes["odd"].score is None
    page, counts = build_run_report([run])
    assert counts["examples"] == 5 and counts["traces"] == 3  # one readable trace in each of the first three
    block = re.search(r'<script type="text/plain" id="vpd-ex-0">(.*?)</script>', page, re.S)
    assert block is not None
    candidates = json.loads(block.group(1))[0]["cands"]
    assert [c["i"] for c in candidates] == [0, 1, 2] and candidates[2]["s"] is None
    assert candidates[1]["t"] is None and "its trace could not be read" in candidates[1]["e"]
    assert candidates[2]["t"] is None and "seconds" in candidates[2]["e"]


def test_runs_of_different_questions_under_one_id_are_flagged(runs: tuple[Path, Path], tmp_path: Path) -> None:
    _, folder = runs
    teacher = load_run(folder / "teacher")
    other = tmp_path / "other"
    other.mkdir()
    (other / "run.json").write_text((folder / "teacher" / "run.json").read_text())
    rows = [json.loads(line) for line in (folder / "teacher" / "predictions.jsonl").read_text().splitlines()]
    rows[0]["question"] = "Something else entirely?"
    rows[1]["prediction"] = "zebra"  # another wrong answer: the same score, a different answer
    (other / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    compared = compare_rows([teacher, load_run(other)])
    assert compared[0].questions == (teacher.examples[0].question, "Something else entirely?") and compared[0].differ
    assert [row.differ for row in compared[1:]] == [True, False]  # q2: another answer; q3: the same
    assert "different questions" in render_runs([teacher, load_run(other)])
