"""The distillation trainer on tiny random vision-language models built offline (vpd.testing)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from vpd.distill.training import (
    ANSWER_INSTRUCTION,
    EXPLAIN_INSTRUCTION,
    TrainConfig,
    VisionChatCollator,
    load_rows,
    split_rows,
    tasks_of,
    train,
)
from vpd.errors import ConfigError, DatasetError, InvalidArgumentError

if os.environ.get("CI"):  # CI installs the train extra: a missing package is a failure there
    import peft  # noqa: F401
    import torch
    import transformers
else:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("peft")

from vpd.distill.training.loss import task_losses, task_token_counts
from vpd.testing.tiny_models import tiny_causal_lm, tiny_vlm

COLORS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30), "white": (250, 250, 250)}


def _rows(folder: Path, rationales: bool = True) -> list[dict[str, Any]]:
    rows = []
    for i, (name, rgb) in enumerate(COLORS.items()):
        Image.new("RGB", (40, 30), rgb).save(folder / f"{name}.png")
        rationale = f"The car at [0.100, 0.200, 0.500, 0.600] is {name}. So the answer is {name}."
        rows.append(
            {
                "id": f"color{i}",
                "image": f"{name}.png",
                "question": "What color is the car?",
                "answer": name,
                "rationale": rationale if rationales else None,
            }
        )
        rows.append({"id": f"count{i}", "image": f"{name}.png", "question": "How many cats?", "answer": str(i + 1)})
    return rows


def _write(folder: Path, rows: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {arch: tiny_vlm(root / arch, arch) for arch in ("llava", "idefics3")}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return _write(folder, _rows(folder))


# ---------------------------------------------------------------- rows and tasks


def test_rows_become_a_label_task_and_a_rationale_task_when_there_is_a_rationale(data: Path) -> None:
    rows = load_rows(data)
    assert rows[0].image == data / "red.png" and rows[0].source == "train.jsonl:1"
    tasks = tasks_of(rows)
    assert [t.kind for t in tasks[:3]] == ["label", "rationale", "label"]
    assert tasks[0].prompt == f"What color is the car?\n{ANSWER_INSTRUCTION}" and tasks[0].target == "red"
    assert tasks[1].prompt == f"What color is the car?\n{EXPLAIN_INSTRUCTION}" and tasks[1].target.endswith("is red.")
    assert len(tasks) == 12  # 8 label tasks, 4 rationale tasks
    assert all(t.kind == "label" for t in tasks_of(rows, rationales=False))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image": "missing.png"}, r"train.jsonl:1 \(id 'color0'\): the image .*missing.png does not exist"),
        ({"question": ""}, "train.jsonl:1: the row has no question"),
        ({"rationale": ""}, "rationale must be a non-empty string or null"),
        ({"id": "count0"}, "Two training rows have id 'count0' .*train.jsonl:1 and train.jsonl:2"),
    ],
)
def test_bad_rows_are_named_by_line(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    rows = _rows(tmp_path)
    rows[0].update(change)
    with pytest.raises(DatasetError, match=message):
        load_rows(_write(tmp_path, rows))


def test_no_training_set_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="vpd export"):
        load_rows(tmp_path / "nowhere")
    (tmp_path / "train.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match="has no rows"):
        load_rows(tmp_path)


def test_the_held_out_split_keeps_each_image_on_one_side(data: Path) -> None:
    rows = load_rows(data)
    train_rows, held = split_rows(rows, 0.25, seed=1)
    assert len(held) == 2 and len({r.image for r in held}) == 1
    assert not {r.image for r in held} & {r.image for r in train_rows}
    assert split_rows(rows, 0.0) == (rows, [])
    assert split_rows(rows[:2], 0.5) == (rows[:2], [])  # one image: nothing to hold out


@pytest.mark.parametrize(
    "options",
    [
        {"lora_rank": 0},
        {"learning_rate": -1.0},
        {"warmup_ratio": 1.0},
        {"precision": "fp8"},
        {"modules_to_save": "lm_head"},
    ],
)
def test_bad_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError, match="TrainConfig"):
        TrainConfig(**options)


def test_settings_round_trip_through_json() -> None:
    config = TrainConfig(modules_to_save=["lm_head"], target_modules=["q_proj", "v_proj"], max_steps=5)  # type: ignore[arg-type]
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(InvalidArgumentError, match="Unknown TrainConfig fields"):
        TrainConfig.from_dict({"lora_rnak": 4})


# ---------------------------------------------------------------- the labels


@pytest.mark.parametrize("arch", ["llava", "idefics3"])
def test_labels_cover_exactly_the_reply_and_its_end_of_turn(models: dict[str, Path], data: Path, arch: str) -> None:
    processor = transformers.AutoProcessor.from_pretrained(models[arch])
    tokenizer = processor.tokenizer
    tasks = tasks_of(load_rows(data))[:3]  # red's label and rationale tasks, then a counting label task
    batch = VisionChatCollator(processor)(tasks)
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    for i, task in enumerate(tasks):
        ids = batch["input_ids"][i].tolist()
        labels = batch["labels"][i].tolist()
        length = int(batch["attention_mask"][i].sum())
        expected = tokenizer(task.target + "<|im_end|>", add_special_tokens=False)["input_ids"]
        kept = [n for n, label in enumerate(labels) if label != -100]
        # One run of positions, ending just before the template's trailing newline.
        assert kept == list(range(kept[0], kept[0] + len(expected)))
        assert [ids[n] for n in kept] == expected == [labels[n] for n in kept]
        assert kept[-1] == length - 2 and tokenizer.decode(ids[length - 1 : length]) == "\n"
        # The prompt (image tokens included) and the padding are masked.
        assert image_token in ids[: kept[0]]
        assert all(label == -100 for label in labels[length:])
        assert tokenizer.decode(ids[: kept[0]]).endswith("<|im_start|>assistant\n")
    assert batch["task"].tolist() == [0, 1, 0]
    assert tokenizer.padding_side == "right"
    # Left padding (some processors default to it) gives the same labels, moved with the tokens.
    from vpd.distill.training.data import conversation_texts, reply_labels

    lengths = batch["attention_mask"].sum(dim=1)
    shifts = [int(batch["input_ids"].shape[1] - n) for n in lengths]
    left_ids = torch.stack([torch.roll(row, s) for row, s in zip(batch["input_ids"], shifts, strict=True)])
    left_mask = torch.stack([torch.roll(row, s) for row, s in zip(batch["attention_mask"], shifts, strict=True)])
    texts = [conversation_texts(processor, t.prompt, t.target) for t in tasks]
    left = reply_labels(tokenizer, left_ids, left_mask, [p for p, _ in texts], [w for _, w in texts], ["x"] * 3)
    expected = torch.stack([torch.roll(row, s) for row, s in zip(batch["labels"], shifts, strict=True)])
    assert torch.equal(left, expected)


def test_the_loss_is_split_by_task_over_reply_tokens_only() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 7)
    labels = torch.tensor([[-100, -100, 2, 3, -100], [-100, 1, 4, 5, 6], [-100, -100, -100, 6, -100]])
    task = torch.tensor([0, 1, 0])
    losses = task_losses(logits, labels, task)

    def ce(row: int, positions: list[int]) -> list[float]:
        log_probs = torch.log_softmax(logits[row], dim=-1)
        return [-float(log_probs[p - 1, labels[row, p]]) for p in positions]

    label_tokens = ce(0, [2, 3]) + ce(2, [3])
    rationale_tokens = ce(1, [1, 2, 3, 4])
    assert losses["label"][1] == 3 and losses["rationale"][1] == 4
    assert math.isclose(float(losses["label"][0]), sum(label_tokens), rel_tol=1e-5)
    assert math.isclose(float(losses["rationale"][0]), sum(rationale_tokens), rel_tol=1e-5)
    assert task_token_counts([{"labels": labels, "task": task}] * 2) == [6, 8]
    only_labels = task_losses(logits, labels, torch.tensor([0, 0, 0]))
    assert only_labels["rationale"][1] == 0 and float(only_labels["rationale"][0]) == 0.0


def test_the_trainer_weighs_the_rationale_loss_by_lambda(models: dict[str, Path], data: Path, tmp_path: Path) -> None:
    from vpd.distill.training.loss import DistillationTrainer

    processor = transformers.AutoProcessor.from_pretrained(models["llava"])
    model = transformers.AutoModelForImageTextToText.from_pretrained(models["llava"]).eval()
    batch = VisionChatCollator(processor)(tasks_of(load_rows(data))[:3])
    arguments = transformers.TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    trainer = DistillationTrainer(model=model, args=arguments, rationale_weight=0.25)
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch)
        logits = model(**{k: v for k, v in batch.items() if k not in ("labels", "task")}).logits
    parts = task_losses(logits, batch["labels"], batch["task"])
    (label_sum, label_count), (rationale_sum, rationale_count) = parts["label"], parts["rationale"]
    expected = float(label_sum) / label_count + 0.25 * float(rationale_sum) / rationale_count
    assert math.isclose(float(loss), expected, rel_tol=1e-5)
    assert "labels" in batch and "task" in batch  # the caller's batch is left as it was


# ---------------------------------------------------------------- training


def test_gradient_accumulation_takes_the_same_step_as_one_big_batch(
    models: dict[str, Path], data: Path, tmp_path: Path
) -> None:
    """Each task's loss is a mean over the step's tokens, not a mean of per-batch means."""
    from safetensors.torch import load_file

    def trained(batch_size: int, accumulation: int, out: str) -> dict[str, torch.Tensor]:
        config = TrainConfig(
            max_steps=1, batch_size=batch_size, gradient_accumulation=accumulation, eval_fraction=0,
            lora_dropout=0.0, learning_rate=1e-2, warmup_ratio=0.0, logging_steps=1, precision="fp32",
        )  # fmt: skip
        train(data, models["llava"], tmp_path / out, config, progress=False)
        return load_file(tmp_path / out / "adapter_model.safetensors")

    # 8 rows, 4 of them with a rationale: one step over 4 rows, in one batch or in four.
    whole, accumulated = trained(4, 1, "whole"), trained(1, 4, "accumulated")
    assert whole.keys() == accumulated.keys()
    for name, value in whole.items():
        torch.testing.assert_close(accumulated[name], value, rtol=1e-3, atol=1e-5, msg=name)


_JOB = """
import sys
from vpd.distill.training import TrainConfig, train
config = TrainConfig(max_steps=1, batch_size=int(sys.argv[1]), eval_fraction=0, lora_dropout=0.0,
                     learning_rate=1e-2, warmup_ratio=0.0, logging_steps=1, precision="fp32")
train(sys.argv[2], sys.argv[3], sys.argv[4], config, progress=False)
"""


@pytest.mark.slow
def test_two_processes_take_the_same_step_as_one(models: dict[str, Path], data: Path, tmp_path: Path) -> None:
    """DDP on a CPU (``torchrun``): token counts and logged losses are summed over the processes."""
    from safetensors.torch import load_file

    job = tmp_path / "job.py"
    job.write_text(textwrap.dedent(_JOB))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    runs = {"one": [sys.executable, str(job), "8"], "two": [*torchrun, str(job), "4"]}  # all 8 rows in one step
    for name, command in runs.items():
        done = subprocess.run(
            [*command, str(data), str(models["llava"]), str(tmp_path / name)],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = (load_file(tmp_path / name / "adapter_model.safetensors") for name in runs)
    for key, value in one.items():
        torch.testing.assert_close(two[key], value, rtol=1e-3, atol=1e-5, msg=key)
    logged = [json.loads((tmp_path / name / "vpd_train.json").read_text())["history"][0] for name in runs]
    for key in ("loss", "loss_label", "loss_rationale"):
        assert logged[0][key] == pytest.approx(logged[1][key], rel=1e-4), key


# ---------------------------------------------------------------- training


def _losses(history: Any, key: str) -> list[float]:
    return [entry[key] for entry in history if key in entry and "eval_loss" not in entry]


@pytest.mark.parametrize("arch", ["llava", "idefics3"])
def test_both_losses_fall_when_overfitting(models: dict[str, Path], data: Path, tmp_path: Path, arch: str) -> None:
    config = TrainConfig(
        max_steps=40,
        learning_rate=3e-3,
        modules_to_save=("lm_head",),
        eval_fraction=0.25,
        logging_steps=10,
        eval_steps=20,
    )
    result = train(data, models[arch], tmp_path / "out", config, progress=False)
    label, rationale = _losses(result.history, "loss_label"), _losses(result.history, "loss_rationale")
    assert len(label) == len(rationale) == 5  # steps 1, 10, 20, 30, 40
    assert label[-1] < 0.5 * label[0] and rationale[-1] < 0.5 * rationale[0]
    assert result.steps == 40 and result.train_rows == 6 and result.eval_rows == 2 and result.rationale_rows == 3
    assert {"eval_loss", "eval_loss_label", "eval_loss_rationale"} <= set(result.eval)
    assert (result.path / "adapter_model.safetensors").exists() and (result.path / "adapter_config.json").exists()
    stored = json.loads((result.path / "vpd_train.json").read_text())
    assert stored["finished"] and stored["base"] == str(models[arch]) and stored["config"]["lora_rank"] == 8
    # LoRA went on the language model's linear layers only, not the vision tower.
    adapter = json.loads((result.path / "adapter_config.json").read_text())
    assert adapter["r"] == 8 and all(
        ("language_model" in name or "text_model" in name) for name in adapter["target_modules"]
    )


def test_label_only_rows_add_no_rationale_loss(models: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    _write(folder, _rows(folder, rationales=False))
    result = train(
        folder,
        models["llava"],
        tmp_path / "out",
        TrainConfig(max_steps=4, logging_steps=1, eval_fraction=0),
        progress=False,
    )
    assert _losses(result.history, "loss_label") and not _losses(result.history, "loss_rationale")
    assert result.loss_rationale is None and result.rationale_rows == 0
    # With λ = 0 the rationale tasks are not even built.
    with_rationales = tmp_path / "with"
    with_rationales.mkdir()
    data = _write(with_rationales, _rows(with_rationales))
    skipped = train(
        data,
        models["llava"],
        tmp_path / "out0",
        TrainConfig(max_steps=2, logging_steps=1, eval_fraction=0, rationale_weight=0.0),
        progress=False,
    )
    assert not _losses(skipped.history, "loss_rationale")


class _Stop(Exception):
    pass


def test_resuming_from_a_checkpoint_continues_the_same_run(models: dict[str, Path], data: Path, tmp_path: Path) -> None:
    config = TrainConfig(max_steps=6, save_steps=3, logging_steps=1, eval_fraction=0, batch_size=2, learning_rate=1e-3)
    whole = train(data, models["llava"], tmp_path / "whole", config, progress=False)

    class StopAfterFour(transformers.TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 4:
                raise _Stop

    with pytest.raises(_Stop):
        train(data, models["llava"], tmp_path / "cut", config, progress=False, callbacks=[StopAfterFour()])
    assert (tmp_path / "cut" / "checkpoints" / "checkpoint-3").is_dir()
    steps_here: list[int] = []

    class Count(transformers.TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            steps_here.append(state.global_step)

    # Logging less often and keeping more checkpoints change no step: the run resumes, and
    # logs at its new frequency (other settings are refused below).
    changed = dataclasses.replace(config, save_total_limit=5, logging_steps=2)
    resumed = train(data, models["llava"], tmp_path / "cut", changed, progress=False, callbacks=[Count()])
    assert resumed.steps == 6 and steps_here == [4, 5, 6]  # continued from checkpoint-3, not started over
    expected = {e["step"]: e["loss"] for e in whole.history if "loss" in e}
    got = {e["step"]: e["loss"] for e in resumed.history if "loss" in e}
    assert sorted(got) == [1, 2, 3, 4, 6]
    assert all(math.isclose(got[s], expected[s], rel_tol=1e-4) for s in (1, 2, 3, 4))
    assert math.isclose(got[6], (expected[5] + expected[6]) / 2, rel_tol=1e-4)  # the mean since the last log

    with pytest.raises(ConfigError, match="other settings .*learning_rate") as refused:
        train(data, models["llava"], tmp_path / "cut", TrainConfig(max_steps=6, learning_rate=5e-4), progress=False)
    assert "logging_steps" not in str(refused.value) and "save_steps" not in str(refused.value)
    # Starting over removes the old run's checkpoints: a later resume must not pick them up.
    again = TrainConfig(max_steps=2, learning_rate=5e-4, eval_fraction=0)
    train(data, models["llava"], tmp_path / "cut", again, progress=False, resume=False)
    assert not (tmp_path / "cut" / "checkpoints" / "checkpoint-3").exists()
    assert not (tmp_path / "cut" / "checkpoints" / "checkpoint-6").exists()


def test_a_saved_adapter_reloads_to_identical_outputs(models: dict[str, Path], data: Path, tmp_path: Path) -> None:
    import peft

    processor = transformers.AutoProcessor.from_pretrained(models["llava"])
    batch = VisionChatCollator(processor)(tasks_of(load_rows(data))[:2])
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "task")}
    seen: dict[str, Any] = {}

    class Capture(transformers.TrainerCallback):  # type: ignore[misc]
        def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            model.eval()
            with torch.no_grad():
                seen["logits"] = model(**inputs).logits

    config = TrainConfig(max_steps=5, learning_rate=3e-3, eval_fraction=0, modules_to_save=("lm_head",))
    result = train(data, models["llava"], tmp_path / "out", config, progress=False, callbacks=[Capture()])
    base = transformers.AutoModelForImageTextToText.from_pretrained(models["llava"])
    with torch.no_grad():
        before = base(**inputs).logits
    reloaded = peft.PeftModel.from_pretrained(base, result.path).eval()
    with torch.no_grad():
        after = reloaded(**inputs).logits
    assert torch.equal(after, seen["logits"])
    assert not torch.allclose(before, after)  # the adapter changed something


def test_tiny_model_builders_refuse_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="Unknown tiny architecture"):
        tiny_vlm(tmp_path, "gpt")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="image_size must be a positive multiple of 8"):
        tiny_vlm(tmp_path, image_size=30)
    path = tiny_causal_lm(tmp_path / "lm")
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    assert "<|im_start|>assistant" in tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert transformers.AutoModelForCausalLM.from_pretrained(path).config.model_type == "qwen2"
