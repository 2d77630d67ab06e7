"""Training a student: LoRA step-by-step distillation of a vision-language model.

* :mod:`~vpd.distill.training.data`: training rows, the label and rationale tasks, the
  collator that masks everything but the reply;
* :mod:`~vpd.distill.training.config`: :class:`TrainConfig`, the paper's defaults;
* :mod:`~vpd.distill.training.loss`: L = L_label + λ·L_rationale on the Hugging Face
  ``Trainer`` (imported when training starts);
* :mod:`~vpd.distill.training.train`: :func:`train`.

Importing this package needs neither torch nor transformers.
"""

from vpd.distill.training.config import TrainConfig
from vpd.distill.training.data import (
    ANSWER_INSTRUCTION,
    EXPLAIN_INSTRUCTION,
    Task,
    TrainingRow,
    VisionChatCollator,
    load_rows,
    tasks_of,
)
from vpd.distill.training.train import TrainResult, split_rows, train

__all__ = [
    "ANSWER_INSTRUCTION",
    "EXPLAIN_INSTRUCTION",
    "Task",
    "TrainConfig",
    "TrainResult",
    "TrainingRow",
    "VisionChatCollator",
    "load_rows",
    "split_rows",
    "tasks_of",
    "train",
]
