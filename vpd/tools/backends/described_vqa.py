"""The ``vqa/described`` backend: no VQA model, an LLM answering from a text description.

When no vision-language model can run, this fallback describes each image with the tools
that can (the bound detector, OCR and a colour histogram) and asks the bound LLM to answer
from that description. It answers questions about which common objects are present and
where, how many, what text is written, and dominant colours; it cannot answer anything the
tools do not see (actions, attributes of uncommon things, relations beyond rough position).

A description looks like::

    Image: 600x400 pixels (landscape).
    Objects detected (name: position, size, colour): cup: center, large, white.
    Text read: none.
    Main colours: brown 41%, white 27%, black 12%.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from vpd.errors import BackendUnavailable
from vpd.tools.backend import Availability, Backend
from vpd.tools.backends._common import check_questions
from vpd.tools.backends._litellm import short_answer
from vpd.tools.backends.coco import COCO_CLASSES
from vpd.tools.types import Detection, TextLine

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

__all__ = ["DescribedVQA", "colour_name", "dominant_colours"]

_SYSTEM_PROMPT = (
    "You answer questions about a photo you cannot see. You get a description made by automatic tools: "
    "an object detector (it knows a limited set of common objects and can miss or mislabel things), "
    "OCR (text read in the image) and a colour analysis. Answer with a few words only: a number, yes or no, "
    "a colour, a name or a short phrase. No explanation. If the description does not settle the question, "
    "give the most likely answer."
)

_NO_LLM = (
    "The 'described' VQA fallback needs an LLM to answer from its description of the image, and none is "
    "available: set VPD_LLM (e.g. VPD_LLM=openai/gpt-4o-mini, or ollama/qwen2.5-coder) or configure the llm "
    "capability."
)


class DescribedVQA(Backend):
    """VQA without a VQA model: detections + OCR + colours, described in text, answered by the LLM.

    Options:
        min_detection_score: Detections scoring lower are left out of the description
            (0 keeps whatever the bound detector returns above its own threshold).
        max_objects: Most detections described per image (highest scores first).
        max_text_lines: Most OCR lines quoted per image.
        colours: Include the image's dominant colours and each object's colour.
        max_tokens: Most tokens of the LLM's answer.
        lowercase: Lower-case the answers (the VQA convention).
    """

    capability: ClassVar[str] = "vqa"
    name: ClassVar[str] = "described"
    default_model: ClassVar[str | None] = None
    description: ClassVar[str] = (
        "no VQA model: the LLM answers from a text description built from detections, OCR and colours"
    )
    uses: ClassVar[tuple[str, ...]] = ("detect", "ocr", "llm")
    needs: ClassVar[tuple[str, ...]] = ("llm",)
    option_defaults: ClassVar[dict[str, Any]] = {
        "min_detection_score": 0.0,
        "max_objects": 12,
        "max_text_lines": 8,
        "colours": True,
        "max_tokens": 24,
        "lowercase": True,
    }

    @classmethod
    def check_available(cls, model: str | None = None) -> Availability:
        """Always installable; whether it can answer depends on the bound LLM (checked when used)."""
        return Availability(True, "needs an llm backend (required) and uses detect and ocr when available")

    def model_key(self) -> Hashable:
        """Nothing of its own to load."""
        return ("described_vqa",)

    def _load(self) -> Any:
        return None

    # -- the capability ----------------------------------------------------------------
    def answer(self, images: Sequence[Image], questions: Sequence[str]) -> list[str]:
        """Answer one question per image from a text description of it.

        Args:
            images: RGB PIL images.
            questions: One question per image.

        Returns:
            One short answer per image, in order.

        Raises:
            InvalidArgumentError: Lengths differ, or a question is empty.
            BackendUnavailable: No LLM is available (this fallback cannot answer without one).
            BackendError: The LLM or a sub-tool failed for another reason.
        """
        check_questions(images, questions)
        if not images:
            return []
        try:
            llm = self.dependency("llm")
        except BackendUnavailable as exc:
            raise BackendUnavailable(_NO_LLM, capability=self.capability, backend=self.name) from exc
        descriptions = self.describe(images)
        conversations = [
            [
                {"role": "system", "content": _SYSTEM_PROMPT},
                {"role": "user", "content": f"{description}\n\nQuestion: {question.strip()}\nShort answer:"},
            ]
            for description, question in zip(descriptions, questions)
        ]
        try:
            replies = llm.chat(conversations, max_tokens=int(self.options["max_tokens"]), temperature=0.0)
        except BackendUnavailable as exc:
            raise BackendUnavailable(f"{_NO_LLM} ({exc})", capability=self.capability, backend=self.name) from exc
        return [short_answer(reply, lowercase=bool(self.options["lowercase"])) for reply in replies]

    def describe(self, images: Sequence[Image]) -> list[str]:
        """Describe each image in a few lines of text (what the LLM answers from).

        Runs the bound detector and OCR once over the whole batch. A tool that is not
        available (not bound, or raising BackendUnavailable) is left out, and the description
        says so, so the LLM does not mistake "not looked for" for "absent".

        Args:
            images: RGB PIL images.

        Returns:
            One description per image.
        """
        if not images:
            return []
        detections = self._detections(images)
        texts = self._texts(images)
        descriptions = []
        for i, image in enumerate(images):
            width, height = image.size
            shape = "landscape" if width > height else "portrait" if height > width else "square"
            parts = [f"Image: {width}x{height} pixels ({shape})."]
            parts.append(self._describe_objects(image, None if detections is None else detections[i]))
            parts.append(self._describe_text(None if texts is None else texts[i]))
            if self.options["colours"]:
                colours = dominant_colours(image)
                parts.append("Main colours: " + ", ".join(f"{name} {share:.0%}" for name, share in colours) + ".")
            descriptions.append("\n".join(parts))
        return descriptions

    # -- sub-tools ---------------------------------------------------------------------
    def _detections(self, images: Sequence[Image]) -> list[list[Detection]] | None:
        try:
            detector = self.dependency("detect")
            detect_all = getattr(detector, "detect_all", None)
            if callable(detect_all):
                # A closed-vocabulary detector can list everything it knows in one pass.
                return list(detect_all(images))
            return list(detector.detect(images, [list(COCO_CLASSES)] * len(images)))
        except BackendUnavailable:
            return None

    def _texts(self, images: Sequence[Image]) -> list[list[TextLine]] | None:
        try:
            return list(self.dependency("ocr").read_text(images))
        except BackendUnavailable:
            return None

    def _describe_objects(self, image: Image, detections: list[Detection] | None) -> str:
        if detections is None:
            return "Objects: unknown (no object detector available)."
        threshold = float(self.options["min_detection_score"])
        kept = sorted((d for d in detections if d.score >= threshold), key=lambda d: -d.score)
        kept = kept[: int(self.options["max_objects"])]
        if not kept:
            return "Objects detected: none."
        by_name: dict[str, list[str]] = defaultdict(list)
        for det in kept:
            name = det.class_name or det.label
            by_name[name].append(self._where(image, det))
        items = []
        for name, places in by_name.items():
            count = f"{len(places)} x " if len(places) > 1 else ""
            items.append(f"{count}{name}: " + "; ".join(places))
        return (
            "Objects detected (name: position, size"
            + (", colour" if self.options["colours"] else "")
            + "): "
            + (" | ".join(items) + ".")
        )

    def _where(self, image: Image, det: Detection) -> str:
        width, height = image.size
        x0, y0, x1, y1 = det.box
        cx, cy = (x0 + x1) / 2 / max(width, 1), (y0 + y1) / 2 / max(height, 1)
        horizontal = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
        vertical = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else ""
        position = " ".join(p for p in (vertical, horizontal) if p) or "center"
        area = max(0.0, (x1 - x0) * (y1 - y0)) / max(width * height, 1)
        size = "large" if area >= 0.25 else "medium" if area >= 0.04 else "small"
        words = [position, size]
        if self.options["colours"]:
            # The central part of the box: less background than the whole box.
            mx, my = (x1 - x0) * 0.2, (y1 - y0) * 0.2
            crop = image.crop(
                (int(x0 + mx), int(y0 + my), max(int(x0 + mx) + 1, int(x1 - mx)), max(int(y0 + my) + 1, int(y1 - my)))
            )
            colours = dominant_colours(crop, top=1)
            if colours:
                words.append(colours[0][0])
        return ", ".join(words)

    def _describe_text(self, lines: list[TextLine] | None) -> str:
        if lines is None:
            return "Text read: unknown (no OCR available)."
        # At most max_text_lines lines of at most 200 characters: the prompt stays bounded.
        texts = [line.text.strip()[:200] for line in lines if line.text.strip()][: int(self.options["max_text_lines"])]
        if not texts:
            return "Text read: none."
        return "Text read: " + "; ".join(f'"{text}"' for text in texts) + "."


# -- colours ---------------------------------------------------------------------------
def colour_name(hue: float, saturation: float, value: float) -> str:
    """A basic colour name for an HSV colour (all three in [0, 1]).

    Greys first (low saturation or value), then hue bands; dark or muted oranges are "brown",
    pale ones "beige", dark yellows "brown".
    """
    if value < 0.2:
        return "black"
    if saturation < 0.18:
        return "white" if value > 0.8 else "gray"
    degrees = hue * 360.0
    if degrees < 15 or degrees >= 345:
        return "pink" if saturation < 0.45 and value > 0.7 else "brown" if value < 0.45 else "red"
    if degrees < 45:
        # Warm and pale is beige (wood, skin, paper in warm light); warm and muted or dark is brown.
        if value < 0.6:
            return "brown"
        if saturation < 0.5:
            return "beige" if value > 0.8 else "brown"
        return "orange" if value >= 0.8 else "brown"
    if degrees < 70:
        return "brown" if value < 0.5 else "yellow"
    if degrees < 165:
        return "green"
    if degrees < 195:
        return "cyan"
    if degrees < 260:
        return "blue"
    if degrees < 290:
        return "purple"
    return "pink"


def dominant_colours(image: Image, *, top: int = 3, min_share: float = 0.08) -> list[tuple[str, float]]:
    """The most common colour names in an image, with their share of pixels.

    Args:
        image: An RGB PIL image (downscaled internally to at most 64x64).
        top: How many colours to return at most.
        min_share: Colours covering less than this fraction are left out (the first one is always kept).

    Returns:
        ``[(name, share), ...]`` by decreasing share.
    """
    import numpy as np

    small = image.convert("RGB")
    small.thumbnail((64, 64))
    hsv = np.asarray(small.convert("HSV"), dtype=np.float64).reshape(-1, 3) / 255.0
    if hsv.size == 0:
        return []
    counts: dict[str, int] = defaultdict(int)
    for name in _names(hsv):
        counts[name] += 1
    total = float(len(hsv))
    ranked = sorted(((name, n / total) for name, n in counts.items()), key=lambda item: -item[1])
    return [item for i, item in enumerate(ranked[:top]) if i == 0 or item[1] >= min_share]


def _names(hsv: np.ndarray) -> list[str]:
    # Few distinct colours after quantisation: name each once.
    import numpy as np

    quantised = np.round(hsv * 31).astype(np.int64)
    keys = quantised[:, 0] * 1024 + quantised[:, 1] * 32 + quantised[:, 2]
    unique, inverse = np.unique(keys, return_inverse=True)
    names = [colour_name((k // 1024) / 31, ((k // 32) % 32) / 31, (k % 32) / 31) for k in unique.tolist()]
    return [names[i] for i in inverse.reshape(-1).tolist()]
