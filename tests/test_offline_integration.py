"""The offline toolkit through ImagePatch, on real photos (the issue's "done when")."""

from __future__ import annotations

import pytest

import vpd
from vpd import ImagePatch
from vpd.testing import street_sign

skimage_data = pytest.importorskip("skimage.data")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toolkit():
    return vpd.Toolkit.offline()


def test_coffee_cup_found_and_no_dog(toolkit):
    image = ImagePatch(skimage_data.coffee(), toolkit=toolkit)  # 600x400
    cups = image.find("cup")
    assert cups, "NanoDet should find the cup"
    cup = cups[0]
    # The cup fills most of the photo; NanoDet gives about x 140..427, y (top) 11..398.
    assert 100 <= cup.left <= 200 and 380 <= cup.right <= 480
    assert cup.upper >= 350 and cup.lower <= 60
    assert cup.label == "cup" and 0 < cup.score <= 1
    assert image.exists("dog") is False
    assert image.exists("mug") is True  # mapped onto COCO "cup"


def test_a_mirrored_photo_gets_its_own_boxes(toolkit):
    # The result cache must key on the image's content: the mirror of the coffee photo has
    # the same size and the same query, and its cup sits on the other side.
    photo = skimage_data.coffee()
    width = photo.shape[1]
    (cup,) = ImagePatch(photo, toolkit=toolkit).find("cup")[:1]
    (mirrored,) = ImagePatch(photo[:, ::-1].copy(), toolkit=toolkit).find("cup")[:1]
    # The detector is not exactly mirror-symmetric, but the right edges tell: about 140..427
    # in the photo, about 134..457 in its mirror (the mirrored 427 is 173, the mirrored 140 is 460).
    assert mirrored.xyxy != cup.xyxy
    assert abs(mirrored.right - (width - cup.left)) < abs(mirrored.right - cup.right)


def test_astronaut_person_in_bottom_left_coordinates(toolkit):
    image = ImagePatch(skimage_data.astronaut(), toolkit=toolkit)  # 512x512
    people = image.find("person")
    assert people
    # The astronaut fills the image; her head (top of the box) is near the top.
    assert people[0].upper > 400
    assert image.find("woman"), "synonyms map onto COCO 'person'"


def test_ocr_reads_a_rendered_sign(toolkit):
    sign = ImagePatch(street_sign(), toolkit=toolkit)
    text = sign.ocr()
    assert "STOP" in text and "42" in text and "Main" in text
    # bottom-left origin: the lower half of the image (y < 180) has the "Main St." line
    assert "Main" in sign.crop(0, 0, 640, 180).ocr()
    assert "STOP" not in sign.crop(0, 0, 640, 180).ocr()


def test_trace_events_name_backend_and_class(toolkit):
    image = ImagePatch(skimage_data.coffee(), toolkit=toolkit)
    with vpd.record_tool_calls() as events:
        image.find("mug")
    assert events[0].backend == "nanodet"
    assert events[0].details["classes"] == ["cup"]
    (mapping,) = events[0].details["query_mapping"]
    assert mapping["query"] == "mug" and mapping["classes"] == ["cup"]
    with vpd.record_tool_calls() as events:
        assert image.find("quantum flux capacitor") == []
    assert events[0].details["query_mapping"][0]["classes"] == []


def test_default_toolkit_offline_never_blocks(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tk = vpd.Toolkit.from_env({})
    rows = {r.capability: r for r in tk.describe()}
    assert rows["detect"].info is not None
    assert rows["ocr"].info.backend in ("rapidocr", "paddleocr")


def test_offline_simple_query_describes_the_photo_to_the_llm():
    """Offline VQA: NanoDet + RapidOCR describe the crop, an LLM behind HTTP answers."""
    pytest.importorskip("litellm")
    from vpd.testing import FakeOpenAIServer

    with FakeOpenAIServer(replies=["a cup"]) as server:
        llm = vpd.BackendSpec("litellm", model=server.model_string, options={"api_base": server.base_url})
        toolkit = vpd.Toolkit.offline(llm=llm)
        image = ImagePatch(skimage_data.coffee(), toolkit=toolkit)
        with vpd.record_tool_calls() as events:
            assert image.simple_query("What is on the saucer?") == "a cup"
        prompt = server.chat_requests[0].text
    assert "cup" in prompt and "What is on the saucer?" in prompt
    assert events[0].backend == "described"
    used = {step["capability"] for step in events[0].details["steps"]}
    assert used == {"vqa"}


def test_ocr_reads_a_real_scanned_page(toolkit):
    page = ImagePatch(skimage_data.page(), toolkit=toolkit)  # a real scan, 384x191
    text = page.ocr()
    for words in ("Region-based segmentation", "markers", "background", "histogram"):
        assert words in text
    # the top third holds the title only
    top = page.crop(0, 2 * page.height // 3, page.width, page.height).ocr()
    assert "Region-based" in top and "histogram" not in top
