"""Which statement each program line belongs to, to show which lines ran.

A trace counts statements by their first line (:attr:`vpd.traces.trace.Trace.line_counts`);
a view marks every line of a statement (a call spread over three lines, the header of an
``if``) with that statement's count. Lines that belong to no statement (blank lines,
comments, ``else:``) get no mark. An ``except`` line takes the count of its handler's first
statement: it ran when the handler did.
"""

from __future__ import annotations

import ast

__all__ = ["line_runs", "statement_heads"]


def statement_heads(program: str) -> dict[int, int]:
    """``{line: first line of the statement it belongs to}``; empty when the program does not parse."""
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
        return {}
    heads: dict[int, int] = {}
    for node in ast.walk(tree):  # parents before children: a nested statement's lines win
        if isinstance(node, ast.stmt):
            first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", ()))])
            for line in range(first, _header_end(node) + 1):
                heads[line] = node.lineno
        elif isinstance(node, ast.ExceptHandler) and node.body:
            for line in range(node.lineno, _header_end(node) + 1):
                heads[line] = node.body[0].lineno
    return heads


def _header_end(node: ast.AST) -> int:
    """The last line of a statement's own text: all of a simple one, a compound one's header only.

    A header ends with its own expressions (the test, the target and iterable, the
    arguments), so a comment or a blank line between ``if x:`` and its body is not part of it.
    """
    start = int(getattr(node, "lineno", 0))
    body = getattr(node, "body", None)
    if not (isinstance(body, list) and body and isinstance(body[0], ast.stmt)):
        return int(getattr(node, "end_lineno", None) or start)
    end = start
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.stmt, ast.excepthandler)):
            continue
        for part in ast.walk(child):
            end = max(end, int(getattr(part, "end_lineno", None) or 0))
    return min(end, body[0].lineno - 1) if body[0].lineno > start else start


def line_runs(program: str, counts: dict[int, int] | None, lines: int) -> list[int | None]:
    """For each of the first ``lines`` program lines: how often its statement ran (0: never).

    None for a line of no statement, and for every line when ``counts`` is None (not recorded).
    """
    if counts is None:
        return [None] * lines
    heads = statement_heads(program)
    return [counts.get(heads[n], 0) if n in heads else None for n in range(1, lines + 1)]
