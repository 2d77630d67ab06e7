"""Dataset readers (vpd.distill.datasets): every format, auto-detection, bad rows, splits, round trips.

The fixtures are tiny files in each benchmark's official layout, written into tmp_path,
with the image files they name (existence is all the readers check).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import pickle
import warnings
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from vpd.distill import DATASET_FORMATS, METRICS, BadRow, Dataset, Example, from_hf, load_dataset
from vpd.errors import DatasetError, VPDError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("".join(line + "\n" for line in lines))
    return path


def load_quietly(*args: Any, **kwargs: Any) -> tuple[Dataset, list[warnings.WarningMessage]]:
    """load_dataset, returning the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load_dataset(*args, **kwargs)
    return dataset, [w for w in caught if issubclass(w.category, UserWarning)]


def example(ident: str, image: Path, **fields: Any) -> Example:
    return Example(ident, image, fields.pop("question", "How many?"), fields.pop("answers", ("2",)), **fields)


# --- the records -------------------------------------------------------------------------------


def test_example_checks_its_fields_and_round_trips(tmp_path):
    image = touch(tmp_path / "a.png")
    ex = Example(
        "q1", image, "Which?", ["red"], ["red", "blue"], "choice", "f.jsonl:1", {"k": [1, 2], "nested": {"a": 1}}
    )
    assert ex.answers == ("red",) and ex.choices == ("red", "blue")
    assert Example.from_json(json.loads(json.dumps(ex.to_json()))) == ex
    with pytest.raises(TypeError):
        ex.extra["k"] = 3  # type: ignore[index]
    hash(ex)  # usable in sets although extra holds lists
    assert pickle.loads(pickle.dumps(ex)) == ex and isinstance(pickle.loads(pickle.dumps(ex)).extra, MappingProxyType)
    source_extra = {"k": 1}
    frozen = Example("q2", image, "Q?", ("a",), extra=source_extra)
    source_extra["k"] = 2
    assert frozen.extra["k"] == 1
    assert Example("q3", str(tmp_path / "x" / ".." / "a.png"), "Q?", ("a",)).image == image  # type: ignore[arg-type]

    bad_fields = [
        ({"id": ""}, "bad id"),
        ({"image": Path("relative.png")}, "not an absolute path"),
        ({"question": "  "}, "bad question"),
        ({"question": 3}, "bad question"),
        ({"answers": ()}, "no answers"),
        ({"answers": ("a", 1)}, "bad answers"),
        ({"answers": ("",)}, "bad answers"),
        ({"metric": "bleu"}, "bad metric"),
        ({"metric": "choice"}, "needs the choices"),
        ({"metric": "choice", "choices": ("x", "y"), "answers": ("z",)}, "not among the choices"),
        ({"choices": ()}, "bad choices"),
        ({"metric": "vqa"}, "one reference answer for metric 'vqa'"),
        ({"metric": "direct-answer"}, "load with metric='exact'"),
    ]
    for change, message in bad_fields:
        fields = {"id": "q", "image": image, "question": "Q?", "answers": ("a",), **change}
        with pytest.raises(DatasetError, match=message):
            Example(**fields)
    with pytest.raises(DatasetError, match="unknown keys"):
        Example.from_json({**ex.to_json(), "colour": "red"})
    with pytest.raises(DatasetError, match="missing"):
        Example.from_json({"id": "q"})


def test_dataset_access_and_unique_ids(tmp_path):
    image = touch(tmp_path / "a.png")
    examples = tuple(example(f"q{i}", image) for i in range(5))
    skipped = (BadRow("f.jsonl:9", "q9", "image not found: x"),)
    dataset = Dataset("d", examples, skipped)
    assert len(dataset) == 5 and list(dataset) == list(examples) and dataset[-1].id == "q4"
    assert dataset.by_id("q3") is examples[3]
    with pytest.raises(DatasetError, match="no example with id 'nope'"):
        dataset.by_id("nope")
    with pytest.raises(TypeError, match="by_id"):
        dataset["q1"]  # type: ignore[index]
    assert [e.id for e in dataset.limit(2)] == ["q0", "q1"] and dataset.limit(2).skipped == skipped
    assert "5 examples, 1 skipped" in repr(dataset)
    assert pickle.loads(pickle.dumps(dataset)) == dataset and copy.deepcopy(dataset) == dataset  # process pools
    assert pickle.loads(pickle.dumps(dataset)).by_id("q2") == examples[2]
    assert str(skipped[0]) == "f.jsonl:9 (id 'q9'): image not found: x"
    with pytest.raises(DatasetError, match="two examples with id 'q1'"):
        Dataset("d", (examples[1], examples[1]))
    assert tuple(METRICS) == ("vqa", "direct-answer", "exact", "choice", "count")


def test_dataset_error_is_in_the_tree():
    import vpd

    assert issubclass(DatasetError, VPDError) and issubclass(DatasetError, ValueError)
    assert vpd.DatasetError is DatasetError and "DatasetError" in vpd.__all__


# --- vpd's JSONL format ------------------------------------------------------------------------


def test_jsonl_rows_with_relative_and_absolute_images(tmp_path):
    touch(tmp_path / "images" / "a.jpg")
    elsewhere = touch(tmp_path / "other" / "b.png")
    path = write_jsonl(
        tmp_path / "set.jsonl",
        [
            {"id": "q1", "image": "images/a.jpg", "question": "How many cups?", "answers": ["2", "two"]},
            "",
            {"id": 7, "image": str(elsewhere), "question": "Count?", "answers": 3, "difficulty": "easy"},
            {"id": "q3", "image": "images/a.jpg", "question": "Colour?", "answers": ["red", "red"], "metric": "vqa"},
            {"id": "q4", "image": "images/a.jpg", "question": "Pick", "answers": ["b"], "choices": ["a", "b"]},
            {"id": "q5", "image": "images/a.jpg", "question": "Size?", "answers": [2.0, 1.5], "extra": {"x": 1}},
        ],
    )
    dataset, caught = load_quietly(path)
    assert caught == [] and dataset.skipped == () and dataset.name == "set"
    q1, q7, q3, q4, q5 = dataset
    assert q1.image == (tmp_path / "images" / "a.jpg").resolve() and q1.image.is_absolute()
    assert q1.answers == ("2", "two") and q1.metric == "exact" and q1.source == "set.jsonl:1"
    assert q7.id == "7" and q7.image == elsewhere.resolve() and q7.answers == ("3",) and q7.source == "set.jsonl:3"
    assert dict(q7.extra) == {"difficulty": "easy"}
    assert q3.metric == "vqa" and q3.answers == ("red", "red")
    assert q4.choices == ("a", "b") and q4.metric == "choice"
    assert q5.answers == ("2", "1.5") and dict(q5.extra) == {"x": 1}
    # metric= is the default of rows that name none; images= moves the base of relative paths
    assert load_dataset(path, metric="count")[0].metric == "count"
    assert load_dataset(path, metric="count")[2].metric == "vqa"
    write_jsonl(tmp_path / "rel.jsonl", [{"id": 1, "image": "a.jpg", "question": "Q?", "answers": "x"}])
    assert load_dataset(tmp_path / "rel.jsonl", images=tmp_path / "images")[0].image.name == "a.jpg"


#: One bad row of each kind: (row as written, expected id, words of the reason).
BAD_JSONL_ROWS = [
    ('{"id": "t1", "image": "a.jpg", "question": "Q?", "answers": ["x"]', None, "not JSON"),
    ("[1, 2]", None, "not an object"),
    ({"image": "a.jpg", "question": "Q?", "answers": ["x"]}, None, "bad id"),
    ({"id": True, "image": "a.jpg", "question": "Q?", "answers": ["x"]}, None, "bad id"),
    ({"id": "m1", "image": "missing.jpg", "question": "Q?", "answers": ["x"]}, "m1", "image not found"),
    ({"id": "m2", "image": "folder", "question": "Q?", "answers": ["x"]}, "m2", "image not found"),
    ({"id": "m3", "image": 5, "question": "Q?", "answers": ["x"]}, "m3", "bad image"),
    ({"id": "e1", "image": "a.jpg", "question": "", "answers": ["x"]}, "e1", "bad question"),
    ({"id": "e2", "image": "a.jpg", "question": ["Q?"], "answers": ["x"]}, "e2", "bad question"),
    ({"id": "n1", "image": "a.jpg", "question": "Q?", "answers": []}, "n1", "no answers"),
    ({"id": "n2", "image": "a.jpg", "question": "Q?"}, "n2", "no answers"),
    ({"id": "n3", "image": "a.jpg", "question": "Q?", "answer": "x"}, "n3", "no answers"),
    ({"id": "w1", "image": "a.jpg", "question": "Q?", "answers": [{"a": 1}]}, "w1", "bad answers"),
    ({"id": "w2", "image": "a.jpg", "question": "Q?", "answers": [True]}, "w2", "bad answers"),
    ({"id": "w3", "image": "a.jpg", "question": "Q?", "answers": ["x"], "choices": "x"}, "w3", "bad choices"),
    ({"id": "w4", "image": "a.jpg", "question": "Q?", "answers": ["x"], "metric": "f1"}, "w4", "bad metric"),
    ({"id": "w6", "image": "a.jpg", "question": "Q?", "answers": ["x"], "metric": "vqa"}, "w6", "one reference answer"),
    ({"id": "w5", "image": "a.jpg", "question": "Q?", "answers": ["x"], "extra": [1]}, "w5", "bad field"),
    ({"id": "ok", "image": "a.jpg", "question": "Q?", "answers": ["x"], "metric": "choice"}, "ok", "bad choices"),
    ({"id": "good", "image": "a.jpg", "question": "Q?", "answers": ["x"]}, "", ""),
    ({"id": "good", "image": "a.jpg", "question": "Again?", "answers": ["y"]}, "good", "duplicate id"),
]


def write_bad_jsonl(tmp_path: Path) -> Path:
    touch(tmp_path / "a.jpg")
    (tmp_path / "folder").mkdir()
    return write_jsonl(tmp_path / "bad.jsonl", [row for row, _, _ in BAD_JSONL_ROWS])


def test_jsonl_bad_rows_are_skipped_listed_and_warned_about_once(tmp_path):
    path = write_bad_jsonl(tmp_path)
    dataset, caught = load_quietly(path)
    assert [e.id for e in dataset] == ["good"]
    assert len(dataset.examples) + len(dataset.skipped) == len(BAD_JSONL_ROWS)  # nothing dropped silently
    expected = [(f"bad.jsonl:{n}", ident, why) for n, (_, ident, why) in enumerate(BAD_JSONL_ROWS, start=1) if why]
    assert [(row.source, row.id) for row in dataset.skipped] == [(source, ident) for source, ident, _ in expected]
    for row, (_, _, why) in zip(dataset.skipped, expected):
        assert row.reason.startswith(why), (row, why)
    assert "first used at bad.jsonl:20" in dataset.skipped[-1].reason
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "Skipped 20 rows of 21" in message and "dataset.skipped" in message
    assert "bad.jsonl:1: not JSON" in message and "2 bad id" in message and "1 duplicate id" in message


def test_jsonl_bad_rows_raise_naming_file_line_id_and_reason(tmp_path):
    path = write_bad_jsonl(tmp_path)
    with pytest.raises(DatasetError) as info:
        load_dataset(path, on_bad="raise")
    message = str(info.value)
    assert str(path) in message and "20 rows of 21" in message and "on_bad='skip'" in message
    assert "bad.jsonl:5 (id 'm1'): image not found: " in message
    assert "bad.jsonl:10 (id 'n1'): no answers" in message
    assert "... and 10 more" in message and "duplicate id" not in message  # ten listed, then a count
    lines = [
        {"id": "a", "image": "a.jpg", "question": "Q?", "answers": ["x"]},
        {"id": "a", "image": "a.jpg", "question": "Q?", "answers": ["x"]},
    ]
    with pytest.raises(DatasetError, match=r"1 row of 2 .*\n  dup\.jsonl:2 \(id 'a'\): duplicate id"):
        load_dataset(write_jsonl(tmp_path / "dup.jsonl", lines), on_bad="raise")


def test_jsonl_torn_last_line_and_all_images_missing(tmp_path):
    path = tmp_path / "torn.jsonl"
    path.write_text('{"id": "a", "image": "nope.jpg", "question": "Q?", "answers": ["x"]}\n{"id": "b", "ima')
    dataset, caught = load_quietly(path)
    assert [row.source for row in dataset.skipped] == ["torn.jsonl:1", "torn.jsonl:2"]
    assert "cut short" in dataset.skipped[1].reason
    assert len(caught) == 1 and "is images= the right folder" not in str(caught[0].message)
    write_jsonl(path, [{"id": "a", "image": "nope.jpg", "question": "Q?", "answers": ["x"]}])
    assert "is images= the right folder" in str(load_quietly(path)[1][0].message)


def test_unreadable_image_is_a_bad_row(tmp_path, monkeypatch):
    touch(tmp_path / "a.jpg")
    path = write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "image": "a.jpg", "question": "Q?", "answers": ["x"]}])
    # chmod cannot stop root (CI runs as root): the permission check itself is what is tested
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    row = load_quietly(path)[0].skipped[0]
    assert row.reason.startswith("image not readable") and row.id == "a"


def test_file_problems_raise_and_say_what_to_do(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope.jsonl")
    with pytest.raises(DatasetError, match="is a folder"):
        load_dataset(tmp_path)
    (tmp_path / "notjson.json").write_text("{oops")
    with pytest.raises(DatasetError, match="is not JSON"):
        load_dataset(tmp_path / "notjson.json")
    (tmp_path / "lines.json").write_text('{"a": 1}\n{"a": 2}\n')
    with pytest.raises(DatasetError, match="format='jsonl'"):
        load_dataset(tmp_path / "lines.json")
    write_json(tmp_path / "what.json", [{"x": 1}])
    with pytest.raises(DatasetError, match="Cannot tell the format.*vqav2.*octotools"):
        load_dataset(tmp_path / "what.json")
    path = write_jsonl(tmp_path / "ok.jsonl", [])
    for kwargs, message in [
        ({"format": "coco"}, "Unknown dataset format 'coco'"),
        ({"on_bad": "ignore"}, "on_bad is 'skip' or 'raise'"),
        ({"metric": "bleu"}, "Unknown metric 'bleu'"),
        ({"split": "val"}, "no splits"),
        ({"annotations": path}, "annotations= is for"),
        ({"images": tmp_path / "missing"}, "images folder .* does not exist"),
    ]:
        with pytest.raises(DatasetError, match=message):
            load_dataset(path, **kwargs)


# --- VQAv2 and OK-VQA --------------------------------------------------------------------------


def vqa_files(folder: Path, images: Path, prefix: str = "v2_", subtype: str = "val2014") -> Path:
    questions = [
        {"image_id": 42, "question": "What color is the cat?", "question_id": 420},
        {"image_id": 42, "question": "Is it sleeping?", "question_id": 421},
        {"image_id": 7, "question": "How many dogs?", "question_id": 70},  # no image
        {"image_id": 42, "question": "Unlabelled?", "question_id": 422},  # no annotation
    ]
    humans = ["black"] * 9 + ["grey"]
    answers = [{"answer": a, "answer_confidence": "yes", "answer_id": i} for i, a in enumerate(humans)]
    annotations = [
        {
            "question_id": qid,
            "image_id": image_id,
            "answers": answers,
            "answer_type": "other",
            "question_type": "what color is the",
            "multiple_choice_answer": "black",
        }
        for qid, image_id in [(420, 42), (421, 42), (70, 7)]
    ]
    touch(images / f"COCO_{subtype}_{42:012d}.jpg")
    name = "OpenEnded_mscoco" if prefix == "" else "v2_OpenEnded_mscoco"
    write_json(folder / f"{prefix}mscoco_{subtype}_annotations.json", {"annotations": annotations})
    return write_json(
        folder / f"{name}_{subtype}_questions.json",
        {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": subtype, "questions": questions},
    )


def test_vqav2_questions_annotations_and_images(tmp_path):
    questions = vqa_files(tmp_path / "vqa", tmp_path / "coco" / "val2014")
    dataset, caught = load_quietly(questions, images=tmp_path / "coco" / "val2014")
    assert [e.id for e in dataset] == ["420", "421"] and len(caught) == 1
    first = dataset[0]
    assert first.metric == "vqa" and first.answers == ("black",) * 9 + ("grey",)
    assert first.image == (tmp_path / "coco" / "val2014" / "COCO_val2014_000000000042.jpg").resolve()
    assert first.source == "v2_OpenEnded_mscoco_val2014_questions.json#0"
    assert dict(first.extra) == {
        "image_id": 42,
        "answer_type": "other",
        "question_type": "what color is the",
        "multiple_choice_answer": "black",
    }
    assert [(row.source.split("#")[1], row.id, row.reason.split(":")[0]) for row in dataset.skipped] == [
        ("2", "70", "image not found"),
        ("3", "422", "no answers"),
    ]
    # the images folder may be COCO's root, and the annotations may be passed explicitly
    moved = tmp_path / "elsewhere" / "anns.json"
    moved.parent.mkdir()
    (tmp_path / "vqa" / "v2_mscoco_val2014_annotations.json").rename(moved)
    with pytest.raises(DatasetError, match="No annotations file for 'val2014'.*annotations="):
        load_dataset(questions, images=tmp_path / "coco")
    again, _ = load_quietly(questions, "vqav2", images=tmp_path / "coco", annotations=moved)
    assert [e.id for e in again] == ["420", "421"]
    with pytest.raises(DatasetError, match="needs images="):
        load_dataset(questions, annotations=moved)


def test_vqav2_test_split_has_no_labels(tmp_path):
    path = write_json(
        tmp_path / "v2_OpenEnded_mscoco_test-dev2015_questions.json",
        {"data_subtype": "test-dev2015", "questions": [{"image_id": 1, "question": "Q?", "question_id": 10}]},
    )
    with pytest.raises(DatasetError, match="has no answers.*test split"):
        load_dataset(path, images=tmp_path)


def test_okvqa_beside_vqav2_each_finds_its_own_annotations(tmp_path):
    images = tmp_path / "val2014"
    v2 = vqa_files(tmp_path, images)
    ok = vqa_files(tmp_path, images, prefix="")
    data = json.loads((tmp_path / "mscoco_val2014_annotations.json").read_text())
    for note in data["annotations"]:
        note["answers"] = [
            {"answer": "okvqa", "raw_answer": "okvqa", "answer_confidence": "yes", "answer_id": n} for n in (1, 2)
        ]
    write_json(tmp_path / "mscoco_val2014_annotations.json", data)
    assert load_quietly(ok, images=images)[0][0].answers == ("okvqa", "okvqa")
    assert load_quietly(ok, "okvqa", images=images)[0][0].metric == "vqa"
    assert load_quietly(v2, images=images)[0][0].answers[0] == "black"
    with pytest.raises(DatasetError, match="is a VQA annotations file"):
        load_dataset(tmp_path / "mscoco_val2014_annotations.json", images=images)


# --- A-OKVQA -----------------------------------------------------------------------------------


def aokvqa_file(tmp_path: Path) -> Path:
    base = {
        "image_id": 99,
        "choices": ["cat", "dog", "bird", "fish"],
        "direct_answers": ["dog"] * 8 + ["puppy"] * 2,
        "rationales": ["It barks."],
        "difficult_direct_answer": False,
    }
    rows = [
        {**base, "question_id": "a1", "question": "What animal?", "correct_choice_idx": 1},
        {**base, "question_id": "a2", "question": "Bad index?", "correct_choice_idx": 4},
        {**base, "question_id": "a3", "question": "No image?", "correct_choice_idx": 0, "image_id": 5},
    ]
    touch(tmp_path / "coco" / "val2017" / f"{99:012d}.jpg")
    return write_json(tmp_path / "aokvqa_v1p0_val.json", rows)


def test_aokvqa_multiple_choice_and_direct_answer(tmp_path):
    path = aokvqa_file(tmp_path)
    mc, _ = load_quietly(path, "aokvqa-mc", images=tmp_path / "coco")
    assert [e.id for e in mc] == ["a1"]
    assert mc[0].answers == ("dog",) and mc[0].choices == ("cat", "dog", "bird", "fish") and mc[0].metric == "choice"
    assert mc[0].image == (tmp_path / "coco" / "val2017" / "000000000099.jpg").resolve()
    assert mc[0].extra["rationales"] == ["It barks."] and "direct_answers" in mc[0].extra
    assert [(r.source, r.id, r.reason.split(":")[0]) for r in mc.skipped] == [
        ("aokvqa_v1p0_val.json#1", "a2", "unknown choice index"),
        ("aokvqa_v1p0_val.json#2", "a3", "image not found"),
    ]
    with pytest.raises(DatasetError, match=r"aokvqa_v1p0_val\.json#1 \(id 'a2'\): unknown choice index"):
        load_dataset(path, "aokvqa-mc", images=tmp_path / "coco", on_bad="raise")
    # direct answer: auto-detected, and the images folder may be the split's own
    for kwargs in ({}, {"format": "aokvqa"}, {"format": "aokvqa-da"}):
        da, _ = load_quietly(path, images=tmp_path / "coco" / "val2017", **kwargs)
        assert [e.id for e in da] == ["a1", "a2"] and da[0].metric == "direct-answer" and da[0].choices is None
        assert da[0].answers == ("dog",) * 8 + ("puppy",) * 2 and da[0].extra["correct_choice_idx"] == 1
    renamed = path.rename(tmp_path / "mine.json")
    with pytest.raises(DatasetError, match="pass split="):
        load_dataset(renamed, "aokvqa", images=tmp_path / "coco")
    assert len(load_quietly(renamed, "aokvqa", images=tmp_path / "coco", split="val")[0]) == 2


def test_aokvqa_test_split_has_no_labels(tmp_path):
    rows = [{"question_id": "t", "image_id": 1, "question": "Q?", "choices": ["a", "b"]}]
    with pytest.raises(DatasetError, match="has no answers"):
        load_dataset(write_json(tmp_path / "aokvqa_v1p0_test.json", rows), "aokvqa-mc", images=tmp_path)


# --- GQA ---------------------------------------------------------------------------------------


def test_gqa_questions(tmp_path):
    touch(tmp_path / "images" / "2354786.jpg")
    touch(tmp_path / "images" / "n161313.jpg")
    types = {"structural": "query", "semantic": "attr", "detailed": "color"}
    data = {
        "201307251": {"imageId": "2354786", "question": "What color is the car?", "answer": "red",
                      "fullAnswer": "The car is red.", "types": types, "semantic": [{"operation": "select"}]},
        "05515938": {"imageId": "n161313", "question": "Is it a cat?", "answer": "no", "isBalanced": True},
        "1": {"imageId": "404", "question": "Where?", "answer": "here"},
        "2": {"imageId": "2354786", "question": "", "answer": "x"},
    }  # fmt: skip
    path = write_json(tmp_path / "testdev_balanced_questions.json", data)
    dataset, caught = load_quietly(path, images=tmp_path / "images")
    assert [e.id for e in dataset] == ["201307251", "05515938"] and len(caught) == 1
    car = dataset.by_id("201307251")
    assert car.answers == ("red",) and car.metric == "exact" and car.extra["types"] == types
    assert car.extra["fullAnswer"] == "The car is red." and car.extra["imageId"] == "2354786"
    assert car.source == "testdev_balanced_questions.json#0"
    assert [(r.source, r.id) for r in dataset.skipped] == [
        ("testdev_balanced_questions.json#2", "1"),
        ("testdev_balanced_questions.json#3", "2"),
    ]
    unlabelled = write_json(tmp_path / "submission_all_questions.json", {"1": {"imageId": "1", "question": "Q?"}})
    with pytest.raises(DatasetError, match="has no answers"):
        load_dataset(unlabelled, images=tmp_path / "images")


# --- TallyQA -----------------------------------------------------------------------------------


def test_tallyqa_counts_and_simple_complex(tmp_path):
    touch(tmp_path / "vg" / "VG_100K" / "1.jpg")
    base = {"image_id": 1, "image": "VG_100K/1.jpg", "data_source": "amt"}
    rows = [
        {**base, "question": "How many dogs?", "answer": 2, "question_id": 1, "issimple": True},
        {**base, "question": "How many dogs are left of the car?", "answer": 0, "question_id": 2, "issimple": False},
        {**base, "question": "How many cats?", "answer": "2", "question_id": 3, "issimple": True},
        {**base, "question": "How many birds?", "answer": True, "question_id": 4, "issimple": False},
    ]
    path = write_json(tmp_path / "test.json", rows)
    dataset, _ = load_quietly(path, images=tmp_path / "vg")
    assert [(e.id, e.answers, e.metric) for e in dataset] == [("1", ("2",), "count"), ("2", ("0",), "count")]
    assert dataset[0].extra["issimple"] is True and dataset[0].extra["data_source"] == "amt"
    assert [(r.id, r.reason.split(":")[0]) for r in dataset.skipped] == [("3", "bad answers"), ("4", "bad answers")]
    simple, _ = load_quietly(path, images=tmp_path / "vg", split="simple")
    complex_, _ = load_quietly(path, images=tmp_path / "vg", split="complex")
    assert [e.id for e in simple] == ["1"] and [r.id for r in simple.skipped] == ["3"]
    assert [e.id for e in complex_] == ["2"] and [r.id for r in complex_.skipped] == ["4"]
    with pytest.raises(DatasetError, match="'simple' or 'complex'"):
        load_dataset(path, images=tmp_path / "vg", split="hard")
    train = write_json(tmp_path / "train.json", [{k: v for k, v in rows[0].items() if k != "issimple"}])
    assert load_quietly(train, "tallyqa", images=tmp_path / "vg")[0][0].id == "1"
    with pytest.raises(DatasetError, match="needs the 'issimple' field.*only TallyQA's test.json"):
        load_dataset(train, "tallyqa", images=tmp_path / "vg", split="simple")


# --- CLEVR -------------------------------------------------------------------------------------


def test_clevr_questions_in_split_folders(tmp_path):
    touch(tmp_path / "images" / "val" / "CLEVR_val_000000.png")
    touch(tmp_path / "images" / "CLEVR_val_000001.png")
    questions = [
        {"image_filename": "CLEVR_val_000000.png", "question": "How many cubes?", "answer": "3",
         "question_index": 0, "image_index": 0, "split": "val", "program": [{"function": "scene"}]},
        {"image_filename": "CLEVR_val_000001.png", "question": "How many spheres?", "answer": "1",
         "question_index": 1, "image_index": 1, "split": "val"},
        {"image_filename": "CLEVR_val_000002.png", "question": "How many balls?", "answer": "0",
         "question_index": 2, "image_index": 2, "split": "val"},
    ]  # fmt: skip
    path = write_json(tmp_path / "CLEVR_val_questions.json", {"info": {"split": "val"}, "questions": questions})
    dataset, _ = load_quietly(path, images=tmp_path / "images")
    assert [(e.id, e.metric) for e in dataset] == [("0", "count"), ("1", "count")]
    assert dataset[0].image == (tmp_path / "images" / "val" / "CLEVR_val_000000.png").resolve()
    assert dataset[0].extra["program"] == [{"function": "scene"}] and dataset[1].extra["split"] == "val"
    assert [(r.id, r.reason.split(":")[0]) for r in dataset.skipped] == [("2", "image not found")]
    questions[1]["answer"] = "large"
    write_json(path, {"info": {}, "questions": questions})
    assert {e.metric for e in load_quietly(path, images=tmp_path / "images")[0]} == {"exact"}
    write_json(path, {"info": {}, "questions": [{k: v for k, v in questions[0].items() if k != "answer"}]})
    with pytest.raises(DatasetError, match="has no answers"):
        load_dataset(path, images=tmp_path / "images")


# --- OctoTools ---------------------------------------------------------------------------------


def test_octotools_metric_follows_the_answers(tmp_path):
    touch(tmp_path / "task" / "images" / "a.jpg")
    human = [
        {"pid": "0", "question": "Where?", "answer": "down", "answer_gt": ["down"] * 9 + ["up"],
         "image": "images/a.jpg", "raw_id": 5},
        {"pid": "1", "question": "What?", "answer": "x", "answer_gt": [], "image": "images/a.jpg"},
    ]  # fmt: skip
    path = write_json(tmp_path / "task" / "data.json", human)
    dataset, _ = load_quietly(path)
    assert dataset.name == "task" and [e.id for e in dataset] == ["0"]
    assert dataset[0].metric == "vqa" and len(dataset[0].answers) == 10
    assert dict(dataset[0].extra) == {"answer": "down", "raw_id": 5}
    assert [(r.source, r.id, r.reason.split(":")[0]) for r in dataset.skipped] == [("data.json#1", "1", "no answers")]
    counts = [{"pid": str(i), "question": "How many?", "answer": i, "image": "images/a.jpg"} for i in range(3)]
    assert {e.metric for e in load_quietly(write_json(path, counts))[0]} == {"count"}
    words = [{"pid": "0", "question": "Which?", "answer": "red", "image": "images/a.jpg"}]
    only = load_quietly(write_json(path, words))[0]
    assert only[0].metric == "exact" and only[0].answers == ("red",)
    forced, _ = load_quietly(path, metric="vqa")  # one answer cannot be scored with VQA accuracy
    assert len(forced) == 0 and forced.skipped[0].reason.startswith("one reference answer for metric 'vqa'")


# --- auto-detection ----------------------------------------------------------------------------


def test_auto_detection_of_every_format(tmp_path):
    (tmp_path / "j.jsonl").write_text("")
    files = {
        "vqav2": vqa_files(tmp_path / "v2", tmp_path / "img"),
        "okvqa": vqa_files(tmp_path / "ok", tmp_path / "img", prefix=""),
        "aokvqa-da": aokvqa_file(tmp_path),
        "gqa": write_json(tmp_path / "g.json", {"1": {"imageId": "1", "question": "Q?", "answer": "a"}}),
        "tallyqa": write_json(tmp_path / "t.json", [{"image": "x.jpg", "data_source": "amt", "answer": 1}]),
        "clevr": write_json(tmp_path / "c.json", {"questions": [{"image_filename": "x.png", "question": "Q?"}]}),
        "octotools": write_json(tmp_path / "o.json", [{"pid": "1"}]),
        "jsonl": tmp_path / "j.jsonl",
    }
    from vpd.distill.datasets.load import detect_format

    for expected, path in files.items():
        if path.suffix == ".json":
            assert detect_format(path, json.loads(path.read_text())) == expected, path
    assert load_dataset(files["jsonl"]).examples == ()
    assert set(files) <= set(DATASET_FORMATS)
    simple = write_json(tmp_path / "s.json", [{"issimple": True}])
    assert detect_format(simple, [{"issimple": True}]) == "tallyqa"
    for unknown in ([], {}, [{"image": "x"}], {"questions": []}, "text", {"1": {"question": "Q?"}}):
        with pytest.raises(DatasetError, match="Cannot tell the format"):
            detect_format(tmp_path / "u.json", unknown)


# --- splits and saving -------------------------------------------------------------------------


def many(tmp_path: Path, images: int = 20, per_image: int = 3) -> Dataset:
    rows = []
    for i in range(images):
        touch(tmp_path / "imgs" / f"{i}.jpg")
        for j in range(per_image):
            rows.append({"id": f"{i}-{j}", "image": f"imgs/{i}.jpg", "question": f"Q{j}?", "answers": [str(j)]})
    return load_dataset(write_jsonl(tmp_path / "many.jsonl", rows))


def test_split_by_image_keeps_images_on_one_side_and_is_deterministic(tmp_path):
    dataset = many(tmp_path)
    first, second = dataset.split_by_image(0.75, seed=3)
    assert len(first) + len(second) == len(dataset)
    assert not {e.image for e in first} & {e.image for e in second}
    assert len({e.image for e in first}) == 15 and len(first) == 45
    assert first.name == "many[:0.75]" and second.name == "many[0.75:]"
    assert [e.id for e in first] == [e.id for e in dataset if e in set(first)]  # file order kept
    again = dataset.split_by_image(0.75, seed=3)
    assert again == (first, second)
    shuffled = Dataset("shuffled", tuple(reversed(dataset.examples)))
    assert {e.id for e in shuffled.split_by_image(0.75, seed=3)[0]} == {e.id for e in first}
    assert {e.id for e in dataset.split_by_image(0.75, seed=4)[0]} != {e.id for e in first}
    assert len(dataset.split_by_image(0)[0]) == 0 and len(dataset.split_by_image(1)[1]) == 0
    for fraction in (-0.1, 1.5, True, "half"):
        with pytest.raises(DatasetError, match="between 0 and 1"):
            dataset.split_by_image(fraction)  # type: ignore[arg-type]
    assert Dataset("empty", ()).split_by_image(0.5) == (Dataset("empty[:0.5]", ()), Dataset("empty[0.5:]", ()))


def test_split_by_image_does_not_depend_on_where_the_data_sits(tmp_path):
    a = many(tmp_path / "here", images=10)
    b = many(tmp_path / "there" / "deeper", images=10)
    assert [e.id for e in a.split_by_image(0.5)[0]] == [e.id for e in b.split_by_image(0.5)[0]]


def test_save_jsonl_round_trip_with_relative_images(tmp_path):
    path = aokvqa_file(tmp_path)
    dataset, _ = load_quietly(path, "aokvqa-mc", images=tmp_path / "coco")
    gqa = write_json(tmp_path / "g.json", {"9": {"imageId": "x", "question": "Q?", "answer": "a", "types": {}}})
    touch(tmp_path / "gimg" / "x.jpg")
    merged = Dataset("merged", dataset.examples + load_dataset(gqa, images=tmp_path / "gimg").examples)
    out = merged.save_jsonl(tmp_path / "export" / "set.jsonl")
    first = json.loads(out.read_text().splitlines()[0])
    assert first["image"] == "../coco/val2017/000000000099.jpg" and first["metric"] == "choice"
    assert first["extra"]["rationales"] == ["It barks."] and "source" not in first
    back = load_dataset(out)
    assert len(back) == len(merged)
    for before, after in zip(merged, back):
        assert after.source.startswith("set.jsonl:")
        assert after.to_json() == {**before.to_json(), "source": after.source}
    # the A-OKVQA direct-answer rows keep "choices" in extra: it must not become the example's choices
    da, _ = load_quietly(path, images=tmp_path / "coco")
    reread = load_dataset(da.save_jsonl(tmp_path / "da.jsonl"))
    assert reread[0].choices is None and reread[0].extra["choices"] == ["cat", "dog", "bird", "fish"]
    bad = Dataset("bad", (example("b", da[0].image, extra={"blob": b"bytes"}),))
    with pytest.raises(DatasetError, match="not JSON"):
        bad.save_jsonl(tmp_path / "bad.jsonl")


# --- Hugging Face datasets ---------------------------------------------------------------------


def test_from_hf_with_pil_images_paths_and_vqa_answers(tmp_path):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    red, blue = Image.new("RGB", (4, 4), "red"), Image.new("RGB", (4, 4), "blue")
    table = datasets.Dataset.from_dict(
        {
            "question_id": [1, 2, 3, 4],
            "image": [red, blue, red, red],
            "question": ["What color?", "What color?", "Same?", ""],
            "answers": [[{"answer": "red"}] * 3, [{"answer": "blue"}] * 2, [{"answer": "yes"}] * 2, [{"answer": "x"}]],
            "answer_type": ["other", "other", "yes/no", "other"],
        }
    )
    store = tmp_path / "hf-images"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = from_hf(table, images_dir=store, id_field="question_id", name="mini")
    assert [e.id for e in dataset] == ["1", "2", "3"] and len(caught) == 1
    assert [(r.source, r.id, r.reason.split(":")[0]) for r in dataset.skipped] == [("mini#3", "4", "bad question")]
    assert dataset[0].answers == ("red",) * 3 and dataset[0].metric == "vqa"
    assert dict(dataset[0].extra) == {"answer_type": "other"} and dataset[0].source == "mini#0"
    files = sorted(store.iterdir())
    assert len(files) == 2 and all(f.suffix == ".png" and len(f.stem) == 64 for f in files)
    # the Image column's stored bytes, written as they are (named by their hash), never decoded and re-encoded
    assert all(hashlib.sha256(f.read_bytes()).hexdigest() == f.stem for f in files)
    assert dataset[0].image == dataset[2].image != dataset[1].image and dataset[0].image.parent == store.resolve()
    assert Image.open(dataset[1].image).getpixel((0, 0)) == (0, 0, 255)
    stamps = {f: f.stat().st_mtime_ns for f in files}
    with pytest.warns(UserWarning, match="Skipped 1 row of 4"):
        from_hf(table, images_dir=store, id_field="question_id")  # the images are reused, not rewritten
    assert {f: f.stat().st_mtime_ns for f in sorted(store.iterdir())} == stamps

    touch(tmp_path / "pics" / "a.jpg")
    paths = datasets.Dataset.from_dict(
        {
            "id": ["p1", "p2", "p3"],
            "image": ["a.jpg", str(tmp_path / "pics" / "a.jpg"), "missing.jpg"],
            "question": ["Q?", "Pick one", "Q?"],
            "answers": [["yes"], ["b"], ["no"]],
            "options": [None, ["a", "b"], None],
        }
    )
    with pytest.raises(DatasetError, match=r"#2 \(id 'p3'\): image not found"):
        from_hf(paths, images_dir=tmp_path / "pics", choices_field="options", on_bad="raise", metric="exact")
    loaded = from_hf(paths.select(range(2)), images_dir=tmp_path / "pics", choices_field="options", metric="exact")
    with pytest.raises(DatasetError, match="one reference answer for metric 'vqa'"):  # the default metric
        from_hf(paths.select([0]), images_dir=tmp_path / "pics", on_bad="raise")
    with pytest.raises(DatasetError, match="answer not among the choices|bad choices"):
        from_hf(paths.select([0]), images_dir=tmp_path / "pics", metric="choice", on_bad="raise")
    assert loaded[1].choices == ("a", "b") and loaded[0].image == loaded[1].image == (tmp_path / "pics" / "a.jpg")
    bare = datasets.Dataset.from_dict({"image": ["a.jpg"], "question": ["Q?"], "answer": [3]})
    counted = from_hf(bare, images_dir=tmp_path / "pics", id_field=None, answers_field="answer", metric="count")
    assert (counted[0].id, counted[0].answers, counted.name) == ("0", ("3",), "hf")
    with pytest.raises(DatasetError, match="no column 'id'.*question_id"):
        from_hf(table, images_dir=store)
    with pytest.raises(DatasetError, match="one split"):
        from_hf(datasets.DatasetDict({"val": table}), images_dir=store)
    with pytest.raises(DatasetError, match="Dataset.from_list"):
        from_hf([{"id": 1}], images_dir=store)


def test_from_hf_without_datasets_says_how_to_install(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_datasets(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "datasets":
            raise ImportError("No module named 'datasets'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(DatasetError, match="pip install datasets"):
        from_hf(object(), images_dir=tmp_path)


def test_image_bytes_and_dicts_are_written_by_content_hash(tmp_path):
    from vpd.distill.datasets._rows import RowProblem, Rows
    from vpd.distill.datasets.hf import _image

    rows, written = Rows("t"), {}
    png = b"\x89PNG\r\n\x1a\n" + b"rest"
    first = _image(rows, {"bytes": png, "path": None}, tmp_path, written)
    assert first.suffix == ".png" and first.read_bytes() == png
    assert _image(rows, {"bytes": png, "path": "x.jpeg"}, tmp_path, {}).suffix == ".jpeg"
    assert _image(rows, {"bytes": b"RIFF1234WEBPVP8 ", "path": None}, tmp_path, {}).suffix == ".webp"
    existing = touch(tmp_path / "real.jpg")
    assert _image(rows, {"bytes": png, "path": str(existing)}, tmp_path, {}) == existing
    from PIL import Image

    pil = Image.new("RGB", (3, 2), "green")
    stored = _image(rows, pil, tmp_path / "pil", {})
    assert stored.suffix == ".png" and Image.open(stored).size == (3, 2)
    stamp = stored.stat().st_mtime_ns
    assert _image(rows, Image.new("RGB", (3, 2), "green"), tmp_path / "pil", {}) == stored  # found, not rewritten
    assert stored.stat().st_mtime_ns == stamp and len(list((tmp_path / "pil").iterdir())) == 1
    assert _image(rows, Image.new("RGB", (3, 2), "red"), tmp_path / "pil", {}) != stored
    for cell, message in [({"bytes": b"????", "path": None}, "not a PNG"), ({}, "neither bytes"), (3, "got int")]:
        with pytest.raises(RowProblem, match=message):
            _image(rows, cell, tmp_path, {})


# --- the shared sample data --------------------------------------------------------------------


def test_shared_sample_data_loads_whole():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"sample data not found at {SHARED_DATA} (it lives beside the checkout, see README)")
    vqa, caught = load_quietly(SHARED_DATA / "vqav2-mini" / "data.json")
    # One row has a single human answer: VQA accuracy cannot score it, so it is skipped, with a warning.
    assert len(caught) == 1 and "Skipped 1 row of 300" in str(caught[0].message)
    assert len(vqa) == 299 and vqa.name == "vqav2-mini"
    assert [(r.id, r.reason.split(":")[0]) for r in vqa.skipped] == [("110", "one reference answer for metric 'vqa'")]
    assert {e.metric for e in vqa} == {"vqa"} and all(e.image.is_file() for e in vqa)
    assert vqa.by_id("0").answers[0] == "down" and len(vqa.by_id("0").answers) == 10
    clevr, caught = load_quietly(SHARED_DATA / "clevr-math" / "data.json", "octotools")
    assert caught == [] and len(clevr) == 300 and clevr.skipped == ()
    assert {e.metric for e in clevr} == {"count"} and clevr[0].answers == ("1",)
    train, test = clevr.split_by_image(0.8)
    assert not {e.image for e in train} & {e.image for e in test} and len(train) + len(test) == 300
