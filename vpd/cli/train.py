"""``vpd train DATA --student MODEL --out DIR``: LoRA step-by-step distillation of a student.

DATA is the folder (or ``train.jsonl``) of ``vpd export``; MODEL a Hugging Face model id or
folder that ``AutoModelForImageTextToText`` loads. Rerunning the same command resumes from
the last checkpoint in DIR. See :func:`vpd.distill.train` and :class:`vpd.distill.TrainConfig`.
Several GPUs: ``accelerate launch -m vpd train ...`` runs the same code.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from vpd.errors import InvalidArgumentError

__all__ = ["add_parser", "add_train_options", "config_from_args", "run"]


def add_parser(sub: Any) -> None:
    """Add the ``train`` subcommand to the ``vpd`` parser's subparsers."""
    parser = sub.add_parser(
        "train",
        help="fine-tune a vision-language student on an exported training set (LoRA, step-by-step loss)",
        description="Fine-tune a Hugging Face vision-language model with LoRA on the training set of `vpd export`: "
        "each row teaches the answer, and rows with a rationale also teach the rationale "
        "(L = L_label + lambda * L_rationale). Defaults follow the VPD paper. Rerun to resume.",
    )
    parser.add_argument("data", help="the folder or train.jsonl that `vpd export` wrote")
    parser.add_argument("--student", required=True, metavar="MODEL", help="base model: hub id or folder")
    parser.add_argument("--out", required=True, metavar="DIR", help="where the adapter and checkpoints go")
    add_train_options(parser)
    parser.set_defaults(func=run)


def add_train_options(parser: argparse.ArgumentParser, *, rationale: bool = True) -> None:
    """The training settings (TrainConfig fields), ``--config``, ``--restart`` and ``--quiet``.

    Settings not given stay unset, so TrainConfig's defaults (or ``--config``'s values) apply.

    Args:
        parser: The command's parser.
        rationale: Offer ``--rationale-weight`` (not for trainers without rationales).
    """
    parser.add_argument("--epochs", type=float, help="passes over the data (default 1)")
    parser.add_argument("--max-steps", type=int, help="optimizer steps (overrides --epochs)")
    parser.add_argument("--batch-size", type=int, help="rows per device and step (default 4)")
    parser.add_argument("--grad-accum", type=int, help="batches per optimizer step (default 1)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default 1e-4)")
    parser.add_argument("--rank", type=int, help="LoRA rank (default 8)")
    parser.add_argument("--alpha", type=int, help="LoRA alpha (default 16)")
    if rationale:
        parser.add_argument(
            "--rationale-weight", type=float, metavar="LAMBDA", help="lambda of the rationale loss (default 1)"
        )
    parser.add_argument("--eval-fraction", type=float, help="share of images held out (default 0.05)")
    parser.add_argument("--eval-steps", type=int, help="evaluate every N steps (default: each epoch)")
    parser.add_argument("--save-steps", type=int, help="checkpoint every N steps (default: each epoch)")
    parser.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp16", "fp32"],
        help="default auto: bf16 on a GPU that has it, else fp32; bf16 also runs on a CPU, fp16 needs a GPU",
    )
    parser.add_argument("--gradient-checkpointing", action="store_true", help="less memory, more compute")
    parser.add_argument("--max-length", type=int, help="refuse longer sequences")
    parser.add_argument("--modules-to-save", nargs="*", metavar="NAME", help="modules trained in full")
    parser.add_argument("--target-modules", nargs="*", metavar="NAME", help="layers that get LoRA")
    parser.add_argument("--seed", type=int, help="seeds the split, shuffling and LoRA init (default 0)")
    parser.add_argument("--config", metavar="FILE", help="a JSON file of TrainConfig fields (options given win)")
    parser.add_argument("--restart", action="store_true", help="start over instead of resuming")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    for action in parser._actions:
        if action.dest in _FIELDS:
            action.default = argparse.SUPPRESS


#: Options and the TrainConfig fields they set.
_FIELDS = {
    "epochs": "epochs",
    "max_steps": "max_steps",
    "batch_size": "batch_size",
    "grad_accum": "gradient_accumulation",
    "lr": "learning_rate",
    "rank": "lora_rank",
    "alpha": "lora_alpha",
    "rationale_weight": "rationale_weight",
    "eval_fraction": "eval_fraction",
    "eval_steps": "eval_steps",
    "save_steps": "save_steps",
    "precision": "precision",
    "gradient_checkpointing": "gradient_checkpointing",
    "max_length": "max_length",
    "modules_to_save": "modules_to_save",
    "target_modules": "target_modules",
    "seed": "seed",
}


def config_from_args(args: argparse.Namespace) -> Any:
    """The TrainConfig of the command line: ``--config`` FILE, then every option given."""
    from vpd.distill.training import TrainConfig

    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        try:
            with open(args.config, encoding="utf-8") as handle:
                values = json.load(handle)
        except (OSError, ValueError) as exc:
            raise InvalidArgumentError(f"Cannot read --config {args.config}: {exc}") from None
        if not isinstance(values, dict):
            raise InvalidArgumentError(f"--config {args.config} must hold a JSON object of TrainConfig fields.")
    for option, name in _FIELDS.items():
        if hasattr(args, option):
            value = getattr(args, option)
            if option == "target_modules" and isinstance(value, list) and len(value) == 1:
                value = value[0]  # one value: a keyword ("all-linear", "language-model") or a regex
            values[name] = tuple(value) if isinstance(value, list) else value
    return TrainConfig.from_dict(values)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``vpd train``; returns the exit code (0 done)."""
    from vpd.distill.training import train

    config = config_from_args(args)
    result = train(
        args.data, args.student, args.out, config, resume=False if args.restart else None, progress=not args.quiet
    )
    out.write(
        f"trained {result.steps} steps on {result.train_rows} rows ({result.rationale_rows} with a rationale) "
        f"in {result.seconds:.0f} s; loss {number(result.loss)} (label {number(result.loss_label)}, "
        f"rationale {number(result.loss_rationale)})"
        + (
            f"; held out {result.eval_rows} rows: eval loss {number(result.eval.get('eval_loss'))}"
            if result.eval
            else ""
        )
        + f"\nadapter: {result.path}\n"
    )
    return 0


def number(value: float | None) -> str:
    """A loss as the commands print it (``-`` when there is none)."""
    return "-" if value is None else f"{value:.4f}"
