"""The settings of a distillation training run, with the paper's defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from vpd.distill.training.data import ANSWER_INSTRUCTION, EXPLAIN_INSTRUCTION
from vpd.errors import InvalidArgumentError

__all__ = ["TrainConfig"]

Precision = Literal["auto", "bf16", "fp16", "fp32"]


@dataclass(frozen=True)
class TrainConfig:
    """How :func:`vpd.distill.train` fine-tunes a student (defaults from the VPD paper).

    Attributes:
        rationale_weight: λ in L = L_label + λ·L_rationale (1: the paper's sum; 0 trains
            on answers only and skips the rationale tasks).
        lora_rank: LoRA rank r.
        lora_alpha: LoRA scaling alpha (the update is scaled by alpha / r).
        lora_dropout: Dropout on the LoRA input.
        target_modules: The layers that get LoRA: ``"language-model"`` (every linear layer
            of the language model, not the vision tower or the projector: the paper's
            setting), ``"all-linear"`` (PEFT's: every linear layer but the output head), or
            a list of module names or a regular expression, passed to PEFT as they are.
        modules_to_save: Modules trained in full beside LoRA and saved with the adapter
            (e.g. ``["lm_head"]``).
        learning_rate: Peak learning rate (AdamW).
        weight_decay: AdamW's weight decay.
        scheduler: The learning-rate schedule (Hugging Face ``lr_scheduler_type``).
        warmup_ratio: Share of the steps spent warming up (1%).
        epochs: Passes over the data (ignored when ``max_steps`` is set).
        max_steps: Optimizer steps to run, or None for ``epochs``.
        batch_size: Examples (rows) per device and step; a row with a rationale gives
            two sequences, so a batch holds up to twice as many.
        gradient_accumulation: Batches per optimizer step.
        gradient_checkpointing: Trade compute for memory.
        precision: ``"auto"`` uses bf16 on a GPU that supports it, else fp32. ``"bf16"``
            also works on a CPU (about twice as fast as fp32 on CPUs with AVX512-BF16 or
            AMX); ``"fp16"`` needs a GPU.
        eval_fraction: Share of the images held out for evaluation during training (their
            rows never train); 0 for none.
        eval_steps: Evaluate every this many steps (None: once per epoch).
        save_steps: Save a checkpoint every this many steps (None: once per epoch).
        save_total_limit: Checkpoints kept.
        logging_steps: Log the losses every this many steps.
        max_length: Refuse sequences longer than this (None: no limit).
        answer_instruction: The instruction of label tasks.
        explain_instruction: The instruction of rationale tasks.
        seed: Seeds the split, the shuffling and the LoRA initialisation.
        dataloader_workers: Processes that prepare batches (0: the main process).
        report_to: Where to log besides the console (Hugging Face ``report_to``, e.g.
            ``["tensorboard"]``); none by default.
        extra: More ``transformers.TrainingArguments`` fields, passed as they are.
    """

    rationale_weight: float = 1.0
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: str | tuple[str, ...] = "language-model"
    modules_to_save: tuple[str, ...] = ()
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    scheduler: str = "cosine"
    warmup_ratio: float = 0.01
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 4
    gradient_accumulation: int = 1
    gradient_checkpointing: bool = False
    precision: Precision = "auto"
    eval_fraction: float = 0.05
    eval_steps: int | None = None
    save_steps: int | None = None
    save_total_limit: int = 2
    logging_steps: int = 10
    max_length: int | None = None
    answer_instruction: str = ANSWER_INSTRUCTION
    explain_instruction: str = EXPLAIN_INSTRUCTION
    seed: int = 0
    dataloader_workers: int = 0
    report_to: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        def positive(name: str, value: Any, kind: type = int, allow_zero: bool = False) -> None:
            number = isinstance(value, kind) and not isinstance(value, bool)
            ok = number and (value > 0 or (allow_zero and value == 0))
            if not ok:
                raise InvalidArgumentError(f"TrainConfig.{name} must be a positive {kind.__name__}, got {value!r}.")

        for name in (
            "lora_rank",
            "lora_alpha",
            "batch_size",
            "gradient_accumulation",
            "save_total_limit",
            "logging_steps",
        ):
            positive(name, getattr(self, name))
        for name in ("max_steps", "eval_steps", "save_steps", "max_length"):
            if getattr(self, name) is not None:
                positive(name, getattr(self, name))
        positive("dataloader_workers", self.dataloader_workers, allow_zero=True)
        for name in ("learning_rate", "epochs"):
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))
            positive(name, getattr(self, name), float)
        for name, value, high in (
            ("rationale_weight", self.rationale_weight, None),
            ("weight_decay", self.weight_decay, None),
            ("lora_dropout", self.lora_dropout, 1.0),
            ("warmup_ratio", self.warmup_ratio, 1.0),
            ("eval_fraction", self.eval_fraction, 1.0),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (high and value >= high):
                bound = f"in [0, {high})" if high else "0 or more"
                raise InvalidArgumentError(f"TrainConfig.{name} must be a number {bound}, got {value!r}.")
        if self.precision not in ("auto", "bf16", "fp16", "fp32"):
            raise InvalidArgumentError(
                f"TrainConfig.precision must be auto, bf16, fp16 or fp32, got {self.precision!r}."
            )
        if isinstance(self.target_modules, list):
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
        for name in ("modules_to_save", "report_to"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise InvalidArgumentError(f"TrainConfig.{name} must be a list of names, got {value!r}.")
            object.__setattr__(self, name, tuple(value))
        for name in ("answer_instruction", "explain_instruction"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise InvalidArgumentError(f"TrainConfig.{name} must be a non-empty string.")
        if self.answer_instruction.strip() == self.explain_instruction.strip():
            raise InvalidArgumentError(
                "The answer and explain instructions must differ, or the tasks cannot be told apart."
            )

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values (stored with the adapter)."""
        values = asdict(self)
        for key, value in values.items():
            if isinstance(value, tuple):
                values[key] = list(value)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Settings from :meth:`to_dict` (unknown keys are an error, naming the known ones)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidArgumentError(f"Unknown TrainConfig fields {unknown}; known: {', '.join(sorted(known))}.")
        return cls(**values)
