"""load_image: every input form, normalisation, and bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import vpd
from vpd import ImageError, load_image


def _png(image: Image.Image, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", **kwargs)
    return buf.getvalue()


def test_path_bytes_pil_and_array_agree(tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    pil = Image.fromarray(arr)
    path = tmp_path / "x.png"
    pil.save(path)
    loaded = [load_image(path), load_image(str(path)), load_image(path.read_bytes()), load_image(pil), load_image(arr)]
    assert {d.sha256 for d in loaded} == {loaded[0].sha256}
    assert loaded[0].size == (40, 30)
    assert loaded[0].source == str(path)
    assert load_image(loaded[0]) is loaded[0]
    np.testing.assert_array_equal(loaded[0].to_numpy(), arr)


def test_different_pixels_different_hash():
    a = np.zeros((10, 10, 3), np.uint8)
    b = a.copy()
    b[5, 5, 0] = 1
    assert load_image(a).sha256 != load_image(b).sha256


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "I;16", "1", "CMYK"])
def test_modes_become_rgb(mode):
    base = Image.new("RGB", (8, 6), (200, 30, 30))
    image = base.convert(mode) if mode != "I;16" else Image.fromarray(np.full((6, 8), 40000, np.uint16))
    data = load_image(_png(image) if mode not in ("CMYK", "I;16") else image)
    assert data.pil.mode == "RGB"
    assert data.size == (8, 6)
    if mode != "RGB":
        assert data.notes


def test_rgba_transparent_becomes_white():
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert load_image(image).pil.getpixel((0, 0)) == (255, 255, 255)


def test_16_bit_array_scaled():
    arr = np.full((4, 4), 65535, np.uint16)
    assert load_image(arr).pil.getpixel((1, 1)) == (255, 255, 255)


def test_float_and_bool_and_chw_arrays():
    assert load_image(np.ones((4, 5), np.float32)).pil.getpixel((0, 0)) == (255, 255, 255)
    assert load_image(np.ones((4, 5), bool)).size == (5, 4)
    assert load_image(np.zeros((3, 7, 9), np.uint8)).size == (9, 7)  # CHW


def test_large_image_downscaled_and_recorded():
    data = load_image(Image.new("RGB", (4000, 3000)), max_pixels=1_000_000)
    assert data.width * data.height <= 1_000_000
    assert data.original_size == (4000, 3000)
    assert data.scale == pytest.approx(data.width / 4000)
    assert any("resized" in n for n in data.notes)


def test_exif_rotation_applied():
    image = Image.new("RGB", (20, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    buf = io.BytesIO()
    image.save(buf, format="JPEG", exif=exif.tobytes())
    assert load_image(buf.getvalue()).size == (10, 20)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("/nonexistent/cat.jpg", "not found"),
        (b"", "0 bytes"),
        (b"definitely not an image", "not a readable image"),
        (np.zeros((0, 0, 3), np.uint8), "empty"),
        (np.zeros((4, 4, 2), np.uint8), "shape"),
        (np.full((4, 4), np.nan), "NaN"),
        (12345, "Cannot load an image from a int"),
        ("https://example.com/cat.jpg", "does not download"),
    ],
)
def test_bad_input_raises_image_error(source, message):
    with pytest.raises(ImageError, match=message):
        load_image(source)


def test_truncated_file(tmp_path):
    data = io.BytesIO()
    Image.new("RGB", (200, 200), (1, 2, 3)).save(data, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data.getvalue()[:300])
    with pytest.raises(ImageError, match="corrupt|truncated|readable"):
        load_image(path)


def test_directory_is_rejected(tmp_path):
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)


def test_image_error_is_vpd_error():
    assert issubclass(ImageError, vpd.VPDError)
