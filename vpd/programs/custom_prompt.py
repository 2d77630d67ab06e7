"""Bring your own program-writing prompt: a ViperGPT-format prompt file or a template of your own.

Researchers reuse the prompts of ViperGPT and its successors: the API class text with its
examples and ``INSERT_QUERY_HERE`` where the question goes. :class:`PromptTemplate` reads
such a file, or a template of your own with ``{question}`` (and, optionally, ``{api}`` for
vpd's API rendered from the live code, user tools included, and ``{examples}`` for
worked examples picked for the question). The whole text becomes one user message; the
programs it gets run in vpd's sandbox with vpd's tools, like any other, and
:attr:`vpd.Solution.prompt` records which prompt wrote them.

A ViperGPT prompt describes ViperGPT's API; programs written from it call
``compute_depth``, ``process_guesses``, take ``execute_command(image, my_fig, ...)`` and
so on, which vpd accepts as written (see the README's "Programs written for ViperGPT").
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vpd.errors import ConfigError, InvalidArgumentError
from vpd.programs.api import render_api
from vpd.programs.library import Example
from vpd.tools.types import ChatMessage
from vpd.tools.user_tools import ToolRegistry

__all__ = ["VIPERGPT_QUERY_MARK", "PromptTemplate"]

#: Where a ViperGPT-format prompt takes the question.
VIPERGPT_QUERY_MARK = "INSERT_QUERY_HERE"
_QUESTION, _API, _EXAMPLES = "{question}", "{api}", "{examples}"
#: Longest prompt file read, in characters (a prompt is text, not data).
MAX_PROMPT_CHARS = 400_000


@dataclass(frozen=True)
class PromptTemplate:
    """A program-writing prompt from a file.

    Attributes:
        text: The prompt's text.
        style: ``"vipergpt"`` (the question replaces ``INSERT_QUERY_HERE``) or
            ``"template"`` (``{question}``, ``{api}`` and ``{examples}`` are filled in).
        source: Where it came from (a path, or ``"<text>"``).
    """

    text: str
    style: Literal["vipergpt", "template"]
    source: str = "<text>"

    @classmethod
    def from_text(cls, text: str, source: str = "<text>") -> PromptTemplate:
        """A prompt from its text; the style is recognised from its placeholders.

        Raises:
            InvalidArgumentError: Not text, too long, or with no place for the question.
        """
        if not isinstance(text, str):
            raise InvalidArgumentError(f"A prompt must be text, got {type(text).__name__}.")
        if len(text) > MAX_PROMPT_CHARS:
            raise InvalidArgumentError(f"The prompt {source} is over {MAX_PROMPT_CHARS:,} characters.")
        if VIPERGPT_QUERY_MARK in text:
            return cls(text, "vipergpt", source)
        if _QUESTION in text:
            return cls(text, "template", source)
        raise InvalidArgumentError(
            f"The prompt {source} has no place for the question: put {VIPERGPT_QUERY_MARK} (ViperGPT's format) "
            f"or {_QUESTION} (a template; {_API} and {_EXAMPLES} are filled in too) where it goes."
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PromptTemplate:
        """Read a prompt file (UTF-8).

        Raises:
            ConfigError: The file cannot be read.
            InvalidArgumentError: It has no place for the question (see :meth:`from_text`).
        """
        file = Path(path).expanduser()
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"Cannot read the prompt file {file}: {exc}.") from exc
        return cls.from_text(text, str(file))

    @property
    def digest(self) -> str:
        """The first 12 hex digits of the text's SHA-256."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:12]

    @property
    def uses_examples(self) -> bool:
        """Whether worked examples are filled in (a template with ``{examples}``)."""
        return self.style == "template" and _EXAMPLES in self.text

    def describe(self) -> str:
        """``custom prompt PATH (vipergpt, sha256 abc...)``: what a solution records."""
        return f"custom prompt {self.source} ({self.style}, sha256 {self.digest})"

    def messages(
        self, question: str, *, tools: ToolRegistry | None = None, examples: list[Example] | None = None
    ) -> list[ChatMessage]:
        """The chat asking for a program that answers ``question``: one user message.

        Args:
            question: The question.
            tools: The user tools ``{api}`` documents (default: those registered).
            examples: What ``{examples}`` shows (most relevant first).

        Raises:
            InvalidArgumentError: An empty question.
        """
        if not isinstance(question, str) or not question.strip():
            raise InvalidArgumentError("The question must be a non-empty string.")
        question = " ".join(question.split())
        if self.style == "vipergpt":
            return [{"role": "user", "content": self.text.replace(VIPERGPT_QUERY_MARK, question)}]
        values = {_QUESTION: question}
        if _API in self.text:
            values[_API] = render_api(tools)
        if _EXAMPLES in self.text:
            values[_EXAMPLES] = "\n\n".join(
                f"# Question: {e.question}\n{e.program.rstrip()}" for e in reversed(examples or [])
            )
        # One pass over the template, by name (not str.format: prompts are full of code braces),
        # so a placeholder inside a filled-in value (an example's f-string) stays as it is.
        pattern = re.compile("|".join(re.escape(key) for key in values))
        return [{"role": "user", "content": pattern.sub(lambda match: values[match.group(0)], self.text)}]
