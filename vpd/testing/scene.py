"""A deterministic synthetic scene and fake backends that *look at its pixels*.

A :class:`Scene` draws each :class:`SceneObject` as a rectangle of a unique colour. The
fake backends recover which objects are visible in whatever crop they are given by
reading those colours, so the toolkit's real logic (cropping, coordinate conversion,
caching, events) runs unchanged, with no model::

    scene = Scene(640, 480, [SceneObject("cup", (100, 200, 180, 300), attributes=("red",))])
    patch = vpd.ImagePatch(scene.image, toolkit=scene.toolkit())
    patch.find("cup")            # one patch around the cup
    patch.find("red cup")        # also found: attributes may precede the name
    patch.exists("dog")          # False
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vpd.tools.backend import Availability, Backend
from vpd.tools.types import ChatMessage, Detection, PixelBox, TextLine

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

    from vpd.tools.toolkit import Toolkit

__all__ = [
    "FakeDepth",
    "FakeDetector",
    "FakeLLM",
    "FakeMatcher",
    "FakeOCR",
    "FakeSegmenter",
    "FakeVQA",
    "Scene",
    "SceneObject",
]

_BACKGROUND = (0, 0, 0)
_STOP = {"a", "an", "the", "of", "photo", "picture", "image", "is", "that", "this", "it"}
_COLOURS = {"red", "green", "blue", "yellow", "white", "black", "orange", "purple", "pink", "brown", "gray", "grey"}


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("es") and word[:-2].endswith(("s", "x", "ch", "sh")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


@dataclass(frozen=True)
class SceneObject:
    """One object of a :class:`Scene`.

    Attributes:
        label: Its name ("cup").
        box: ``(x0, y0, x1, y1)`` in pixels, top-left origin.
        attributes: Properties the fakes confirm ("red", "wooden").
        text: What OCR reads on it.
        depth: Its depth (larger is farther).
        aliases: Other names the fake detector accepts ("mug").
        score: The detection confidence the fake detector reports.
    """

    label: str
    box: tuple[int, int, int, int]
    attributes: tuple[str, ...] = ()
    text: str = ""
    depth: float = 1.0
    aliases: tuple[str, ...] = ()
    score: float = 0.9

    def names(self) -> set[str]:
        """Singular names this object answers to."""
        return {" ".join(_singular(w) for w in _words(n)) for n in (self.label, *self.aliases)}

    def matches(self, query: str) -> bool:
        """True if ``query`` names this object, optionally preceded by some of its attributes."""
        words = [_singular(w) for w in _words(query) if w not in ("a", "an", "the")]
        attrs = {a.lower() for a in self.attributes}
        for name in self.names():
            size = len(name.split())
            if words[-size:] == name.split() and all(w in attrs for w in words[:-size]):
                return True
        return False


class Scene:
    """A synthetic image with known objects, and fake backends that read it.

    Args:
        width: Image width in pixels.
        height: Image height in pixels.
        objects: The objects, drawn in order (later ones cover earlier ones).
        answers: VQA answers by question (case- and punctuation-insensitive), or a function
            ``(question, visible_objects) -> answer``. Unscripted questions get rule-based answers.
        llm: LLM replies: a mapping from a substring of the last user message to the reply,
            or a function ``(messages) -> reply``.
        background_depth: Depth of pixels no object covers.
    """

    def __init__(
        self,
        width: int = 640,
        height: int = 480,
        objects: Sequence[SceneObject] = (),
        *,
        answers: Mapping[str, str] | Callable[[str, list[SceneObject]], str] | None = None,
        llm: Mapping[str, str] | Callable[[Sequence[ChatMessage]], str] | None = None,
        background_depth: float = 10.0,
    ) -> None:
        if len(objects) > 250:
            raise ValueError("A Scene holds at most 250 objects.")
        self.width, self.height = int(width), int(height)
        self.objects = list(objects)
        self.answers = answers or {}
        self.llm = llm or {}
        self.background_depth = float(background_depth)
        self._colours = [self._colour(i) for i in range(len(self.objects))]
        self._image: Image | None = None

    @staticmethod
    def _colour(index: int) -> tuple[int, int, int]:
        n = index + 1  # 0 is the background
        return (40 + (n * 53) % 200, 40 + (n * 97) % 200, n)

    @property
    def image(self) -> Image:
        """The rendered scene (an RGB PIL image)."""
        if self._image is None:
            from PIL import Image, ImageDraw

            image = Image.new("RGB", (self.width, self.height), _BACKGROUND)
            draw = ImageDraw.Draw(image)
            for obj, colour in zip(self.objects, self._colours):
                x0, y0, x1, y1 = obj.box
                draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=colour)
            self._image = image
        return self._image.copy()

    def id_map(self, image: Image) -> np.ndarray:
        """``H x W`` int array: the index of the object at each pixel, -1 for background."""
        import numpy as np

        arr = np.asarray(image.convert("RGB"), dtype=np.int64)
        codes = arr[..., 0] * 65536 + arr[..., 1] * 256 + arr[..., 2]
        out = np.full(codes.shape, -1, dtype=np.int64)
        for i, (r, g, b) in enumerate(self._colours):
            out[codes == r * 65536 + g * 256 + b] = i
        return out

    def visible(self, image: Image) -> list[tuple[SceneObject, PixelBox, int]]:
        """Objects visible in ``image`` (a crop of the scene): object, its box there, pixel count."""
        import numpy as np

        ids = self.id_map(image)
        found = []
        for i in np.unique(ids):
            if i < 0:
                continue
            ys, xs = np.nonzero(ids == i)
            box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
            found.append((self.objects[int(i)], box, len(xs)))
        return found

    def toolkit(self, **overrides: Any) -> Toolkit:
        """A :class:`~vpd.Toolkit` whose every capability is served by this scene's fakes.

        Keyword arguments override capabilities or pass Toolkit options (``cache=False``...).
        """
        from vpd.tools.toolkit import Toolkit

        backends: dict[str, Any] = {
            "detect": FakeDetector(self),
            "segment": FakeSegmenter(self),
            "depth": FakeDepth(self),
            "ocr": FakeOCR(self),
            "vqa": FakeVQA(self),
            "match": FakeMatcher(self),
            "llm": FakeLLM(self),
        }
        backends.update(overrides)
        return Toolkit(**backends)


class _SceneBackend(Backend):
    name = "fake"
    description = "deterministic fake for tests: reads a vpd.testing.Scene's colour-coded pixels"

    def __init__(self, scene: Scene, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scene = scene
        self.calls = 0  # how many batches it served (tests check caching with it)

    @classmethod
    def check_available(cls, model: str | None = None) -> Availability:
        return Availability(True, "fake backend for tests")

    def cache_identity(self) -> str:
        # Two scenes must never share cached results.
        return f"{super().cache_identity()}/scene@{id(self.scene)}"


class FakeDetector(_SceneBackend):
    """Finds scene objects whose label, alias or "attribute label" matches the query."""

    capability = "detect"

    def detect(self, images: Sequence[Image], queries: Sequence[Sequence[str]]) -> list[list[Detection]]:
        """See :class:`vpd.tools.Detector`."""
        self.calls += 1
        out = []
        for image, names in zip(images, queries):
            visible = self.scene.visible(image)
            out.append(
                [Detection(box, obj.score, q, obj.label) for q in names for obj, box, _ in visible if obj.matches(q)]
            )
        return out


class FakeSegmenter(_SceneBackend):
    """Masks the visible pixels of the object whose extent best fits each box (highest IoU)."""

    capability = "segment"

    def segment(self, images: Sequence[Image], boxes: Sequence[Sequence[PixelBox]]) -> list[list[np.ndarray]]:
        """See :class:`vpd.tools.Segmenter`."""
        import numpy as np

        self.calls += 1
        out = []
        for image, image_boxes in zip(images, boxes):
            ids = self.scene.id_map(image)
            visible = self.scene.visible(image)
            masks = []
            for box in image_boxes:
                mask = np.zeros(ids.shape, dtype=bool)
                if visible:
                    best = max(range(len(visible)), key=lambda i: _iou(visible[i][1], box))
                    if _iou(visible[best][1], box) > 0:
                        x0, y0, x1, y1 = (int(round(v)) for v in box)
                        index = next(i for i, o in enumerate(self.scene.objects) if o is visible[best][0])
                        mask[y0:y1, x0:x1] = ids[y0:y1, x0:x1] == index
                masks.append(mask)
            out.append(masks)
        return out


def _iou(a: PixelBox, b: PixelBox) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class FakeDepth(_SceneBackend):
    """Each object's ``depth`` over its pixels, ``background_depth`` elsewhere."""

    capability = "depth"

    def estimate_depth(self, images: Sequence[Image]) -> list[np.ndarray]:
        """See :class:`vpd.tools.DepthEstimator`."""
        import numpy as np

        self.calls += 1
        out = []
        for image in images:
            ids = self.scene.id_map(image)
            depth = np.full(ids.shape, self.scene.background_depth, dtype=np.float32)
            for i, obj in enumerate(self.scene.objects):
                depth[ids == i] = obj.depth
            out.append(depth)
        return out


class FakeOCR(_SceneBackend):
    """Reads the ``text`` of each visible object."""

    capability = "ocr"

    def read_text(self, images: Sequence[Image]) -> list[list[TextLine]]:
        """See :class:`vpd.tools.TextReader`."""
        self.calls += 1
        return [
            [TextLine(obj.text, 0.99, box) for obj, box, _ in self.scene.visible(image) if obj.text] for image in images
        ]


def _largest(visible: list[tuple[SceneObject, PixelBox, int]]) -> SceneObject | None:
    return max(visible, key=lambda v: v[2])[0] if visible else None


class FakeVQA(_SceneBackend):
    """Scripted answers first; otherwise simple rules over the visible objects."""

    capability = "vqa"

    def answer(self, images: Sequence[Image], questions: Sequence[str]) -> list[str]:
        """See :class:`vpd.tools.VisualQA`."""
        self.calls += 1
        return [self._answer(image, q) for image, q in zip(images, questions)]

    def _answer(self, image: Image, question: str) -> str:
        visible = self.scene.visible(image)
        objects = [v[0] for v in sorted(visible, key=lambda v: -v[2])]
        if callable(self.scene.answers):
            return self.scene.answers(question, objects)
        key = " ".join(_words(question))
        for q, a in self.scene.answers.items():
            if " ".join(_words(q)) == key:
                return a
        main = _largest(visible)
        if main is None:
            return "nothing"
        words = _words(question)
        if words[:1] in (["is"], ["are"], ["does"]):
            wanted = [w for w in words[1:] if w not in _STOP and w not in ("yes", "no", "or", "answer")]
            known = {*_words(main.label), *(a.lower() for a in main.attributes)}
            return "yes" if wanted and all(_singular(w) in known or w in known for w in wanted) else "no"
        if "color" in words or "colour" in words:
            return next((a for a in main.attributes if a.lower() in _COLOURS), "unknown")
        if "which" in words:
            options = re.split(r",|\bor\b", question.split(":", 1)[-1].rstrip("?"))
            for option in (o.strip() for o in options):
                if option and (option.lower() in {a.lower() for a in main.attributes} or option.lower() == main.label):
                    return option
        return main.label


class FakeMatcher(_SceneBackend):
    """Logit = 5 x (matching words - contradicting words) against the largest visible object."""

    capability = "match"

    def score(self, images: Sequence[Image], texts: Sequence[Sequence[str]]) -> list[list[float]]:
        """See :class:`vpd.tools.ImageTextMatcher`."""
        self.calls += 1
        out = []
        for image, candidates in zip(images, texts):
            main = _largest(self.scene.visible(image))
            known = {*_words(main.label), *(a.lower() for a in main.attributes)} if main else set()
            row = []
            for text in candidates:
                words = [_singular(w) for w in _words(text) if w not in _STOP]
                row.append(5.0 * sum(1 if w in known else -1 for w in words))
            out.append(row)
        return out


class FakeLLM(_SceneBackend):
    """Scripted replies: a function of the messages, or a mapping from a substring of the question."""

    capability = "llm"

    def __init__(self, scene: Scene | None = None, **kwargs: Any) -> None:
        super().__init__(scene or Scene(1, 1), **kwargs)
        self.requests: list[list[ChatMessage]] = []

    def chat(
        self, conversations: Sequence[Sequence[ChatMessage]], *, max_tokens: int = 256, temperature: float = 0.0
    ) -> list[str]:
        """See :class:`vpd.tools.LanguageModel`."""
        self.calls += 1
        replies = []
        for messages in conversations:
            self.requests.append(list(messages))
            if callable(self.scene.llm):
                replies.append(self.scene.llm(messages))
                continue
            last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
            reply = next((r for k, r in self.scene.llm.items() if k.lower() in last.lower()), "unknown")
            replies.append(reply)
        return replies
