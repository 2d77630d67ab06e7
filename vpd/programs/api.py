"""The API section of the program-writing prompt, rendered from the live code.

Everything a program may call is rendered from its signature and docstring: the
``ImagePatch`` members in :data:`vpd.patch.PATCH_API`, the helpers in
:data:`vpd.helpers.HELPER_API`, and the user tools registered with ``@vpd.tool``. Changing
a docstring changes the prompt; nothing is written twice.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable
from typing import Any

from vpd.helpers import HELPER_API
from vpd.patch import PATCH_API, ImagePatch
from vpd.tools.user_tools import ToolRegistry, ToolSpec, format_signature, tool_registry

__all__ = ["render_api"]


#: Docstring sections a compact rendering keeps (besides the summary before the first section).
_COMPACT_SECTIONS = frozenset(("Example", "Examples", "Attributes"))
_SECTION = re.compile(r"^([A-Z][A-Za-z ]*):\s*$")


def _compact(doc: str) -> str:
    """``doc`` without its Args, Returns, Raises... sections (the signature already says those)."""
    kept: list[str] = []
    keep = True
    for line in doc.splitlines():
        section = _SECTION.match(line)
        if section:
            keep = section.group(1) in _COMPACT_SECTIONS
        if keep:
            kept.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line if line.strip() else "" for line in text.splitlines())


def _docstring(doc: str, prefix: str) -> str:
    return f'{prefix}"""\n{_indent(doc, prefix)}\n{prefix}"""'


def _function(name: str, func: Callable[..., Any], prefix: str, compact: bool) -> str:
    doc = inspect.getdoc(func) or ""
    doc = _compact(doc) if compact else doc
    # A member that also accepts ViperGPT's keywords shows only vpd's own (see vpd.patch).
    signature = getattr(func, "__prompt_signature__", None) or inspect.signature(func)
    head = f"{prefix}def {name}{format_signature(signature)}:"
    return f"{head}\n{_docstring(doc, prefix + '    ')}\n{prefix}    ..."


def _stub(spec: ToolSpec, compact: bool) -> str:
    return dataclasses.replace(spec, doc=_compact(spec.doc)).stub() if compact else spec.stub()


def render_api(tools: ToolRegistry | None = None, *, compact: bool = False) -> str:
    """Render the program API as Python stubs with docstrings.

    Args:
        tools: The user tools to include (default: those registered with ``@vpd.tool``).
        compact: Keep only the summary, ``Attributes:`` and ``Example:`` of each docstring (the
            signatures give the arguments and results), for models with a small context.

    Returns:
        Python source: ``class ImagePatch`` with its documented members (and user method
        tools), then the helper functions and user function tools.
    """
    registry = tools if tools is not None else tool_registry
    class_doc = inspect.getdoc(ImagePatch) or ""
    class_doc = _compact(class_doc) if compact else class_doc
    parts = [f"class ImagePatch:\n{_docstring(class_doc, '    ')}\n"]
    for name in PATCH_API:
        member = inspect.getattr_static(ImagePatch, name)
        if isinstance(member, property):
            continue  # properties are documented in the class docstring's Attributes
        parts.append(_function(name, member, "    ", compact) + "\n")
    for spec in registry.specs("method"):
        parts.append(_indent(_stub(spec, compact), "    ") + "\n")
    import vpd.helpers as helpers

    for name in HELPER_API:
        parts.append(_function(name, getattr(helpers, name), "", compact) + "\n")
    for spec in registry.specs("function"):
        parts.append(_stub(spec, compact) + "\n")
    return "\n".join(parts)
