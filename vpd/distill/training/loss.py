"""The step-by-step distillation loss on the Hugging Face ``Trainer``.

Imported only when training starts (it needs torch and transformers).

L = L_label + λ·L_rationale, where each term is the mean cross-entropy over the target
tokens of that task's sequences in the batch (a batch without rationale tasks has
L_rationale = 0). Both terms are logged apart, for training (``loss_label``,
``loss_rationale``) and evaluation (``eval_loss_label``, ``eval_loss_rationale``).
"""

from __future__ import annotations

from typing import Any

import torch
import transformers
from torch.nn import functional

from vpd.distill.training.data import IGNORE_INDEX, TASKS

__all__ = ["DistillationTrainer", "task_losses"]


def task_losses(logits: torch.Tensor, labels: torch.Tensor, task: torch.Tensor) -> dict[str, tuple[torch.Tensor, int]]:
    """Per task: (mean cross-entropy over its target tokens, how many tokens).

    Only the target positions' logits are kept before the softmax, so the memory is
    tokens x vocabulary for the targets, not for the whole batch.
    """
    shifted = labels[:, 1:]
    mask = shifted != IGNORE_INDEX
    picked = logits[:, :-1][mask].float()
    token_loss = functional.cross_entropy(picked, shifted[mask], reduction="none")
    token_task = task[:, None].expand_as(shifted)[mask]
    result: dict[str, tuple[torch.Tensor, int]] = {}
    for index, name in enumerate(TASKS):
        chosen = token_task == index
        count = int(chosen.sum())
        # A task absent from the batch contributes a zero that keeps the graph connected.
        value = token_loss[chosen].mean() if count else token_loss.sum() * 0.0
        result[name] = (value, count)
    return result


class DistillationTrainer(transformers.Trainer):
    """A ``transformers.Trainer`` whose loss is the step-by-step distillation loss.

    Args:
        rationale_weight: λ.
        *args, **kwargs: Those of ``transformers.Trainer``.
    """

    # The loss is a mean per task, not a sum over tokens: the Trainer divides it by the
    # gradient-accumulation steps (transformers 5 reads the first, 4.x the second).
    loss_is_scaled_for_ga = False

    def __init__(self, *args: Any, rationale_weight: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False
        self.rationale_weight = rationale_weight
        self._sums: dict[str, dict[str, list[float]]] = {"train": {}, "eval": {}}

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        """L_label + λ·L_rationale for a batch from the collator (its ``task`` column splits the tokens)."""
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        task = inputs.pop("task")
        outputs = model(**inputs)
        losses = task_losses(outputs.logits, labels, task)
        loss = losses["label"][0] + self.rationale_weight * losses["rationale"][0]
        sums = self._sums["train" if model.training else "eval"]
        for name, (value, count) in losses.items():
            if count:
                entry = sums.setdefault(name, [0.0, 0.0])
                entry[0] += float(value.detach()) * count
                entry[1] += count
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Adds each task's mean loss since the last log (token-weighted) to the logs."""
        phase = "eval" if any(key.startswith("eval_") for key in logs) else "train" if "loss" in logs else None
        if phase is not None:
            prefix = "eval_" if phase == "eval" else ""
            for name, (total, count) in self._sums[phase].items():
                if count:
                    logs[f"{prefix}loss_{name}"] = round(total / count, 4)
            self._sums[phase] = {}
        super().log(logs, *args, **kwargs)
