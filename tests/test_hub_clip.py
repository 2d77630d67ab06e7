"""CLIP and SigLIP matcher backends, end to end on tiny random checkpoints (no download).

The backend encodes images and distinct texts separately; the tests check that its
logits equal the model's own ``logits_per_image`` from a joint forward pass, with the
tokenizer settings each model was trained with (SigLIP: 64 tokens, no attention mask).
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vpd.errors import BackendUnavailable, ConfigError, InvalidArgumentError
from vpd.testing.images import noise_image as noise
from vpd.tools.backends.clip import ClipMatcher, SiglipMatcher

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TEXTS = [["a cat", "a dog", "red mug"], ["red mug"], ["a dog", "a photo of a cat"]]


def tiny_tower(**extra: object) -> dict:
    return {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2} | extra


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in "abcdefghijklmnopqrstuvwxyz":
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    tokenizer = transformers.CLIPTokenizer(vocab=vocab, merges=[])
    text = tiny_tower(vocab_size=len(vocab), max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    config = transformers.CLIPConfig(
        text_config=text, vision_config=tiny_tower(image_size=32, patch_size=8), projection_dim=16
    )
    torch.manual_seed(0)
    model = transformers.CLIPModel(config)
    image_processor = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    path = tmp_path_factory.mktemp("clip")
    model.save_pretrained(path)
    transformers.CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spm = pytest.importorskip("sentencepiece")
    path = tmp_path_factory.mktemp("siglip")
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["a photo of a cat", "a dog", "red mug", "person"] * 10),
        model_writer=buffer,
        vocab_size=24,
        model_type="char",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        minloglevel=2,
    )
    (path / "spiece.model").write_bytes(buffer.getvalue())
    tokenizer = transformers.SiglipTokenizer(str(path / "spiece.model"))
    text = tiny_tower(vocab_size=len(tokenizer), max_position_embeddings=64)
    config = transformers.SiglipConfig(text_config=text, vision_config=tiny_tower(image_size=32, patch_size=8))
    torch.manual_seed(0)
    model = transformers.SiglipModel(config)
    with torch.no_grad():  # non-trivial scale and bias, so the test sees both applied
        model.logit_scale.fill_(np.log(10.0))
        model.logit_bias.fill_(-2.0)
    image_processor = transformers.SiglipImageProcessor(size={"height": 32, "width": 32})
    model.save_pretrained(path)
    transformers.SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path


IMAGES = [noise(40, 20, 1), noise(24, 36, 2), noise(32, 32, 3)]


def reference(path: Path, model_class: type, text_kwargs: dict, with_mask: bool) -> list[list[float]]:
    """logits_per_image of one joint forward pass per image, straight from transformers."""
    processor = transformers.AutoProcessor.from_pretrained(path)
    model = model_class.from_pretrained(path).eval()
    out = []
    for image, texts in zip(IMAGES, TEXTS, strict=True):
        inputs = processor(images=[image], text=texts, return_tensors="pt", **text_kwargs)
        if not with_mask:
            inputs.pop("attention_mask", None)
        with torch.no_grad():
            out.append(model(**inputs).logits_per_image[0].tolist())
    return out


def test_clip_scores_equal_the_models_logits(clip_dir: Path) -> None:
    got = ClipMatcher(str(clip_dir), device="cpu", batch_size=2).score(IMAGES, TEXTS)
    want = reference(clip_dir, transformers.CLIPModel, {"padding": True}, with_mask=True)
    assert [len(r) for r in got] == [3, 1, 2]
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=1e-4)


def test_siglip_scores_equal_the_models_logits(siglip_dir: Path) -> None:
    got = SiglipMatcher(str(siglip_dir), device="cpu", batch_size=2).score(IMAGES, TEXTS)
    want = reference(siglip_dir, transformers.SiglipModel, {"padding": "max_length", "max_length": 64}, False)
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=1e-4)
    # The bias (-2) is applied: with tiny random embeddings |cos| is small, so logits sit near it.
    assert all(-12.0 < v < 8.0 for row in got for v in row)


def test_each_text_is_encoded_once(clip_dir: Path) -> None:
    backend = ClipMatcher(str(clip_dir), device="cpu")
    model, _ = backend.load()
    calls: list[int] = []
    handle = model.text_model.register_forward_pre_hook(
        lambda m, args, kwargs: calls.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        backend.score(IMAGES, TEXTS)
    finally:
        handle.remove()
    assert calls == [4]  # "a cat", "a dog", "red mug", "a photo of a cat"


def test_images_without_texts_and_empty_batches(tmp_path: Path) -> None:
    backend = ClipMatcher(str(tmp_path / "no-such-model"))
    assert backend.score([], []) == []
    assert backend.score(IMAGES[:2], [[], []]) == [[], []]
    assert len(backend.models) == 0


@pytest.mark.parametrize("texts", [[[""]], [["a cat", "  "]], [[None]], ["a cat"]])
def test_bad_texts_are_rejected_before_loading(tmp_path: Path, texts: list) -> None:
    with pytest.raises(InvalidArgumentError):
        SiglipMatcher(str(tmp_path / "no-such-model")).score(IMAGES[:1], texts)


def test_missing_model_and_bad_options(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    for cls in (ClipMatcher, SiglipMatcher):
        assert not cls.check_available(str(missing))
        # Without sentencepiece, SigLIP says so before it looks for the model.
        with pytest.raises(BackendUnavailable, match="no-such-model|sentencepiece"):
            cls(str(missing)).score(IMAGES[:1], [["a cat"]])
        with pytest.raises(ConfigError):
            cls(str(missing), batch_size=0)
    with pytest.raises(InvalidArgumentError):
        ClipMatcher(str(missing)).score(IMAGES[:1], [["a"], ["b"]])


def test_module_import_is_light() -> None:
    code = "import sys, vpd.tools.backends.clip; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.hub
@pytest.mark.parametrize("cls", [ClipMatcher, SiglipMatcher])
def test_real_checkpoint_prefers_the_cat(cls: type) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    if cls is SiglipMatcher:
        pytest.importorskip("sentencepiece")
    image = Image.fromarray(skimage_data.chelsea())
    [scores] = cls().score([image], [["a photo of a dog", "a photo of a cat", "a photo of a car"]])
    assert int(np.argmax(scores)) == 1
