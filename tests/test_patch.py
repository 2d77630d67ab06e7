"""ImagePatch geometry and the module-level helpers (no tools needed)."""

from __future__ import annotations

import numpy as np
import pytest

from vpd import ImagePatch, InvalidArgumentError
from vpd.helpers import bool_to_yesno, coerce_to_numeric, distance

W, H = 200, 100


@pytest.fixture
def image():
    return np.zeros((H, W, 3), np.uint8)


def test_whole_image_patch(image):
    p = ImagePatch(image)
    assert (p.left, p.lower, p.right, p.upper) == (0, 0, W, H)
    assert (p.width, p.height) == (W, H)
    assert p.horizontal_center == W / 2 and p.vertical_center == H / 2
    assert p.area == W * H
    assert p.xyxy == (0, 0, W, H)


def test_bottom_left_origin(image):
    # lower=0 is the bottom row: the box 10..30 from the bottom is rows 70..90 from the top.
    p = ImagePatch(image, 5, 10, 25, 30)
    assert p.xyxy == (5, H - 30, 25, H - 10)
    assert p.vertical_center == 20


def test_cropped_pixels_match_convention():
    arr = np.zeros((H, W, 3), np.uint8)
    arr[H - 30 : H - 10, 5:25] = 255  # a white block 10..30 px above the bottom edge
    p = ImagePatch(arr, 5, 10, 25, 30)
    assert np.asarray(p.cropped_image).min() == 255


def test_crop_is_absolute_and_clamped(image):
    p = ImagePatch(image, 50, 20, 150, 80)
    c = p.crop(-10, -10, 60, 500)
    assert (c.left, c.lower, c.right, c.upper) == (0, 0, 60, H)
    inner = p.crop(60, 30, 70, 40)
    assert (inner.left, inner.lower, inner.right, inner.upper) == (60, 30, 70, 40)


def test_crop_swapped_coordinates_are_ordered(image):
    c = ImagePatch(image).crop(50, 60, 10, 20)
    assert (c.left, c.lower, c.right, c.upper) == (10, 20, 50, 60)


@pytest.mark.parametrize("box", [(300, 0, 400, 50), (0, 0, 0, 50), (10, 200, 20, 300)])
def test_crop_outside_raises(image, box):
    with pytest.raises(InvalidArgumentError, match="no pixels"):
        ImagePatch(image).crop(*box)


@pytest.mark.parametrize("bad", ["10", None, float("nan"), float("inf"), True])
def test_non_numeric_coordinates(image, bad):
    with pytest.raises(InvalidArgumentError):
        ImagePatch(image).crop(bad, 0, 10, 10)


def test_overlaps_with(image):
    p = ImagePatch(image, 10, 10, 50, 50)
    assert p.overlaps_with(40, 40, 60, 60)
    assert not p.overlaps_with(50, 10, 60, 50)  # touching edge only
    assert not p.overlaps_with(100, 60, 120, 80)


def test_patch_is_read_only(image):
    p = ImagePatch(image)
    with pytest.raises(AttributeError, match="read-only"):
        p.left = 5
    with pytest.raises(AttributeError):
        del p.left


def test_equality_and_hash(image):
    a, b = ImagePatch(image, 1, 2, 3, 4), ImagePatch(image, 1, 2, 3, 4)
    assert a == b and hash(a) == hash(b)
    assert a != ImagePatch(image, 1, 2, 3, 5)


def test_unknown_attribute_lists_api(image):
    from vpd.testing import Scene

    p = ImagePatch(image, toolkit=Scene(W, H).toolkit())
    with pytest.raises(AttributeError, match="Available: .*find"):
        p.get_depth()


def test_distance():
    image = np.zeros((H, W, 3), np.uint8)
    a = ImagePatch(image, 0, 0, 10, 10)
    b = ImagePatch(image, 13, 14, 20, 20)
    assert distance(a, b) == pytest.approx(5.0)
    assert distance(a, ImagePatch(image, 10, 0, 20, 10)) == 0
    assert distance(a, ImagePatch(image, 5, 0, 15, 10)) == pytest.approx(-0.5)
    assert distance(3, 7.5) == 4.5
    with pytest.raises(InvalidArgumentError):
        distance(a, 3)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("There are 3 cups", 3),
        ("2.5 meters", 2.5),
        ("1,200 people", 1200),
        ("-4 degrees", -4),
        ("three", 3),
        ("twenty one", 21),
        ("two hundred", 200),
        ("no", 0),
        ("a dozen eggs", 12),
        (7, 7),
        (True, 1),
    ],
)
def test_coerce_to_numeric(text, value):
    assert coerce_to_numeric(text) == value


def test_coerce_to_numeric_without_number():
    assert coerce_to_numeric("blue") == "blue"
    assert coerce_to_numeric("a dog") == "a dog"
    assert coerce_to_numeric("blue", no_string=True) is None


def test_bool_to_yesno():
    assert bool_to_yesno(True) == "yes" and bool_to_yesno(0) == "no"


def test_numpy_scalars_are_numbers(image):
    p = ImagePatch(image)
    c = p.crop(np.int64(1), np.float32(2.4), np.uint8(50), np.float64(60))
    assert (c.left, c.lower, c.right, c.upper) == (1, 2, 50, 60)
    assert p.overlaps_with(np.int32(0), 0, 10, 10)
    assert distance(np.int64(3), np.int64(1)) == 2.0


def test_copy_and_pickle(image):
    import copy
    import pickle

    from vpd.testing import Scene

    p = ImagePatch(image, 1, 2, 30, 40, toolkit=Scene(W, H).toolkit())
    assert copy.copy(p) is p and copy.deepcopy(p) is p
    again = pickle.loads(pickle.dumps(p))
    assert again == p and again.xyxy == p.xyxy
