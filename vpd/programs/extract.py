"""Getting a program out of an LLM's chat reply.

Models wrap code in prose, fence it or not, stop mid-sentence at the token limit, forget the
``def`` line, name the function differently, or call it at the end. :func:`extract_program`
finds the ``execute_command`` function in all of these and returns it with a note for every
change it made, so nothing is altered silently; when no program can be found it says why
(the message is fed back to the model for a repair).
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass

__all__ = ["ExtractedProgram", "extract_program"]

ENTRY_POINT = "execute_command"

# ```python ... ``` (or ~~~); the closing fence may be missing when the reply was cut off.
_FENCE = re.compile(
    r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+.-]*)[^\n]*\n(?P<body>.*?)(?:^[ \t]*(?P=fence)[ \t]*$|\Z)",
    re.MULTILINE | re.DOTALL,
)
_DEF = re.compile(rf"^(?P<indent>[ \t]*)def\s+{ENTRY_POINT}\s*\(", re.MULTILINE)
_ANY_DEF = re.compile(r"^def\s+(?P<name>\w+)\s*\(\s*(?P<param>\w+)\s*(?::[^)]*)?\)", re.MULTILINE)
_CODE_LANGS = {"", "python", "py", "python3", "py3"}


@dataclass(frozen=True)
class ExtractedProgram:
    """The program found in a reply.

    Attributes:
        code: The program's source (defines ``execute_command``), or None when none was found.
        notes: Every change made to the reply's code, in words (empty when it was used as is).
        error: Why no program could be found (None when ``code`` is set).
    """

    code: str | None
    notes: tuple[str, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether a program was found."""
        return self.code is not None


def extract_program(reply: str) -> ExtractedProgram:
    """Find the ``execute_command`` program in a chat reply.

    Handles fenced blocks (the one defining ``execute_command`` wins; an unterminated fence
    at the end is accepted), unfenced code inside prose, a body without its ``def`` line, a
    single function under another name, trailing prose, a cut-off last line, and top-level
    calls of the function (``print(execute_command(image))``), which are removed.

    Args:
        reply: The model's reply text.

    Returns:
        The program and notes on what was changed, or an error saying what was missing.
    """
    if not isinstance(reply, str) or not reply.strip():
        return ExtractedProgram(None, error="The reply was empty: write the function execute_command(image).")
    notes: list[str] = []
    source = _pick_block(reply, notes)
    source = textwrap.dedent(source.replace("\r\n", "\n").replace("\t", "    ")).strip("\n")
    match = _DEF.search(source)
    inline = re.search(rf"def\s+{ENTRY_POINT}\s*\(", source)
    if match is None and inline is not None:
        # "Sure! def execute_command(image):" - the def follows prose on its line.
        before = source[: inline.start()]
        source = source[inline.start() :]
        if before.rstrip().endswith("async"):
            notes.append(f"made 'async def {ENTRY_POINT}' a plain function")
        else:
            notes.append(f"dropped text before 'def {ENTRY_POINT}'")
        match = _DEF.search(source)
    if match is None:
        renamed = _rename_single_function(source)
        if renamed is not None:
            source, old = renamed
            notes.append(f"renamed the function {old}(...) to {ENTRY_POINT}(...)")
        elif (body := _body_start(source)) is not None:
            skipped, source = body
            if skipped:
                notes.append(f"dropped {skipped} line{'s' if skipped > 1 else ''} of text before the code")
            source = f"def {ENTRY_POINT}(image):\n" + textwrap.indent(source, "    ")
            notes.append(f"added the missing line 'def {ENTRY_POINT}(image):' above the code")
        else:
            return ExtractedProgram(
                None,
                notes=tuple(notes),
                error=f"No function {ENTRY_POINT}(image) was found in the reply: write it in a ```python block.",
            )
    else:
        if match.start() > 0 and not _parses(source):
            # Prose (or a stray line) before the function: keep the code from the def on.
            source = source[match.start() :]
            notes.append(f"dropped text before 'def {ENTRY_POINT}'")
        source = textwrap.dedent(source)
    trimmed = _trim_to_parse(source, notes)
    if trimmed is None:
        return ExtractedProgram(
            None,
            notes=tuple(notes),
            error=(
                "The code in the reply is not valid Python or is incomplete (it may have been cut off): "
                f"{_first_syntax_error(source)}. Write the whole function again."
            ),
        )
    source = _drop_top_level_calls(trimmed, notes)
    if not re.search(rf"^def\s+{ENTRY_POINT}\s*\(", source, re.MULTILINE):
        return ExtractedProgram(
            None, notes=tuple(notes), error=f"The function {ENTRY_POINT}(image) must be defined at the top level."
        )
    return ExtractedProgram(source.rstrip() + "\n", tuple(notes))


def _pick_block(reply: str, notes: list[str]) -> str:
    blocks = [
        (m.group("lang").lower(), m.group("body"), m.group(0).rstrip().endswith(m.group("fence")))
        for m in _FENCE.finditer(reply)
    ]
    code_blocks = [(lang, body, closed) for lang, body, closed in blocks if lang in _CODE_LANGS and body.strip()]
    if not code_blocks:
        return reply
    chosen = next((b for b in code_blocks if _DEF.search(b[1])), code_blocks[0])
    defining = [b for b in code_blocks if _DEF.search(b[1])]
    if len(defining) > 1:
        chosen = defining[-1]  # models that revise themselves put the final version last
        notes.append(f"the reply had {len(defining)} versions of {ENTRY_POINT}; used the last")
    elif _DEF.search(chosen[1]) is None and len(code_blocks) > 1:
        # The def is missing everywhere: several blocks may be pieces of one program.
        return "\n".join(body for _, body, _ in code_blocks)
    if not chosen[2]:
        notes.append("the code block was not closed (the reply may have been cut off)")
    return chosen[1]


def _parses(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def _trim_to_parse(source: str, notes: list[str]) -> str | None:
    """``source`` without what follows the code (prose, a cut-off last line), or None.

    The cut goes where Python reports the syntax error, so long replies cost a few parses,
    not one per line. None when nothing parses, or when the cut falls inside the function
    (an indented line, or a later indented ``return``): dropping part of a body would leave a
    program that runs and answers nothing, so such a reply goes back to the model instead.
    """
    if _parses(source):
        return source
    lines = source.split("\n")
    end = len(lines)
    for _ in range(200):
        candidate = "\n".join(lines[:end]).rstrip()
        if not candidate or not _DEF.search(candidate):
            return None
        try:
            ast.parse(candidate)
            break
        except SyntaxError as exc:
            line = exc.lineno if isinstance(exc.lineno, int) and 0 < exc.lineno <= end else end
            end = min(end - 1, line - 1)
        except (ValueError, RecursionError, MemoryError):
            end -= 1
    else:
        return None
    dropped = lines[end:]
    if dropped and (_indented(dropped[0]) or any(_indented(d) and d.strip().startswith("return") for d in dropped)):
        return None
    count = sum(1 for d in dropped if d.strip())
    if count:
        notes.append(f"dropped {count} line{'s' if count > 1 else ''} after the code that were not Python")
    return candidate


def _first_syntax_error(source: str) -> str:
    try:
        ast.parse(source)
    except SyntaxError as exc:
        return f"SyntaxError at line {exc.lineno}: {exc.msg}"
    except (ValueError, RecursionError, MemoryError) as exc:
        return type(exc).__name__
    return "no error"


def _indented(line: str) -> bool:
    return bool(line.strip()) and line[:1] in (" ", "\t")


def _rename_single_function(source: str) -> tuple[str, str] | None:
    """``def solve(image): ...`` alone in the reply: rename it to execute_command."""
    if not _parses(source):
        return None
    functions = [node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)]
    if len(functions) != 1 or len(functions[0].args.args) != 1:
        return None
    old = functions[0].name
    renamed = re.sub(rf"^def\s+{re.escape(old)}\s*\(", f"def {ENTRY_POINT}(", source, count=1, flags=re.MULTILINE)
    return renamed, old


def _body_start(source: str) -> tuple[int, str] | None:
    """A function body without its def line, possibly after a few lines of prose: (lines skipped, body)."""
    if re.search(r"^(async\s+)?def\s", source, re.MULTILINE):
        return None  # functions of its own (under other names): not a bare body
    lines = source.split("\n")
    for skipped in range(min(len(lines), 8)):
        rest = textwrap.dedent("\n".join(lines[skipped:])).strip("\n")
        if rest and _looks_like_body(rest):
            return skipped, rest
    return None


def _looks_like_body(source: str) -> bool:
    """Statements that read ``image`` and return something: a body whose def line is missing."""
    if not re.search(r"^\s*return\b", source, re.MULTILINE) or "image" not in source:
        return False
    if re.search(r"^(async\s+)?def\s", source, re.MULTILINE):
        return False  # functions of its own: not a bare body
    wrapped = f"def {ENTRY_POINT}(image):\n" + textwrap.indent(source, "    ")
    return _parses(wrapped) or bool(re.match(r"^[A-Za-z_][\w.]*\s*(=|\()", source.lstrip()))


def _drop_top_level_calls(source: str, notes: list[str]) -> str:
    """Remove top-level statements that call ``execute_command`` (there is no ``image`` there)."""
    tree = ast.parse(source)
    lines = source.split("\n")
    drop: list[tuple[int, int]] = []
    for node in tree.body:
        if isinstance(node, (ast.Expr, ast.Assign, ast.If)) and any(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == ENTRY_POINT
            for n in ast.walk(node)
        ):
            drop.append((node.lineno, node.end_lineno or node.lineno))
    if not drop:
        return source
    for start, end in reversed(drop):
        del lines[start - 1 : end]
    notes.append(f"removed {len(drop)} top-level call{'s' if len(drop) > 1 else ''} of {ENTRY_POINT}")
    return "\n".join(lines).rstrip()
