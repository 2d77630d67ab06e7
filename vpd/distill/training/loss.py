"""The step-by-step distillation loss on the Hugging Face ``Trainer``.

Imported only when training starts (it needs torch and transformers).

L = L_label + λ·L_rationale, where each term is the mean cross-entropy over the target
tokens of that task in one optimizer step (a step without rationale tasks has
L_rationale = 0). "One step" is the whole gradient-accumulation window on every process:
each task's tokens are counted over the window's batches (and summed over the processes
of a distributed run) before the first forward pass, and each batch adds its token losses
divided by those counts. So batch size 8 on one GPU, batch size 2 with 4 accumulation
steps, and batch size 4 on each of two GPUs all take the same step. Both terms are logged
apart (summed over the processes), for training (``loss_label``, ``loss_rationale``) and
evaluation (``eval_loss_label``, ``eval_loss_rationale``).
"""

from __future__ import annotations

from typing import Any

import torch
import transformers
from torch.nn import functional

from vpd.distill.training.data import IGNORE_INDEX, TASKS

__all__ = ["DistillationTrainer", "task_losses", "task_token_counts"]


def _targets(labels: torch.Tensor, task: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(labels shifted to the positions that predict them, the target mask, each target token's task)."""
    shifted = labels[:, 1:]
    mask = shifted != IGNORE_INDEX
    return shifted, mask, task[:, None].expand_as(shifted)[mask]


def task_losses(logits: torch.Tensor, labels: torch.Tensor, task: torch.Tensor) -> dict[str, tuple[torch.Tensor, int]]:
    """Per task: (summed cross-entropy over its target tokens, how many tokens).

    Only the target positions' logits are kept before the softmax, so the memory is
    tokens x vocabulary for the targets, not for the whole batch.
    """
    shifted, mask, token_task = _targets(labels, task)
    picked = logits[:, :-1][mask].float()
    token_loss = functional.cross_entropy(picked, shifted[mask], reduction="none")
    result: dict[str, tuple[torch.Tensor, int]] = {}
    for index, name in enumerate(TASKS):
        chosen = token_task == index
        # A task absent from the batch contributes a zero that keeps the graph connected.
        result[name] = (token_loss[chosen].sum() if bool(chosen.any()) else token_loss.sum() * 0.0, int(chosen.sum()))
    return result


def task_token_counts(batches: list[dict[str, Any]]) -> list[int]:
    """Target tokens of each task (in ``TASKS`` order) over some batches from the collator."""
    counts = [0] * len(TASKS)
    for batch in batches:
        _, _, task = _targets(batch["labels"], batch["task"])
        for index in range(len(TASKS)):
            counts[index] += int((task == index).sum())
    return counts


class DistillationTrainer(transformers.Trainer):
    """A ``transformers.Trainer`` whose loss is the step-by-step distillation loss.

    Args:
        rationale_weight: λ.
        *args, **kwargs: Those of ``transformers.Trainer``.
    """

    # Every transformers version divides the returned loss by the accumulation steps when
    # it is not "scaled for GA" (5.x reads the first attribute; 4.x does it whenever the
    # model takes no loss kwargs): compute_loss multiplies by the window's batches first.
    loss_is_scaled_for_ga = False

    def __init__(self, *args: Any, rationale_weight: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False
        self.rationale_weight = rationale_weight
        self._sums: dict[str, dict[str, list[float]]] = {"train": {}, "eval": {}}
        self._window: list[int] | None = None  # tokens per task in this optimizer step

    def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: Any) -> tuple[list[Any], Any]:
        """The Trainer's batches for one optimizer step; also counts each task's tokens in them, on all processes."""
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        counts = task_token_counts(batches)
        if self.args.world_size > 1:
            gathered = self.accelerator.gather(torch.tensor([counts], dtype=torch.long, device=device))
            counts = [int(value) for value in gathered.sum(0)]
        self._window = counts
        return batches, num_items

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
        weights = {"label": 1.0, "rationale": self.rationale_weight}
        if model.training and self._window is not None:
            # A share of the step's mean: this batch's token losses over the step's token
            # counts, times the batches and processes the Trainer and DDP average over.
            counts = self._window
            # The divisor the Trainer applies next: the window's batches in transformers 5,
            # the configured accumulation steps in older versions (also for a short last window).
            divisor = getattr(self, "current_gradient_accumulation_steps", None)
            divisor = divisor or self.args.gradient_accumulation_steps
            scale = divisor * max(self.args.world_size, 1)
            parts = [weights[name] * losses[name][0] * scale / max(counts[i], 1) for i, name in enumerate(TASKS)]
        else:  # evaluation: this batch's means
            parts = [weights[name] * value / max(count, 1) for name, (value, count) in losses.items()]
        loss = parts[0] + parts[1]
        sums = self._sums["train" if model.training else "eval"]
        for name, (value, count) in losses.items():
            if count:
                entry = sums.setdefault(name, [0.0, 0.0])
                entry[0] += float(value.detach())
                entry[1] += count
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Adds each task's mean loss since the last log (token-weighted) to the logs."""
        phase = "eval" if any(key.startswith("eval_") for key in logs) else "train" if "loss" in logs else None
        if phase is not None:
            prefix = "eval_" if phase == "eval" else ""
            sums = self._sums[phase]
            totals = [sums.get(name, [0.0, 0.0]) for name in TASKS]
            if self.args.world_size > 1:  # every process logs at the same steps: sum theirs
                exact = torch.float32 if self.args.device.type == "mps" else torch.float64  # MPS has no float64
                local = torch.tensor([totals], dtype=exact, device=self.args.device)
                totals = self.accelerator.gather(local).sum(0).tolist()
            for name, (total, count) in zip(TASKS, totals, strict=True):
                if count:
                    logs[f"{prefix}loss_{name}"] = round(total / count, 4)
            self._sums[phase] = {}
        super().log(logs, *args, **kwargs)
