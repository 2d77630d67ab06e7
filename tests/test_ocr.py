"""OCR backends: rapidocr on real text images (offline), PaddleOCR result parsing."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from vpd.errors import BackendUnavailable, ConfigError
from vpd.tools.backend import ModelStore
from vpd.tools.backends.paddleocr import PaddleOCRReader, model_names, parse_result
from vpd.tools.backends.rapidocr import RapidOCRReader
from vpd.tools.protocols import TextReader
from vpd.tools.types import TextLine

skimage_data = pytest.importorskip("skimage.data")


def sign(
    text: str, size: tuple[int, int] = (640, 200), font_size: int = 56, at: tuple[int, int] = (30, 60)
) -> Image.Image:
    """Black text on white, in Pillow's bundled scalable font (no system font needed)."""
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).text(at, text, fill="black", font=ImageFont.load_default(size=font_size))
    return image


def texts(lines: list[TextLine]) -> str:
    return " ".join(line.text for line in lines)


@pytest.fixture(scope="module")
def reader() -> RapidOCRReader:
    pytest.importorskip("rapidocr")
    pytest.importorskip("onnxruntime")
    return RapidOCRReader()


# -- rapidocr ---------------------------------------------------------------------------------
def test_rapidocr_reads_a_rendered_sign(reader: RapidOCRReader) -> None:
    assert isinstance(reader, TextReader)
    image = sign("STOP 42 Main St.")
    (lines,) = reader.read_text([image])
    assert texts(lines).replace(" ", "") == "STOP42MainSt."
    (line,) = lines
    assert line.score > 0.9
    x0, y0, x1, y1 = line.box
    # Around the drawn text (drawn at x=30, y=60, 56 px font), inside the image.
    assert 0 <= x0 < 40 and 30 <= y0 < 70 and 400 < x1 <= 640 and 100 < y1 <= 200


def test_rapidocr_reads_a_scanned_page(reader: RapidOCRReader) -> None:
    page = Image.fromarray(skimage_data.page()).convert("RGB")
    (lines,) = reader.read_text([page])
    found = texts(lines)
    for words in ("Region-based segmentation", "markers", "background", "histogram of grey values"):
        assert words in found
    tops = [line.box[1] for line in lines]
    assert tops == sorted(tops)  # reading order: top to bottom


def test_rapidocr_gives_no_junk_on_photos_without_text(reader: RapidOCRReader) -> None:
    coffee = Image.fromarray(skimage_data.coffee())
    photos = [
        coffee,
        coffee.resize((900, 600)),  # at this scale the cup is read as "8" with score 0.99
        Image.fromarray(skimage_data.coins()).convert("RGB"),
        Image.fromarray(skimage_data.chelsea()),
        Image.fromarray(skimage_data.camera()).convert("RGB"),
    ]
    assert reader.read_text(photos) == [[], [], [], [], []]


def test_rapidocr_batch_keeps_order_and_blank_is_empty(reader: RapidOCRReader) -> None:
    batch = [sign("NASA 1984"), Image.new("RGB", (300, 200), "white"), sign("STOP 42 Main St.")]
    results = reader.read_text(batch)
    assert len(results) == 3
    assert texts(results[0]).replace(" ", "") == "NASA1984"
    assert results[1] == []
    assert "STOP" in texts(results[2])


def test_rapidocr_keeps_a_clear_single_character(reader: RapidOCRReader) -> None:
    (lines,) = reader.read_text([sign("7", size=(300, 300), font_size=120, at=(100, 60))])
    assert texts(lines) == "7"


def test_rapidocr_thresholds_are_options(reader: RapidOCRReader) -> None:
    strict = RapidOCRReader(min_score=1.0, models=reader.models)  # this line scores 0.997
    assert strict.read_text([sign("STOP 42 Main St.")]) == [[]]
    tall_only = RapidOCRReader(min_height_px=150, models=reader.models)
    assert tall_only.read_text([sign("STOP 42 Main St.")]) == [[]]
    # The engine is shared: thresholds do not load a second one.
    assert len(reader.models) == 1


def test_rapidocr_is_safe_to_call_from_threads(reader: RapidOCRReader) -> None:
    images = [sign("NASA 1984", size=(320, 120), font_size=40, at=(10, 30))]
    expected = reader.read_text(images)
    assert texts(expected[0]).replace(" ", "") == "NASA1984"
    results: list[Any] = [None] * 3

    def work(i: int) -> None:
        results[i] = reader.read_text(images)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 3


def test_rapidocr_empty_batch_loads_nothing() -> None:
    store = ModelStore()
    assert RapidOCRReader(models=store).read_text([]) == []
    assert len(store) == 0


def test_rapidocr_availability_and_missing_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("rapidocr")
    availability = RapidOCRReader.check_available()
    assert availability.ok, availability.reason
    monkeypatch.setattr(RapidOCRReader, "requires", ("rapidocr_missing_for_this_test",))
    # rapidocr is a default dependency of vpd: the hint names the package, not an extra that pulls torch.
    reason = RapidOCRReader.check_available().reason
    assert "pip install rapidocr_missing_for_this_test" in reason and "vpd[offline]" not in reason
    with pytest.raises(BackendUnavailable, match=r"pip install rapidocr_missing_for_this_test"):
        RapidOCRReader().read_text([sign("x")])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_score": "x"}, "min_score"),
        ({"min_score": -1}, "min_score"),
        ({"min_score": 2}, "min_score"),
        ({"min_score": float("nan")}, "min_score"),
        ({"min_score_short": 1.5}, "min_score_short"),
        ({"min_score_short": None}, "min_score_short"),
        ({"min_height_px": -1}, "min_height_px"),
        ({"min_height_px": "8"}, "min_height_px"),
        ({"device": "gpu"}, "device"),
        ({"device": "tpu"}, "device"),
        ({"device": "cuda:one"}, "device"),
        ({"dtype": "float64"}, "dtype"),
        ({"dtype": "float16"}, "dtype"),
    ],
)
def test_rapidocr_bad_options_rejected_at_construction(options: dict[str, Any], message: str) -> None:
    store = ModelStore()
    with pytest.raises(ConfigError, match=message) as info:
        RapidOCRReader(models=store, **options)
    assert "rapidocr" in str(info.value)
    assert len(store) == 0


def test_rapidocr_good_options_accepted() -> None:
    RapidOCRReader(min_score=0, min_score_short=1, min_height_px=0, dtype="float32")
    RapidOCRReader(min_height_px=2.5, device="auto")
    for device in (None, "cpu", "CUDA", "cuda:3", "mps"):
        RapidOCRReader(device=device)


def _providers(monkeypatch: pytest.MonkeyPatch, providers: list[str]) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(providers))


@pytest.mark.parametrize("device", ["cuda", "cuda:9"])
def test_rapidocr_cuda_without_provider_falls_back_visibly(monkeypatch: pytest.MonkeyPatch, device: str) -> None:
    pytest.importorskip("rapidocr")
    _providers(monkeypatch, ["CPUExecutionProvider"])
    store = ModelStore()
    ocr = RapidOCRReader(device=device, models=store)
    with pytest.warns(RuntimeWarning, match="no CUDA provider"):
        (lines,) = ocr.read_text([sign("NASA 1984", size=(320, 120), font_size=40, at=(10, 30))])
    assert texts(lines).replace(" ", "") == "NASA1984"
    assert ocr.device == "cpu" and store.keys() == [("rapidocr", ocr.model_id, "cpu")]
    info = ocr.info()
    assert info.device == "cpu" and "onnxruntime-gpu" in info.reason and "runs on the CPU" in info.reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per reader
        ocr.info()


def test_rapidocr_device_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    _providers(monkeypatch, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert RapidOCRReader(device="cuda:1").onnx_device() == "cuda:1"
        assert RapidOCRReader(device="cuda").onnx_device() == "cuda:0"
        # CPU unless CUDA is asked for by name, even when onnxruntime has it.
        assert RapidOCRReader().onnx_device() == "cpu"
        assert RapidOCRReader(device="auto").onnx_device() == "cpu"


# -- PaddleOCR --------------------------------------------------------------------------------
class FakeOCRResult(dict):
    """Stands in for PaddleX's OCRResult: a dict with the documented keys, plus ``.json``."""

    @property
    def json(self) -> dict[str, Any]:
        return {"res": dict(self)}


def paddle_result() -> FakeOCRResult:
    polys = [
        np.array([[10, 20], [110, 22], [109, 50], [9, 48]], dtype=np.int16),
        np.array([[5, 60], [60, 60], [60, 90], [5, 90]], dtype=np.int16),
        np.array([[150, 100], [260, 100], [260, 130], [150, 130]], dtype=np.int16),
    ]
    return FakeOCRResult(
        input_path=None,
        rec_texts=["HELLO", "  ", "edge"],
        rec_scores=np.array([0.98, 0.9, 0.7]),
        rec_polys=polys,
        rec_boxes=np.array([[9, 20, 110, 50], [5, 60, 60, 90], [150, 100, 260, 130]], dtype=np.int16),
    )


def test_paddle_parse_result_uses_rec_boxes_and_clips() -> None:
    lines = parse_result(paddle_result(), width=200, height=120)
    assert [(line.text, line.box) for line in lines] == [
        ("HELLO", (9.0, 20.0, 110.0, 50.0)),
        ("edge", (150.0, 100.0, 200.0, 120.0)),  # clipped to the image
    ]
    assert [line.score for line in lines] == pytest.approx([0.98, 0.7])
    assert all(isinstance(line, TextLine) for line in lines)
    assert [line.text for line in parse_result(paddle_result(), 200, 120, min_score=0.8)] == ["HELLO"]


def test_paddle_parse_result_falls_back_to_polygons_and_json_form() -> None:
    result = paddle_result()
    del result["rec_boxes"]
    assert parse_result(result, 400, 400)[0].box == (9.0, 20.0, 110.0, 50.0)
    assert [line.text for line in parse_result(result.json, 400, 400)] == ["HELLO", "edge"]
    empty = FakeOCRResult(rec_texts=[], rec_scores=[], rec_polys=[], rec_boxes=np.zeros((0, 4)))
    assert parse_result(empty, 10, 10) == []


def test_paddle_read_text_with_an_injected_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exercise read_text's batching and colour order without paddle: a fake engine in the store."""

    class FakeEngine:
        def __init__(self) -> None:
            self.calls: list[int] = []

        def predict(self, arrays: list[np.ndarray]) -> list[FakeOCRResult]:
            self.calls.append(len(arrays))
            out = []
            for array in arrays:
                # PaddleX expects BGR: a pure red RGB image arrives with channel 2 set.
                assert array.shape[2] == 3 and array[0, 0, 2] == 255 and array[0, 0, 0] == 0
                out.append(FakeOCRResult(rec_texts=[f"w{array.shape[1]}"], rec_scores=[0.9], rec_boxes=[[0, 0, 5, 5]]))
            return out

    monkeypatch.setattr(PaddleOCRReader, "requires", ())
    engine = FakeEngine()
    store = ModelStore()
    reader = PaddleOCRReader(models=store, batch_size=2)
    store.get(reader.model_key(), lambda: engine)
    images = [Image.new("RGB", (10 + i, 10), "red") for i in range(3)]
    assert [[line.text for line in lines] for lines in reader.read_text(images)] == [["w10"], ["w11"], ["w12"]]
    assert engine.calls == [2, 1]
    assert reader.read_text([]) == []


def test_paddle_missing_dependency_names_the_paddle_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PaddleOCRReader, "requires", ("paddleocr_missing_for_this_test",))
    with pytest.raises(BackendUnavailable, match=r"vpd\[paddle\]"):
        PaddleOCRReader().read_text([Image.new("RGB", (8, 8))])
    assert "vpd[paddle]" in PaddleOCRReader.check_available().reason


def test_paddle_check_available_looks_in_the_paddlex_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(PaddleOCRReader, "requires", ())
    monkeypatch.setenv("PADDLE_PDX_CACHE_HOME", str(tmp_path))
    availability = PaddleOCRReader.check_available()
    assert not availability and "PP-OCRv5_mobile_det" in availability.reason
    for name in ("PP-OCRv5_mobile_det", "PP-OCRv5_mobile_rec"):
        (tmp_path / "official_models" / name).mkdir(parents=True)
    assert PaddleOCRReader.check_available()
    assert not PaddleOCRReader.check_available("PP-OCRv5_server")
    assert model_names("PP-OCRv5_server") == ("PP-OCRv5_server_det", "PP-OCRv5_server_rec")
    assert model_names("a_det+en_b_rec") == ("a_det", "en_b_rec")


@pytest.mark.hub
def test_paddleocr_reads_a_sign_for_real() -> None:
    pytest.importorskip("paddleocr")
    pytest.importorskip("paddle")
    (lines,) = PaddleOCRReader().read_text([sign("STOP 42 Main St.")])
    assert "STOP" in texts(lines)


def test_rapidocr_pads_thin_strips_and_keeps_their_boxes(reader: RapidOCRReader) -> None:
    from vpd.tools.backends.rapidocr import MAX_ASPECT, _padded

    assert _padded(np.zeros((8, 400, 3), np.uint8)).shape == (100, 400, 3)  # wide: rows of white below
    assert _padded(np.zeros((401, 8, 3), np.uint8)).shape == (401, 101, 3)  # tall: columns on the right
    square = np.zeros((50, 60, 3), np.uint8)
    assert _padded(square) is square
    padded = _padded(np.zeros((10, 1000, 3), np.uint8))
    assert padded.shape[1] <= MAX_ASPECT * padded.shape[0] and (padded[10:] == 255).all()
    # A strip of text far wider than MAX_ASPECT is still read, with its box inside the strip.
    strip = sign("EXIT 7 NORTH", size=(900, 60), font_size=40, at=(10, 8))
    (lines,) = reader.read_text([strip])
    assert texts(lines).replace(" ", "") == "EXIT7NORTH"
    for line in lines:
        x0, y0, x1, y1 = line.box
        assert 0 <= x0 < x1 <= 900 and 0 <= y0 < y1 <= 60
