"""BLIP VQA backend, end to end on a tiny random checkpoint (no download)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from vpd.errors import BackendUnavailable, ConfigError, InvalidArgumentError
from vpd.testing.images import noise_image as noise
from vpd.tools.backend import ModelStore
from vpd.tools.backends.blip import BlipVQA

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

WORDS = ["what", "is", "this", "a", "cat", "dog", "red", "mug", "color", "how", "many", "yes", "no", "two", "RED"]


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("blip")
    # BLIP's decoder starts from [DEC] (its bos token) and stops at [SEP].
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "?", *WORDS]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = transformers.BertTokenizer(str(path / "vocab.txt"), bos_token="[DEC]", do_lower_case=False)
    text = {"vocab_size": len(vocab), "hidden_size": 16, "encoder_hidden_size": 16, "intermediate_size": 32}
    text |= {"num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 32, "initializer_range": 0.5}
    text |= {"bos_token_id": 5, "sep_token_id": 3, "pad_token_id": 0, "eos_token_id": 3}
    vision = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    vision |= {"image_size": 32, "patch_size": 8, "initializer_range": 0.5}
    config = transformers.BlipConfig(
        text_config=text, vision_config=vision, projection_dim=16, image_text_hidden_size=16
    )
    torch.manual_seed(0)
    model = transformers.BlipForQuestionAnswering(config)
    image_processor = transformers.BlipImageProcessor(size={"height": 32, "width": 32})
    model.save_pretrained(path)
    transformers.BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path


IMAGES = [noise(40, 20, 1), noise(24, 36, 2), noise(32, 32, 3)]
QUESTIONS = ["what is this?", "how many red cat dog mug is this a cat?", "  what color?  "]


def vqa(path: Path, models: ModelStore | None = None, **options: object) -> BlipVQA:
    return BlipVQA(str(path), device="cpu", models=models, **options)


def test_answers_are_short_clean_strings(blip_dir: Path) -> None:
    answers = vqa(blip_dir, max_new_tokens=4).answer(IMAGES, QUESTIONS)
    assert len(answers) == 3
    for answer in answers:
        assert isinstance(answer, str)
        assert answer == answer.strip().lower()
        assert "[" not in answer  # no [DEC]/[SEP]/[PAD]
        assert len(answer.split()) <= 4


def test_batch_equals_single_calls(blip_dir: Path) -> None:
    store = ModelStore()
    batched = vqa(blip_dir, batch_size=3, models=store).answer(IMAGES, QUESTIONS)
    singles = [
        vqa(blip_dir, batch_size=1, models=store).answer([im], [q])[0] for im, q in zip(IMAGES, QUESTIONS, strict=True)
    ]
    assert batched == singles
    assert len(set(batched)) > 1, "the tiny model should answer differently per input, or this test proves little"


def test_decoding_lower_cases_and_respects_max_new_tokens(blip_dir: Path) -> None:
    backend = vqa(blip_dir, max_new_tokens=3)
    model, processor = backend.load()
    red = processor.tokenizer.convert_tokens_to_ids("RED")

    def hook(module, args, output):
        output[..., :] = -10.0
        output[..., red] = 10.0  # always say "RED"
        return output

    handle = model.text_decoder.cls.register_forward_hook(hook)
    try:
        assert backend.answer(IMAGES[:2], QUESTIONS[:2]) == ["red red red", "red red red"]
    finally:
        handle.remove()


def test_missing_model_empty_batch_and_bad_input(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    backend = vqa(missing)
    assert backend.answer([], []) == []
    assert len(backend.models) == 0
    with pytest.raises(InvalidArgumentError):
        backend.answer(IMAGES[:1], ["   "])
    with pytest.raises(InvalidArgumentError):
        backend.answer(IMAGES[:1], [None])
    with pytest.raises(InvalidArgumentError):
        backend.answer(IMAGES[:2], ["what?"])
    assert not BlipVQA.check_available(str(missing))
    with pytest.raises(BackendUnavailable, match="no-such-model"):
        backend.answer(IMAGES[:1], ["what is this?"])
    with pytest.raises(ConfigError):
        vqa(missing, max_new_tokens=0)


def test_module_import_is_light() -> None:
    code = "import sys, vpd.tools.backends.blip; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.hub
def test_real_checkpoint_names_the_animal() -> None:
    skimage_data = pytest.importorskip("skimage.data")
    image = Image.fromarray(skimage_data.chelsea())
    [answer] = BlipVQA().answer([image], ["What animal is this?"])
    assert answer in {"cat", "kitten", "tabby", "tabby cat"}
