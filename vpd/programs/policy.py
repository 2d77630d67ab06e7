"""Compiling untrusted programs: RestrictedPython with a stricter policy, plus tracing hooks.

:func:`compile_program` parses a program, rejects forbidden constructs (imports, classes,
``global``, ``with``, generators, async, underscore names and attributes), rewrites
attribute access, item access, iteration, writes and in-place operators into calls of
guard functions (RestrictedPython's transformer), inserts a call after every assignment
that reports the assigned value to the tracer, and counts each statement as it starts (a
list increment, so which lines ran costs next to nothing). The result is cached by source.

The names a program may use (:data:`SAFE_BUILTIN_NAMES`, :data:`PATCH_ATTRIBUTES`) are
declared here too, for the static checker and the worker alike. The guards themselves live
in :mod:`vpd.programs.sandbox.worker`; compiling alone makes nothing safe: programs run in
a disposable, resource-limited worker process.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from types import CodeType
from typing import Any, cast

from vpd.patch import COMPAT_API, PATCH_API
from vpd.programs.modules import SAFE_MODULES, TYPING_NAMES

__all__ = [
    "ASSIGN_HOOK",
    "ENTRY_PARAMETERS",
    "EXCEPTION_FIELDS",
    "LINE_COUNTS",
    "LOST_COUNTER",
    "RETURN_LINE",
    "RETURN_VALUE",
    "RECURSION_ERROR",
    "PATCH_ATTRIBUTES",
    "PROGRAM_FILENAME",
    "SAFE_BUILTIN_NAMES",
    "CompiledProgram",
    "compile_program",
    "portable",
]

#: Builtins a program may use (everything else is simply absent).
SAFE_BUILTIN_NAMES: tuple[str, ...] = (
    "abs", "all", "any", "bool", "chr", "dict", "divmod", "enumerate", "filter", "float", "frozenset",
    "int", "isinstance", "len", "list", "map", "max", "min", "ord", "pow", "range", "repr", "reversed",
    "round", "set", "slice", "sorted", "str", "sum", "tuple", "zip", "print",
    "ArithmeticError", "AssertionError", "AttributeError", "Exception", "IndexError", "KeyError",
    "LookupError", "NameError", "NotImplementedError", "OverflowError", "RuntimeError", "StopIteration",
    "TypeError", "ValueError", "ZeroDivisionError",
)  # fmt: skip

#: ImagePatch attributes a program may read or call (plus user method tools): the API, the
#: names kept for programs written against ViperGPT, and what a detection carries.
PATCH_ATTRIBUTES = frozenset((*PATCH_API, *COMPAT_API, "score", "label", "xyxy"))

#: ``execute_command``'s parameters after the image that vpd binds by name, as ViperGPT's
#: programs declare them, and what each gets: the run's question, its answer choices (a
#: list, or None), or None for display parameters that only mean something in a notebook
#: and for ``VideoSegment`` (ViperGPT's video API, which image programs do not call).
#: Parameters named after the API (``ImagePatch``, ``llm_query``...) get that object.
ENTRY_PARAMETERS: dict[str, str | None] = {
    "query": "question",
    "question": "question",
    "possible_answers": "choices",
    "choices": "choices",
    "my_fig": None,
    "time_wait_between_lines": None,
    "syntax": None,
    "VideoSegment": None,
}

#: What a program may read of a failed tool call's exception besides ``args``: the user tool
#: (``ToolError.tool``), or the capability and backend (``BackendError``); None when absent.
EXCEPTION_FIELDS = frozenset(("tool", "capability", "backend"))

#: Name of the tracing hook inserted after assignments (unreachable from program code,
#: which may not use names starting with an underscore).
ASSIGN_HOOK = "__vpd_assign__"
#: Name of a one-item list counting assignments whose hook could not even be called (a
#: RecursionError at the call): counted without a call, so a program cannot hide one.
LOST_COUNTER = "__vpd_lost__"
#: Name of the list counting, at index ``n``, how many times a statement starting on line
#: ``n`` began (statements are counted as they start: one that raised still ran).
LINE_COUNTS = "__vpd_lines__"
#: Name of a one-item list set to the line of the ``return`` that ``execute_command`` runs.
RETURN_LINE = "__vpd_return__"
#: The local holding the value of ``execute_command``'s ``return`` while its line is marked.
RETURN_VALUE = "__vpd_rv__"
#: RecursionError under a name only the inserted tracing code uses (programs cannot name it).
RECURSION_ERROR = "__vpd_RecursionError__"
#: Filename of compiled programs; the worker finds program lines by it.
PROGRAM_FILENAME = "<program>"
#: Longest program accepted, in characters.
MAX_PROGRAM_CHARS = 64_000

_LINE = re.compile(r"^Line (\d+):\s*")


@dataclass(frozen=True)
class CompiledProgram:
    """The result of :func:`compile_program`.

    Attributes:
        code: The code object, or None when compilation failed.
        errors: ``(line, message)`` pairs; empty on success.
    """

    code: CodeType | None
    errors: tuple[tuple[int | None, str], ...]

    @property
    def ok(self) -> bool:
        """Whether the program compiled."""
        return self.code is not None


def _transformer_class() -> type:
    from RestrictedPython import RestrictingNodeTransformer

    class StrictTransformer(RestrictingNodeTransformer):
        """RestrictedPython's policy, made stricter for generated programs."""

        def _reject(self, node: ast.AST, what: str) -> ast.AST:
            self.error(node, f"{what} are not allowed in programs.")
            return node

        def visit_Import(self, node: ast.Import) -> ast.AST:
            # Imports of the safe modules were turned into assignments before this pass.
            names = ", ".join(alias.name for alias in node.names)
            self.error(node, f"import {names}: {_NO_MODULES}")
            return node

        def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
            module = SAFE_MODULES.get(node.module or "") if node.level == 0 else None
            if module is None:
                self.error(node, f"from {'.' * node.level}{node.module or ''} import ...: {_NO_MODULES}")
            elif any(alias.name == "*" for alias in node.names):
                self.error(node, f"from {module.name} import * is not allowed; import the names you use.")
            else:
                missing = [alias.name for alias in node.names if alias.name not in module.members]
                self.error(
                    node,
                    f"{module.name} has no {', '.join(map(repr, missing))} in programs; "
                    f"it has: {', '.join(module.members)}.",
                )
            return node

        def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
            return self._reject(node, "class statements")

        def visit_Global(self, node: ast.Global) -> ast.AST:
            return self._reject(node, "global statements")

        def visit_Nonlocal(self, node: ast.Nonlocal) -> ast.AST:
            return self._reject(node, "nonlocal statements")

        def visit_With(self, node: ast.With) -> ast.AST:
            return self._reject(node, "with statements")

        def visit_AsyncWith(self, node: ast.AsyncWith) -> ast.AST:
            return self._reject(node, "async statements")

        def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
            return self._reject(node, "async functions")

        def visit_AsyncFor(self, node: ast.AsyncFor) -> ast.AST:
            return self._reject(node, "async statements")

        def visit_Await(self, node: ast.Await) -> ast.AST:
            return self._reject(node, "await expressions")

        def visit_Yield(self, node: ast.Yield) -> ast.AST:
            return self._reject(node, "generators (yield)")

        def visit_YieldFrom(self, node: ast.YieldFrom) -> ast.AST:
            return self._reject(node, "generators (yield)")

        def visit_Try(self, node: ast.Try) -> ast.AST:
            # A bare "except:" or "except BaseException" would swallow what the runtime raises
            # to stop a program; only Exception and its subclasses may be caught.
            for handler in node.handlers:
                if handler.type is None:
                    self.error(handler, "bare 'except:' is not allowed; catch Exception or a subclass.")
            return cast(ast.AST, super().visit_Try(node))

        def visit_TryStar(self, node: Any) -> ast.AST:
            return self._reject(node, "except* blocks")

        def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
            self._no_walrus_inside(node, "lambda")
            return cast(ast.AST, super().visit_Lambda(node))

        def visit_GeneratorExp(self, node: ast.GeneratorExp) -> ast.AST:
            self._no_walrus_inside(node, "generator expression")
            return cast(ast.AST, super().visit_GeneratorExp(node))

        def _no_walrus_inside(self, node: ast.AST, what: str) -> None:
            # A ":=" is traced by a hook call at the statement that runs it; a lambda or a
            # generator runs later, from another statement, where its loss could not be counted.
            if any(isinstance(child, ast.NamedExpr) for child in ast.walk(node)):
                self.error(node, f"assignment expressions (:=) are not allowed inside a {what}; assign in a statement.")

    return StrictTransformer


_NO_MODULES = (
    "programs cannot import modules. `math` and the typing names "
    f"({', '.join(TYPING_NAMES)}) are in scope (import math and from typing import List work); "
    "everything else a program may use is in scope already: ImagePatch, the helper functions and Python's builtins."
)


class _PortableSyntax(ast.NodeTransformer):
    """Accept what programs written for ViperGPT and its successors use, before the policy pass.

    * ``import math`` / ``import typing`` / ``from math import ceil`` / ``from typing import
      List``: the modules are in scope (:mod:`vpd.programs.modules`), so the import is a
      no-op or an assignment (``ceil = math.ceil``). Other imports are left for the policy
      to reject.
    * Annotations are not evaluated (as under ``from __future__ import annotations``):
      they are removed, so ``-> List[ImagePatch]`` or ``x: np.ndarray`` cannot fail.
    """

    def visit_Import(self, node: ast.Import) -> Any:
        if not all(alias.name in SAFE_MODULES for alias in node.names):
            return node
        renamed = [
            ast.Assign([ast.Name(alias.asname, ast.Store())], ast.Name(alias.name, ast.Load()))
            for alias in node.names
            if alias.asname and alias.asname != alias.name
        ]
        return [ast.copy_location(stmt, node) for stmt in renamed] or ast.copy_location(ast.Pass(), node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> Any:
        module = SAFE_MODULES.get(node.module or "") if node.level == 0 else None
        if module is None or any(alias.name not in module.members for alias in node.names):
            return node
        in_scope = set(TYPING_NAMES) if module.name == "typing" else set()
        assigned = [
            ast.Assign(
                [ast.Name(alias.asname or alias.name, ast.Store())],
                ast.Attribute(ast.Name(module.name, ast.Load()), alias.name, ast.Load()),
            )
            for alias in node.names
            if (alias.asname or alias.name) not in in_scope or alias.asname not in (None, alias.name)
        ]
        return [ast.copy_location(stmt, node) for stmt in assigned] or ast.copy_location(ast.Pass(), node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        node.returns = None
        arguments = node.args
        for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg, arguments.kwarg]:
            if arg is not None:
                arg.annotation = None
        self.generic_visit(node)
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> Any:
        if node.value is None:
            return ast.copy_location(ast.Pass(), node)
        return ast.copy_location(ast.Assign([node.target], node.value), node)


def portable(tree: ast.Module) -> ast.Module:
    """``tree`` with safe-module imports resolved and annotations removed (see :class:`_PortableSyntax`)."""
    return cast(ast.Module, ast.fix_missing_locations(_PortableSyntax().visit(tree)))


class _WalrusTracer(ast.NodeTransformer):
    """Wrap ``(name := value)`` as ``__vpd_assign__(line, "name", (name := value))`` (the hook returns the value)."""

    def visit_NamedExpr(self, node: ast.NamedExpr) -> ast.AST:
        self.generic_visit(node)
        if node.target.id.startswith("_"):
            return node
        call = ast.Call(
            func=ast.Name(ASSIGN_HOOK, ast.Load()),
            args=[ast.Constant(node.lineno), ast.Constant(node.target.id), node],
            keywords=[],
        )
        return ast.copy_location(call, node)


class _AssignmentTracer(ast.NodeTransformer):
    """Insert ``__vpd_assign__(line, name, value)`` after assignments to plain names."""

    @staticmethod
    def _names(target: ast.expr) -> list[str]:
        if isinstance(target, ast.Name):
            return [] if target.id.startswith("_") else [target.id]
        if isinstance(target, (ast.Tuple, ast.List)):
            return [n for elt in target.elts for n in _AssignmentTracer._names(elt)]
        if isinstance(target, ast.Starred):
            return _AssignmentTracer._names(target.value)
        return []

    @staticmethod
    def _hook(names: list[str], node: ast.stmt) -> list[ast.stmt]:
        """``try: __vpd_assign__(line, name, name)`` / ``except RecursionError: __vpd_lost__[0] += 1``.

        The hook never raises into the program (it counts its own failures); the only way a
        call to it can fail is the recursion limit at the call itself, and then the loss is
        counted without a call (a subscript increment cannot hit the limit).
        """
        hooks: list[ast.stmt] = []
        for name in names:
            call = ast.Expr(
                ast.Call(
                    func=ast.Name(ASSIGN_HOOK, ast.Load()),
                    args=[ast.Constant(node.lineno), ast.Constant(name), ast.Name(name, ast.Load())],
                    keywords=[],
                )
            )
            hooks.append(ast.copy_location(_counting_recursion_errors([call], reraise=False), node))
        return hooks

    def _block(self, body: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for stmt in body:
            visited = self.visit(stmt)
            if _walrus_hook_in(visited):
                # A ":=" is traced by a hook call inside an expression: if that call fails at the
                # recursion limit, count it before the program sees the error.
                visited = ast.copy_location(_counting_recursion_errors([visited], reraise=True), stmt)
            out.append(visited)
            if isinstance(stmt, ast.Assign):
                out += self._hook([n for t in stmt.targets for n in self._names(t)], stmt)
            elif isinstance(stmt, (ast.AugAssign, ast.AnnAssign)) and stmt.value is not None:
                out += self._hook(self._names(stmt.target), stmt)
        return out

    def generic_visit(self, node: ast.AST) -> ast.AST:
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                setattr(node, name, self._block(block))
        if isinstance(node, ast.Try):
            for handler in node.handlers:
                handler.body = self._block(handler.body)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.expr, ast.excepthandler)):
                continue
            if not isinstance(child, ast.stmt):
                self.visit(child)
        return node

    def visit_For(self, node: ast.For) -> ast.AST:
        self.generic_visit(node)
        node.body = self._hook(self._names(node.target), node) + node.body
        return node


class _LineCounter(ast.NodeTransformer):
    """Insert ``__vpd_lines__[n] += 1`` before every statement (``n``: its first line).

    A compound statement (``if``, ``for``, ``def``...) is counted when reached, its body's
    statements each time they run, so a loop header counts entries and its body iterations.
    ``execute_command``'s own ``return`` statements also set ``__vpd_return__[0]``.
    """

    def __init__(self) -> None:
        self._functions: list[bool] = []  # the enclosing functions: is each the entry point?
        self._counted: set[int] = set()  # lines that have their counter (the first statement on each)

    def _block(self, body: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        in_entry = bool(self._functions) and self._functions[-1]
        for stmt in body:
            line = stmt.lineno
            # One counter per line, on its first statement (``if x: return 1``, ``a = 1; b = 2``):
            # a line's count says how often it was reached, not how many statements it holds.
            if line not in self._counted:
                self._counted.add(line)
                count = ast.AugAssign(
                    target=ast.Subscript(ast.Name(LINE_COUNTS, ast.Load()), ast.Constant(line), ast.Store()),
                    op=ast.Add(),
                    value=ast.Constant(1),
                )
                out.append(ast.copy_location(count, stmt))
            if isinstance(stmt, ast.Return) and in_entry:
                # The value first, then the mark: a value that raises, or a recursive call that
                # returns from elsewhere, must not leave this line marked as the return taken.
                if stmt.value is not None:
                    hold = ast.Assign(targets=[ast.Name(RETURN_VALUE, ast.Store())], value=stmt.value)
                    out.append(ast.copy_location(hold, stmt))
                    stmt.value = ast.copy_location(ast.Name(RETURN_VALUE, ast.Load()), stmt)
                mark = ast.Assign(
                    targets=[ast.Subscript(ast.Name(RETURN_LINE, ast.Load()), ast.Constant(0), ast.Store())],
                    value=ast.Constant(line),
                )
                out.append(ast.copy_location(mark, stmt))
            out.append(self.visit(stmt))
        return out

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        entry = not self._functions and node.name == "execute_command"
        self._functions.append(entry)
        self.generic_visit(node)
        self._functions.pop()
        if entry:
            # Falling off the end returns None from no line: forget a return that was marked
            # but did not take effect (a ``finally`` that raised or continued past it).
            clear = ast.Assign(
                targets=[ast.Subscript(ast.Name(RETURN_LINE, ast.Load()), ast.Constant(0), ast.Store())],
                value=ast.Constant(None),
            )
            node.body.append(ast.copy_location(clear, node.body[-1]))
        return node

    def generic_visit(self, node: ast.AST) -> ast.AST:
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                setattr(node, name, self._block(block))
        for handler in getattr(node, "handlers", ()):  # try / try*
            handler.body = self._block(handler.body)
        for case in getattr(node, "cases", ()):  # match
            case.body = self._block(case.body)
        return node


def _counting_recursion_errors(body: list[ast.stmt], *, reraise: bool) -> ast.Try:
    """``try: body`` / ``except RecursionError: __vpd_lost__[0] += 1`` (then ``raise`` if asked)."""
    count = ast.AugAssign(
        target=ast.Subscript(ast.Name(LOST_COUNTER, ast.Load()), ast.Constant(0), ast.Store()),
        op=ast.Add(),
        value=ast.Constant(1),
    )
    handler = ast.ExceptHandler(
        type=ast.Name(RECURSION_ERROR, ast.Load()), name=None, body=[count, *([ast.Raise()] if reraise else [])]
    )
    return ast.Try(body=body, handlers=[handler], orelse=[], finalbody=[])


def _walrus_hook_in(stmt: ast.stmt) -> bool:
    """Whether a ``:=`` hook call sits in the statement's own expressions (not in nested statements)."""
    for child in ast.iter_child_nodes(stmt):
        if isinstance(child, ast.expr):
            for node in ast.walk(child):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == ASSIGN_HOOK:
                    return True
    return False


@functools.lru_cache(maxsize=4096)
def compile_program(source: str) -> CompiledProgram:
    """Compile an untrusted program under the strict policy (cached by source).

    Args:
        source: Python source defining ``execute_command(image)``.

    Returns:
        The code object, or the errors with their lines.
    """
    if not isinstance(source, str):
        return CompiledProgram(None, ((None, f"A program must be a string, not {type(source).__name__}."),))
    if len(source.encode("utf-8", "replace")) > MAX_PROGRAM_CHARS:
        return CompiledProgram(None, ((None, f"The program is longer than {MAX_PROGRAM_CHARS} bytes of UTF-8."),))
    if "\x00" in source:
        return CompiledProgram(None, ((None, "The program contains a NUL character."),))
    try:
        source.encode("utf-8")
    except UnicodeEncodeError as exc:
        return CompiledProgram(
            None, ((None, f"The program is not valid Unicode text: a lone surrogate at character {exc.start}."),)
        )
    try:
        tree = ast.parse(source, PROGRAM_FILENAME, "exec")
    except SyntaxError as exc:
        return CompiledProgram(None, ((exc.lineno, f"SyntaxError: {exc.msg}"),))
    except (ValueError, RecursionError, MemoryError) as exc:
        return CompiledProgram(None, ((None, f"The program cannot be parsed: {type(exc).__name__}"),))
    errors: list[str] = []
    warnings: list[str] = []
    used: dict[str, bool] = {}
    try:
        tree = portable(tree)
        _transformer_class()(errors, warnings, used).visit(tree)
    except RecursionError:
        return CompiledProgram(None, ((None, "The program is nested too deeply."),))
    if errors:
        return CompiledProgram(None, tuple(_split_line(e) for e in errors))
    # Lines first: the assignment hooks inserted next are not program statements to count.
    tree = _AssignmentTracer().visit(_WalrusTracer().visit(_LineCounter().visit(tree)))
    ast.fix_missing_locations(tree)
    try:
        code = compile(tree, PROGRAM_FILENAME, "exec")
    except (SyntaxError, ValueError, RecursionError) as exc:
        return CompiledProgram(None, ((getattr(exc, "lineno", None), f"{type(exc).__name__}: {exc}"),))
    return CompiledProgram(code, ())


def _split_line(message: str) -> tuple[int | None, str]:
    match = _LINE.match(message)
    if match:
        return int(match.group(1)), message[match.end() :]
    return None, message
