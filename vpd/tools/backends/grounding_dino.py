"""Open-vocabulary detection with Grounding DINO (Hugging Face ``transformers``).

Grounding DINO reads one text prompt per image, the object names as lower-case phrases
joined by ``". "`` and ending with ``"."`` (``"cat. red mug."``), and scores each of its
box queries against every *token* of the prompt.

Labels come back as the caller's queries, exactly as spelled: instead of decoding the
tokens above ``text_threshold`` into a phrase and matching that string to the queries
(which yields phrases such as ``"cat mug"`` that are none of them), each query's token
span in the prompt is known, so every box is scored against each query as the highest
probability among that query's tokens, and labelled with the best query. A box is never
dropped for want of a string match, and never labelled with text that is not a query.
Tokens that belong to no query (``[CLS]``, ``[SEP]``, the ``"."`` separators) are ignored.

Prompts longer than the model's text limit (256 tokens) are split over several prompts
for the same image; their detections are merged (no suppression across prompts).

Only images that the processor resizes to the same shape share a forward pass: batching
pads images to the largest of the batch, and padding changes a DETR-style model's output,
so an image's detections would depend on the other images of the call (and the result
cache would keep whichever came first). Prompts of different lengths are safe to batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from vpd.errors import InvalidArgumentError
from vpd.tools.backends._common import (
    HubDetector,
    as_rgb,
    batches,
    box_tuple,
    pixel_corners,
    require_fraction,
    require_positive_int,
    sigmoid,
)
from vpd.tools.types import Detection

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["GroundingDinoDetector", "build_prompt"]


@dataclass(frozen=True)
class _Prompt:
    """One model input: an image and (some of) its queries, as one text prompt."""

    image: int  # index of the image in the call
    text: str
    labels: list[str]  # the caller's queries, in prompt order
    spans: list[tuple[int, int]]  # character span of each query's phrase in ``text``


def build_prompt(phrases: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """Join phrases into a Grounding DINO prompt and return each phrase's character span.

    Example:
        >>> build_prompt(["cat", "red mug"])
        ('cat. red mug.', [(0, 3), (5, 12)])
    """
    text, spans = "", []
    for phrase in phrases:
        if text:
            text += " "
        spans.append((len(text), len(text) + len(phrase)))
        text += phrase + "."
    return text, spans


def to_phrase(query: str) -> str:
    """The prompt phrase of a query: lower case, single spaces, without the ``"."`` separator."""
    return " ".join(query.lower().replace(".", " ").split())


class GroundingDinoDetector(HubDetector):
    """Open-vocabulary object detector: Grounding DINO (``AutoModelForZeroShotObjectDetection``).

    Options:
        box_threshold: Minimum probability of a box's best query token (0.35, the
            original default).
        text_threshold: Minimum probability of the best token of the query a box is
            labelled with (0.25). In the original it selects the tokens that form the
            predicted phrase; here labels are always the caller's queries, so it only
            matters when set above ``box_threshold``.
        batch_size: Prompts (images, or parts of an image's query list) per forward pass.
    """

    name: ClassVar[str] = "grounding_dino"
    default_model: ClassVar[str | None] = "IDEA-Research/grounding-dino-tiny"
    description: ClassVar[str] = "Grounding DINO open-vocabulary detector (transformers; any text query)"
    option_defaults: ClassVar[dict[str, Any]] = {"box_threshold": 0.35, "text_threshold": 0.25, "batch_size": 4}

    def __init__(self, model: str | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        require_fraction(self, "box_threshold")
        require_fraction(self, "text_threshold")
        require_positive_int(self, "batch_size")

    #: Queries that differ only in case, spacing or full stops read the same (and "." alone is empty).
    query_phrase = staticmethod(to_phrase)

    def _load(self) -> tuple[Any, Any]:
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        processor = self.from_pretrained(AutoProcessor)
        model = self.to_device(self.from_pretrained(AutoModelForZeroShotObjectDetection))
        return model, processor

    def _detect(
        self, images: Sequence[Image], queries: list[list[str]], todo: list[int], results: list[list[Detection]]
    ) -> None:
        model, processor = self.load()
        max_tokens = int(getattr(model.config, "max_text_len", 256))
        size = int(self.options["batch_size"])
        # A window of images at a time bounds the memory held by pre-processed pixels.
        for window in batches(todo, size):
            pixels = self._pixels(processor, images, window)
            prompts = [p for i in window for p in self._prompts(i, queries[i], processor.tokenizer, max_tokens)]
            # Only images that resize to the same shape share a pass: padding an image to the
            # batch's largest would change its detections with the company it keeps.
            by_shape: dict[tuple[int, ...], list[_Prompt]] = {}
            for prompt in prompts:
                by_shape.setdefault(tuple(pixels[prompt.image]["pixel_values"].shape), []).append(prompt)
            for group in by_shape.values():
                for batch in batches(group, size):
                    for prompt, found in zip(batch, self._run(model, processor, images, pixels, batch), strict=True):
                        results[prompt.image].extend(found)
        for detections in results:
            detections.sort(key=lambda d: -d.score)

    def _pixels(self, processor: Any, images: Sequence[Image], indices: list[int]) -> dict[int, Any]:
        """Pre-process the images at ``indices`` one by one (their resized shapes may differ)."""
        pixels = {}
        for i in indices:
            with self.model_errors(f"Grounding DINO could not pre-process image {i}"):
                pixels[i] = processor.image_processor(images=[as_rgb(images[i])], return_tensors="pt")
        return pixels

    def _prompts(self, image: int, queries: list[str], tokenizer: Any, max_tokens: int) -> list[_Prompt]:
        """Split one image's queries into prompts that fit the model's text limit."""
        # Queries that differ only in case or spacing share one phrase (first spelling wins).
        by_phrase: dict[str, str] = {}
        for query in queries:
            by_phrase.setdefault(to_phrase(query), query)
        groups: list[list[str]] = []
        used = max_tokens  # forces a new group for the first phrase
        for phrase in by_phrase:
            cost = len(tokenizer(phrase, add_special_tokens=False)["input_ids"]) + 1  # + its "."
            if cost + 2 > max_tokens:  # + [CLS] and [SEP]
                raise InvalidArgumentError(
                    f"The query {by_phrase[phrase]!r} is {cost - 1} tokens long; Grounding DINO reads at most "
                    f"{max_tokens - 3}. Use a shorter object name."
                )
            if used + cost > max_tokens:
                groups.append([])
                used = 2
            groups[-1].append(phrase)
            used += cost
        prompts = []
        for group in groups:
            text, spans = build_prompt(group)
            prompts.append(_Prompt(image, text, [by_phrase[p] for p in group], spans))
        return prompts

    def _run(
        self, model: Any, processor: Any, images: Sequence[Image], pixels: dict[int, Any], prompts: list[_Prompt]
    ) -> list[list[Detection]]:
        """One forward pass over prompts whose images share a shape; returns each prompt's detections."""
        import torch

        with self.model_errors(f"Grounding DINO failed on a batch of {len(prompts)} prompt(s)"):
            text = processor.tokenizer(
                [p.text for p in prompts],
                padding=True,
                return_token_type_ids=True,
                return_offsets_mapping=True,
                return_tensors="pt",
            )
            offsets = text.pop("offset_mapping").tolist()
            inputs = {key: torch.cat([pixels[p.image][key] for p in prompts]) for key in pixels[prompts[0].image]}
            with torch.inference_mode():
                outputs = model(**self.model_inputs({**inputs, **text}))
        logits = outputs.logits.float().cpu().numpy()
        boxes = outputs.pred_boxes.float().cpu().numpy()
        results = []
        for i, prompt in enumerate(prompts):
            image = images[prompt.image]
            tokens = query_tokens(offsets[i], prompt.spans, limit=logits.shape[-1])
            kept = postprocess(
                logits[i],
                boxes[i],
                tokens,
                width=image.width,
                height=image.height,
                box_threshold=float(self.options["box_threshold"]),
                text_threshold=float(self.options["text_threshold"]),
            )
            results.append([Detection(box=box, score=score, label=prompt.labels[q]) for box, score, q in kept])
        return results


def query_tokens(offsets: Sequence[Sequence[int]], spans: Sequence[tuple[int, int]], limit: int) -> list[list[int]]:
    """The token positions of each query, from the tokenizer's character offsets.

    Args:
        offsets: ``(start, end)`` character offsets of each token of the prompt; special
            and padding tokens have empty ``(0, 0)`` offsets.
        spans: Character span of each query's phrase in the prompt.
        limit: Number of token positions the model scored (later ones are ignored).

    Returns:
        For each query, the positions of its tokens.
    """
    tokens: list[list[int]] = [[] for _ in spans]
    for position, (start, end) in enumerate(offsets[:limit]):
        if end <= start:
            continue
        for q, (lo, hi) in enumerate(spans):
            if start >= lo and end <= hi:
                tokens[q].append(position)
                break
    return tokens


def postprocess(
    logits: np.ndarray,
    boxes: np.ndarray,
    tokens: Sequence[Sequence[int]],
    *,
    width: int,
    height: int,
    box_threshold: float,
    text_threshold: float,
) -> list[tuple[tuple[float, float, float, float], float, int]]:
    """Turn one prompt's raw outputs into boxes labelled with query indices.

    Args:
        logits: ``(num_boxes, num_tokens)`` token logits.
        boxes: ``(num_boxes, 4)`` ``(cx, cy, w, h)`` normalised to the image.
        tokens: Token positions of each query (see :func:`query_tokens`).
        width: Image width in pixels.
        height: Image height in pixels.
        box_threshold: Minimum score of a kept box.
        text_threshold: Minimum score of the query a box is labelled with.

    Returns:
        ``(box, score, query_index)`` triples; a box's score is the highest token
        probability of its query, and its query the one with the highest such score.
    """
    if logits.size == 0 or not any(tokens):
        return []
    probs = sigmoid(logits)  # -inf -> 0
    per_query = np.stack(
        [probs[:, list(t)].max(axis=1) if t else np.zeros(len(probs)) for t in tokens], axis=1
    )  # (num_boxes, num_queries)
    labels = per_query.argmax(axis=1)
    scores = per_query[np.arange(len(labels)), labels]
    corners = pixel_corners(boxes, scale=(width, height), width=width, height=height)
    keep = (scores > box_threshold) & (scores > text_threshold)
    keep &= (corners[:, 2] > corners[:, 0]) & (corners[:, 3] > corners[:, 1])
    idx = np.flatnonzero(keep)
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    return [(box_tuple(corners[i]), float(scores[i]), int(labels[i])) for i in idx]
