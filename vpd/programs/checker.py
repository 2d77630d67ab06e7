"""The static check: reject a program that cannot work before anything runs.

It catches what generated programs most often get wrong, with messages that say what is
available, so program sampling can drop or repair bad programs cheaply: unknown names and
methods (``image_patch.compute_depth()``), wrong argument counts (``patch.find()``), an
``ImagePatch`` method called on the list ``find`` returns, code outside ``execute_command``.
"""

from __future__ import annotations

import ast
import difflib
import functools
import inspect
from collections.abc import Iterable

from vpd.helpers import COMPAT_HELPERS, HELPER_API
from vpd.patch import COMPAT_API, PATCH_API, ImagePatch
from vpd.programs.modules import SAFE_MODULES, TYPING_NAMES
from vpd.programs.policy import (
    ENTRY_PARAMETERS,
    EXCEPTION_FIELDS,
    PATCH_ATTRIBUTES,
    SAFE_BUILTIN_NAMES,
    compile_program,
)
from vpd.tools.user_tools import ToolRegistry, tool_registry
from vpd.traces.trace import ProgramError

__all__ = ["check_program"]

_BUILTIN_TYPES = (str, list, dict, set, tuple, int, float, frozenset, bool, complex, bytes)
_TYPE_MEMBERS = frozenset(n for t in _BUILTIN_TYPES for n in dir(t) if not n.startswith("_"))
_IMAGE_ATTRIBUTES = frozenset(("width", "height", "size"))
_EXCEPTION_ATTRIBUTES = frozenset(("args", *EXCEPTION_FIELDS))
_PATCH_METHODS = frozenset(n for n in (*PATCH_API, *COMPAT_API) if callable(inspect.getattr_static(ImagePatch, n)))
_HELPERS = frozenset((*HELPER_API, *COMPAT_HELPERS))
_MAX_ERRORS = 10


def _signature(name: str) -> inspect.Signature:
    sig = inspect.signature(getattr(ImagePatch, name))
    return sig.replace(parameters=list(sig.parameters.values())[1:])


def _bind_error(sig: inspect.Signature, call: ast.Call, what: str) -> str | None:
    if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        return None  # *args / **kwargs: checked when it runs
    try:
        sig.bind(*range(len(call.args)), **{k.arg: None for k in call.keywords if k.arg})
    except TypeError as exc:
        return f"{what}{_shown(sig)}: {exc}"
    return None


def _closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``name`` most likely misspells, or None."""
    choices = sorted(set(candidates))
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.75)
    if not close and "_" in name:  # "compute_area" -> "area", "find_all" -> "find"
        close = [part for part in name.split("_") if part in choices][-1:]
    return close[0] if close else None


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the closest candidate, or nothing."""
    close = _closest(name, candidates)
    return f" Did you mean {close!r}?" if close else ""


def _shown(sig: inspect.Signature) -> str:
    return (
        "("
        + ", ".join(p.name if p.default is p.empty else f"{p.name}={p.default!r}" for p in sig.parameters.values())
        + ")"
    )


class _Checker(ast.NodeVisitor):
    def __init__(self, tools: ToolRegistry) -> None:
        self.tools = tools
        self.errors: list[ProgramError] = []
        self.bound: set[str] = set()
        self.kinds: dict[str, str] = {}  # variable -> "patch" | "patches"
        self.module_aliases: dict[str, str] = {}  # "import math as m" -> {"m": "math"}
        method_tools = {s.name for s in tools.specs("method")}
        self.function_tools = {s.name: s for s in tools.specs("function")}
        self.patch_methods = _PATCH_METHODS | method_tools
        self.known_names = (
            set(SAFE_BUILTIN_NAMES)
            | _HELPERS
            | set(self.function_tools)
            | set(SAFE_MODULES)
            | set(TYPING_NAMES)
            | {"ImagePatch", "True", "False", "None"}
        )
        self.attributes = PATCH_ATTRIBUTES | method_tools | _TYPE_MEMBERS | _IMAGE_ATTRIBUTES | _EXCEPTION_ATTRIBUTES

    def error(self, node: ast.AST, message: str) -> None:
        if len(self.errors) < _MAX_ERRORS:
            self.errors.append(ProgramError("static-check", message, getattr(node, "lineno", None)))

    # -- pass 1: every name the program binds -------------------------------------------
    def collect_bindings(self, tree: ast.AST) -> None:
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                self.bound.add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.Lambda)):
                if isinstance(node, ast.FunctionDef):
                    self.bound.add(node.name)
                args = node.args
                for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                    if arg is not None:
                        self.bound.add(arg.arg)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                self.bound.add(node.name)
            elif isinstance(node, ast.Import):  # only math and typing compile
                self.module_aliases.update({a.asname: a.name for a in node.names if a.asname and a.asname != a.name})
            elif isinstance(node, ast.ImportFrom):
                self.bound.update(alias.asname or alias.name for alias in node.names)

    # -- the program's shape --------------------------------------------------------------
    def check_module(self, tree: ast.Module) -> None:
        entry = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "execute_command"]
        if not entry:
            self.error(tree, "The program must define a function execute_command(image) that returns the answer.")
        else:
            self.check_entry(entry[0])
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.Pass, ast.Import, ast.ImportFrom)):
                continue
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue  # a docstring
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                continue  # a module-level constant
            self.error(
                node,
                "Only function definitions may be at the top level; put this inside execute_command "
                "(the program is loaded, then execute_command(image) is called).",
            )

    def check_entry(self, entry: ast.FunctionDef) -> None:
        """The image first; later parameters must be ones vpd binds by name, or have defaults."""
        args = entry.args
        positional = [*args.posonlyargs, *args.args]
        if not positional or args.vararg or args.kwarg:
            self.error(entry, "execute_command must take the image as its first parameter: def execute_command(image):")
            return
        defaults = len(args.defaults)
        optional = {a.arg for a in positional[len(positional) - defaults :]} if defaults else set()
        optional |= {a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None}
        api = {"ImagePatch", *_HELPERS, *self.function_tools}
        for arg in [*positional[1:], *args.kwonlyargs]:
            if arg.arg not in ENTRY_PARAMETERS and arg.arg not in api and arg.arg not in optional:
                self.error(
                    arg,
                    f"execute_command's parameter {arg.arg!r} gets no value: after the image, vpd passes "
                    f"{', '.join(ENTRY_PARAMETERS)} and the API's names (ImagePatch, llm_query...) by name; "
                    "give it a default or remove it.",
                )

    # -- pass 2: uses ---------------------------------------------------------------------
    # Annotations are not evaluated (see vpd.programs.policy.portable): not checked either.
    def visit_arg(self, node: ast.arg) -> None:
        return None

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        for child in (*node.decorator_list, node.args, *node.body):
            self.visit(child)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.visit(node.target)
        if node.value is not None:
            self.visit(node.value)

    def visit_Name(self, node: ast.Name) -> None:
        known = node.id in self.bound or node.id in self.known_names or node.id in self.module_aliases
        if isinstance(node.ctx, ast.Load) and not known:
            available = ", ".join(sorted({"ImagePatch", *HELPER_API, *self.function_tools}))
            hint = _did_you_mean(node.id, self.known_names | self.bound)
            method = node.id if node.id in self.patch_methods else _closest(node.id, self.patch_methods)
            if not hint and method:
                hint = f" {method} is an ImagePatch method: call it on a patch, e.g. image_patch.{method}(...)."
            self.error(
                node,
                f"Unknown name {node.id!r}.{hint} Available functions: {available}; the modules math and typing; "
                "and Python builtins.",
            )

    def visit_Assign(self, node: ast.Assign) -> None:
        kind = self._kind(node.value)
        for target in node.targets:
            if isinstance(target, ast.Name):
                if kind:
                    self.kinds[target.id] = kind
                else:
                    self.kinds.pop(target.id, None)
        self.generic_visit(node)

    def visit_For(self, node: ast.For) -> None:
        if isinstance(node.target, ast.Name) and self._kind(node.iter) == "patches":
            self.kinds[node.target.id] = "patch"
        self.generic_visit(node)

    def _kind(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return self.kinds.get(node.id)
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name):
                if func.id == "ImagePatch":
                    return "patch"
                if func.id == "best_image_match" and not any(k.arg == "return_index" for k in node.keywords):
                    return "patch"
                if func.id in ("sorted", "list", "reversed") and node.args and self._kind(node.args[0]) == "patches":
                    return "patches"
            if isinstance(func, ast.Attribute) and self._kind(func.value) == "patch":
                return {"find": "patches", "crop": "patch"}.get(func.attr)
        if isinstance(node, ast.Subscript) and self._kind(node.value) == "patches":
            return "patches" if isinstance(node.slice, ast.Slice) else "patch"
        return None

    def visit_Attribute(self, node: ast.Attribute) -> None:
        value = node.value
        module = None
        if isinstance(value, ast.Name) and value.id not in self.bound:
            module = SAFE_MODULES.get(self.module_aliases.get(value.id, value.id))
        if module is not None:
            if node.attr not in module.members:
                self.error(
                    node,
                    f"module {module.name!r} has no attribute {node.attr!r} in programs."
                    f"{_did_you_mean(node.attr, module.members)} It has: {', '.join(module.members)}.",
                )
        elif node.attr not in self.attributes and not node.attr.startswith("_"):
            # The list shows vpd's own names (ViperGPT's aliases work but are not advertised).
            members = ", ".join(sorted((self.patch_methods | PATCH_ATTRIBUTES) - set(COMPAT_API)))
            hint = _did_you_mean(node.attr, self.patch_methods | PATCH_ATTRIBUTES)
            if self._kind(value) == "patch":
                self.error(node, f"ImagePatch has no attribute or method {node.attr!r}.{hint} It has: {members}.")
            else:
                hint = hint or _did_you_mean(node.attr, _TYPE_MEMBERS)
                self.error(
                    node,
                    f"Unknown attribute or method {node.attr!r}: neither an ImagePatch member nor a method of "
                    f"str, list, dict or the other builtin types.{hint} ImagePatch has: {members}.",
                )
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute):
            receiver = self._kind(func.value)
            if receiver == "patches" and func.attr in self.patch_methods and func.attr not in _TYPE_MEMBERS:
                self.error(
                    node,
                    f"{func.attr}() is an ImagePatch method, but this is the list that find() returns; "
                    f"use an element (patches[0].{func.attr}(...)) or loop over the list.",
                )
            elif receiver == "patches" and func.attr == "find":
                self.error(node, "find() returns a list of patches; call find on one patch, e.g. patches[0].find(...).")
            elif func.attr in _PATCH_METHODS and (receiver == "patch" or func.attr not in _TYPE_MEMBERS):
                message = _bind_error(_signature(func.attr), node, func.attr)
                if message:
                    self.error(node, message)
        elif isinstance(func, ast.Name):
            if func.id in _HELPERS and func.id not in self.bound:
                import vpd.helpers as helpers

                message = _bind_error(inspect.signature(getattr(helpers, func.id)), node, func.id)
                if message:
                    self.error(node, message)
            elif func.id in self.function_tools and func.id not in self.bound:
                message = _bind_error(self.function_tools[func.id].signature, node, func.id)
                if message:
                    self.error(node, message)
            elif func.id == "ImagePatch" and (
                not 1 <= len(node.args) <= 5
                or any(k.arg not in ("left", "lower", "right", "upper") for k in node.keywords)
            ):
                self.error(node, "Create patches as ImagePatch(image) or ImagePatch(image, left, lower, right, upper).")
        self.generic_visit(node)


def check_program(source: str, tools: ToolRegistry | None = None) -> list[ProgramError]:
    """Check a program without running it.

    Args:
        source: The program (defining ``execute_command(image)``).
        tools: The user tools it may call (default: those registered with ``@vpd.tool``).

    Returns:
        The errors found: kind ``compile`` (syntax, forbidden constructs) or ``static-check``
        (unknown names, methods, wrong argument counts...); empty when the program looks runnable.
    """
    registry = tools if tools is not None else tool_registry
    # The result depends on the source and on the names and signatures of the user tools.
    signature = tuple((s.name, s.kind, str(s.signature)) for s in registry.specs())
    return list(_check_cached(source, signature, registry))


@functools.lru_cache(maxsize=4096)
def _check_cached(
    source: str, signature: tuple[tuple[str, str, str], ...], tools: ToolRegistry
) -> tuple[ProgramError, ...]:
    compiled = compile_program(source)
    if not compiled.ok:
        return tuple(ProgramError("compile", message, line) for line, message in compiled.errors)
    tree = ast.parse(source)
    checker = _Checker(tools)
    checker.collect_bindings(tree)
    checker.check_module(tree)
    checker.visit(tree)
    return tuple(checker.errors)


def format_errors(errors: Iterable[ProgramError]) -> str:
    """Errors as lines ``line N: message`` (for feeding back to an LLM)."""
    return "\n".join(f"line {e.line}: {e.message}" if e.line else e.message for e in errors)
