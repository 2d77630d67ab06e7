"""Grounding DINO detector backend, end to end on a tiny random checkpoint (no download).

The tiny tokenizer puts ``[CLS]``, ``[SEP]``, ``"."`` and ``"?"`` at BERT's ids, which the
model hard-codes to build its per-phrase attention masks, so prompts are read as the real
model reads them. Where a check needs known outputs, a forward hook overwrites them.
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
from vpd.tools.backend import ModelStore
from vpd.tools.backends.grounding_dino import GroundingDinoDetector, build_prompt, postprocess, query_tokens
from vpd.tools.types import Detection

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

WORDS = ["a", "cat", "dog", "red", "mug", "remote", "control", "person", "car", "tree", "cup", "zebra", "bird"]
MAX_TEXT_LEN = 16


def tiny_bert_vocab(path: Path) -> Path:
    """A vocab.txt with BERT's ids for the special tokens and separators (gaps filled with unused)."""
    fixed = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 1012: ".", 1029: "?"}
    fixed |= {2000 + i: word for i, word in enumerate(WORDS)}
    lines = [fixed.get(i, f"[unused{i}]") for i in range(max(fixed) + 1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def gdino_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("grounding_dino")
    tokenizer = transformers.BertTokenizer(vocab=str(tiny_bert_vocab(path / "vocab.txt")))
    swin = transformers.SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=8,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=2,
        out_features=["stage2", "stage3", "stage4"],
    )
    bert = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    config = transformers.GroundingDinoConfig(
        backbone_config=swin,
        text_config=bert,
        d_model=32,  # GroupNorm(32, d_model) needs a multiple of 32
        encoder_layers=1,
        decoder_layers=2,  # the box heads of layers > 0 are tied to layer 0
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_n_points=1,
        decoder_n_points=1,
        num_queries=10,
        max_text_len=MAX_TEXT_LEN,
    )
    torch.manual_seed(0)
    model = transformers.GroundingDinoForObjectDetection(config).eval()
    image_processor = transformers.GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 128})
    processor = transformers.GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def detector(path: Path, **options: object) -> GroundingDinoDetector:
    return GroundingDinoDetector(str(path), device="cpu", **options)


def token_id(path: Path, word: str) -> int:
    return (path / "vocab.txt").read_text(encoding="utf-8").splitlines().index(word)


def test_prompt_and_token_spans() -> None:
    text, spans = build_prompt(["cat", "red mug"])
    assert text == "cat. red mug."
    assert [text[a:b] for a, b in spans] == ["cat", "red mug"]
    # [CLS] cat . red mug . [SEP] [PAD]
    offsets = [(0, 0), (0, 3), (3, 4), (5, 8), (9, 12), (12, 13), (0, 0), (0, 0)]
    assert query_tokens(offsets, spans, limit=8) == [[1], [3, 4]]
    assert query_tokens(offsets, spans, limit=4) == [[1], [3]]


def test_postprocess_labels_by_query_tokens_and_ignores_separators() -> None:
    logits = np.full((3, 8), -10.0)
    logits[0, 4] = 5.0  # "mug" token -> query 1
    logits[1, 2] = 5.0  # "." separator only -> no query -> dropped
    logits[2, 1] = 0.0  # "cat" at p=0.5 -> kept at threshold 0.35
    boxes = np.array([[0.5, 0.5, 0.5, 0.5]] * 3)
    kept = postprocess(logits, boxes, [[1], [3, 4]], width=40, height=20, box_threshold=0.35, text_threshold=0.25)
    assert [(label, round(score, 3)) for _, score, label in kept] == [(1, round(1 / (1 + np.exp(-5.0)), 3)), (0, 0.5)]
    assert kept[0][0] == pytest.approx((10.0, 5.0, 30.0, 15.0))  # scaled by (width, height)


def test_detects_per_image_in_the_image_frame(gdino_dir: Path) -> None:
    images = [noise(40, 20, 1), noise(24, 36, 2)]
    queries = [["cat", "Red Mug"], ["dog"]]
    results = detector(gdino_dir, box_threshold=0.0, text_threshold=0.0).detect(images, queries)
    assert len(results) == 2
    for image, image_queries, detections in zip(images, queries, results, strict=True):
        assert len(detections) == 10  # every box query of the tiny model survives threshold 0
        for det in detections:
            assert isinstance(det, Detection)
            assert det.label in image_queries
            x0, y0, x1, y1 = det.box
            assert 0 <= x0 < x1 <= image.width and 0 <= y0 < y1 <= image.height
        assert [d.score for d in detections] == sorted((d.score for d in detections), reverse=True)


def test_batch_equals_single_calls(gdino_dir: Path) -> None:
    # Two image shapes and prompts of different lengths in one call.
    images = [noise(40, 20, 1), noise(24, 36, 2), noise(40, 20, 3)]
    queries = [["cat", "red mug"], ["dog"], ["remote control", "a person", "tree"]]
    store = ModelStore()
    options = {"box_threshold": 0.0, "text_threshold": 0.0, "models": store}
    batched = detector(gdino_dir, batch_size=3, **options).detect(images, queries)
    singles = [
        detector(gdino_dir, batch_size=1, **options).detect([im], [q])[0] for im, q in zip(images, queries, strict=True)
    ]
    for got, want in zip(batched, singles, strict=True):
        assert [d.label for d in got] == [d.label for d in want]
        for a, b in zip(got, want, strict=True):
            assert a.box == pytest.approx(b.box, abs=1e-3)
            assert a.score == pytest.approx(b.score, abs=1e-4)


def test_forced_token_maps_to_the_callers_spelling(gdino_dir: Path) -> None:
    backend = detector(gdino_dir)
    model, _ = backend.load()
    mug, dot = token_id(gdino_dir, "mug"), token_id(gdino_dir, ".")

    def hook(module, args, kwargs, output):
        ids = kwargs["input_ids"]
        output.logits[:] = -10.0
        output.logits[0, 0, : ids.shape[1]][ids[0] == mug] = 10.0  # box 0 -> "mug"
        output.logits[0, 1, : ids.shape[1]][ids[0] == dot] = 10.0  # box 1 -> only the separator
        output.pred_boxes[0, 0] = torch.tensor([0.5, 0.25, 0.5, 0.5])
        return output

    handle = model.register_forward_hook(hook, with_kwargs=True)
    try:
        [detections] = backend.detect([noise(40, 20)], [["cat", "Red  Mug"]])
    finally:
        handle.remove()
    assert [d.label for d in detections] == ["Red  Mug"]
    assert detections[0].box == pytest.approx((10.0, 0.0, 30.0, 10.0), abs=1e-3)


def test_long_query_lists_are_split_over_prompts(gdino_dir: Path) -> None:
    backend = detector(gdino_dir, batch_size=8)
    model, _ = backend.load()
    zebra = token_id(gdino_dir, "zebra")
    seen: list[tuple[int, int]] = []

    def hook(module, args, kwargs, output):
        ids = kwargs["input_ids"]
        seen.append(tuple(ids.shape))
        output.logits[:] = -10.0
        for row in range(ids.shape[0]):
            output.logits[row, 0, : ids.shape[1]][ids[row] == zebra] = 10.0
        return output

    queries = ["cat", "dog", "red", "mug", "person", "car", "tree", "cup", "zebra"]  # 9 x 2 + 2 tokens > 16
    handle = model.register_forward_hook(hook, with_kwargs=True)
    try:
        results = backend.detect([noise(30, 30), noise(20, 20)], [queries, ["bird"]])
    finally:
        handle.remove()
    assert seen[0][0] == 3  # two prompts for image 0, one for image 1, one batch
    assert all(width <= MAX_TEXT_LEN for _, width in seen)
    assert [d.label for d in results[0]] == ["zebra"]
    assert results[1] == []


def test_missing_model_is_unavailable(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    assert not GroundingDinoDetector.check_available(str(missing))
    with pytest.raises(BackendUnavailable, match="no-such-model"):
        detector(missing).detect([noise(20, 20)], [["cat"]])


def test_empty_inputs_do_not_load_the_model(tmp_path: Path) -> None:
    backend = detector(tmp_path / "no-such-model")
    assert backend.detect([], []) == []
    assert backend.detect([noise(8, 8)], [[]]) == [[]]
    assert len(backend.models) == 0


@pytest.mark.parametrize("queries", [[[""]], [["cat", " "]], [["..."]], [[3]], ["cat"]])
def test_bad_queries_are_rejected_before_loading(tmp_path: Path, queries: list) -> None:
    with pytest.raises(InvalidArgumentError):
        detector(tmp_path / "no-such-model").detect([noise(8, 8)], queries)


def test_too_long_query_and_bad_options(gdino_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="tokens long"):
        detector(gdino_dir).detect([noise(8, 8)], [[" ".join(["cat"] * 20)]])
    with pytest.raises(ConfigError):
        detector(tmp_path, box_threshold=1.5)
    with pytest.raises(ConfigError):
        detector(tmp_path, batch_size=-1)


def test_module_import_is_light() -> None:
    code = "import sys, vpd.tools.backends.grounding_dino; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.hub
def test_real_checkpoint_finds_the_cat() -> None:
    skimage_data = pytest.importorskip("skimage.data")
    image = Image.fromarray(skimage_data.chelsea())  # 451 x 300, a cat's face filling the frame
    [detections] = GroundingDinoDetector().detect([image], [["Cat", "giraffe"]])
    assert detections and detections[0].label == "Cat"
    x0, y0, x1, y1 = detections[0].box
    assert (x1 - x0) * (y1 - y0) > 0.3 * image.width * image.height
