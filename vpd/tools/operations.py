"""How the toolkit serves each ImagePatch operation.

:class:`ToolOperations` is the part of :class:`~vpd.Toolkit` that implements
:class:`~vpd.tools.contract.PatchOperations`: it turns a program's request (``find``,
``ocr``, ``simple_query``...) on an image region into capability calls, memoised in the
result cache and reported as one :class:`~vpd.traces.ToolCall` each (see
:mod:`vpd.tools.events`).

Regions are ``(x0, y0, x1, y1)`` integer pixel boxes of the full image with the origin at
the top-left corner (x1, y1 exclusive); ``ImagePatch`` converts from its own convention.

How each operation is served:

=====================  ==========================================================================
``find``               detect on the crop; boxes back in image coordinates, best score first;
                       masks from the segmenter when one is configured
``exists``             ``find`` returned anything
``verify_property``    match: "a photo of a {property} {name}" vs "a photo of a {name}";
                       without a matcher, VQA "Is the {name} {property}?"
``best_text_match``    match over the options; without a matcher, VQA, answer mapped to the closest option
``simple_query``       VQA on the crop
``depth``              median of the full image's depth map inside the box (and mask)
``ocr``                OCR on the crop, lines in reading order joined by spaces
``llm_query``          the LLM, with an instruction to answer briefly (or at length)
``best_image_match``   match of each crop against the texts; without a matcher, detector scores
=====================  ==========================================================================
"""

from __future__ import annotations

import difflib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from vpd.errors import BackendError, InvalidArgumentError, ToolError, VPDError
from vpd.tools.cache import ResultCache, cache_key
from vpd.tools.contract import Box, Region
from vpd.tools.events import emit
from vpd.tools.types import ChatMessage, Detection, TextLine
from vpd.traces.trace import ToolCall

if TYPE_CHECKING:
    import numpy as np

    from vpd.image import ImageData
    from vpd.tools.backend import Backend
    from vpd.tools.user_tools import ToolRegistry

__all__ = ["MAX_MATCH_PAIRS", "MAX_PROMPT_BYTES", "MAX_TEXT_CHARS", "MIN_REGION_SIDE", "ToolOperations"]

T = TypeVar("T")

#: Longest object name, question or option accepted from a program.
MAX_TEXT_CHARS = 1000
#: Most options accepted by ``best_text_match`` / texts by ``best_image_match``.
MAX_OPTIONS = 64
#: Most region-text pairs one ``best_image_match`` call scores (each is a model call).
MAX_MATCH_PAIRS = 256
#: Shortest side, in pixels, of a region read by OCR, VQA or image-text matching: thinner
#: crops carry nothing readable, and models that scale a crop's short side up to their
#: input size blow a thin strip up into an enormous image.
MIN_REGION_SIDE = 8
#: Most UTF-8 bytes of a question sent to a VQA or language model, as composed (options
#: included). Text short in characters can be long in tokens, and a model's time grows with
#: its prompt's tokens; a tokenizer never makes more tokens than bytes, so this bounds them,
#: the same way whichever model answers and whether or not it is loaded.
MAX_PROMPT_BYTES = 2048

_SHORT = "Answer the question with a single word or a short phrase, no explanation."
_LONG = "Answer the question helpfully and concisely, in at most a few sentences."


@dataclass
class _Call:
    """Bookkeeping for one operation: the capability calls it made."""

    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def cache_hit(self) -> bool:
        return bool(self.steps) and all(s["cache_hit"] for s in self.steps)


def check_text(value: Any, what: str) -> str:
    """Validate a text argument from a program: a non-empty string of bounded length."""
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{what} must be a string, got {type(value).__name__}.")
    text = " ".join(value.split())
    if not text:
        raise InvalidArgumentError(f"{what} is empty; pass a non-empty string such as 'car'.")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidArgumentError(f"{what} is {len(text)} characters long; the limit is {MAX_TEXT_CHARS}.")
    return text


def check_options(options: Any, what: str = "options") -> list[str]:
    """Validate a non-empty list of strings (at most :data:`MAX_OPTIONS`)."""
    if isinstance(options, str) or not isinstance(options, (list, tuple)):
        raise InvalidArgumentError(f"{what} must be a list of strings, e.g. ['red', 'blue'].")
    if not options:
        raise InvalidArgumentError(f"{what} is empty; pass at least one string.")
    if len(options) > MAX_OPTIONS:
        raise InvalidArgumentError(f"{what} has {len(options)} items; the limit is {MAX_OPTIONS}.")
    return [check_text(o, f"each of {what}") for o in options]


def reading_order(lines: Sequence[TextLine]) -> list[TextLine]:
    """Sort OCR lines top to bottom, then left to right within a row."""
    if not lines:
        return []
    heights = sorted(max(1.0, line.box[3] - line.box[1]) for line in lines)
    tolerance = heights[len(heights) // 2] / 2  # lines whose centres differ by < half a line share a row
    ordered = sorted(lines, key=lambda line: (line.box[1] + line.box[3]) / 2)
    rows: list[list[TextLine]] = []
    for line in ordered:
        centre = (line.box[1] + line.box[3]) / 2
        if rows and abs(centre - (rows[-1][0].box[1] + rows[-1][0].box[3]) / 2) < tolerance:
            rows[-1].append(line)
        else:
            rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda line: line.box[0])]


def closest_option(answer: str, options: Sequence[str]) -> str:
    """Map a free-text answer onto one of ``options`` (exact, containment, then string similarity)."""
    norm = answer.strip().lower().rstrip(".")
    for option in options:
        if option.lower() == norm:
            return option
    contained = [o for o in options if o.lower() in norm]
    if contained:
        return max(contained, key=len)
    return max(options, key=lambda o: difflib.SequenceMatcher(None, o.lower(), norm).ratio())


def _softmax_first(logits: Sequence[float]) -> float:
    top = max(logits)
    exps = [math.exp(v - top) for v in logits]
    return exps[0] / sum(exps)


def _yes(answer: str) -> bool:
    words = answer.strip().lower().replace(",", " ").replace(".", " ").split()
    return bool(words) and words[0] in ("yes", "true", "yeah", "yep", "correct")


class ToolOperations:
    """The operations of a toolkit (mixed into :class:`~vpd.Toolkit`)."""

    cache: ResultCache | None
    tools: ToolRegistry

    def backend(self, capability: str) -> Backend:
        """The backend serving ``capability`` (implemented by the Toolkit)."""
        raise NotImplementedError

    def has(self, capability: str) -> bool:
        """Whether ``capability`` is served (implemented by the Toolkit)."""
        raise NotImplementedError

    # -- plumbing ----------------------------------------------------------------------
    def _capability(
        self,
        call: _Call,
        capability: str,
        image: ImageData | None,
        box: Box | None,
        inputs: Any,
        compute: Callable[[Any], T],
    ) -> T:
        """Run one capability call through the result cache, recording it in ``call``."""
        backend = self.backend(capability)
        key = cache_key(backend.cache_identity(), image.sha256 if image is not None else None, box, inputs)
        start = time.perf_counter()
        was_loaded = bool(getattr(backend, "loaded", True))

        def run() -> T:
            try:
                return compute(backend)
            except VPDError:
                raise
            except Exception as exc:
                raise BackendError(
                    f"The {capability} backend {backend.name!r} failed: {type(exc).__name__}: {exc}",
                    capability=capability,
                    backend=backend.name,
                ) from exc

        value: T
        if self.cache is not None:
            cached, hit = self.cache.get_or_compute(key, run)
            value = cast(T, cached)
        else:
            value, hit = run(), False
        call.steps.append(
            {
                "capability": capability,
                "backend": backend.name,
                "model": backend.model_id,
                "seconds": round(time.perf_counter() - start, 6),
                "cache_hit": hit,
                # The model loaded during this call: its time is mostly the loading.
                **({"cold_start": True} if not was_loaded and bool(getattr(backend, "loaded", True)) else {}),
            }
        )
        return value

    def _operation(
        self,
        operation: str,
        capability: str,
        image: ImageData | None,
        box: Box | None,
        inputs: dict[str, Any],
        run: Callable[[_Call], T],
        summarize: Callable[[T], Any] = lambda value: value,
        details: Callable[[T], dict[str, Any]] | None = None,
    ) -> T:
        """Run an operation, emitting one :class:`~vpd.traces.ToolCall` whether it succeeds or fails."""
        call = _Call()
        start = time.perf_counter()
        try:
            value = run(call)
        except Exception as exc:
            self._emit(operation, capability, image, box, inputs, None, start, call, error=str(exc))
            raise
        extra = details(value) if details is not None else {}
        self._emit(operation, capability, image, box, inputs, summarize(value), start, call, details=extra)
        return value

    def _emit(
        self,
        operation: str,
        capability: str,
        image: ImageData | None,
        box: Box | None,
        inputs: dict[str, Any],
        output: Any,
        start: float,
        call: _Call,
        *,
        error: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        primary = next((s for s in call.steps if s["capability"] == capability), None)
        facts: dict[str, Any] = {"steps": call.steps}
        if image is not None:  # the image's hash (16 hex digits) tells apart calls recorded across images
            facts["image"] = image.sha256[:16]
        if details:
            facts.update(details)
        emit(
            ToolCall(
                index=-1,  # placed by whoever records it
                operation=operation,
                capability=capability,
                backend=primary["backend"] if primary else "",
                model=primary["model"] if primary else None,
                inputs=inputs,
                output=output,
                box=list(box) if box is not None else None,
                line=None,
                seconds=round(time.perf_counter() - start, 6),
                cache_hit=call.cache_hit,
                error=error,
                details=facts,
            )
        )

    @staticmethod
    def _crop(image: ImageData, box: Box) -> Any:
        if box == (0, 0, image.width, image.height):
            return image.pil
        return image.crop(box)

    def check_region(self, image: ImageData, box: Sequence[int], operation: str) -> Box:
        """:meth:`check_box`, and a region at least :data:`MIN_REGION_SIDE` pixels on each side."""
        x0, y0, x1, y1 = box = self.check_box(image, box)
        if x1 - x0 < MIN_REGION_SIDE or y1 - y0 < MIN_REGION_SIDE:
            width, height = image.size
            if width < MIN_REGION_SIDE or height < MIN_REGION_SIDE:
                raise InvalidArgumentError(
                    f"{operation}() needs a region at least {MIN_REGION_SIDE} pixels wide and tall, and the whole "
                    f"image is only {width}x{height}. Use a larger image (upscale it before solving)."
                )
            raise InvalidArgumentError(
                f"{operation}() needs a region at least {MIN_REGION_SIDE} pixels wide and tall; this one is "
                f"{x1 - x0}x{y1 - y0}. Look at a larger region (crop less)."
            )
        return box

    @staticmethod
    def check_prompt(text: str, what: str, fix: str = "Ask a shorter question.") -> None:
        """Reject a question for a model longer than :data:`MAX_PROMPT_BYTES` bytes of UTF-8."""
        size = len(text.encode("utf-8", "replace"))
        if size > MAX_PROMPT_BYTES:
            raise InvalidArgumentError(
                f"{what} is {size} bytes of UTF-8; the limit is {MAX_PROMPT_BYTES} (it bounds the tokens a model "
                f"reads). {fix}"
            )

    @staticmethod
    def check_box(image: ImageData, box: Sequence[int]) -> Box:
        """Clamp ``box`` to the image; raise if nothing is left of it."""
        if len(box) != 4:
            raise InvalidArgumentError(f"A box has 4 numbers (x0, y0, x1, y1), got {len(box)}.")
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        x0, x1 = max(0, min(x0, image.width)), max(0, min(x1, image.width))
        y0, y1 = max(0, min(y0, image.height)), max(0, min(y1, image.height))
        if x1 <= x0 or y1 <= y0:
            raise InvalidArgumentError(
                f"The region {tuple(box)} has no pixels inside the {image.width}x{image.height} image."
            )
        return (x0, y0, x1, y1)

    # -- detection ---------------------------------------------------------------------
    def detect(self, image: ImageData, box: Box, queries: Sequence[str]) -> list[Detection]:
        """Raw detections for ``queries`` in a region, in *full-image* coordinates (cached)."""
        box = self.check_box(image, box)
        names = [check_text(q, "object_name") for q in queries]
        return self._detections(_Call(), image, box, names)

    def _detections(self, call: _Call, image: ImageData, box: Box, names: list[str]) -> list[Detection]:
        def compute(backend: Any) -> list[Detection]:
            batch = backend.detect([self._crop(image, box)], [names])
            if not isinstance(batch, list) or len(batch) != 1:
                raise BackendError(
                    f"The detect backend {backend.name!r} returned a malformed batch.", capability="detect"
                )
            for d in batch[0]:
                values = [*d.box, d.score]
                if len(d.box) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                    raise BackendError(
                        f"The detect backend {backend.name!r} returned an invalid detection {d!r}.",
                        capability="detect",
                        backend=backend.name,
                    )
            return [_shift(d, box) for d in batch[0]]

        return self._capability(call, "detect", image, box, {"queries": names}, compute)

    def find(self, image: ImageData, box: Box, object_name: str) -> list[Region]:
        """Objects called ``object_name`` inside ``box``, best first (see the module docstring)."""
        box = self.check_box(image, box)
        name = check_text(object_name, "object_name")

        def run(call: _Call) -> list[Region]:
            detections = self._detections(call, image, box, [name])
            regions = _regions(detections, image, name)
            if regions and self.has("segment"):
                boxes = [r.box for r in regions]
                masks = self._capability(
                    call,
                    "segment",
                    image,
                    None,
                    {"boxes": boxes},
                    lambda backend: backend.segment([image.pil], [[tuple(float(v) for v in b) for b in boxes]])[0],
                )
                cropped = [_crop_mask(m, r.box) for r, m in zip(regions, masks)]
                regions = [
                    Region(r.box, r.score, r.label, r.class_name, m, int(m.sum())) for r, m in zip(regions, cropped)
                ]
            return regions

        return self._operation(
            "find",
            "detect",
            image,
            box,
            {"object_name": name},
            run,
            summarize=lambda regions: [{"box": list(r.box), "score": round(r.score, 4)} for r in regions],
            details=lambda regions: {
                "classes": sorted({r.class_name for r in regions if r.class_name}),
                **self.backend("detect").explain([name]),
            },
        )

    def exists(self, image: ImageData, box: Box, object_name: str) -> bool:
        """Whether ``find`` returns at least one object (shares its cached detection)."""
        box = self.check_box(image, box)
        name = check_text(object_name, "object_name")
        evidence: list[Region] = []

        def run(call: _Call) -> bool:
            # the same filtering as find(), so exists() is True exactly when find() is non-empty
            evidence[:] = _regions(self._detections(call, image, box, [name]), image, name)
            return bool(evidence)

        return self._operation(
            "exists",
            "detect",
            image,
            box,
            {"object_name": name},
            run,
            # The boxes that made it True, for the trace views (at most 20; the count is exact).
            details=lambda _: {
                "evidence": [{"box": list(r.box), "score": round(r.score, 4)} for r in evidence[:20]],
                "evidence_count": len(evidence),
                "classes": sorted({r.class_name for r in evidence if r.class_name}),
                **self.backend("detect").explain([name]),
            },
        )

    # -- questions about a region ------------------------------------------------------
    def simple_query(self, image: ImageData, box: Box, question: str) -> str:
        """A short VQA answer about the region."""
        box = self.check_region(image, box, "simple_query")
        q = check_text(question, "question")
        self.check_prompt(q, "question")
        return self._operation(
            "simple_query", "vqa", image, box, {"question": q}, lambda call: self._vqa(call, image, box, q)
        )

    def _vqa(self, call: _Call, image: ImageData, box: Box, question: str) -> str:
        self.check_prompt(question, "the question for the VQA model")  # every question, however composed
        answer = self._capability(
            call, "vqa", image, box, {"question": question}, lambda b: b.answer([self._crop(image, box)], [question])[0]
        )
        return str(answer).strip()

    def verify_property(self, image: ImageData, box: Box, object_name: str, property: str) -> bool:
        """Whether the object in the region has ``property`` (see the module docstring)."""
        box = self.check_region(image, box, "verify_property")
        name = check_text(object_name, "object_name")
        prop = check_text(property, "property")
        question = f"Is the {name} {prop}? Answer yes or no."
        if not self.has("match"):  # the question the VQA model will read, as composed
            self.check_prompt(question, "verify_property's question", "Use a shorter object name and property.")

        judged: dict[str, Any] = {}

        def run(call: _Call) -> bool:
            if self.has("match"):
                texts = [f"a photo of a {prop} {name}", f"a photo of a {name}"]
                logits = self._capability(
                    call, "match", image, box, {"texts": texts}, lambda b: b.score([self._crop(image, box)], [texts])[0]
                )
                probability = _softmax_first(logits)
                judged["score"] = round(probability, 4)  # for display: the verdict uses the exact value
                return probability > 0.5
            judged["answer"] = self._vqa(call, image, box, question)
            return _yes(judged["answer"])

        def evidence(verdict: bool) -> dict[str, Any]:
            # The region judged and the verdict, for the trace views (drawn like exists()' boxes).
            label = f"{prop}? {'yes' if verdict else 'no'}"
            if "answer" in judged:
                label += f" ({judged['answer'][:40]!r})"
            item: dict[str, Any] = {"box": list(box), "label": label}
            if "score" in judged:
                item["score"] = judged["score"]
            return {"evidence": [item], "evidence_count": 1}

        capability = "match" if self.has("match") else "vqa"
        inputs = {"object_name": name, "property": prop}
        return self._operation("verify_property", capability, image, box, inputs, run, details=evidence)

    def best_text_match(self, image: ImageData, box: Box, options: Sequence[str]) -> str:
        """The option that best describes the region."""
        box = self.check_region(image, box, "best_text_match")
        opts = check_options(options)
        listed = ", ".join(opts[:-1]) + f" or {opts[-1]}" if len(opts) > 1 else opts[0]
        question = f"Which of these best describes it: {listed}?"
        if not self.has("match"):  # the options are asked of the VQA model in one question
            self.check_prompt(question, "best_text_match's question", "Pass fewer or shorter options.")

        def run(call: _Call) -> str:
            if self.has("match"):
                logits = self._capability(
                    call, "match", image, box, {"texts": opts}, lambda b: b.score([self._crop(image, box)], [opts])[0]
                )
                return opts[max(range(len(opts)), key=lambda i: logits[i])]
            return closest_option(self._vqa(call, image, box, question), opts)

        capability = "match" if self.has("match") else "vqa"
        return self._operation("best_text_match", capability, image, box, {"options": opts}, run)

    def best_image_match(self, image: ImageData, boxes: Sequence[Box], content: Sequence[str]) -> int:
        """Index of the region that best matches any of the ``content`` texts."""
        if not boxes:
            raise InvalidArgumentError("best_image_match needs a non-empty list of patches.")
        if len(boxes) > MAX_OPTIONS:
            raise InvalidArgumentError(f"best_image_match takes at most {MAX_OPTIONS} patches, got {len(boxes)}.")
        regions = [self.check_region(image, b, "best_image_match") for b in boxes]
        texts = check_options(content, "content")
        if len(regions) * len(texts) > MAX_MATCH_PAIRS:
            raise InvalidArgumentError(
                f"best_image_match would score {len(regions)} patches x {len(texts)} texts = "
                f"{len(regions) * len(texts)} pairs; the limit is {MAX_MATCH_PAIRS}. Pass fewer patches or texts."
            )

        def run(call: _Call) -> int:
            scores: list[float] = []
            for region in regions:
                if self.has("match"):
                    logits = self._capability(
                        call,
                        "match",
                        image,
                        region,
                        {"texts": texts},
                        _scorer(image, region, texts),
                    )
                    scores.append(max(logits))
                else:
                    found: list[Detection] = []
                    for text in texts:
                        found += self._detections(call, image, region, [text])
                    scores.append(max((d.score for d in found), default=0.0))
            return max(range(len(regions)), key=lambda i: scores[i])

        capability = "match" if self.has("match") else "detect"
        return self._operation(
            "best_image_match", capability, image, None, {"boxes": [list(r) for r in regions], "content": texts}, run
        )

    # -- depth and text ----------------------------------------------------------------
    def depth_map(self, image: ImageData) -> np.ndarray:
        """The full image's depth map (cached; larger is farther)."""
        return self._depth_map(_Call(), image)

    def _depth_map(self, call: _Call, image: ImageData) -> np.ndarray:
        import numpy as np

        full = np.asarray(self._capability(call, "depth", image, None, {}, lambda b: b.estimate_depth([image.pil])[0]))
        if full.shape != (image.height, image.width):
            raise BackendError(
                f"The depth backend {self.backend('depth').name!r} returned a {full.shape} map for a "
                f"{image.width}x{image.height} image; it must be (height, width).",
                capability="depth",
            )
        return full

    def depth(self, image: ImageData, box: Box, mask: np.ndarray | None = None) -> float:
        """Median depth inside the region (inside ``mask`` when given; larger is farther)."""
        import numpy as np

        box = self.check_box(image, box)

        def run(call: _Call) -> float:
            values = self._depth_map(call, image)[box[1] : box[3], box[0] : box[2]]
            if mask is not None and mask.shape == values.shape and mask.any():
                values = values[mask]
            return float(np.median(values))

        return self._operation(
            "depth",
            "depth",
            image,
            box,
            {"masked": mask is not None},
            run,
            summarize=lambda v: round(v, 6),
        )

    def read_text(self, image: ImageData, box: Box) -> list[TextLine]:
        """OCR lines of the region in reading order, in full-image coordinates (cached)."""
        box = self.check_box(image, box)
        return self._read(_Call(), image, box)

    def _read(self, call: _Call, image: ImageData, box: Box) -> list[TextLine]:
        def compute(backend: Any) -> list[TextLine]:
            lines = backend.read_text([self._crop(image, box)])[0]
            dx, dy = box[0], box[1]
            shifted = [
                TextLine(
                    line.text,
                    float(line.score),
                    (line.box[0] + dx, line.box[1] + dy, line.box[2] + dx, line.box[3] + dy),
                )
                for line in lines
            ]
            return reading_order(shifted)

        return self._capability(call, "ocr", image, box, {}, compute)

    def ocr(self, image: ImageData, box: Box) -> str:
        """The text in the region, lines in reading order joined by spaces ('' if none)."""
        box = self.check_region(image, box, "ocr")
        return self._operation(
            "ocr",
            "ocr",
            image,
            box,
            {},
            lambda call: " ".join(line.text.strip() for line in self._read(call, image, box) if line.text.strip()),
        )

    # -- language ----------------------------------------------------------------------
    def llm_query(self, question: str, long_answer: bool = False) -> str:
        """Ask the LLM a text question (no image)."""
        q = check_text(question, "question")
        if not isinstance(long_answer, bool):
            raise InvalidArgumentError("long_answer must be True or False.")
        self.check_prompt(q, "question")
        messages: list[ChatMessage] = [
            {"role": "system", "content": _LONG if long_answer else _SHORT},
            {"role": "user", "content": q},
        ]
        max_tokens = 256 if long_answer else 32

        def run(call: _Call) -> str:
            reply = self._capability(
                call,
                "llm",
                None,
                None,
                {"messages": messages, "max_tokens": max_tokens},
                lambda b: b.chat([messages], max_tokens=max_tokens, temperature=0.0)[0],
            )
            return str(reply).strip()

        return self._operation("llm_query", "llm", None, None, {"question": q, "long_answer": long_answer}, run)

    # -- user tools --------------------------------------------------------------------
    def call_tool(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the user tool ``name`` (registered with ``@vpd.tool``), traced like the rest.

        Raises:
            InvalidArgumentError: Unknown tool or wrong arguments.
            ToolError: The tool raised (the original exception is chained).
        """
        spec = self.tools.get(name)
        if spec is None:
            known = ", ".join(self.tools.names()) or "none registered"
            raise InvalidArgumentError(f"Unknown tool {name!r}; registered tools: {known}.")
        spec.bind_arguments(args[1:] if spec.kind == "method" else args, kwargs)

        def run(call: _Call) -> Any:
            start = time.perf_counter()
            try:
                result = spec.func(*args, **kwargs)
            except VPDError:
                raise
            except Exception as exc:
                raise ToolError(f"Tool {name!r} failed: {type(exc).__name__}: {exc}", tool=name) from exc
            call.steps.append(
                {
                    "capability": "tool",
                    "backend": name,
                    "model": None,
                    "seconds": time.perf_counter() - start,
                    "cache_hit": False,
                }
            )
            return result

        shown_args = [_summary(a) for a in (args[1:] if spec.kind == "method" else args)]
        patch = args[0] if spec.kind == "method" and args else None
        return self._operation(
            name,
            "tool",
            getattr(patch, "image", None),
            getattr(patch, "xyxy", None),
            {"args": shown_args, "kwargs": {k: _summary(v) for k, v in kwargs.items()}},
            run,
            _summary,
        )


def _summary(value: Any) -> Any:
    """A short JSON-safe rendering of a value for events."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value if len(value) <= 200 else value[:200] + "..."
    if isinstance(value, (list, tuple)):
        return [_summary(v) for v in value[:20]] + (["..."] if len(value) > 20 else [])
    if isinstance(value, dict):
        return {str(k)[:50]: _summary(v) for k, v in list(value.items())[:20]}
    box = getattr(value, "xyxy", None)
    if box is not None:
        return {"type": type(value).__name__, "box": list(box)}
    return type(value).__name__


def _scorer(image: ImageData, box: Box, texts: list[str]) -> Callable[[Any], list[float]]:
    """A cache-compute function scoring ``texts`` against one region (cropped only on a miss)."""
    return lambda backend: backend.score([ToolOperations._crop(image, box)], [texts])[0]


def _regions(detections: Sequence[Detection], image: ImageData, name: str) -> list[Region]:
    """Detections as integer regions inside the image, best first; empty boxes dropped."""
    regions = [
        Region(_int_box(d.box, image), float(d.score), name, d.class_name)
        for d in sorted(detections, key=lambda d: -d.score)
    ]
    return [r for r in regions if r.box[2] > r.box[0] and r.box[3] > r.box[1]]


def _shift(d: Detection, box: Box) -> Detection:
    x0, y0 = box[0], box[1]
    b = d.box
    return Detection((b[0] + x0, b[1] + y0, b[2] + x0, b[3] + y0), d.score, d.label, d.class_name)


def _int_box(box: Sequence[float], image: ImageData) -> Box:
    x0 = max(0, min(image.width, int(math.floor(box[0]))))
    y0 = max(0, min(image.height, int(math.floor(box[1]))))
    x1 = max(0, min(image.width, int(math.ceil(box[2]))))
    y1 = max(0, min(image.height, int(math.ceil(box[3]))))
    return (x0, y0, x1, y1)


def _crop_mask(mask: Any, box: Box) -> np.ndarray:
    import numpy as np

    full = np.asarray(mask, dtype=bool)
    return full[box[1] : box[3], box[0] : box[2]].copy()
