"""Code shared by several built-in backends: option checks, input validation, box maths.

Nothing here imports a heavy library at module level (numpy is imported inside the
functions that need it), so every backend module stays cheap to import.
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from vpd.errors import ConfigError, InvalidArgumentError
from vpd.tools.backend import Backend, BackendInfo, missing_modules
from vpd.tools.hub import HubBackend
from vpd.tools.types import Detection

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

__all__ = [
    "CpuBackend",
    "HubDetector",
    "OnnxBackend",
    "as_rgb",
    "batches",
    "box_tuple",
    "check_queries",
    "check_text_lists",
    "check_questions",
    "nms",
    "pixel_corners",
    "check_device",
    "require_finite",
    "require_float32",
    "require_fraction",
    "require_positive_int",
    "require_range",
    "sigmoid",
    "to_bgr",
]

T = TypeVar("T")


# -- options ---------------------------------------------------------------------------
def _bad_option(backend: Backend, option: str, requirement: str) -> ConfigError:
    return ConfigError(
        f"Option {option} of the {backend.capability} backend {backend.name!r} must be {requirement}, "
        f"got {backend.options[option]!r}."
    )


def _is_number(value: Any) -> bool:
    # bool is an int subclass, but True is no threshold.
    return not isinstance(value, bool) and isinstance(value, (int, float))


def require_positive_int(backend: Backend, *options: str, allow_none: bool = False) -> None:
    """Raise :class:`ConfigError` unless each of ``options`` is an integer >= 1 (or None when ``allow_none``)."""
    for option in options:
        value = backend.options[option]
        if allow_none and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _bad_option(backend, option, "a positive integer" + (" or None" if allow_none else ""))


def require_fraction(backend: Backend, option: str, upper: float | None = 1.0) -> None:
    """Raise :class:`ConfigError` unless ``option`` is a number in ``[0, upper]`` (``>= 0`` when ``upper`` is None).

    NaN is rejected; with no upper bound, infinity is accepted (e.g. an IoU threshold
    that disables suppression).
    """
    value = backend.options[option]
    if not _is_number(value) or not value >= 0 or (upper is not None and value > upper):
        raise _bad_option(backend, option, f"a number in [0, {upper:g}]" if upper is not None else "a number >= 0")


def require_range(
    backend: Backend, option: str, lower: float, upper: float = math.inf, *, upper_open: bool = False
) -> None:
    """Raise :class:`ConfigError` unless ``option`` is a number in ``[lower, upper]``.

    With ``upper_open`` the range is ``[lower, upper)``. NaN is rejected; with the default
    ``upper`` infinity is accepted (e.g. a ``max_aspect`` that never pads).
    """
    value = backend.options[option]
    inside = _is_number(value) and value >= lower and (value < upper if upper_open else value <= upper)
    if not inside:
        closing = ")" if upper_open or upper == math.inf else "]"
        raise _bad_option(backend, option, f"a number in [{lower:g}, {upper:g}{closing}")


def require_finite(backend: Backend, option: str) -> None:
    """Raise :class:`ConfigError` unless ``option`` is a finite number."""
    value = backend.options[option]
    if not _is_number(value) or not math.isfinite(value):
        raise _bad_option(backend, option, "a finite number")


# -- devices and dtypes ----------------------------------------------------------------
_DEVICE = re.compile(r"auto|cpu|mps|cuda(?::\d+)?")
_CUDA_PROVIDER = "CUDAExecutionProvider"


def check_device(backend: Backend) -> str:
    """Validate ``backend.requested_device``; return it normalised.

    Accepted: None or ``""`` (same as ``"auto"``), ``"auto"``, ``"cpu"``, ``"cuda"``,
    ``"cuda:N"`` and ``"mps"`` (case-insensitive). ``"mps"`` is accepted because a
    toolkit-wide device reaches every backend; a backend that cannot use it says so.

    Returns:
        ``"auto"``, ``"cpu"``, ``"mps"`` or ``"cuda:N"`` (``"cuda"`` becomes ``"cuda:0"``).

    Raises:
        ConfigError: Anything else (``"gpu"``, ``"tpu"``, ``"cuda:x"``, a number...).
    """
    requested = backend.requested_device
    if requested is None or requested == "":
        return "auto"
    device = requested.strip().lower() if isinstance(requested, str) else ""
    if not _DEVICE.fullmatch(device):
        raise ConfigError(
            f"device of the {backend.capability} backend {backend.name!r} must be None, 'auto', 'cpu', 'cuda' "
            f"or 'cuda:N' (N a GPU index), got {requested!r}."
        )
    return "cuda:0" if device == "cuda" else device


def require_float32(backend: Backend) -> None:
    """Raise :class:`ConfigError` unless ``backend.requested_dtype`` is None, ``"auto"`` or ``"float32"``.

    For backends that compute in float32 only: another dtype would be silently ignored.
    """
    if backend.requested_dtype not in (None, "", "auto", "float32"):
        raise ConfigError(
            f"dtype of the {backend.capability} backend {backend.name!r} must be None or 'float32' "
            f"(it computes in float32 only), got {backend.requested_dtype!r}."
        )


class CpuBackend(Backend):
    """Base of the classical backends that compute on the CPU and have no weights (GrabCut, ground plane).

    ``device`` is checked (a typo such as ``"gpu"`` is a :class:`ConfigError`) but a valid
    one does not move anything: a toolkit-wide ``device="cuda"`` reaches these backends
    too, and they run on the CPU whatever it says; :meth:`info` reports ``"cpu"``.
    ``dtype`` must be None or ``"float32"``.
    """

    def __init__(self, model: str | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        check_device(self)
        require_float32(self)

    @property
    def device(self) -> str:
        """Always ``"cpu"`` (and no torch lookup)."""
        return "cpu"

    def info(self) -> BackendInfo:
        """As :meth:`Backend.info`, with the device it really runs on."""
        return dataclasses.replace(super().info(), device="cpu")


class OnnxBackend(Backend):
    """Base of the backends that run float32 ONNX models with onnxruntime (CPU, or CUDA when installed).

    ``device`` is checked when the backend is constructed (see :func:`check_device`) and
    ``dtype`` must be None or ``"float32"``. An explicit ``"cuda"``/``"cuda:N"`` (or
    ``"mps"``) that onnxruntime cannot honour (the plain ``onnxruntime`` wheel has no CUDA
    provider) falls back to the CPU *visibly*: a :class:`RuntimeWarning` once per backend,
    and the reason in :meth:`info`. ``None``/``"auto"`` use CUDA when onnxruntime has it
    (only if :attr:`auto_cuda`), else the CPU, without a warning.
    """

    #: Whether device None/"auto" means "CUDA when onnxruntime has it" (else: the CPU).
    auto_cuda: ClassVar[bool] = True

    def __init__(self, model: str | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.wanted_device = check_device(self)
        require_float32(self)
        #: Why the backend runs on the CPU although another device was asked for (set on resolution).
        self.device_fallback: str | None = None

    def onnx_device(self) -> str:
        """Where onnxruntime runs: ``"cpu"`` or ``"cuda:N"`` (imports onnxruntime on first call)."""
        if not hasattr(self, "_onnx_device"):
            self._onnx_device, self.device_fallback = self._resolve_device()
            if self.device_fallback:
                warnings.warn(self.device_fallback, RuntimeWarning, stacklevel=3)
        return self._onnx_device

    @property
    def device(self) -> str:
        """``"cpu"`` or ``"cuda:N"``, as :meth:`onnx_device` (no torch lookup)."""
        return self.onnx_device()

    def onnx_providers(self) -> list[Any]:
        """The execution providers to create sessions with, best first."""
        device = self.onnx_device()
        if device.startswith("cuda"):
            return [(_CUDA_PROVIDER, {"device_id": int(device.split(":")[1])}), "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]

    def _resolve_device(self) -> tuple[str, str | None]:
        """The device, and why it is not the one requested (None when it is)."""
        wanted = self.wanted_device
        if wanted == "cpu" or (wanted == "auto" and not self.auto_cuda):
            return "cpu", None
        try:
            import onnxruntime as ort

            has_cuda = _CUDA_PROVIDER in ort.get_available_providers()
        except ImportError:  # load() reports the missing dependency
            has_cuda = False
        if wanted == "auto":
            return ("cuda:0" if has_cuda else "cpu"), None
        if wanted.startswith("cuda") and has_cuda:
            return wanted, None
        why = (
            "onnxruntime has no CUDA provider (install onnxruntime-gpu in place of onnxruntime)"
            if wanted.startswith("cuda")
            else "onnxruntime cannot use Apple's MPS"
        )
        return "cpu", (
            f"The {self.capability} backend {self.name!r} was asked for device {self.requested_device!r}, but {why}; "
            "it runs on the CPU."
        )

    def info(self) -> BackendInfo:
        """As :meth:`Backend.info`; for an explicit non-CPU device, the device used and why (without loading)."""
        info = super().info()
        # Only an explicit request needs onnxruntime imported to answer; "auto" stays light.
        if self.wanted_device in ("auto", "cpu") or missing_modules(("onnxruntime",)):
            return info
        device = self.onnx_device()
        reason = f"{info.reason}; {self.device_fallback}" if self.device_fallback else info.reason
        return dataclasses.replace(info, device=device, reason=reason)


# -- inputs ----------------------------------------------------------------------------
def check_text_lists(
    images: Sequence[Image],
    lists: Sequence[Sequence[str]],
    *,
    call: str,
    argument: str,
    item: str,
    hint: str = "",
    normalise: Callable[[str], str] = str.strip,
    unique: bool = False,
) -> list[list[str]]:
    """Validate a call that takes one list of strings per image; return the lists.

    Args:
        images: The images of the call.
        lists: For each image, its strings (queries, texts...).
        call: The method's name, for messages (``"detect"``).
        argument: The argument's name, for messages (``"queries"``).
        item: What one string is, for messages (``"query"``).
        hint: Appended to the message about an empty string (``"; name an object"``).
        normalise: What is left of a string once the backend has cleaned it; a string
            with nothing left is rejected as empty.
        unique: Drop repeated strings (first occurrence kept, order preserved).

    Raises:
        InvalidArgumentError: Mismatched lengths, a bare string instead of a list, or an
            empty/blank/non-string item.
    """
    if len(images) != len(lists):
        raise InvalidArgumentError(f"{call}() got {len(images)} image(s) but {len(lists)} {item} list(s).")
    cleaned = []
    for i, strings in enumerate(lists):
        if isinstance(strings, str):
            raise InvalidArgumentError(f"{argument}[{i}] must be a list of strings, not the string {strings!r}.")
        kept: list[str] = []
        for text in strings:
            if not isinstance(text, str) or not normalise(text):
                raise InvalidArgumentError(f"{argument}[{i}] has an empty or non-string {item} {text!r}{hint}.")
            if not unique or text not in kept:
                kept.append(text)
        cleaned.append(kept)
    return cleaned


def check_queries(
    images: Sequence[Image], queries: Sequence[Sequence[str]], *, normalise: Callable[[str], str] = str.strip
) -> list[list[str]]:
    """Validate a ``detect()`` call; return each image's queries, de-duplicated in order.

    ``normalise`` gives what the detector reads of a query; a query with nothing left is
    rejected as empty (see :func:`check_text_lists`).
    """
    return check_text_lists(
        images,
        queries,
        call="detect",
        argument="queries",
        item="query",
        hint="; name an object",
        normalise=normalise,
        unique=True,
    )


def check_questions(images: Sequence[Image], questions: Sequence[str]) -> None:
    """Validate an ``answer()`` call: one non-blank question string per image.

    Raises:
        InvalidArgumentError: Mismatched lengths, or an empty/blank/non-string question.
    """
    if len(images) != len(questions):
        raise InvalidArgumentError(f"answer() got {len(images)} image(s) but {len(questions)} question(s).")
    for i, question in enumerate(questions):
        if not isinstance(question, str) or not question.strip():
            raise InvalidArgumentError(f"questions[{i}] is empty or not a string ({question!r}); ask something.")


def batches(items: Sequence[T], size: int) -> Iterator[list[T]]:
    """Consecutive slices of at most ``size`` items, in order."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


# -- images ----------------------------------------------------------------------------
def as_rgb(image: Image) -> Image:
    """The image in RGB mode (itself when it already is)."""
    return image if image.mode == "RGB" else image.convert("RGB")


def to_bgr(image: Image) -> np.ndarray:
    """PIL image -> contiguous ``H x W x 3`` BGR uint8 array (what OpenCV-style code expects)."""
    import numpy as np

    rgb = np.asarray(as_rgb(image), dtype=np.uint8)
    return np.ascontiguousarray(rgb[:, :, ::-1])


# -- boxes -----------------------------------------------------------------------------
def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Float64 logistic function; logits are clipped so that ``exp`` cannot overflow (-inf gives 0)."""
    import numpy as np

    return 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -60.0, 60.0)))


def pixel_corners(boxes: np.ndarray, *, scale: tuple[float, float], width: int, height: int) -> np.ndarray:
    """Normalised ``(cx, cy, w, h)`` boxes -> ``(x0, y0, x1, y1)`` pixels, clipped to the image.

    Args:
        boxes: ``(num_boxes, 4)`` normalised centre-size boxes.
        scale: Pixels per normalised unit along x and y (the frame the model normalised to).
        width: Image width; x coordinates are clipped to ``[0, width]``.
        height: Image height; y coordinates are clipped to ``[0, height]``.

    Returns:
        A float64 ``(num_boxes, 4)`` array; a box outside the image collapses to zero area.
    """
    import numpy as np

    cx, cy, w, h = (boxes[:, k].astype(np.float64) for k in range(4))
    sx, sy = scale
    corners = np.stack([(cx - w / 2) * sx, (cy - h / 2) * sy, (cx + w / 2) * sx, (cy + h / 2) * sy], axis=1)
    corners[:, [0, 2]] = corners[:, [0, 2]].clip(0.0, width)
    corners[:, [1, 3]] = corners[:, [1, 3]].clip(0.0, height)
    return corners


def box_tuple(row: np.ndarray) -> tuple[float, float, float, float]:
    """One ``(x0, y0, x1, y1)`` array row as a tuple of Python floats."""
    return (float(row[0]), float(row[1]), float(row[2]), float(row[3]))


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray | None, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression, within each class.

    Args:
        boxes: ``[K, 4]`` (x0, y0, x1, y1).
        scores: ``[K]``.
        classes: ``[K]``; boxes of different classes never suppress each other. None: one class.
        iou_threshold: A box is dropped when its IoU with a kept, higher-scoring box of the
            same class exceeds this.

    Returns:
        Indices of the kept boxes, highest score first (ties in index order).
    """
    import numpy as np

    b = boxes.astype(np.float64)
    areas = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i, rest = int(order[0]), order[1:]
        keep.append(i)
        w = np.clip(np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0]), 0, None)
        h = np.clip(np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1]), 0, None)
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-12)
        survives = iou <= iou_threshold
        if classes is not None:
            survives |= classes[rest] != classes[i]
        order = rest[survives]
    return np.asarray(keep, np.int64)


# -- detectors -------------------------------------------------------------------------
class HubDetector(HubBackend):
    """Shared ``detect()`` of the open-vocabulary hub detectors (OWLv2, Grounding DINO).

    Validates the call, skips images without queries, and hands the rest to
    :meth:`_detect`, which loads the model only when there is something to run.
    """

    capability: ClassVar[str] = "detect"

    def detect(self, images: Sequence[Image], queries: Sequence[Sequence[str]]) -> list[list[Detection]]:
        """Detect the queried objects in each image.

        Args:
            images: RGB images.
            queries: For each image, the object names to look for (lists may differ in length).

        Returns:
            For each image, its detections (boxes in that image's pixels, top-left origin),
            best first; ``label`` is the query exactly as given.

        Raises:
            InvalidArgumentError: Mismatched lengths, or an empty/blank query.
            BackendUnavailable: The model cannot be loaded.
            BackendError: The model failed while running.
        """
        per_image = check_queries(images, queries, normalise=self.query_phrase)
        results: list[list[Detection]] = [[] for _ in images]
        # Images without queries need no forward pass.
        todo = [i for i, q in enumerate(per_image) if q]
        if todo:
            self._detect(images, per_image, todo, results)
        return results

    @staticmethod
    def query_phrase(query: str) -> str:
        """What the model reads of a query; a query with nothing left is rejected as empty."""
        return query.strip()

    def _detect(
        self, images: Sequence[Image], queries: list[list[str]], todo: list[int], results: list[list[Detection]]
    ) -> None:
        """Fill ``results[i]`` for each image index in ``todo`` (all have queries), best first."""
        raise NotImplementedError
