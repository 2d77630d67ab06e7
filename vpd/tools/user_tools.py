"""User tools: typed, docstringed Python functions that programs can call.

``@vpd.tool`` turns a function into a tool: programs call it by name, and the
program-writing prompt lists it from its signature and docstring. ``@vpd.tool.method``
adds it to ``ImagePatch`` instead (the function's first parameter receives the patch)::

    @vpd.tool
    def count_wheels(patch: vpd.ImagePatch) -> int:
        \"\"\"Count the wheels of a vehicle. ...\"\"\"

    @vpd.tool.method
    def is_blurry(patch: vpd.ImagePatch) -> bool:
        \"\"\"Whether the patch is out of focus. ...\"\"\"
    # in a program: image_patch.is_blurry()
"""

from __future__ import annotations

import builtins
import inspect
import keyword
import re
import threading
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

from vpd.errors import InvalidArgumentError, RegistrationError

__all__ = ["ToolKind", "ToolRegistry", "ToolSpec", "tool", "tool_registry"]

ToolKind = Literal["function", "method"]
F = TypeVar("F", bound=Callable[..., Any])
_SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


@dataclass(frozen=True)
class ToolSpec:
    """A registered user tool.

    Attributes:
        name: The name programs use.
        func: The Python function.
        kind: ``"function"`` (called as ``name(...)``) or ``"method"`` (``patch.name(...)``).
        signature: The signature programs see (without the patch parameter of a method).
        doc: The docstring, cleaned.
        capability: Shown in traces as the capability that answered (``"tool"``).
    """

    name: str
    func: Callable[..., Any]
    kind: ToolKind
    signature: inspect.Signature
    doc: str
    capability: str = "tool"

    def stub(self) -> str:
        """The tool as a Python stub with its docstring (how the prompt shows it)."""
        if self.kind == "method":
            # Show the patch parameter as ``self``: programs call it as ``patch.name(...)``.
            params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
            shown = self.signature.replace(parameters=[*params, *self.signature.parameters.values()])
            head = f"def {self.name}{format_signature(shown)}:"
        else:
            head = f"def {self.name}{format_signature(self.signature)}:"
        body = "\n".join("    " + line if line else "" for line in ['"""', *self.doc.splitlines(), '"""'])
        return f"{head}\n{body}\n    ..."

    def bind_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
        """Check ``args``/``kwargs`` against the signature.

        Raises:
            InvalidArgumentError: Wrong number or names of arguments (the message shows the signature).
        """
        try:
            return self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArgumentError(f"{self.name}{self.signature}: {exc}") from exc


def format_signature(sig: inspect.Signature) -> str:
    """Render a signature as source code, with string annotations shown unquoted."""
    params = []
    for param in sig.parameters.values():
        text = param.name
        if param.annotation is not inspect.Parameter.empty:
            text += f": {_annotation(param.annotation)}"
            if param.default is not inspect.Parameter.empty:
                text += f" = {param.default!r}"
        elif param.default is not inspect.Parameter.empty:
            text += f"={param.default!r}"
        params.append(text)
    ret = sig.return_annotation
    tail = f" -> {_annotation(ret)}" if ret is not inspect.Signature.empty else ""
    return f"({', '.join(params)}){tail}"


def _annotation(annotation: Any) -> str:
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, type):
        return annotation.__qualname__
    return inspect.formatannotation(annotation)


def _annotations(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func)
    except Exception:
        # Unresolvable forward references (e.g. "ImagePatch" under TYPE_CHECKING) are fine:
        # we only require that every parameter *has* an annotation.
        return dict(getattr(func, "__annotations__", {}))


def make_spec(func: Callable[..., Any], *, name: str | None = None, kind: ToolKind = "function") -> ToolSpec:
    """Validate ``func`` and describe it as a :class:`ToolSpec`.

    Raises:
        RegistrationError: Not a function, bad name, missing docstring or type hints,
            ``*args``/``**kwargs``, or a method tool without a patch parameter.
    """
    if not callable(func) or not (inspect.isfunction(func) or inspect.ismethod(func)):
        raise RegistrationError(f"@vpd.tool needs a plain function, got {type(func).__name__}.")
    tool_name = name or func.__name__
    if not _SNAKE.match(tool_name) or keyword.iskeyword(tool_name):
        raise RegistrationError(
            f"Tool name {tool_name!r} must be snake_case (lower-case words joined by single underscores, "
            "starting with a letter, not a Python keyword)."
        )
    if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func):
        raise RegistrationError(
            f"Tool {tool_name!r} must be a plain function that returns its result (not async, not a generator)."
        )
    doc = inspect.getdoc(func) or ""
    if not doc.strip():
        raise RegistrationError(
            f"Tool {tool_name!r} needs a docstring: the program-writing LLM only knows a tool from its "
            "signature and docstring (say what it returns, with a short example)."
        )
    signature = inspect.signature(func)
    hints = _annotations(func)
    params = list(signature.parameters.values())
    for param in params:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise RegistrationError(f"Tool {tool_name!r}: *args/**kwargs are not allowed; list the parameters.")
        if param.name not in hints:
            raise RegistrationError(f"Tool {tool_name!r}: parameter {param.name!r} needs a type hint.")
    if "return" not in hints:
        raise RegistrationError(f"Tool {tool_name!r} needs a return type hint.")
    if kind == "method":
        if not params:
            raise RegistrationError(
                f"Method tool {tool_name!r} must take the patch as its first parameter, e.g. "
                f"def {tool_name}(patch: ImagePatch) -> ..."
            )
        params = params[1:]
    shown = signature.replace(parameters=params)
    return ToolSpec(name=tool_name, func=func, kind=kind, signature=shown, doc=doc)


class ToolRegistry:
    """Named user tools, with the names the built-in API already uses kept reserved."""

    def __init__(self, tools: Iterable[ToolSpec] = ()) -> None:
        self._tools: dict[str, ToolSpec] = {}
        self._reserved: dict[str, str] = {}
        self._lock = threading.Lock()
        for spec in tools:
            self.add(spec)

    def reserve(self, names: Iterable[str], owner: str) -> None:
        """Mark names as taken by the built-in API (``owner`` says by what, for error messages)."""
        with self._lock:
            for n in names:
                self._reserved.setdefault(n, owner)

    def add(self, spec: ToolSpec, *, replace: bool = False) -> ToolSpec:
        """Register ``spec``.

        Raises:
            RegistrationError: The name is reserved by the built-in API or already registered
                (pass ``replace=True`` to replace a user tool on purpose).
        """
        with self._lock:
            if spec.name in self._reserved:
                raise RegistrationError(
                    f"Tool name {spec.name!r} clashes with {self._reserved[spec.name]}; choose another name."
                )
            existing = self._tools.get(spec.name)
            if (
                existing is not None
                and not replace
                and existing.func is not spec.func
                and not _same_definition(existing.func, spec.func)
            ):
                where = f"{existing.func.__module__}.{existing.func.__qualname__}"
                raise RegistrationError(
                    f"A tool named {spec.name!r} is already registered ({where}); rename one, "
                    "or pass replace=True to replace it."
                )
            self._tools[spec.name] = spec
        return spec

    def remove(self, name: str) -> None:
        """Unregister a tool (no error if absent)."""
        with self._lock:
            self._tools.pop(name, None)

    def get(self, name: str, kind: ToolKind | None = None) -> ToolSpec | None:
        """The tool called ``name`` (of ``kind``, if given), or None."""
        spec = self._tools.get(name)
        if spec is None or (kind is not None and spec.kind != kind):
            return None
        return spec

    def specs(self, kind: ToolKind | None = None) -> list[ToolSpec]:
        """The registered tools, in registration order."""
        return [s for s in self._tools.values() if kind is None or s.kind == kind]

    def names(self) -> list[str]:
        """Names of the registered tools."""
        return list(self._tools)

    def copy(self) -> ToolRegistry:
        """An independent registry with the same tools and reservations."""
        clone = ToolRegistry(self._tools.values())
        clone._reserved = dict(self._reserved)
        return clone

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)


def _same_definition(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    """The same function defined again (a notebook cell run twice, a module reloaded)."""
    return (getattr(a, "__module__", None), getattr(a, "__qualname__", None)) == (
        getattr(b, "__module__", None),
        getattr(b, "__qualname__", None),
    )


#: Tools registered with ``@vpd.tool`` (functions and their metadata; never models).
tool_registry = ToolRegistry()
tool_registry.reserve((n for n in dir(builtins) if not n.startswith("_")), "a Python builtin")


class _ToolDecorator:
    """``@vpd.tool`` and ``@vpd.tool.method``; see the module docstring."""

    @overload
    def __call__(self, func: F, /) -> F: ...

    @overload
    def __call__(
        self,
        func: None = None,
        /,
        *,
        name: str | None = None,
        registry: ToolRegistry | None = None,
        replace: bool = False,
    ) -> Callable[[F], F]: ...

    def __call__(
        self,
        func: F | None = None,
        /,
        *,
        name: str | None = None,
        registry: ToolRegistry | None = None,
        replace: bool = False,
    ) -> F | Callable[[F], F]:
        """Register a function tool (usable bare, ``@vpd.tool``, or with options, ``@vpd.tool(name=...)``)."""
        return self._register(func, "function", name, registry, replace)

    @overload
    def method(self, func: F, /) -> F: ...

    @overload
    def method(
        self,
        func: None = None,
        /,
        *,
        name: str | None = None,
        registry: ToolRegistry | None = None,
        replace: bool = False,
    ) -> Callable[[F], F]: ...

    def method(
        self,
        func: F | None = None,
        /,
        *,
        name: str | None = None,
        registry: ToolRegistry | None = None,
        replace: bool = False,
    ) -> F | Callable[[F], F]:
        """Register a tool that programs call as an ``ImagePatch`` method; its first parameter is the patch."""
        return self._register(func, "method", name, registry, replace)

    @staticmethod
    def _register(
        func: F | None, kind: ToolKind, name: str | None, registry: ToolRegistry | None, replace: bool
    ) -> F | Callable[[F], F]:
        target = registry if registry is not None else tool_registry

        def decorate(f: F) -> F:
            target.add(make_spec(f, name=name, kind=kind), replace=replace)
            return f

        return decorate(func) if func is not None else decorate


#: The decorator: ``@vpd.tool`` for functions, ``@vpd.tool.method`` for ImagePatch methods.
tool = _ToolDecorator()
