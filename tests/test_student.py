"""The distilled student: trained on a tiny random LLaVA until it answers, then asked."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from vpd.distill.training import TrainConfig, train
from vpd.errors import ConfigError, InvalidArgumentError

if os.environ.get("CI"):
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers
else:
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("peft")

from vpd.distill.student import Student
from vpd.testing.tiny_models import tiny_vlm

COLORS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30), "white": (250, 250, 250)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny LLaVA overfitted on four coloured images: it should say each one's colour."""
    root = tmp_path_factory.mktemp("student")
    rows: list[dict[str, Any]] = []
    for name, rgb in COLORS.items():
        Image.new("RGB", (40, 30), rgb).save(root / f"{name}.png")
        rationale = f"The car at [0.100, 0.200, 0.500, 0.600] is {name}. So the answer is {name}."
        rows.append(
            {
                "id": name,
                "image": f"{name}.png",
                "question": "What color is the car?",
                "answer": name,
                "rationale": rationale,
            }
        )
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = tiny_vlm(root / "base", "llava")
    config = TrainConfig(
        max_steps=80,
        learning_rate=1e-2,
        modules_to_save=("lm_head",),
        eval_fraction=0,
        warmup_ratio=0.0,
        lora_dropout=0.0,
    )
    result = train(root, base, root / "adapter", config, progress=False)
    return {"root": root, "base": base, "adapter": result.path}


def test_the_student_answers_and_explains(trained: dict[str, Path]) -> None:
    student = Student.load(adapter=trained["adapter"])
    assert student.base == str(trained["base"])
    images = [trained["root"] / f"{name}.png" for name in COLORS]
    answers = student.answer(images, ["What color is the car?"] * 4)
    assert [a.answer for a in answers] == list(COLORS)
    explained = student.answer(images, ["What color is the car?"] * 4, explain=True)
    assert [a.answer for a in explained] == list(COLORS)
    assert all(a.rationale is not None and "[0.100, 0.200, 0.500, 0.600]" in a.rationale for a in explained)
    # A model whose generation config names another end-of-sequence token still stops at the
    # end of turn the labels taught (ChatML's <|im_end|>), not at the token limit.
    student.model.generation_config.eos_token_id = student.processor.tokenizer.pad_token_id
    assert [a.answer for a in student.answer(images, ["What color is the car?"] * 4)] == list(COLORS)
    one = student.ask(images[1], "What color is the car?")
    assert one.answer == "blue" and str(one) == "blue" and one.tokens > 0
    # Batches of any size say the same (left padding), and one image can serve many questions.
    assert [a.answer for a in student.answer(images, ["What color is the car?"] * 4, batch_size=3)] == list(COLORS)
    assert len(student.answer([images[0]], ["What color is the car?", "Is it red?"])) == 2


def test_a_merged_student_says_the_same_and_saves_as_a_plain_model(trained: dict[str, Path], tmp_path: Path) -> None:
    images = [trained["root"] / f"{name}.png" for name in COLORS]
    plain = Student.load(adapter=trained["adapter"]).answer(images, ["What color is the car?"] * 4)
    merged = Student.load(adapter=trained["adapter"], merge=True)
    assert [a.text for a in merged.answer(images, ["What color is the car?"] * 4)] == [a.text for a in plain]
    folder = merged.save_merged(tmp_path / "merged")
    reloaded = Student.load(base=folder)
    assert [a.text for a in reloaded.answer(images, ["What color is the car?"] * 4)] == [a.text for a in plain]


def test_the_base_alone_is_a_baseline_that_did_not_learn(trained: dict[str, Path]) -> None:
    base = Student.load(base=trained["base"])
    assert base.adapter is None
    images = [trained["root"] / f"{name}.png" for name in COLORS]
    assert [a.answer for a in base.answer(images, ["What color is the car?"] * 4)] != list(COLORS)


def test_bad_loads_and_questions_are_refused(trained: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs an adapter folder"):
        Student.load()
    with pytest.raises(ConfigError, match="not an adapter folder"):
        Student.load(adapter=tmp_path)
    student = Student.load(adapter=trained["adapter"])
    with pytest.raises(InvalidArgumentError, match="3 images for 2 questions"):
        student.answer([trained["root"] / "red.png"] * 3, ["a?", "b?"])
    with pytest.raises(InvalidArgumentError, match="non-empty string"):
        student.answer([trained["root"] / "red.png"], [" "])
    with pytest.raises(InvalidArgumentError, match="use ask"):
        student.answer([trained["root"] / "red.png"], "What?")  # type: ignore[arg-type]
