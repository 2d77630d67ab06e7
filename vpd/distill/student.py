"""The distilled student: a vision-language model (base + LoRA adapter) that answers in one pass.

    student = Student.load(adapter="runs/student")          # the base is read from the adapter
    student.ask("photo.jpg", "How many cats are there?").answer
    student.answer(images, questions, explain=True)          # batched; rationales ending in the answer

The student is asked exactly as it was trained (:func:`conversation_texts`, the same
instructions from ``vpd_train.json``), decodes greedily, and pads on the left for batches.
:meth:`Student.save_merged` folds the adapter into the weights for deployment.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vpd.distill.rewriter import final_answer
from vpd.distill.training.data import (
    ANSWER_INSTRUCTION,
    EXPLAIN_INSTRUCTION,
    conversation_texts,
    prompt_text,
    uses_chat_template,
)
from vpd.errors import ConfigError, InvalidArgumentError
from vpd.image import ImageSource, load_image
from vpd.tools.hub import adapter_base, read_json_object

__all__ = ["Student", "StudentAnswer"]

#: End-of-turn tokens of common chat templates (ChatML, SmolVLM/Idefics3, Gemma, Llama 3).
_END_OF_TURN = ("<|im_end|>", "<end_of_utterance>", "<end_of_turn>", "<|eot_id|>", "<|end|>")


@dataclass(frozen=True)
class StudentAnswer:
    """What the student said.

    Attributes:
        question: The question.
        answer: The answer: the reply itself, or with ``explain`` the answer its
            explanation ends with (None when it did not state one).
        text: The generated text, as decoded.
        rationale: The explanation (``explain=True``), else None.
        tokens: Tokens generated.
        seconds: This answer's share of its batch's wall time.
        prompt_tokens: Tokens of its prompt, image tokens included.
    """

    question: str
    answer: str | None
    text: str
    rationale: str | None = None
    tokens: int = 0
    seconds: float = 0.0
    prompt_tokens: int = 0

    def __str__(self) -> str:
        return self.answer or ""


def _require() -> tuple[Any, Any]:
    from vpd.distill.training.train import _require as require

    torch, transformers, _ = require()
    return torch, transformers


class Student:
    """A loaded student model (see the module docstring); build it with :meth:`load`.

    Attributes:
        model: The Hugging Face model (a ``PeftModel`` unless merged or without adapter).
        processor: Its processor.
        base: The base model's id or folder.
        adapter: The adapter folder, or None for the bare base model.
        answer_instruction: Appended to questions for short answers.
        explain_instruction: Appended to questions for explanations.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        base: str,
        adapter: Path | None = None,
        answer_instruction: str = ANSWER_INSTRUCTION,
        explain_instruction: str = EXPLAIN_INSTRUCTION,
    ) -> None:
        self.model = model
        self.processor = processor
        self.base = base
        self.adapter = adapter
        self.answer_instruction = answer_instruction
        self.explain_instruction = explain_instruction
        self.templated = uses_chat_template(processor)  # decided once, as the training collator does

    def __repr__(self) -> str:
        return f"Student(base={self.base!r}, adapter={str(self.adapter) if self.adapter else None!r})"

    @classmethod
    def load(
        cls,
        base: str | os.PathLike[str] | None = None,
        adapter: str | os.PathLike[str] | None = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        merge: bool = False,
    ) -> Student:
        """Load a base model and, usually, the adapter ``vpd train`` wrote.

        Args:
            base: The base model's hub id or folder; default: the one the adapter was
                trained on (``vpd_train.json`` or ``adapter_config.json``).
            adapter: The folder ``vpd train`` wrote; None for the base model alone (a
                "before distillation" baseline).
            device: ``"auto"`` (CUDA when there is one), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
            dtype: ``"auto"`` (bf16 on a GPU that has it, else fp32), ``"bf16"``, ``"fp16"`` or ``"fp32"``.
            merge: Fold the adapter into the weights (faster inference, no PEFT wrapper).

        Raises:
            ConfigError: Neither a base nor an adapter, or an adapter folder that is not one.
            BackendUnavailable: torch, transformers or peft is missing.
        """
        if base is None and adapter is None:
            raise ConfigError("Student.load needs an adapter folder (from `vpd train`) or a base model.")
        torch, transformers = _require()
        instructions = {"answer_instruction": ANSWER_INSTRUCTION, "explain_instruction": EXPLAIN_INSTRUCTION}
        adapter_path = Path(adapter) if adapter is not None else None
        if adapter_path is not None:
            if not (adapter_path / "adapter_config.json").is_file():
                raise ConfigError(
                    f"{adapter_path} is not an adapter folder (no adapter_config.json); "
                    "pass the --out folder of `vpd train`."
                )
            record = read_json_object(adapter_path / "vpd_train.json")
            config = record.get("config", {}) if isinstance(record.get("config"), dict) else {}
            for key in instructions:
                if isinstance(config.get(key), str):
                    instructions[key] = config[key]
            if base is None:
                base = adapter_base(adapter_path)
                if not base:
                    raise ConfigError(f"{adapter_path} does not say which base model it adapts; pass base=.")
        assert base is not None
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
        if dtype == "auto":
            chosen = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
        elif dtype in dtypes:
            chosen = dtypes[dtype]
        else:
            raise InvalidArgumentError(f"dtype must be auto, bf16, fp16 or fp32, got {dtype!r}.")
        # The adapter folder has the processor it was trained with (vpd train saves it there).
        has_processor = adapter_path is not None and (
            (adapter_path / "processor_config.json").exists() or (adapter_path / "tokenizer_config.json").exists()
        )
        processor = transformers.AutoProcessor.from_pretrained(str(adapter_path if has_processor else base))
        model = transformers.AutoModelForImageTextToText.from_pretrained(str(base), dtype=chosen)
        if adapter_path is not None:
            import peft

            model = peft.PeftModel.from_pretrained(model, str(adapter_path))
            if merge:
                model = model.merge_and_unload()
        model.to(device).eval()
        return cls(model, processor, base=str(base), adapter=adapter_path, **instructions)

    def _stop_ids(self, tokenizer: Any) -> list[int]:
        """Tokens that end a reply: the model's end-of-sequence ids and the chat template's end of turn.

        Training labels teach the template's end-of-turn token, which is not always the
        generation config's end-of-sequence token (``<|im_end|>`` vs ``<|endoftext|>``).
        """
        ids: list[int] = []
        configured = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        for value in (configured, tokenizer.eos_token_id):
            ids += value if isinstance(value, list) else [value] if isinstance(value, int) else []
        for token in _END_OF_TURN:
            found = tokenizer.convert_tokens_to_ids(token)
            if isinstance(found, int) and found != tokenizer.unk_token_id and token in tokenizer.get_vocab():
                ids.append(found)
        return sorted(set(ids))

    def save_merged(self, path: str | os.PathLike[str]) -> Path:
        """Write the base with the adapter folded in (and the processor): a plain model folder.

        Returns:
            The folder, loadable with ``AutoModelForImageTextToText.from_pretrained``.
        """
        model = self.model.merge_and_unload() if hasattr(self.model, "merge_and_unload") else self.model
        out = Path(path)
        model.save_pretrained(out)
        self.processor.save_pretrained(out)
        self.model = model
        return out

    def ask(
        self, image: ImageSource, question: str, *, explain: bool = False, max_new_tokens: int | None = None
    ) -> StudentAnswer:
        """One question about one image (see :meth:`answer`)."""
        return self.answer([image], [question], explain=explain, max_new_tokens=max_new_tokens)[0]

    def answer(
        self,
        images: Sequence[ImageSource],
        questions: Sequence[str],
        *,
        explain: bool = False,
        max_new_tokens: int | None = None,
        batch_size: int = 8,
    ) -> list[StudentAnswer]:
        """Answer questions about images, in batches.

        Args:
            images: One image per question (paths, bytes, arrays or PIL images), or a
                single image for every question.
            questions: The questions.
            explain: Ask for the explanation (rationale) that ends with the answer.
            max_new_tokens: Generation limit (default 16 for answers, 256 for explanations).
            batch_size: Questions per forward pass.

        Returns:
            One :class:`StudentAnswer` per question, in order.

        Raises:
            InvalidArgumentError: Mismatched lengths, an empty question or a bad size.
            ImageError: An image that cannot be read.
        """
        import torch

        if isinstance(questions, str):
            raise InvalidArgumentError("questions must be a list of strings; use ask() for one question.")
        if not isinstance(images, Sequence) or isinstance(images, (str, bytes)):
            images = [images]
        if len(images) == 1 and len(questions) > 1:
            images = list(images) * len(questions)
        if len(images) != len(questions):
            raise InvalidArgumentError(
                f"{len(images)} images for {len(questions)} questions; give one image per question."
            )
        if any(not isinstance(q, str) or not q.strip() for q in questions):
            raise InvalidArgumentError("Every question must be a non-empty string.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}.")
        limit = max_new_tokens if max_new_tokens is not None else (256 if explain else 16)
        instruction = self.explain_instruction if explain else self.answer_instruction
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        tokenizer.padding_side = "left"  # generation continues every row from its last token
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        device = next(self.model.parameters()).device
        results: list[StudentAnswer] = []
        for start in range(0, len(questions), batch_size):
            chunk = list(questions[start : start + batch_size])
            pictures = [load_image(source).pil for source in images[start : start + batch_size]]
            prompts = [
                conversation_texts(self.processor, prompt_text(q, instruction), templated=self.templated)[0]
                for q in chunk
            ]
            began = time.perf_counter()
            batch = self.processor(images=pictures, text=prompts, padding=True, return_tensors="pt").to(device)
            with torch.no_grad():
                output = self.model.generate(
                    **batch,
                    max_new_tokens=limit,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=self._stop_ids(tokenizer),
                )
            seconds = (time.perf_counter() - began) / len(chunk)
            new = output[:, batch["input_ids"].shape[1] :]
            prompt_tokens = batch["attention_mask"].sum(dim=1).tolist()
            for question, tokens, prompt_count in zip(chunk, new, prompt_tokens, strict=True):
                kept = [t for t in tokens.tolist() if t != tokenizer.pad_token_id]
                text = tokenizer.decode(kept, skip_special_tokens=True).strip()
                answer = final_answer(text) if explain else (text or None)
                results.append(
                    StudentAnswer(
                        question, answer, text, text if explain else None, len(kept), seconds, int(prompt_count)
                    )
                )
        return results
