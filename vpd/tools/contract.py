"""The operations ``ImagePatch`` asks of a toolkit, declared once.

:class:`PatchOperations` is the one list of what a patch (and the module-level helpers)
can ask for. Two classes satisfy it, and the type checker holds both to it:

* :class:`~vpd.tools.toolkit.Toolkit` serves the operations with real models
  (:mod:`vpd.tools.operations` says how each is served);
* the sandbox's worker-side client forwards them to the host, which serves them with a
  toolkit. Neither side lists the operations again: both read the parameters of each
  method declared here (:data:`OPERATIONS`). The client's methods are generated, so the
  type checker cannot see them; ``tests/test_contract.py`` holds their signatures to the
  declarations and runs every operation both directly and through the sandbox.

Adding a built-in ``ImagePatch`` operation therefore touches the method and its
implementation: the method on ``ImagePatch`` (``vpd/patch.py``, whose docstring the
program-writing LLM reads) with its name in ``PATCH_API`` (what programs may call and the
prompt shows), its declaration here, and its implementation in :mod:`vpd.tools.operations`.
Parameters are typed with the types below (``Box``, ``Sequence[Box]``, ``str``,
``Sequence[str]``, ``bool``, the image and a mask), which the sandbox knows how to carry; a
new kind of parameter needs a reader in the sandbox's serving module (its import fails
until there is one).

Regions are ``(x0, y0, x1, y1)`` integer pixel boxes of the full image with the origin at
the top-left corner (x1, y1 exclusive); ``ImagePatch`` converts from its own convention.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from vpd.image import ImageData
    from vpd.tools.user_tools import ToolRegistry

__all__ = ["OPERATIONS", "Box", "PatchOperations", "Region", "operation_signature"]

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Region:
    """An object found in an image.

    Attributes:
        box: ``(x0, y0, x1, y1)`` in full-image pixels, top-left origin, x1/y1 exclusive.
        score: Detector confidence in [0, 1].
        label: The object name that was searched for.
        class_name: The detector's own class when it differs (closed-vocabulary detectors).
        mask: Boolean mask of the box's shape (``y1-y0`` x ``x1-x0``) when a segmenter ran
            (never sent into a sandbox: programs get ``area``).
        area: Pixels of the mask when there is one, else None.
    """

    box: Box
    score: float
    label: str
    class_name: str | None = None
    mask: np.ndarray | None = field(default=None, compare=False)
    area: int | None = None


class PatchOperations(Protocol):
    """What ``ImagePatch`` methods and the helpers ask of the tools (see the module docstring).

    ``image`` is the whole image and ``box`` the region, in the top-left convention.
    """

    @property
    def tools(self) -> ToolRegistry:
        """The user tools (``@vpd.tool``) programs may call."""
        ...

    def find(self, image: ImageData, box: Box, object_name: str) -> list[Region]:
        """Objects called ``object_name`` inside ``box``, best first."""
        ...

    def exists(self, image: ImageData, box: Box, object_name: str) -> bool:
        """Whether ``find`` returns at least one object."""
        ...

    def verify_property(self, image: ImageData, box: Box, object_name: str, property: str) -> bool:
        """Whether the object in the region has the ``property`` (named as ``ImagePatch`` names it)."""
        ...

    def best_text_match(self, image: ImageData, box: Box, options: Sequence[str]) -> str:
        """The option that best describes the region."""
        ...

    def simple_query(self, image: ImageData, box: Box, question: str) -> str:
        """A short answer to a question about the region."""
        ...

    def depth(self, image: ImageData, box: Box, mask: np.ndarray | None = None) -> float:
        """Median depth inside the region (inside ``mask`` when given; larger is farther)."""
        ...

    def ocr(self, image: ImageData, box: Box) -> str:
        """The text in the region, lines in reading order joined by spaces."""
        ...

    def llm_query(self, question: str, long_answer: bool = False) -> str:
        """The language model's answer to a text question (no image)."""
        ...

    def best_image_match(self, image: ImageData, boxes: Sequence[Box], content: Sequence[str]) -> int:
        """Index of the region that best matches any of the ``content`` texts."""
        ...

    def call_tool(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the user tool ``name`` (a method tool gets the patch as its first argument)."""
        ...


#: The operations, by name, in declaration order (``call_tool`` and ``tools`` excluded:
#: user tools are looked up by name in the registry).
OPERATIONS: tuple[str, ...] = tuple(
    name
    for name, member in vars(PatchOperations).items()
    if inspect.isfunction(member) and not name.startswith("_") and name != "call_tool"
)


def operation_signature(name: str) -> inspect.Signature:
    """The declared signature of operation ``name`` (``self`` left out; annotations as strings).

    Raises:
        KeyError: ``name`` is not one of :data:`OPERATIONS`.
    """
    if name not in OPERATIONS:
        raise KeyError(name)
    signature = inspect.signature(getattr(PatchOperations, name))
    return signature.replace(parameters=list(signature.parameters.values())[1:])
