"""``vpd.distill.train``: LoRA step-by-step distillation of a Hugging Face vision-language model.

The student is any model ``AutoModelForImageTextToText`` and ``AutoProcessor`` load
(SmolVLM/Idefics3, LLaVA, PaliGemma, Qwen2-VL...). The run is the Hugging Face
``Trainer`` (so one GPU, several with ``accelerate launch``, or the CPU run the same code)
with PEFT's LoRA and the loss of :mod:`vpd.distill.training.loss`.

The output folder holds the adapter (``adapter_model.safetensors``,
``adapter_config.json``), the processor, ``vpd_train.json`` (the base model, the settings,
the data's counts, the logged losses) and ``checkpoints/``. Running the same call again
resumes from the last checkpoint; a different configuration is refused.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vpd.distill.training.config import TrainConfig
from vpd.distill.training.data import Task, TrainingRow, VisionChatCollator, load_rows, tasks_of
from vpd.errors import BackendUnavailable, ConfigError, InvalidArgumentError

__all__ = ["TRAIN_RECORD", "TrainResult", "run_lora", "split_rows", "train"]

TRAIN_RECORD = "vpd_train.json"
CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class TrainResult:
    """What a training run did.

    Attributes:
        path: The folder with the adapter and the processor.
        base: The base model it adapts.
        steps: Optimizer steps run (in all, a resumed run's earlier steps included).
        train_rows: Rows trained on (with a rationale: ``rationale_rows``).
        rationale_rows: Of those, rows with a rationale (two tasks each).
        eval_rows: Held-out rows.
        loss: The last logged training loss.
        loss_label: The last logged L_label.
        loss_rationale: The last logged L_rationale (None when no rationale was trained).
        eval: The last evaluation's metrics (``eval_loss``, ``eval_loss_label``, ...).
        seconds: Wall time of this call's training.
        samples_per_second: Rows per second in this call.
        history: Every logged entry (losses, learning rate, evaluations), in order.
    """

    path: Path
    base: str
    steps: int
    train_rows: int
    rationale_rows: int
    eval_rows: int
    loss: float | None
    loss_label: float | None
    loss_rationale: float | None
    eval: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    samples_per_second: float = 0.0
    history: tuple[dict[str, Any], ...] = ()


class _RowTasks:
    """A map-style dataset: item i is the tasks of row i (kept in one batch, as the paper pairs them)."""

    def __init__(self, tasks: Sequence[Task]) -> None:
        grouped: dict[str, list[Task]] = {}
        for task in tasks:
            grouped.setdefault(task.row.id, []).append(task)
        self.items = list(grouped.values())

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> list[Task]:
        return self.items[index]


class _FlatCollator:
    def __init__(self, collator: VisionChatCollator) -> None:
        self.collator = collator

    def __call__(self, items: Sequence[Sequence[Task]]) -> dict[str, Any]:
        return self.collator([task for item in items for task in item])


def split_rows(
    rows: Sequence[TrainingRow], fraction: float, seed: int = 0
) -> tuple[list[TrainingRow], list[TrainingRow]]:
    """(train, held out): ``fraction`` of the images (at least one when there are two or more) are held out.

    All the questions about an image land on the same side, so no picture is both trained
    on and evaluated.
    """
    images = sorted({row.image for row in rows})
    count = 0 if fraction <= 0 or len(images) < 2 else min(len(images) - 1, max(1, round(fraction * len(images))))
    shuffled = list(images)
    random.Random(seed).shuffle(shuffled)
    held = set(shuffled[:count])
    return [r for r in rows if r.image not in held], [r for r in rows if r.image in held]


def local_or_hub(model: str | os.PathLike[str]) -> str:
    """A local model path made absolute (stored in ``vpd_train.json``, read from anywhere), or the hub id."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else str(model)


def load_dtype(torch: Any, config: TrainConfig) -> Any:
    """The dtype to load the base in: the one it trains in.

    bf16 or fp16 when the settings name one (or ``auto`` finds a GPU with bf16), else fp32:
    a half-precision checkpoint trained without autocast would feed half-precision
    activations to the fp32 trained weights.
    """
    if config.precision == "auto":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[config.precision]


def _require() -> tuple[Any, Any, Any]:
    try:
        import peft
        import torch
        import transformers
    except ImportError as exc:
        raise BackendUnavailable(
            f"Training needs torch, transformers and peft ({exc.name} is missing): pip install 'vpd[train]' "
            "(install the torch build for your hardware first)."
        ) from exc
    return torch, transformers, peft


def language_model_linear_layers(model: Any) -> list[str]:
    """The names of every ``nn.Linear`` inside the model's language model (not its output head).

    The language model is the submodule named ``language_model`` or ``text_model`` (the
    shortest such path); the vision tower and the projector are left out.

    Raises:
        ConfigError: The model has no such submodule (pass explicit ``target_modules``).
    """
    import torch

    roots = sorted(
        (name for name, _ in model.named_modules() if name.rsplit(".", 1)[-1] in ("language_model", "text_model")),
        key=len,
    )
    if not roots:
        raise ConfigError(
            f"Cannot find the language model inside {type(model).__name__} (no submodule named language_model "
            "or text_model); pass TrainConfig(target_modules=[...]) with the layers to adapt."
        )
    root = roots[0]
    return [
        name
        for name, module in model.named_modules()
        if name.startswith(root + ".") and isinstance(module, torch.nn.Linear)
    ]


def _has_accelerator(torch: Any) -> bool:
    accelerator = getattr(torch, "accelerator", None)  # torch 2.6+: CUDA, MPS, XPU, HPU, NPU...
    if accelerator is not None and callable(getattr(accelerator, "is_available", None)):
        return bool(accelerator.is_available())
    mps = getattr(torch.backends, "mps", None)
    xpu = getattr(torch, "xpu", None)
    return bool(
        torch.cuda.is_available()
        or (mps is not None and mps.is_available())
        or (xpu is not None and xpu.is_available())
    )


def _training_arguments(
    transformers: Any, torch: Any, config: TrainConfig, out: Path, has_eval: bool, progress: bool
) -> Any:
    if config.precision == "auto":
        bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        fp16 = False
    else:
        bf16, fp16 = config.precision == "bf16", config.precision == "fp16"
    strategy = "steps" if config.eval_steps else "epoch"
    options: dict[str, Any] = {
        "output_dir": str(out / CHECKPOINTS),
        "per_device_train_batch_size": config.batch_size,
        "per_device_eval_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation,
        "learning_rate": config.learning_rate,
        "weight_decay": config.weight_decay,
        "lr_scheduler_type": config.scheduler,
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps if config.max_steps is not None else -1,
        "bf16": bf16,
        "fp16": fp16,
        "eval_strategy": strategy if has_eval else "no",
        "save_strategy": "steps" if config.save_steps else "epoch",
        "save_total_limit": config.save_total_limit,
        "logging_strategy": "steps",
        "logging_steps": config.logging_steps,
        "logging_first_step": True,
        "seed": config.seed,
        "data_seed": config.seed,
        "dataloader_num_workers": config.dataloader_workers,
        "dataloader_pin_memory": bool(torch.cuda.is_available()),
        "remove_unused_columns": False,  # the collator's "task" column is the loss's
        "prediction_loss_only": True,
        "label_names": ["labels"],
        "report_to": list(config.report_to) or "none",
        "disable_tqdm": not progress,
    }
    if not _has_accelerator(torch):
        if fp16:
            raise ConfigError("fp16 training needs a GPU; on a CPU use precision 'bf16' or 'fp32'.")
        # Told it is on a CPU, the Trainer accepts bf16 there and runs DDP over the processes
        # of `torchrun` / `accelerate launch` (without it each process would train alone).
        options["use_cpu"] = True
    if config.eval_steps:
        options["eval_steps"] = config.eval_steps
    if config.save_steps:
        options["save_steps"] = config.save_steps
    known = {f.name for f in __import__("dataclasses").fields(transformers.TrainingArguments)}
    # transformers 5 reads a ratio from a float warmup_steps; 4.x has warmup_ratio.
    options["warmup_ratio" if "warmup_ratio" in known else "warmup_steps"] = config.warmup_ratio
    # Newer transformers renamed gradient checkpointing (the old name warns that it will go).
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in known else "gradient_checkpointing"
    options[checkpointing] = config.gradient_checkpointing
    unknown = sorted(set(config.extra) - known)
    if unknown:
        raise InvalidArgumentError(f"TrainConfig.extra has fields TrainingArguments does not know: {unknown}.")
    options.update(config.extra)
    return transformers.TrainingArguments(**options)


#: Settings a resumed run may change: how often it logs, evaluates and saves, where it
#: reports and how it loads batches. They change no step, so the run stays the same.
RESUMABLE_CHANGES = frozenset(
    {"logging_steps", "eval_steps", "save_steps", "save_total_limit", "report_to", "dataloader_workers"}
)


def _frequencies_callback() -> Any:
    """A callback that applies this run's logging, evaluation and save frequencies after a resume.

    The Trainer computes them, then loads the checkpoint's state over them; a resumed run
    may change them (:data:`RESUMABLE_CHANGES`), so they are computed again at the start.
    """
    import transformers

    class FrequenciesOfThisRun(transformers.TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            compute = getattr(state, "compute_steps", None)
            if callable(compute):
                compute(args, state.max_steps)

    return FrequenciesOfThisRun()


def _is_main_process() -> bool:
    """Whether this is the first process of a ``torchrun`` / ``accelerate launch`` run (or the only one)."""
    return os.environ.get("RANK", "0") == "0"


def _settle(out: Path, identity: dict[str, Any], resume: bool | None) -> str | None:
    """The checkpoint to resume from (None to start), after checking the stored identity."""
    record = out / TRAIN_RECORD
    checkpoints = sorted(
        (p for p in (out / CHECKPOINTS).glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    if record.exists():
        try:
            stored = json.loads(record.read_text(encoding="utf-8")).get("identity", {})
        except ValueError:
            stored = {}
        if stored and stored != identity and resume is not False:

            def flat(values: dict[str, Any]) -> dict[str, Any]:
                config = values.get("config", {}) if isinstance(values.get("config"), dict) else {}
                rest = {k: v for k, v in values.items() if k != "config"}
                return {**rest, **config}

            before, now = flat(stored), flat(identity)
            changed = sorted(
                k for k in set(before) | set(now) if before.get(k) != now.get(k) and k not in RESUMABLE_CHANGES
            )
            if changed:
                raise ConfigError(
                    f"{out} holds a training run with other settings ({', '.join(changed)} differ); "
                    "train into another folder, or pass resume=False (--restart) to start over there."
                )
    if resume is False:
        # Starting over: the old run's checkpoints would outlive the new ones (the Trainer
        # keeps the highest steps) and a later resume would pick them up. One process of a
        # distributed run deletes them.
        if _is_main_process():
            shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
        return None
    if checkpoints:
        return str(checkpoints[-1])
    if resume is True:
        raise ConfigError(f"No checkpoint to resume from in {out / CHECKPOINTS}.")
    return None


def train(
    data: str | os.PathLike[str] | Sequence[Mapping[str, Any]] | Any,
    student: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: TrainConfig | None = None,
    *,
    resume: bool | None = None,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Fine-tune ``student`` with LoRA on a training set from ``vpd export``.

    Each row gives a label task (question + "Answer with a single word or phrase." →
    answer) and, when it has a rationale, a rationale task (question + "Explain the answer
    step by step, then give it." → rationale); the loss is L_label + λ·L_rationale over the
    reply tokens only (see :mod:`vpd.distill.training.data`).

    Args:
        data: The export folder, a ``train.jsonl``, a Hugging Face dataset or row dicts.
        student: A Hugging Face model id or folder (``AutoModelForImageTextToText``).
        out: The output folder (adapter, processor, ``vpd_train.json``, checkpoints).
        config: The settings (:class:`TrainConfig`; the paper's defaults).
        resume: None resumes from the last checkpoint in ``out`` when there is one; True
            requires one; False starts over.
        progress: Show the Trainer's progress bar.
        callbacks: ``transformers.TrainerCallback`` s to add (logging, early stopping...).

    Returns:
        What the run did (:class:`TrainResult`).

    Raises:
        DatasetError: A bad training set.
        ConfigError: ``out`` holds a run with other settings, or the model has no
            language model to adapt.
        BackendUnavailable: torch, transformers or peft is missing.
    """
    config = config or TrainConfig()
    if not isinstance(config, TrainConfig):
        raise InvalidArgumentError(f"config must be a TrainConfig, got {type(config).__name__}.")
    student = local_or_hub(student)
    rows = load_rows(data)
    torch, transformers, _ = _require()
    out = Path(out)
    train_rows, eval_rows = split_rows(rows, config.eval_fraction, config.seed)
    rationales = config.rationale_weight > 0
    train_tasks, eval_tasks = (
        tasks_of(
            part,
            answer_instruction=config.answer_instruction,
            explain_instruction=config.explain_instruction,
            rationales=rationales,
        )
        for part in (train_rows, eval_rows)
    )
    identity = {
        "base": str(student),
        "config": config.to_dict(),
        "rows": [row.id for row in train_rows],
        "eval_rows": [row.id for row in eval_rows],
    }
    checkpoint = _settle(out, identity, resume)
    out.mkdir(parents=True, exist_ok=True)

    processor = transformers.AutoProcessor.from_pretrained(student)
    model = transformers.AutoModelForImageTextToText.from_pretrained(student, dtype=load_dtype(torch, config))
    targets: Any = config.target_modules
    if targets == "language-model":
        targets = language_model_linear_layers(model)
    return run_lora(
        model,
        processor,
        targets,
        _RowTasks(train_tasks),
        _RowTasks(eval_tasks) if eval_tasks else None,
        _FlatCollator(VisionChatCollator(processor, max_length=config.max_length)),
        config,
        out,
        base=str(student),
        identity=identity,
        checkpoint=checkpoint,
        counts={
            "train_rows": len(train_rows),
            "rationale_rows": sum(row.rationale is not None for row in train_rows),
            "eval_rows": len(eval_rows),
        },
        progress=progress,
        callbacks=callbacks,
    )


def run_lora(
    model: Any,
    processor: Any,
    targets: Any,
    train_dataset: Any,
    eval_dataset: Any,
    collator: Any,
    config: TrainConfig,
    out: Path,
    *,
    base: str,
    identity: dict[str, Any],
    checkpoint: str | None,
    counts: dict[str, int],
    progress: bool,
    callbacks: Sequence[Any],
    kind: str = "student",
) -> TrainResult:
    """Wrap ``model`` with LoRA on ``targets`` and run the distillation Trainer; save adapter and processor.

    Shared by :func:`train` (vision-language students) and the program writer's trainer.
    """
    torch, transformers, peft = _require()
    if isinstance(targets, tuple):
        targets = list(targets)
    lora = peft.LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        modules_to_save=list(config.modules_to_save) or None,
        bias="none",
    )
    torch.manual_seed(config.seed)
    model = peft.get_peft_model(model, lora)
    # On a half-precision base the trained weights (LoRA, and the modules_to_save copies
    # PEFT leaves in the base's dtype) train in fp32: fp16's gradient scaler refuses fp16
    # gradients, and small AdamW updates to bf16 weights round away. Autocast runs the maths.
    for parameter in model.parameters():
        if parameter.requires_grad and parameter.dtype in (torch.float16, torch.bfloat16):
            parameter.data = parameter.data.float()
    if config.gradient_checkpointing:
        model.enable_input_require_grads()  # LoRA's frozen inputs still need a gradient path

    from vpd.distill.training.loss import DistillationTrainer

    arguments = _training_arguments(transformers, torch, config, out, eval_dataset is not None, progress)
    trainer = DistillationTrainer(
        model=model,
        args=arguments,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        rationale_weight=config.rationale_weight,
        callbacks=[_frequencies_callback(), *callbacks],
    )
    if not progress:  # quiet: no bar and no printed log lines (the history keeps them)
        trainer.remove_callback(transformers.PrinterCallback)
    record: dict[str, Any] = {
        "version": "vpd.train/1",
        "kind": kind,
        "base": base,
        "identity": identity,
        "config": config.to_dict(),
        **counts,
        "finished": False,
    }
    main = trainer.is_world_process_zero()  # the files are written once, not by every process
    if main:
        (out / TRAIN_RECORD).write_text(json.dumps(record, indent=1), encoding="utf-8")
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - started
    metrics: dict[str, float] = {}
    if eval_dataset is not None:
        metrics = {k: float(v) for k, v in trainer.evaluate().items() if isinstance(v, (int, float))}
    trainer.save_model(str(out))  # on the main process only
    history = tuple(dict(entry) for entry in trainer.state.log_history)
    last = next((entry for entry in reversed(history) if "loss" in entry), {})
    record.update(finished=True, steps=trainer.state.global_step, seconds=seconds, eval=metrics, history=list(history))
    if main:
        processor.save_pretrained(str(out))
        (out / TRAIN_RECORD).write_text(json.dumps(record, indent=1), encoding="utf-8")
    return TrainResult(
        path=out,
        base=base,
        steps=trainer.state.global_step,
        train_rows=counts.get("train_rows", 0),
        rationale_rows=counts.get("rationale_rows", 0),
        eval_rows=counts.get("eval_rows", 0),
        loss=last.get("loss"),
        loss_label=last.get("loss_label"),
        loss_rationale=last.get("loss_rationale"),
        eval=metrics,
        seconds=seconds,
        samples_per_second=float(output.metrics.get("train_samples_per_second", 0.0)),
        history=history,
    )
