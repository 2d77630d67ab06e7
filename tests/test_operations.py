"""ImagePatch tool methods through a real Toolkit with the scene fakes (no models)."""

from __future__ import annotations

import pytest

import vpd
from vpd import BackendError, BackendUnavailable, ImagePatch, InvalidArgumentError
from vpd.testing import FakeDetector, Scene, SceneObject

W, H = 640, 480


@pytest.fixture
def scene():
    return Scene(
        W,
        H,
        [
            SceneObject("cup", (100, 200, 180, 260), attributes=("red",), text="COFFEE", depth=2.0, aliases=("mug",)),
            SceneObject("cup", (300, 100, 360, 180), attributes=("blue",), depth=5.0, score=0.95),
            SceneObject("sign", (400, 300, 600, 360), text="STOP", depth=8.0),
            SceneObject("sign", (400, 380, 600, 440), text="Main St", depth=8.0),
        ],
        answers={"What is on the table?": "two cups"},
        llm={"capital of France": "Paris"},
    )


@pytest.fixture
def patch(scene):
    return ImagePatch(scene.image, toolkit=scene.toolkit())


def test_find_returns_patches_in_patch_coordinates(patch):
    cups = patch.find("cup")
    assert len(cups) == 2
    assert cups[0].score == pytest.approx(0.95)  # most confident first
    blue, red = cups
    assert (red.left, red.right) == (100, 180)
    assert (red.lower, red.upper) == (H - 260, H - 200)  # bottom-left origin
    assert red.label == "cup"
    assert red.mask is not None and red.mask.shape == (red.height, red.width)
    assert red.area == 80 * 60


def test_find_inside_a_crop_only_sees_the_crop(patch):
    left_half = patch.crop(0, 0, 250, H)
    cups = left_half.find("cup")
    assert [(c.left, c.right) for c in cups] == [(100, 180)]
    partial = patch.crop(0, 0, 140, H).find("cup")
    assert [(c.left, c.right) for c in partial] == [(100, 140)]


def test_find_by_alias_attribute_and_plural(patch):
    assert len(patch.find("mug")) == 1
    assert len(patch.find("red cup")) == 1
    assert len(patch.find("cups")) == 2
    assert patch.find("green cup") == []


def test_exists(patch):
    assert patch.exists("cup") is True
    assert patch.exists("dog") is False


def test_verify_property_with_matcher_and_with_vqa(scene, patch):
    red, blue = sorted(patch.find("cup"), key=lambda c: c.left)
    assert red.verify_property("cup", "red") and not blue.verify_property("cup", "red")
    no_match = ImagePatch(scene.image, toolkit=scene.toolkit(match=None))
    red2, blue2 = sorted(no_match.find("cup"), key=lambda c: c.left)
    assert red2.verify_property("cup", "red") and not blue2.verify_property("cup", "red")


def test_best_text_match_with_and_without_matcher(scene, patch):
    red = min(patch.find("cup"), key=lambda c: c.left)
    assert red.best_text_match(["blue", "red"]) == "red"
    no_match = ImagePatch(scene.image, toolkit=scene.toolkit(match=None))
    red2 = min(no_match.find("cup"), key=lambda c: c.left)
    assert red2.best_text_match(["blue", "red"]) == "red"


def test_best_image_match(scene, patch):
    cups = patch.find("cup")
    assert vpd.best_image_match(cups, ["blue cup"]).left == 300
    assert vpd.best_image_match(cups, ["red cup"], return_index=True) == [c.left for c in cups].index(100)
    assert vpd.best_image_match([], ["x"]) is None
    # without a matcher, detector scores decide
    tk = scene.toolkit(match=None)
    cups2 = ImagePatch(scene.image, toolkit=tk).find("cup")
    assert vpd.best_image_match(cups2, ["red cup"]).left == 100


def test_the_result_cache_tells_images_apart():
    # Same size, same toolkit (cache on), one of the two cups painted over in the second image:
    # a cache keyed without the image's content would answer the second from the first.
    both = Scene(W, H, [SceneObject("cup", (100, 300, 180, 400)), SceneObject("cup", (400, 100, 480, 200))])
    painted_over = Scene(W, H, [SceneObject("cup", (100, 300, 180, 400))])
    toolkit = both.toolkit()
    assert toolkit.cache is not None
    assert len(ImagePatch(both.image, toolkit=toolkit).find("cup")) == 2
    assert len(ImagePatch(painted_over.image, toolkit=toolkit).find("cup")) == 1
    assert ImagePatch(painted_over.image, toolkit=toolkit).exists("cup")
    assert len(ImagePatch(both.image, toolkit=toolkit).find("cup")) == 2  # and back: a hit, still right
    assert toolkit.cache.stats.hits >= 1


def test_simple_query_scripted_and_rules(patch):
    assert patch.simple_query("What is on the table?") == "two cups"
    red = min(patch.find("cup"), key=lambda c: c.left)
    assert red.simple_query("What color is the cup?") == "red"


def test_depth_orders_objects(patch):
    red, blue = sorted(patch.find("cup"), key=lambda c: c.left)
    assert red.depth() == pytest.approx(2.0)
    assert blue.depth() == pytest.approx(5.0)
    # the whole image is mostly background (depth 10)
    assert patch.depth() == pytest.approx(10.0)


def test_depth_uses_mask_when_segmenter_configured():
    # The ball's box is mostly covered by a farther box drawn on top of it: only the
    # mask tells the ball's own pixels apart.
    s = Scene(
        100, 100, [SceneObject("ball", (10, 10, 30, 30), depth=1.0), SceneObject("box", (14, 14, 40, 40), depth=9.0)]
    )
    with_mask = ImagePatch(s.image, toolkit=s.toolkit()).find("ball")[0]
    without_mask = ImagePatch(s.image, toolkit=s.toolkit(segment=None)).find("ball")[0]
    assert with_mask.xyxy == without_mask.xyxy == (10, 10, 30, 30)
    assert with_mask.area == 400 - 16 * 16 and without_mask.area == 400
    assert with_mask.depth() == pytest.approx(1.0)
    assert without_mask.depth() == pytest.approx(9.0)


def test_ocr_reading_order(patch):
    signs = patch.crop(380, 0, 620, H)
    assert signs.ocr() == "STOP Main St"
    assert patch.crop(0, 0, 50, 50).ocr() == ""


def test_llm_query(patch):
    assert patch.llm_query("What is the capital of France?") == "Paris"
    with vpd.use_toolkit(patch.toolkit):
        assert vpd.llm_query("capital of France?") == "Paris"


@pytest.mark.parametrize("bad", ["", "   ", 3, None, "x" * 5000])
def test_bad_queries_raise(patch, bad):
    with pytest.raises(InvalidArgumentError):
        patch.find(bad)


def test_bad_options(patch):
    with pytest.raises(InvalidArgumentError):
        patch.best_text_match("red")
    with pytest.raises(InvalidArgumentError):
        patch.best_text_match([])


def test_cache_shares_detections_between_find_and_exists(scene):
    detector = FakeDetector(scene)
    tk = scene.toolkit(detect=detector)
    p = ImagePatch(scene.image, toolkit=tk)
    p.find("cup")
    p.exists("cup")
    ImagePatch(scene.image, toolkit=tk).find("cup")
    assert detector.calls == 1
    # exists reuses find's detection; the second find reuses detection and segmentation
    assert tk.cache.stats.hits == 3


def test_events_record_every_call(patch):
    with vpd.record_tool_calls() as events:
        patch.find("cup")
        patch.find("cup")
        patch.crop(380, 0, 620, H).ocr()
    assert [e.operation for e in events] == ["find", "find", "ocr"]
    first, second, ocr = events
    assert first.capability == "detect" and first.backend == "fake"
    assert first.inputs == {"object_name": "cup"}
    assert len(first.output) == 2 and set(first.output[0]) == {"box", "score"}
    assert not first.cache_hit and second.cache_hit
    assert ocr.box == [380, 0, 620, H]
    assert ocr.output == "STOP Main St"
    assert [e.index for e in events] == [0, 1, 2] and {e.line for e in events} == {None}
    assert first.details["image"] == patch.image.sha256[:16]


def test_events_record_failures(scene):
    class Broken(FakeDetector):
        def detect(self, images, queries):
            raise RuntimeError("model exploded")

    p = ImagePatch(scene.image, toolkit=scene.toolkit(detect=Broken(scene)))
    with vpd.record_tool_calls() as events, pytest.raises(BackendError, match="model exploded") as info:
        p.find("cup")
    assert info.value.backend == "fake"
    assert events[0].error and "model exploded" in events[0].error


def test_unconfigured_capability_says_how_to_fix(scene):
    p = ImagePatch(scene.image, toolkit=scene.toolkit(llm=None))
    with pytest.raises(BackendUnavailable, match="VPD_LLM"):
        p.llm_query("anything?")


def test_exists_agrees_with_find_for_boxes_outside_the_image(scene):
    from vpd.tools.types import Detection

    class Outside(FakeDetector):
        def detect(self, images, queries):
            return [[Detection((5000, 5000, 6000, 6000), 0.9, q) for q in qs] for qs in queries]

    p = ImagePatch(scene.image, toolkit=scene.toolkit(detect=Outside(scene)))
    assert p.find("cup") == [] and p.exists("cup") is False


def test_malformed_backend_output_is_a_tool_error(scene):
    import numpy as np

    from vpd.testing import FakeDepth
    from vpd.tools.types import Detection

    class NaNBox(FakeDetector):
        def detect(self, images, queries):
            return [[Detection((float("nan"), 0, 1, 1), 0.9, q) for q in qs] for qs in queries]

    class WrongShape(FakeDepth):
        def estimate_depth(self, images):
            return [np.zeros((3, 3), np.float32) for _ in images]

    with pytest.raises(BackendError, match="invalid detection"):
        ImagePatch(scene.image, toolkit=scene.toolkit(detect=NaNBox(scene))).find("cup")
    with pytest.raises(BackendError, match="must be \\(height, width\\)"):
        ImagePatch(scene.image, toolkit=scene.toolkit(depth=WrongShape(scene))).depth()


def test_cache_identity_follows_bound_dependencies():
    from vpd.testing import FakeLLM

    a = Scene(50, 50, llm={"": "alpha"})
    b = Scene(50, 50, llm={"": "beta"})
    tk = vpd.Toolkit.offline(llm=FakeLLM(a))
    tk2 = tk.replace(llm=FakeLLM(b))
    assert tk.backend("vqa").cache_identity() != tk2.backend("vqa").cache_identity()
