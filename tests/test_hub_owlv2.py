"""OWLv2 detector backend, end to end on a tiny random checkpoint (no download).

The tiny model's scores are meaningless, so the tests check structure, the coordinate
frame and batching; where a check needs known model outputs, a forward hook overwrites
them, so the backend's own pre- and post-processing still run for real.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vpd.errors import BackendUnavailable, ConfigError, InvalidArgumentError
from vpd.testing.images import noise_image as noise
from vpd.tools.backends.owlv2 import OWLv2Detector, postprocess
from vpd.tools.types import Detection

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def tiny_clip_tokenizer() -> transformers.CLIPTokenizer:
    """A character-level CLIP BPE tokenizer (no merges): every letter is a token."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in "abcdefghijklmnopqrstuvwxyz":
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    return transformers.CLIPTokenizer(vocab=vocab, merges=[])


@pytest.fixture(scope="module")
def owl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = tiny_clip_tokenizer()
    text = {"vocab_size": len(tokenizer), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1}
    text |= {"num_attention_heads": 2, "max_position_embeddings": 16, "bos_token_id": 0, "eos_token_id": 1}
    text |= {"pad_token_id": 1}
    vision = {"image_size": 32, "patch_size": 8, "hidden_size": 16, "intermediate_size": 32}
    vision |= {"num_hidden_layers": 1, "num_attention_heads": 2}
    config = transformers.Owlv2Config(text_config=text, vision_config=vision, projection_dim=16)
    torch.manual_seed(0)
    model = transformers.Owlv2ForObjectDetection(config)
    processor = transformers.Owlv2Processor(
        image_processor=transformers.Owlv2ImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer
    )
    path = tmp_path_factory.mktemp("owlv2")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def detector(path: Path, **options: object) -> OWLv2Detector:
    return OWLv2Detector(str(path), device="cpu", **options)


def test_detects_per_image_in_the_image_frame(owl_dir: Path) -> None:
    images = [noise(40, 20, 1), noise(24, 36, 2)]
    queries = [["cat", "Red Mug"], ["dog"]]
    results = detector(owl_dir, score_threshold=0.0, nms_iou=1.0).detect(images, queries)
    assert len(results) == 2
    for image, image_queries, detections in zip(images, queries, results, strict=True):
        assert detections, "threshold 0 keeps every box inside the image"
        for det in detections:
            assert isinstance(det, Detection)
            assert det.label in image_queries
            x0, y0, x1, y1 = det.box
            assert 0 <= x0 < x1 <= image.width and 0 <= y0 < y1 <= image.height
            assert 0.0 <= det.score <= 1.0
        scores = [d.score for d in detections]
        assert scores == sorted(scores, reverse=True)


def test_batch_equals_single_calls(owl_dir: Path) -> None:
    images = [noise(40, 20, 1), noise(24, 36, 2), noise(30, 30, 3)]
    queries = [["cat", "red mug"], ["dog"], ["a b c d", "cat", "x"]]
    batched = detector(owl_dir, score_threshold=0.3, batch_size=3).detect(images, queries)
    singles = [
        detector(owl_dir, score_threshold=0.3, batch_size=1).detect([im], [q])[0]
        for im, q in zip(images, queries, strict=True)
    ]
    assert [[d.label for d in r] for r in batched] == [[d.label for d in r] for r in singles]
    for got, want in zip(batched, singles, strict=True):
        for a, b in zip(got, want, strict=True):
            assert a.box == pytest.approx(b.box, abs=1e-3)
            assert a.score == pytest.approx(b.score, abs=1e-4)


def force_outputs(
    backend: OWLv2Detector, logits: dict[tuple[int, int, int], float], boxes: dict[tuple[int, int], tuple]
):
    """Overwrite the model's outputs: every logit -10 except ``logits``; the given boxes."""
    model, _ = backend.load()

    def hook(module, args, output):
        output.logits[:] = -10.0
        for index, value in logits.items():
            output.logits[index] = value
        for index, box in boxes.items():
            output.pred_boxes[index] = torch.tensor(box)
        return output

    return model.register_forward_hook(hook)


def test_boxes_are_scaled_by_the_padded_square_and_clipped(owl_dir: Path) -> None:
    backend = detector(owl_dir, score_threshold=0.5)
    # Box 0: centred at (0.5, 0.25) of the padded 40x40 square, half its side, for query 1.
    # Box 1: inside the bottom padding (y > 20 px): must vanish after clipping.
    handle = force_outputs(
        backend,
        {(0, 0, 1): 10.0, (0, 1, 0): 10.0},
        {(0, 0): (0.5, 0.25, 0.5, 0.5), (0, 1): (0.5, 0.875, 0.2, 0.2)},
    )
    try:
        [detections] = backend.detect([noise(40, 20)], [["cat", "Red Mug"]])
    finally:
        handle.remove()
    assert len(detections) == 1
    det = detections[0]
    assert det.label == "Red Mug"
    # Scaling by (width, height) instead would give (10, 0, 30, 10).
    assert det.box == pytest.approx((10.0, 0.0, 30.0, 20.0), abs=1e-3)
    assert det.score == pytest.approx(1 / (1 + np.exp(-10.0)), abs=1e-4)


def test_padded_queries_never_produce_detections(owl_dir: Path) -> None:
    backend = detector(owl_dir, score_threshold=0.5)
    # Image 1 has one query; its second column is padding. Make the padding score high.
    handle = force_outputs(backend, {(1, 0, 1): 10.0, (0, 0, 0): 10.0}, {(0, 0): (0.5, 0.5, 0.4, 0.4)})
    try:
        results = backend.detect([noise(32, 32), noise(32, 32, 5)], [["cat", "dog"], ["mug"]])
    finally:
        handle.remove()
    assert [d.label for d in results[0]] == ["cat"]
    assert results[1] == []


def test_per_query_nms() -> None:
    logits = np.full((3, 2), -10.0)
    logits[0, 0], logits[1, 0], logits[2, 1] = 3.0, 2.0, 1.0
    boxes = np.array([[0.5, 0.5, 0.4, 0.4], [0.51, 0.5, 0.4, 0.4], [0.5, 0.5, 0.4, 0.4]])
    kept = postprocess(logits, boxes, width=100, height=100, score_threshold=0.1, nms_iou=0.3)
    # Box 1 overlaps box 0 with the same label and goes; box 2 has another label and stays.
    assert [label for _, _, label in kept] == [0, 1]
    kept_all = postprocess(logits, boxes, width=100, height=100, score_threshold=0.1, nms_iou=1.0)
    assert len(kept_all) == 3


def test_missing_model_is_unavailable(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    backend = detector(missing)
    assert not OWLv2Detector.check_available(str(missing))
    with pytest.raises(BackendUnavailable, match="no-such-model") as info:
        backend.detect([noise(20, 20)], [["cat"]])
    assert info.value.backend == "owlv2" and info.value.capability == "detect"


def test_available_when_the_checkpoint_is_on_disk(owl_dir: Path) -> None:
    assert OWLv2Detector.check_available(str(owl_dir))


def test_empty_inputs_do_not_load_the_model(tmp_path: Path) -> None:
    backend = detector(tmp_path / "no-such-model")
    assert backend.detect([], []) == []
    assert backend.detect([noise(8, 8), noise(8, 8)], [[], []]) == [[], []]
    assert len(backend.models) == 0


@pytest.mark.parametrize("queries", [[[""]], [["cat", "   "]], [[None]], ["cat"]])
def test_bad_queries_are_rejected_before_loading(tmp_path: Path, queries: list) -> None:
    with pytest.raises(InvalidArgumentError):
        detector(tmp_path / "no-such-model").detect([noise(8, 8)], queries)


def test_length_mismatch_and_bad_options(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="1 image"):
        detector(tmp_path).detect([noise(8, 8)], [["a"], ["b"]])
    with pytest.raises(ConfigError):
        detector(tmp_path, batch_size=0)
    with pytest.raises(ConfigError):
        detector(tmp_path, score_threshold=2.0)
    with pytest.raises(ConfigError):
        detector(tmp_path, threshold=0.2)


def test_module_import_is_light() -> None:
    code = (
        "import sys, vpd.tools.backends.owlv2; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.hub
def test_real_checkpoint_finds_the_cup() -> None:
    skimage_data = pytest.importorskip("skimage.data")
    image = Image.fromarray(skimage_data.coffee())  # 600 x 400, a cup on a saucer in the middle
    [detections] = OWLv2Detector().detect([image], [["cup", "giraffe"]])
    cups = [d for d in detections if d.label == "cup"]
    assert cups
    x0, y0, x1, y1 = max(cups, key=lambda d: d.score).box
    assert 150 < (x0 + x1) / 2 < 450 and 50 < (y0 + y1) / 2 < 300
