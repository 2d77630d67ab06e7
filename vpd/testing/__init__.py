"""Public, deterministic fakes for tests: no model, no network.

* :class:`Scene` / :class:`SceneObject`: a synthetic image with known objects, and
  ``scene.toolkit()``, a real :class:`vpd.Toolkit` whose backends read the scene's pixels.
* The fake backends themselves (``FakeDetector``...), to mix with real ones.
* ``street_sign()`` / ``noise_image()``: images with known content, made on the spot.
* ``FakeOpenAIServer``: a scripted OpenAI-compatible HTTP server on 127.0.0.1, to test
  LLM code at the network boundary.
"""

from __future__ import annotations

from typing import Any

from vpd.testing.images import noise_image, street_sign
from vpd.testing.scene import (
    FakeDepth,
    FakeDetector,
    FakeLLM,
    FakeMatcher,
    FakeOCR,
    FakeSegmenter,
    FakeVQA,
    Scene,
    SceneObject,
)

__all__ = [
    "FakeDepth",
    "FakeDetector",
    "FakeLLM",
    "FakeMatcher",
    "FakeOCR",
    "FakeOpenAIServer",
    "FakeSegmenter",
    "FakeVQA",
    "Scene",
    "SceneObject",
    "noise_image",
    "street_sign",
]


def __getattr__(name: str) -> Any:
    if name == "FakeOpenAIServer":
        from vpd.testing.openai_server import FakeOpenAIServer

        return FakeOpenAIServer
    raise AttributeError(f"module 'vpd.testing' has no attribute {name!r}")
