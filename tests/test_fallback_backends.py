"""Offline fallbacks: GrabCut segmentation, ground-plane depth, and VQA from a described image."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from vpd.errors import BackendError, BackendUnavailable, ConfigError, InvalidArgumentError
from vpd.tools.backends.described_vqa import DescribedVQA, colour_name, dominant_colours
from vpd.tools.backends.ground_plane import GroundPlaneDepth, ground_plane_rows
from vpd.tools.protocols import DepthEstimator, Segmenter, VisualQA
from vpd.tools.types import ChatMessage, Detection, TextLine


# -- GrabCut ----------------------------------------------------------------------------------
def disc_image(
    centre: tuple[int, int], radius: int = 50, size: tuple[int, int] = (320, 240), seed: int = 0
) -> tuple[Image.Image, np.ndarray]:
    """A red disc on a noisy green-grey textured background; returns the image and the disc mask."""
    rng = np.random.default_rng(seed)
    width, height = size
    background = rng.integers(0, 256, (height, width, 3)) * 0.5 + np.array([40, 110, 60]) * 0.5
    yy, xx = np.mgrid[:height, :width]
    disc = (yy - centre[1]) ** 2 + (xx - centre[0]) ** 2 <= radius**2
    pixels = background.copy()
    pixels[disc] = (210, 40, 35)
    pixels += rng.normal(0, 12, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), disc


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.fixture(scope="module")
def grabcut() -> Any:
    pytest.importorskip("cv2")
    from vpd.tools.backends.grabcut import GrabCutSegmenter

    return GrabCutSegmenter()


def test_grabcut_segments_a_disc_inside_its_box(grabcut: Any) -> None:
    assert isinstance(grabcut, Segmenter)
    image, disc = disc_image((160, 120))
    box = (95.0, 55.0, 225.0, 185.0)
    ((mask,),) = grabcut.segment([image], [[box]])
    assert mask.shape == (240, 320) and mask.dtype == bool
    assert iou(mask, disc) > 0.7
    outside = np.ones_like(mask)
    outside[55:185, 95:225] = False
    assert not mask[outside].any()


def test_grabcut_batch_order_and_several_boxes(grabcut: Any) -> None:
    left, left_disc = disc_image((80, 120), radius=40, seed=1)
    right, right_disc = disc_image((240, 120), radius=40, seed=2)
    masks = grabcut.segment([left, right], [[(30, 70, 130, 170)], [(190, 70, 290, 170), (0, 0, 60, 60)]])
    assert [len(m) for m in masks] == [1, 2]
    assert iou(masks[0][0], left_disc) > 0.7
    assert iou(masks[1][0], right_disc) > 0.7
    assert not masks[1][1][60:, :].any() and not masks[1][1][:, 60:].any()


def test_grabcut_degenerate_boxes(grabcut: Any) -> None:
    image, disc = disc_image((160, 120))
    whole, outside, tiny, partly_out = grabcut.segment(
        [image], [[(-50, -50, 400, 400), (400, 300, 500, 400), (10, 10, 12.5, 13), (100, -40, 230, 190)]]
    )[0]
    assert iou(whole, disc) > 0.7  # no background around the box: seeded from the image border
    assert not outside.any()
    assert tiny.sum() == 3 * 3 and tiny[10:13, 10:13].all()  # clipped rectangle
    assert partly_out.shape == (240, 320) and iou(partly_out, disc) > 0.7


def test_grabcut_empty_result_falls_back_to_the_box(grabcut: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    def nothing_found(img: Any, mask: np.ndarray, *args: Any) -> None:
        mask[:] = cv2.GC_BGD

    monkeypatch.setattr(cv2, "grabCut", nothing_found)
    image, _ = disc_image((160, 120))
    ((mask,),) = grabcut.segment([image], [[(100, 60, 220, 180)]])
    assert mask.sum() == 120 * 120 and mask[60:180, 100:220].all()


def test_grabcut_validation(grabcut: Any) -> None:
    image, _ = disc_image((160, 120))
    assert grabcut.segment([], []) == []
    assert grabcut.segment([image], [[]]) == [[]]
    with pytest.raises(InvalidArgumentError):
        grabcut.segment([image], [])
    with pytest.raises(InvalidArgumentError):
        grabcut.segment([image], [[(1, 2, 3)]])


def test_grabcut_on_a_real_photo(grabcut: Any) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    coffee = Image.fromarray(skimage_data.coffee())
    ((mask,),) = grabcut.segment([coffee], [[(140, 11, 427, 398)]])  # the cup and saucer
    box_area = (427 - 140) * (398 - 11)
    assert 0.3 < mask.sum() / box_area < 0.98  # an object inside the box, not the whole box
    assert mask[200, 300]  # the coffee in the middle of the cup


def test_grabcut_is_deterministic_across_calls_and_threads(grabcut: Any) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    from vpd.tools.backends.grabcut import GrabCutSegmenter

    coffee = Image.fromarray(skimage_data.coffee())
    disc, _ = disc_image((160, 120))
    images, boxes = [coffee, disc], [[(140, 11, 427, 398)], [(95, 55, 225, 185), (-50, -50, 400, 400)]]
    runs = [grabcut.segment(images, boxes) for _ in range(3)]
    # A fresh thread (its own OpenCV random generator) and a fresh backend give the same masks.
    fresh: list[Any] = []
    thread = threading.Thread(target=lambda: fresh.append(GrabCutSegmenter().segment(images, boxes)))
    thread.start()
    thread.join()
    runs += fresh
    assert len(runs) == 4
    reference = runs[0]
    for run in runs[1:]:
        for masks, expected in zip(run, reference):
            assert all(np.array_equal(m, e) for m, e in zip(masks, expected))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"iterations": 0}, "iterations"),
        ({"iterations": 2.5}, "iterations"),
        ({"iterations": "5"}, "iterations"),
        ({"margin": -0.1}, "margin"),
        ({"margin": "wide"}, "margin"),
        ({"max_side": 0}, "max_side"),
        ({"max_side": None}, "max_side"),
        ({"min_box_px": -1}, "min_box_px"),
        ({"min_box_px": float("nan")}, "min_box_px"),
        ({"device": "gpu"}, "device"),
        ({"device": "tpu"}, "device"),
        ({"dtype": "float16"}, "dtype"),
    ],
)
def test_grabcut_bad_options_rejected_at_construction(options: dict[str, Any], message: str) -> None:
    from vpd.tools.backends.grabcut import GrabCutSegmenter

    with pytest.raises(ConfigError, match=message) as info:
        GrabCutSegmenter(**options)
    assert "grabcut" in str(info.value)


def test_grabcut_runs_on_the_cpu_whatever_the_device() -> None:
    from vpd.tools.backends.grabcut import GrabCutSegmenter

    GrabCutSegmenter(iterations=1, margin=0, max_side=1, min_box_px=0, dtype="float32")
    for device in (None, "auto", "cpu", "cuda", "cuda:1", "mps"):
        backend = GrabCutSegmenter(device=device)  # a toolkit-wide device reaches it too
        assert backend.device == "cpu" and backend.info().device == "cpu"


# -- ground plane -----------------------------------------------------------------------------
def test_ground_plane_is_farther_towards_the_top() -> None:
    depth = GroundPlaneDepth()
    assert isinstance(depth, DepthEstimator)
    maps = depth.estimate_depth([Image.new("RGB", (64, 48)), Image.new("RGB", (10, 100))])
    assert [m.shape for m in maps] == [(48, 64), (100, 10)]
    for m in maps:
        assert m.dtype == np.float32 and np.isfinite(m).all()
        assert (m == m[:, :1]).all()  # constant along each row
        assert (np.diff(m[:, 0]) < 0).all()  # strictly nearer row by row downwards
        assert m[-1, 0] < m[0, 0]  # bottom row nearest
    assert depth.estimate_depth([]) == []


def test_ground_plane_horizon_option() -> None:
    horizon_high_in_image = ground_plane_rows(100, horizon=0.2)
    horizon_low_in_image = ground_plane_rows(100, horizon=0.6)
    # Row 70 is far below a horizon at 20% of the height (near), just below one at 60% (far).
    assert horizon_high_in_image[70] < horizon_low_in_image[70]
    with pytest.raises(ConfigError):
        GroundPlaneDepth(horizon=1.5)
    with pytest.raises(ConfigError):
        GroundPlaneDepth(horizont=0.5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"horizon": 1.0}, "horizon"),
        ({"horizon": -0.1}, "horizon"),
        ({"horizon": "0.4"}, "horizon"),
        ({"horizon": True}, "horizon"),
        ({"horizon": float("nan")}, "horizon"),
        ({"device": "gpu"}, "device"),
        ({"dtype": "float64"}, "dtype"),
    ],
)
def test_ground_plane_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        GroundPlaneDepth(**options)
    assert "ground_plane" in str(info.value)


def test_ground_plane_good_options() -> None:
    assert GroundPlaneDepth(horizon=0).options["horizon"] == 0
    assert GroundPlaneDepth(horizon=0.99, device="cuda", dtype="float32").info().device == "cpu"


# -- described VQA ----------------------------------------------------------------------------
class FakeDetector:
    """Detects a cup (and a small person) in every image; records its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def detect(self, images: Sequence[Image.Image], queries: Sequence[Sequence[str]]) -> list[list[Detection]]:
        self.calls.append((len(images), len(queries[0])))
        return [[Detection((10, 10, 60, 60), 0.9, "cup", None), Detection((70, 5, 95, 20), 0.4, "cup")] for _ in images]


class FakeClosedSetDetector(FakeDetector):
    def detect_all(self, images: Sequence[Image.Image]) -> list[list[Detection]]:
        self.calls.append((len(images), -1))
        return [[Detection((0, 0, 100, 100), 0.8, "dog", "dog")] for _ in images]


class FakeOCR:
    def read_text(self, images: Sequence[Image.Image]) -> list[list[TextLine]]:
        return [[TextLine("OPEN 24H", 0.99, (0, 0, 10, 10))] for _ in images]


class UnavailableOCR:
    def read_text(self, images: Sequence[Image.Image]) -> list[list[TextLine]]:
        raise BackendUnavailable("no OCR here")


class FakeLLM:
    """Answers every conversation with a fixed reply and records what it was sent."""

    def __init__(self, reply: str = "Two.") -> None:
        self.reply = reply
        self.batches: list[list[list[ChatMessage]]] = []

    def chat(
        self, conversations: Sequence[Sequence[ChatMessage]], *, max_tokens: int = 256, temperature: float = 0.0
    ) -> list[str]:
        self.batches.append([list(c) for c in conversations])
        return [self.reply for _ in conversations]


class UnconfiguredLLM:
    def chat(self, conversations: Any, **kwargs: Any) -> list[str]:
        raise BackendUnavailable("No model configured")


def described(**deps: Any) -> DescribedVQA:
    vqa = DescribedVQA()
    vqa.bind(deps)
    return vqa


def test_described_vqa_builds_a_description_and_asks_the_llm_once() -> None:
    detector, llm = FakeDetector(), FakeLLM()
    vqa = described(detect=detector, ocr=FakeOCR(), llm=llm)
    assert isinstance(vqa, VisualQA)
    images = [Image.new("RGB", (100, 80), "white"), Image.new("RGB", (50, 120), "blue")]
    assert vqa.answer(images, ["How many cups?", "What does the sign say?"]) == ["two", "two"]
    assert detector.calls == [(2, 80)]  # one detector pass over the batch, with the COCO names
    (batch,) = llm.batches
    assert len(batch) == 2
    system, user = batch[0]
    assert system["role"] == "system" and "few words" in system["content"]
    assert "How many cups?" in user["content"]
    assert "2 x cup: center, large, white; top right, medium" in user["content"]
    assert '"OPEN 24H"' in user["content"]
    assert "100x80" in user["content"] and "white" in user["content"]
    assert "portrait" in batch[1][1]["content"] and "blue" in batch[1][1]["content"]


def test_described_vqa_prefers_detect_all_and_filters_scores() -> None:
    detector = FakeClosedSetDetector()
    vqa = described(detect=detector, ocr=FakeOCR(), llm=FakeLLM())
    (text,) = vqa.describe([Image.new("RGB", (100, 100))])
    assert detector.calls == [(1, -1)] and "dog" in text
    strict = DescribedVQA(min_detection_score=0.95)
    strict.bind({"detect": FakeDetector(), "llm": FakeLLM()})
    assert "Objects detected: none." in strict.describe([Image.new("RGB", (10, 10))])[0]


def test_described_vqa_omits_unavailable_tools_and_says_so() -> None:
    llm = FakeLLM("Yes")
    vqa = described(ocr=UnavailableOCR(), llm=llm)  # no detector bound at all
    assert vqa.answer([Image.new("RGB", (20, 20))], ["Is there a cat?"]) == ["yes"]
    user = llm.batches[0][0][1]["content"]
    assert "no object detector available" in user
    assert "no OCR available" in user


def test_described_vqa_needs_an_llm() -> None:
    image = Image.new("RGB", (20, 20))
    with pytest.raises(BackendUnavailable, match="VPD_LLM"):
        described(detect=FakeDetector(), ocr=FakeOCR()).answer([image], ["what?"])
    with pytest.raises(BackendUnavailable, match="VPD_LLM"):
        described(llm=UnconfiguredLLM()).answer([image], ["what?"])


def test_described_vqa_validation() -> None:
    vqa = described(llm=FakeLLM())
    assert vqa.answer([], []) == []
    assert vqa.describe([]) == []
    with pytest.raises(InvalidArgumentError):
        vqa.answer([Image.new("RGB", (5, 5))], [""])
    with pytest.raises(InvalidArgumentError):
        vqa.answer([Image.new("RGB", (5, 5))], ["a", "b"])


def test_described_vqa_llm_errors_propagate() -> None:
    class BrokenLLM:
        def chat(self, conversations: Any, **kwargs: Any) -> list[str]:
            raise BackendError("server exploded", capability="llm", backend="fake")

    with pytest.raises(BackendError, match="exploded"):
        described(llm=BrokenLLM()).answer([Image.new("RGB", (5, 5))], ["q?"])


def test_described_vqa_end_to_end_with_rapidocr_and_litellm() -> None:
    """Real OCR, real HTTP to a fake OpenAI server through litellm."""
    pytest.importorskip("rapidocr")
    pytest.importorskip("litellm")
    from vpd.testing.openai_server import FakeOpenAIServer
    from vpd.tools.backends.litellm_llm import LiteLLMChat
    from vpd.tools.backends.rapidocr import RapidOCRReader

    image = Image.new("RGB", (640, 200), "white")
    ImageDraw.Draw(image).text((30, 60), "STOP 42 Main St.", fill="black", font=ImageFont.load_default(size=56))
    with FakeOpenAIServer(replies=["42 Main St."]) as server:
        llm = LiteLLMChat(server.model_string, api_base=server.base_url, api_key="k")
        vqa = described(ocr=RapidOCRReader(), llm=llm)
        assert vqa.answer([image], ["What is the address?"]) == ["42 main st"]
        assert "STOP 42 Main St." in server.chat_requests[0].text


def test_colour_names() -> None:
    assert colour_name(0.0, 0.0, 0.05) == "black"
    assert colour_name(0.0, 0.0, 0.95) == "white"
    assert colour_name(0.0, 0.9, 0.9) == "red"
    assert colour_name(120 / 360, 0.8, 0.7) == "green"
    assert colour_name(220 / 360, 0.8, 0.7) == "blue"
    assert colour_name(25 / 360, 0.65, 0.5) == "brown"
    half = Image.new("RGB", (100, 100), (20, 40, 220))
    half.paste((250, 250, 250), (0, 0, 100, 30))
    colours = dominant_colours(half)
    assert [name for name, _ in colours] == ["blue", "white"]
    assert colours[0][1] == pytest.approx(0.7, abs=0.05)
