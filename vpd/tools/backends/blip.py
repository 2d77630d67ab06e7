"""Visual question answering with BLIP (Hugging Face ``transformers``).

BLIP-VQA encodes the image, reads the question against it, and generates a short answer
with its text decoder (greedy, so answers are deterministic). Answers are decoded
without special tokens, stripped and lower-cased, matching VQA-style scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from vpd.tools.backends._common import as_rgb, batches, check_questions, require_positive_int
from vpd.tools.hub import HubBackend

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["BlipVQA"]


class BlipVQA(HubBackend):
    """Visual question answering: BLIP (``BlipForQuestionAnswering``), short answers.

    Options:
        max_new_tokens: Longest answer, in tokens (10).
        batch_size: Image-question pairs per generation call.
    """

    capability: ClassVar[str] = "vqa"
    name: ClassVar[str] = "blip"
    default_model: ClassVar[str | None] = "Salesforce/blip-vqa-base"
    description: ClassVar[str] = "BLIP visual question answering, short lower-case answers (transformers)"
    option_defaults: ClassVar[dict[str, Any]] = {"max_new_tokens": 10, "batch_size": 8}

    def __init__(self, model: str | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        require_positive_int(self, "max_new_tokens", "batch_size")

    def _load(self) -> tuple[Any, Any]:
        from transformers import BlipForQuestionAnswering, BlipProcessor

        processor = self.from_pretrained(BlipProcessor)
        model = self.to_device(self.from_pretrained(BlipForQuestionAnswering))
        return model, processor

    def answer(self, images: Sequence[Image], questions: Sequence[str]) -> list[str]:
        """Answer one question per image.

        Args:
            images: RGB images.
            questions: One question per image.

        Returns:
            One short, stripped, lower-case answer per image.

        Raises:
            InvalidArgumentError: Mismatched lengths, or an empty/blank question.
            BackendUnavailable: The model cannot be loaded.
            BackendError: The model failed while running.
        """
        check_questions(images, questions)
        if not images:
            return []
        model, processor = self.load()
        size = int(self.options["batch_size"])
        answers: list[str] = []
        for batch, asked in zip(batches(images, size), batches(questions, size), strict=True):
            answers.extend(self._run(model, processor, batch, [q.strip() for q in asked]))
        return answers

    def _run(self, model: Any, processor: Any, images: Sequence[Image], questions: list[str]) -> list[str]:
        """Generate the answers of one batch, one ``generate`` call per question length.

        Questions are grouped by token count so that no question is ever padded: the
        answer decoder of transformers' BLIP attends to every question position, padding
        included (its ``generate`` passes an all-ones mask, and transformers 5 drops the
        cross-attention mask altogether), so padding would change a question's answer with
        the other questions of its batch.
        """
        import torch

        rgb = [as_rgb(im) for im in images]
        answers = [""] * len(rgb)
        with self.model_errors(f"BLIP failed on a batch of {len(rgb)} question(s)"):
            inputs = processor(images=rgb, text=questions, return_tensors="pt", padding=True, truncation=True)
            lengths = inputs["attention_mask"].sum(dim=1).tolist()
            for length in sorted(set(lengths)):
                rows = [i for i, n in enumerate(lengths) if n == length]
                index = torch.tensor(rows)
                group = {
                    "pixel_values": inputs["pixel_values"][index],
                    "input_ids": inputs["input_ids"][index, :length],
                    "attention_mask": inputs["attention_mask"][index, :length],
                }
                with torch.inference_mode():
                    generated = model.generate(
                        **self.model_inputs(group),
                        max_new_tokens=int(self.options["max_new_tokens"]),
                        do_sample=False,
                        num_beams=1,
                    )
                for row, text in zip(rows, processor.batch_decode(generated, skip_special_tokens=True), strict=True):
                    answers[row] = " ".join(text.split()).lower()
        return answers
