"""Vision and language tools: capabilities, backends, the registry, the toolkit and caches."""

from vpd.tools.backend import Availability, Backend, BackendInfo, ModelStore
from vpd.tools.protocols import (
    DepthEstimator,
    Detector,
    ImageTextMatcher,
    LanguageModel,
    Segmenter,
    TextReader,
    VisualQA,
)
from vpd.tools.registry import backend_registry, register_backend
from vpd.tools.types import CAPABILITIES, ChatMessage, Detection, TextLine

__all__ = [
    "CAPABILITIES",
    "Availability",
    "Backend",
    "BackendInfo",
    "ChatMessage",
    "DepthEstimator",
    "Detection",
    "Detector",
    "ImageTextMatcher",
    "LanguageModel",
    "ModelStore",
    "Segmenter",
    "TextLine",
    "TextReader",
    "VisualQA",
    "backend_registry",
    "register_backend",
]
