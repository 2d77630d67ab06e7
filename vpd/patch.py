"""``ImagePatch``: the typed image API that generated programs are written against.

The docstrings of this class and of :mod:`vpd.helpers` are written for the LLM that writes
programs: the program-writing prompt is rendered from them (see
:func:`vpd.programs.api.render_api`), so the prompt cannot drift from the code.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from vpd.errors import InvalidArgumentError
from vpd.image import ImageData, ImageSource, load_image

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image as PILImage

    from vpd.tools.contract import PatchOperations

__all__ = ["COMPAT_API", "LONG_ANSWER_DEFAULT", "PATCH_API", "ImagePatch", "long_answer_or_default"]

#: The ImagePatch members shown to the program-writing LLM, in prompt order.
PATCH_API: tuple[str, ...] = (
    "left",
    "lower",
    "right",
    "upper",
    "width",
    "height",
    "horizontal_center",
    "vertical_center",
    "area",
    "find",
    "exists",
    "verify_property",
    "best_text_match",
    "simple_query",
    "depth",
    "ocr",
    "llm_query",
    "crop",
    "overlaps_with",
)

#: Members for programs written against ViperGPT's ImagePatch: they run (traced under the
#: operation they stand for) but the prompt shows only :data:`PATCH_API`, so models learn one name.
COMPAT_API: tuple[str, ...] = ("compute_depth",)

_F = TypeVar("_F", bound=Callable[..., Any])


def prompt_shows(
    *hidden: str, required: tuple[str, ...] = (), defaults: dict[str, Any] | None = None
) -> Callable[[_F], _F]:
    """Give the prompt a signature of vpd's own, for a member that also takes ViperGPT's forms.

    The prompt's signature leaves out ``hidden`` (ViperGPT's keywords), makes ``required``
    required and shows ``defaults`` as the defaults vpd's prompt promises. The function
    itself accepts them all (the static check binds calls to the real signature);
    :func:`vpd.programs.api.render_api` reads ``__prompt_signature__``.
    """
    shown_defaults = defaults or {}

    def mark(func: _F) -> _F:
        signature = inspect.signature(func)
        shown = []
        for p in signature.parameters.values():
            if p.name in hidden:
                continue
            if p.name in required:
                p = p.replace(default=inspect.Parameter.empty, annotation=_not_none(p.annotation))
            elif p.name in shown_defaults:
                p = p.replace(default=shown_defaults[p.name], annotation=_not_none(p.annotation))
            shown.append(p)
        func.__prompt_signature__ = signature.replace(parameters=shown)  # type: ignore[attr-defined]
        return func

    return mark


#: The default of ``llm_query``'s ``long_answer`` in this context: False (a short answer,
#: vpd's), or True for programs written from a ViperGPT prompt, whose default that is (the
#: sandbox's worker sets it for such runs).
LONG_ANSWER_DEFAULT: ContextVar[bool] = ContextVar("vpd_long_answer_default", default=False)


def long_answer_or_default(long_answer: bool | None) -> bool:
    """``long_answer``, or the context's default (:data:`LONG_ANSWER_DEFAULT`) when None.

    Any other value passes as it is: the tool contract rejects what is not a bool.
    """
    return LONG_ANSWER_DEFAULT.get() if long_answer is None else long_answer


def _not_none(annotation: Any) -> Any:
    # "str | None" -> "str" for a parameter the prompt shows as required (annotations are strings here).
    return annotation.removesuffix(" | None") if isinstance(annotation, str) else annotation


def _one_of(method: str, canonical: str, values: dict[str, Any]) -> Any:
    """The one value given among a parameter and its ViperGPT names."""
    given = {name: value for name, value in values.items() if value is not None}
    if len(given) > 1:
        raise InvalidArgumentError(f"{method}() got {' and '.join(given)}: pass {canonical} once.")
    if not given:
        raise InvalidArgumentError(f"{method}() needs {canonical}.")
    return next(iter(given.values()))


def _coord(value: Any, name: str) -> int:
    # numbers.Real also admits numpy scalars, which programs get from arithmetic on arrays.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgumentError(f"{name} must be a number, got {type(value).__name__}.")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidArgumentError(f"{name} must be a finite number, got {value}.")
    return int(round(number))


class ImagePatch:
    """A rectangular region of an image, with methods that look at it.

    Coordinates are integer pixels of the whole image, with the origin at the
    BOTTOM-LEFT corner and y growing UPWARDS: `lower` is the bottom edge and is smaller
    than `upper`, the top edge. So an object with a larger `vertical_center` is higher up
    in the image, and one with a smaller `horizontal_center` is further left. Patches
    returned by `find` use the same coordinates as the image they came from.

    Attributes:
        left: x of the left edge.
        lower: y of the bottom edge.
        right: x of the right edge (exclusive).
        upper: y of the top edge (exclusive).
        width: right - left.
        height: upper - lower.
        horizontal_center: (left + right) / 2.
        vertical_center: (lower + upper) / 2.
        area: Pixels covered by the object (its segmentation mask when available, else width * height).

    Example:
        >>> image_patch = ImagePatch(image)
        >>> cups = image_patch.find("cup")
        >>> leftmost = min(cups, key=lambda cup: cup.horizontal_center)
    """

    __slots__ = ("_area", "_box", "_image", "_label", "_mask", "_score", "_toolkit")
    _area: int | None
    _box: tuple[int, int, int, int]
    _image: ImageData
    _label: str | None
    _mask: np.ndarray | None
    _score: float | None
    _toolkit: PatchOperations | None

    def __init__(
        self,
        image: ImageSource,
        left: float | None = None,
        lower: float | None = None,
        right: float | None = None,
        upper: float | None = None,
        *,
        toolkit: PatchOperations | None = None,
    ) -> None:
        """Create a patch over ``image`` (the whole image when no coordinates are given).

        Args:
            image: A path, bytes, PIL image, numpy array or ``vpd.ImageData``.
            left, lower, right, upper: The region, in the convention described on the class;
                clamped to the image.
            toolkit: The tools to use; ``None`` uses the current toolkit (``vpd.use_toolkit``)
                or the default one.

        Coordinates are pixels of the image as loaded: an image above
        :data:`vpd.image.DEFAULT_MAX_PIXELS` is downscaled on load and ``image.scale``
        records the factor (multiply by ``1 / scale`` for original pixels).

        Raises:
            ImageError: The image cannot be loaded.
            InvalidArgumentError: Non-numeric coordinates, or a region with no pixels inside the image.
        """
        data = load_image(image)
        object.__setattr__(self, "_image", data)
        object.__setattr__(self, "_toolkit", toolkit)
        object.__setattr__(self, "_mask", None)
        object.__setattr__(self, "_score", None)
        object.__setattr__(self, "_label", None)
        object.__setattr__(self, "_area", None)
        w, h = data.width, data.height
        box = (
            0 if left is None else _coord(left, "left"),
            0 if lower is None else _coord(lower, "lower"),
            w if right is None else _coord(right, "right"),
            h if upper is None else _coord(upper, "upper"),
        )
        object.__setattr__(self, "_box", self._clamp(*box))

    def _clamp(self, left: int, lower: int, right: int, upper: int) -> tuple[int, int, int, int]:
        w, h = self._image.width, self._image.height
        if right < left:
            left, right = right, left
        if upper < lower:
            lower, upper = upper, lower
        box = (max(0, min(left, w)), max(0, min(lower, h)), max(0, min(right, w)), max(0, min(upper, h)))
        if box[2] <= box[0] or box[3] <= box[1]:
            raise InvalidArgumentError(
                f"The region left={left}, lower={lower}, right={right}, upper={upper} has no pixels inside the "
                f"{w}x{h} image (x from 0 to {w}, y from 0 at the bottom to {h} at the top)."
            )
        return box

    @classmethod
    def _from_region(
        cls,
        parent: ImagePatch,
        xyxy: tuple[int, int, int, int],
        *,
        mask: np.ndarray | None = None,
        score: float | None = None,
        label: str | None = None,
        area: int | None = None,
    ) -> ImagePatch:
        """A child patch from a top-left ``(x0, y0, x1, y1)`` box (how tools report regions).

        ``area`` is the object's pixel count when known without the mask itself (a sandboxed
        program gets the count, not the mask).
        """
        h = parent._image.height
        patch = cls.__new__(cls)
        object.__setattr__(patch, "_image", parent._image)
        object.__setattr__(patch, "_toolkit", parent._toolkit)
        object.__setattr__(patch, "_box", patch._clamp(xyxy[0], h - xyxy[3], xyxy[2], h - xyxy[1]))
        object.__setattr__(patch, "_mask", mask)
        object.__setattr__(patch, "_score", score)
        object.__setattr__(patch, "_label", label)
        object.__setattr__(patch, "_area", area if area is not None or mask is None else int(mask.sum()))
        return patch

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"ImagePatch is read-only; use crop(...) to make a new patch instead of setting {name!r}.")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("ImagePatch is read-only.")

    # -- geometry ----------------------------------------------------------------------
    @property
    def left(self) -> int:
        """X of the left edge, in pixels from the image's left border."""
        return self._box[0]

    @property
    def lower(self) -> int:
        """Y of the bottom edge, in pixels from the image's BOTTOM border."""
        return self._box[1]

    @property
    def right(self) -> int:
        """X of the right edge (exclusive)."""
        return self._box[2]

    @property
    def upper(self) -> int:
        """Y of the top edge (exclusive), in pixels from the image's bottom border."""
        return self._box[3]

    @property
    def width(self) -> int:
        """Width in pixels (right - left)."""
        return self._box[2] - self._box[0]

    @property
    def height(self) -> int:
        """Height in pixels (upper - lower)."""
        return self._box[3] - self._box[1]

    @property
    def horizontal_center(self) -> float:
        """X of the centre: (left + right) / 2. Smaller is further left."""
        return (self._box[0] + self._box[2]) / 2

    @property
    def vertical_center(self) -> float:
        """Y of the centre: (lower + upper) / 2. Larger is higher up in the image."""
        return (self._box[1] + self._box[3]) / 2

    @property
    def area(self) -> int:
        """Pixels covered by the object: its segmentation mask when one was computed, else width * height."""
        if self._area is not None:
            return self._area
        return self.width * self.height

    @property
    def score(self) -> float | None:
        """Detector confidence of a patch returned by ``find`` (None otherwise)."""
        return self._score

    @property
    def label(self) -> str | None:
        """The object name ``find`` searched for to produce this patch (None otherwise)."""
        return self._label

    @property
    def mask(self) -> np.ndarray | None:
        """Boolean segmentation mask of shape (height, width), top row first; None without a segmenter."""
        return self._mask

    @property
    def image(self) -> ImageData:
        """The whole image this patch belongs to."""
        return self._image

    @property
    def xyxy(self) -> tuple[int, int, int, int]:
        """The box as ``(x0, y0, x1, y1)`` with the usual top-left origin (for drawing and tools)."""
        h = self._image.height
        return (self._box[0], h - self._box[3], self._box[2], h - self._box[1])

    @property
    def cropped_image(self) -> PILImage:
        """The patch's pixels as a PIL image (a copy)."""
        return self._image.crop(self.xyxy)

    def crop(self, left: float, lower: float, right: float, upper: float) -> ImagePatch:
        """Return a new patch for a region of the image, clamped to the image borders.

        The coordinates are in the whole image's system (the same as `left`, `lower`, ...
        of every patch), not relative to this patch.

        Args:
            left: x of the left edge.
            lower: y of the bottom edge.
            right: x of the right edge.
            upper: y of the top edge.

        Returns:
            The new patch.

        Example:
            >>> # the left half of the image
            >>> p = image_patch
            >>> left_half = p.crop(p.left, p.lower, p.horizontal_center, p.upper)
        """
        box = (_coord(left, "left"), _coord(lower, "lower"), _coord(right, "right"), _coord(upper, "upper"))
        patch = ImagePatch.__new__(ImagePatch)
        object.__setattr__(patch, "_image", self._image)
        object.__setattr__(patch, "_toolkit", self._toolkit)
        object.__setattr__(patch, "_mask", None)
        object.__setattr__(patch, "_score", None)
        object.__setattr__(patch, "_label", None)
        object.__setattr__(patch, "_area", None)
        object.__setattr__(patch, "_box", patch._clamp(*box))
        return patch

    def overlaps_with(self, left: float, lower: float, right: float, upper: float) -> bool:
        """Return True if this patch overlaps the given region (sharing only an edge does not count).

        Args:
            left: x of the region's left edge.
            lower: y of the region's bottom edge.
            right: x of the region's right edge.
            upper: y of the region's top edge.

        Returns:
            Whether the two regions overlap.

        Example:
            >>> cup = image_patch.find("cup")[0]
            >>> tables = image_patch.find("table")
            >>> under_cup = [t for t in tables if t.overlaps_with(cup.left, cup.lower, cup.right, cup.upper)]
        """
        l, lo, r, u = (_coord(left, "left"), _coord(lower, "lower"), _coord(right, "right"), _coord(upper, "upper"))
        return min(self.right, r) > max(self.left, l) and min(self.upper, u) > max(self.lower, lo)

    # -- tools -------------------------------------------------------------------------
    @property
    def toolkit(self) -> PatchOperations:
        """What serves this patch's operations: its toolkit, else the current one (``vpd.use_toolkit``)."""
        if self._toolkit is not None:
            return self._toolkit
        from vpd.tools.toolkit import current_operations

        return current_operations()

    def find(self, object_name: str) -> list[ImagePatch]:
        """Find every object called `object_name` inside this patch.

        Args:
            object_name: A short noun phrase, e.g. "car", "person", "red apple".

        Returns:
            One patch per object found, most confident first; an empty list if there is none.

        Example:
            >>> cars = image_patch.find("car")
            >>> number_of_cars = len(cars)
        """
        regions = self.toolkit.find(self._image, self.xyxy, object_name)
        return [
            ImagePatch._from_region(self, r.box, mask=r.mask, score=r.score, label=r.label, area=r.area)
            for r in regions
        ]

    def exists(self, object_name: str) -> bool:
        """Return True if at least one object called `object_name` is inside this patch.

        Args:
            object_name: A short noun phrase, e.g. "dog".

        Returns:
            Whether such an object is visible.

        Example:
            >>> has_dog = image_patch.exists("dog")
        """
        return self.toolkit.exists(self._image, self.xyxy, object_name)

    @prompt_shows("visual_property", "attribute", required=("property",))
    def verify_property(
        self,
        object_name: str,
        property: str | None = None,
        *,
        visual_property: str | None = None,
        attribute: str | None = None,
    ) -> bool:
        """Return True if the object in this patch has the given property.

        Args:
            object_name: What the patch shows, e.g. "car".
            property: An attribute such as a colour, material or state, e.g. "red", "wooden", "open".

        Returns:
            Whether the object has the property.

        Example:
            >>> car = image_patch.find("car")[0]
            >>> is_red = car.verify_property("car", "red")
        """
        wanted = _one_of(
            "verify_property",
            "property",
            {"property": property, "visual_property": visual_property, "attribute": attribute},
        )
        return self.toolkit.verify_property(self._image, self.xyxy, object_name, wanted)

    @prompt_shows("prefix", "option_list", required=("options",))
    def best_text_match(
        self, options: list[str] | None = None, prefix: str | None = None, *, option_list: list[str] | None = None
    ) -> str:
        """Return the option that best describes this patch.

        Args:
            options: Candidate descriptions, e.g. ["red", "green", "blue"].

        Returns:
            One of the options, exactly as given.

        Example:
            >>> color = image_patch.find("shirt")[0].best_text_match(["red", "green", "blue"])
        """
        choices = _one_of("best_text_match", "options", {"options": options, "option_list": option_list})
        if prefix is None:
            return self.toolkit.best_text_match(self._image, self.xyxy, choices)
        if not isinstance(prefix, str) or not isinstance(choices, list):
            raise InvalidArgumentError("best_text_match(options, prefix): prefix is a string, options a list.")
        # ViperGPT's prefix: match "prefix option" but answer with the option itself.
        described = [f"{prefix} {option}" for option in choices]
        return choices[described.index(self.toolkit.best_text_match(self._image, self.xyxy, described))]

    @prompt_shows(required=("question",))
    def simple_query(self, question: str | None = None) -> str:
        """Answer a simple question about this patch with a short answer (a word or a few).

        Use it for basic perception only ("What color is the car?", "What is the man
        holding?"); break complex questions into steps with find and other methods.

        Args:
            question: The question, in English.

        Returns:
            A short answer, lower case.

        Example:
            >>> answer = image_patch.find("car")[0].simple_query("What color is the car?")
        """
        # No question: "What is this?" (ViperGPT's default, for programs written against it).
        return self.toolkit.simple_query(self._image, self.xyxy, "What is this?" if question is None else question)

    def depth(self) -> float:
        """Return the median depth of this patch (of the object itself when a mask is available).

        Larger is farther from the camera. Values are relative: compare them only between
        patches of the same image.

        Returns:
            The median depth.

        Example:
            >>> people = image_patch.find("person")
            >>> closest = min(people, key=lambda person: person.depth())
        """
        return self.toolkit.depth(self._image, self.xyxy, self._mask)

    def compute_depth(self) -> float:
        """ViperGPT's name for :meth:`depth` (same operation, traced as ``depth``)."""
        return self.depth()

    def ocr(self) -> str:
        """Read the text written inside this patch.

        Returns:
            The text, lines in reading order separated by spaces; an empty string if there is none.

        Example:
            >>> sign = image_patch.find("sign")[0]
            >>> text = sign.ocr()
        """
        return self.toolkit.ocr(self._image, self.xyxy)

    @prompt_shows(defaults={"long_answer": False})
    def llm_query(self, question: str, long_answer: bool | None = None) -> str:
        """Ask a language model a question that needs world knowledge, not the image.

        Args:
            question: A complete question, e.g. "What country is the Eiffel Tower in?".
            long_answer: True for an explanation of a few sentences; False (default) for a word or short phrase.

        Returns:
            The answer.

        Example:
            >>> food = image_patch.simple_query("What food is this?")
            >>> origin = image_patch.llm_query(f"Which country does {food} come from?")
        """
        return self.toolkit.llm_query(question, long_answer_or_default(long_answer))

    # -- user tools and dunder ---------------------------------------------------------
    def __getattr__(self, name: str) -> Callable[..., Any]:
        # Only called for names not found normally: user tools registered with @vpd.tool.method.
        if name.startswith("_"):
            raise AttributeError(name)
        toolkit = self.toolkit
        spec = toolkit.tools.get(name, "method")
        if spec is None:
            public = ", ".join((*PATCH_API, *(s.name for s in toolkit.tools.specs("method"))))
            raise AttributeError(f"ImagePatch has no attribute {name!r}. Available: {public}.")

        def method(*args: Any, **kwargs: Any) -> Any:
            return toolkit.call_tool(name, self, *args, **kwargs)

        method.__name__ = name
        method.__doc__ = spec.doc
        return method

    def __copy__(self) -> ImagePatch:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, Any]) -> ImagePatch:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # The toolkit (models, locks) is not pickled: an unpickled patch uses the current toolkit.
        return (_rebuild_patch, (self._image, self._box, self._mask, self._score, self._label, self._area))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImagePatch):
            return NotImplemented
        return self._box == other._box and self._image.sha256 == other._image.sha256

    def __hash__(self) -> int:
        return hash((self._box, self._image.sha256))

    def __repr__(self) -> str:
        extra = ""
        if self._label is not None:
            extra += f", label={self._label!r}"
        if self._score is not None:
            extra += f", score={self._score:.2f}"
        return f"ImagePatch(left={self.left}, lower={self.lower}, right={self.right}, upper={self.upper}{extra})"


def _rebuild_patch(
    image: ImageData,
    box: tuple[int, int, int, int],
    mask: np.ndarray | None,
    score: float | None,
    label: str | None,
    area: int | None,
) -> ImagePatch:
    patch = ImagePatch.__new__(ImagePatch)
    for name, value in (
        ("_image", image),
        ("_toolkit", None),
        ("_box", box),
        ("_mask", mask),
        ("_score", score),
        ("_label", label),
        ("_area", area),
    ):
        object.__setattr__(patch, name, value)
    return patch


def _reserve_names() -> None:
    # User tools must not shadow the built-in API (the error names what they clash with).
    from vpd.tools.user_tools import tool_registry

    members = [n for n in dir(ImagePatch) if not n.startswith("_")]
    tool_registry.reserve(members, "an ImagePatch attribute")
    tool_registry.reserve(["image_patch", "execute_command", "image"], "a name programs already use")


_reserve_names()
