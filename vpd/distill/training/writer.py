"""A distilled program writer: LoRA on a text LLM from the verified programs of synthesis runs.

Each verified question of a ``vpd synthesize`` run gives one pair: the conversation the
solver sends for that question (the same :func:`~vpd.programs.prompt.render_prompt`, API
and worked examples) and, as the reply to learn, the chosen correct program in a
``python`` fence, as the solver expects it. The loss is on the reply only. The tuned
writer then serves ``vpd solve --llm transformers:OUT`` (or ``--llm OUT``).

The base is any causal LM transformers loads: a hub id, a folder, or a ``.gguf`` file
(dequantised by transformers, e.g. the embedded Qwen2.5-Coder-0.5B).
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vpd.distill.runs import RECORDS, read_records
from vpd.distill.training.config import TrainConfig
from vpd.distill.training.data import reply_labels
from vpd.distill.training.train import TrainResult, _require, _settle, load_dtype, local_or_hub, run_lora
from vpd.errors import ConfigError, DatasetError, InvalidArgumentError
from vpd.programs.prompt import program_turn

__all__ = ["WriterPair", "train_writer", "writer_pairs"]


@dataclass(frozen=True)
class WriterPair:
    """A question and the verified program that answers it.

    Attributes:
        id: The question's id in its run.
        question: The question.
        program: The chosen correct program's source.
        source: ``RUN_DIR/records.jsonl:<id>``.
    """

    id: str
    question: str
    program: str
    source: str


def writer_pairs(runs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[WriterPair]:
    """The (question, verified program) pairs of one or more synthesis runs.

    Raises:
        ConfigError: A folder without synthesis records.
        DatasetError: No verified question at all.
    """
    folders = [runs] if isinstance(runs, (str, os.PathLike)) else list(runs)
    pairs: list[WriterPair] = []
    seen: set[tuple[str, str]] = set()
    for folder in folders:
        path = Path(folder)
        records_path = path / RECORDS if path.is_dir() else path
        if not records_path.is_file():
            raise ConfigError(f"No synthesis records at {records_path}; run `vpd synthesize` first.")
        for record in read_records(records_path):
            chosen = record.get("chosen")
            candidates = record.get("candidates") or []
            if not record.get("verified") or not isinstance(chosen, int) or not 0 <= chosen < len(candidates):
                continue
            program = candidates[chosen].get("program")
            key = (str(record.get("question")), str(program))
            if not isinstance(program, str) or key in seen:
                continue  # the same question and program twice teaches nothing new
            seen.add(key)
            pairs.append(
                WriterPair(
                    str(record.get("id")), str(record["question"]), program, f"{records_path}:{record.get('id')}"
                )
            )
    if not pairs:
        raise DatasetError(f"No verified programs in {', '.join(map(str, folders))}: nothing to train a writer on.")
    return pairs


class _WriterCollator:
    """Batches (messages, program) pairs for a causal LM: labels on the fenced program only."""

    def __init__(self, tokenizer: Any, max_length: int | None) -> None:
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "right"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.max_length = max_length

    def texts(self, messages: list[dict[str, str]], program: str) -> tuple[str, str]:
        reply = dict(program_turn(program))  # fenced exactly as the prompt's worked examples are
        prompt = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        whole = self.tokenizer.apply_chat_template([*messages, reply], tokenize=False)
        if not whole.startswith(prompt):
            raise ConfigError(
                "The writer's chat template does not extend the prompt with the reply; pick another base."
            )
        return prompt, whole

    def __call__(self, items: Sequence[tuple[WriterPair, list[dict[str, str]]]]) -> dict[str, Any]:
        import torch

        prompts, wholes = zip(*(self.texts(messages, pair.program) for pair, messages in items), strict=True)
        batch = self.tokenizer(list(wholes), padding=True, return_tensors="pt", add_special_tokens=False)
        names = [f"program of {pair.source}" for pair, _ in items]
        labels = reply_labels(self.tokenizer, batch["input_ids"], batch["attention_mask"], prompts, wholes, names)
        if self.max_length is not None and batch["input_ids"].shape[1] > self.max_length:
            raise DatasetError(
                f"A writer example is {batch['input_ids'].shape[1]} tokens, over max_length={self.max_length}."
            )
        return {**dict(batch), "labels": labels, "task": torch.zeros(len(items), dtype=torch.long)}


def train_writer(
    runs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Sequence[WriterPair],
    base: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: TrainConfig | None = None,
    *,
    n_examples: int = 4,
    examples: Any = None,
    resume: bool | None = None,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Fine-tune a text LLM with LoRA to write the programs synthesis verified.

    Args:
        runs: Synthesis run folders (or :class:`WriterPair` s).
        base: The base causal LM: hub id, folder or ``.gguf`` file.
        out: Where the adapter, tokenizer, ``vpd_train.json`` and checkpoints go.
        config: The settings (:class:`TrainConfig`); ``rationale_weight`` is unused, and
            ``target_modules="language-model"`` means every linear layer but the head.
        n_examples: Worked examples in each training prompt: use the same number when
            solving with the tuned writer (``Solver(n_examples=...)``; the default is 4).
        examples: The :class:`~vpd.programs.library.ExampleLibrary` the prompts pick
            from (default: the built-in one, as ``vpd solve`` uses).
        resume: As :func:`train`.
        progress: Show the Trainer's progress bar.
        callbacks: More ``transformers.TrainerCallback`` s.

    Returns:
        What the run did (``train_rows``: training pairs).
    """
    from vpd.programs.library import ExampleLibrary
    from vpd.programs.prompt import render_prompt

    config = config or TrainConfig()
    if not isinstance(config, TrainConfig):
        raise InvalidArgumentError(f"config must be a TrainConfig, got {type(config).__name__}.")
    if isinstance(n_examples, bool) or not isinstance(n_examples, int) or n_examples < 0:
        raise InvalidArgumentError(f"n_examples must be 0 or more, got {n_examples!r}.")
    given = [runs] if isinstance(runs, (str, os.PathLike)) else list(runs)
    pairs: list[WriterPair] = [p for p in given if isinstance(p, WriterPair)]
    folders = [p for p in given if not isinstance(p, WriterPair)]
    if folders:
        pairs += writer_pairs(folders)
    if not pairs:
        raise DatasetError("No writer pairs: pass synthesis run folders or WriterPair objects.")
    torch, _, _ = _require()
    base = local_or_hub(base)
    library = examples if examples is not None else ExampleLibrary.builtin()
    shuffled = list(pairs)
    random.Random(config.seed).shuffle(shuffled)
    held = 0 if config.eval_fraction <= 0 or len(pairs) < 2 else max(1, round(config.eval_fraction * len(pairs)))
    held = min(held, len(pairs) - 1)  # at least one pair trains
    eval_ids = {pair.source for pair in shuffled[:held]}
    train_pairs = [p for p in pairs if p.source not in eval_ids]
    eval_pairs = [p for p in pairs if p.source in eval_ids]

    def items(part: list[WriterPair]) -> list[tuple[WriterPair, list[dict[str, str]]]]:
        chosen = library if n_examples else ()
        return [
            (
                pair,
                [
                    {str(k): str(v) for k, v in m.items()}
                    for m in render_prompt(pair.question, examples=chosen, n_examples=n_examples)
                ],
            )
            for pair in part
        ]

    out = Path(out)
    identity = {
        "base": str(base),
        "config": config.to_dict(),
        "rows": [p.source for p in train_pairs],
        "eval_rows": [p.source for p in eval_pairs],
        "n_examples": n_examples,
    }
    checkpoint = _settle(out, identity, resume)
    out.mkdir(parents=True, exist_ok=True)
    from vpd.tools.hub import load_causal_lm

    model, tokenizer = load_causal_lm(str(base), dtype=load_dtype(torch, config))
    targets: Any = "all-linear" if config.target_modules == "language-model" else config.target_modules
    train_items, eval_items = items(train_pairs), items(eval_pairs)
    return run_lora(
        model,
        tokenizer,
        targets,
        train_items,
        eval_items or None,
        _WriterCollator(tokenizer, config.max_length),
        config,
        out,
        base=str(base),
        identity=identity,
        checkpoint=checkpoint,
        counts={
            "train_rows": len(train_pairs),
            "rationale_rows": 0,
            "eval_rows": len(eval_pairs),
            "n_examples": n_examples,
        },
        progress=progress,
        callbacks=callbacks,
        kind="writer",
    )
