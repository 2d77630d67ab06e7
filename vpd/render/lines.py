"""Which statement each program line belongs to, to show which lines ran.

A trace counts statements by their first line (:attr:`vpd.traces.trace.Trace.line_counts`);
a view marks every line of a statement (a call spread over three lines, the header of an
``if``) with that statement's count. Lines that belong to no statement (blank lines,
comments, ``else:``) get no mark. An ``except`` line takes the count of its handler's first
statement: it ran when the handler did.
"""

from __future__ import annotations

import ast
import re

__all__ = ["line_runs", "statement_heads"]

_PYTHON_LINES = re.compile(r"\r\n|\r|\n")


def statement_heads(program: str) -> dict[int, int]:
    """``{line: first line of the statement it belongs to}``; empty when the program does not parse."""
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
        return {}
    heads: dict[int, int] = {}
    text = _PYTHON_LINES.split(program)  # line n is text[n - 1], as the parser numbers them
    for node in ast.walk(tree):  # parents before children: a nested statement's lines win
        if isinstance(node, ast.stmt):
            first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", ()))])
            for line in range(first, _header_end(node, text) + 1):
                heads[line] = node.lineno
        elif isinstance(node, ast.ExceptHandler) and node.body:
            for line in range(node.lineno, _header_end(node, text) + 1):
                heads[line] = node.body[0].lineno
    return heads


def _header_end(node: ast.AST, text: list[str]) -> int:
    """The last line of a statement's own text: all of a simple one, a compound one's header only.

    A header runs up to its body, less the blank and comment-only lines just before the
    body (``if x:`` then ``# why`` then the body: the comment is not part of the header;
    a closing ``):`` on its own line is).
    """
    start = int(getattr(node, "lineno", 0))
    body = getattr(node, "body", None)
    if not (isinstance(body, list) and body and isinstance(body[0], ast.stmt)):
        return int(getattr(node, "end_lineno", None) or start)
    end = max(start, body[0].lineno - 1)
    while end > start and (not text[end - 1].strip() or text[end - 1].lstrip().startswith("#")):
        end -= 1
    return end


def line_runs(program: str, counts: dict[int, int] | None, lines: int) -> list[int | None]:
    """For each of the first ``lines`` program lines: how often its statement ran (0: never).

    None for a line of no statement, and for every line when ``counts`` is None (not recorded).
    """
    if counts is None:
        return [None] * lines
    heads = statement_heads(program)
    return [counts.get(heads[n], 0) if n in heads else None for n in range(1, lines + 1)]
