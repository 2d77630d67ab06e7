"""The API section of the program-writing prompt, rendered from the live code.

Everything a program may call is rendered from its signature and docstring: the
``ImagePatch`` members in :data:`vpd.patch.PATCH_API`, the helpers in
:data:`vpd.helpers.HELPER_API`, and the user tools registered with ``@vpd.tool``. Changing
a docstring changes the prompt; nothing is written twice.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from vpd.helpers import HELPER_API
from vpd.patch import PATCH_API, ImagePatch
from vpd.tools.user_tools import ToolRegistry, format_signature, tool_registry

__all__ = ["render_api"]


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line if line.strip() else "" for line in text.splitlines())


def _docstring(doc: str, prefix: str) -> str:
    return f'{prefix}"""\n{_indent(doc, prefix)}\n{prefix}"""'


def _function(name: str, func: Callable[..., Any], prefix: str) -> str:
    doc = inspect.getdoc(func) or ""
    head = f"{prefix}def {name}{format_signature(inspect.signature(func))}:"
    return f"{head}\n{_docstring(doc, prefix + '    ')}\n{prefix}    ..."


def render_api(tools: ToolRegistry | None = None) -> str:
    """Render the program API as Python stubs with docstrings.

    Args:
        tools: The user tools to include (default: those registered with ``@vpd.tool``).

    Returns:
        Python source: ``class ImagePatch`` with its documented members (and user method
        tools), then the helper functions and user function tools.
    """
    registry = tools if tools is not None else tool_registry
    class_doc = inspect.getdoc(ImagePatch) or ""
    parts = [f"class ImagePatch:\n{_docstring(class_doc, '    ')}\n"]
    for name in PATCH_API:
        member = inspect.getattr_static(ImagePatch, name)
        if isinstance(member, property):
            continue  # properties are documented in the class docstring's Attributes
        parts.append(_function(name, member, "    ") + "\n")
    for spec in registry.specs("method"):
        parts.append(_indent(spec.stub(), "    ") + "\n")
    import vpd.helpers as helpers

    for name in HELPER_API:
        parts.append(_function(name, getattr(helpers, name), "") + "\n")
    for spec in registry.specs("function"):
        parts.append(spec.stub() + "\n")
    return "\n".join(parts)
