"""Sampling programs from an LLM: k samples, code extraction, static checks, self-repair.

For one question :class:`ProgramGenerator` renders the prompt (the live API and the worked
examples nearest to the question), asks the model for ``k`` programs concurrently (sample 0
greedy, the others at the sampling temperature, each with its own seed), extracts the code
from each reply, checks it with the sandbox's static checker, and feeds any error back to
the model for a corrected version, a bounded number of times. Every reply, the program taken
from it, what extraction changed and every error are kept in :class:`ProgramSample`, so
a failed sample explains itself.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vpd.errors import InvalidArgumentError, VPDError
from vpd.programs.checker import check_program, format_errors
from vpd.programs.completions import CompletionCache
from vpd.programs.custom_prompt import PromptTemplate
from vpd.programs.extract import extract_program
from vpd.programs.library import ExampleLibrary
from vpd.programs.prompt import render_prompt, repair_messages
from vpd.tools.types import ChatMessage, Completion

if TYPE_CHECKING:
    from vpd.tools.protocols import TextGenerator
    from vpd.tools.user_tools import ToolRegistry

__all__ = ["Attempt", "GenerationConfig", "ProgramGenerator", "ProgramSample"]


@dataclass(frozen=True)
class GenerationConfig:
    """How programs are sampled.

    Attributes:
        k: Programs sampled per question (the paper samples 5).
        temperature: Sampling temperature of samples 1..k-1.
        greedy_first: Sample 0 is greedy (temperature 0): the model's single best guess
            is always among the candidates.
        max_tokens: Most tokens per reply.
        max_repairs: How many times an invalid program is sent back with its error.
        examples: Worked examples put in the prompt (the nearest to the question).
        seed: Base seed; sample ``i`` uses ``seed + i``.
        max_workers: Samples requested concurrently.
    """

    k: int = 5
    temperature: float = 0.7
    greedy_first: bool = True
    max_tokens: int = 512
    max_repairs: int = 2
    examples: int = 4
    seed: int = 0
    max_workers: int = 4

    def __post_init__(self) -> None:
        for name in ("k", "max_tokens", "max_workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}.")
        for name in ("max_repairs", "examples", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidArgumentError(f"{name} must be a non-negative integer, got {value!r}.")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 0 <= t <= 2:
            raise InvalidArgumentError(f"temperature must be a number from 0 to 2, got {t!r}.")

    def temperature_of(self, sample: int) -> float:
        """The temperature of sample ``sample``."""
        return 0.0 if self.greedy_first and sample == 0 else float(self.temperature)


@dataclass(frozen=True)
class Attempt:
    """One request to the model for one sample: the first, or a repair.

    Attributes:
        completion: The model's reply and its cost.
        program: The program extracted from the reply (None when none was found).
        notes: What extraction changed in the reply's code.
        errors: Why the program was rejected (extraction or static-check errors), empty if valid.
    """

    completion: Completion
    program: str | None
    notes: tuple[str, ...] = ()
    errors: str | None = None

    @property
    def ok(self) -> bool:
        """Whether this attempt produced a valid program."""
        return self.program is not None and self.errors is None


@dataclass(frozen=True)
class ProgramSample:
    """One of the k programs of a question, with how it was obtained.

    Attributes:
        index: The sample's number (0..k-1).
        temperature: Its sampling temperature.
        attempts: The first request and the repairs, in order.
        llm_error: Why the model could not be asked (a failed request, after retries), if so.
    """

    index: int
    temperature: float
    attempts: tuple[Attempt, ...] = field(default_factory=tuple)
    llm_error: str | None = None

    @property
    def program(self) -> str | None:
        """The valid program, or None when every attempt was rejected."""
        last = self.attempts[-1] if self.attempts else None
        return last.program if last is not None and last.ok else None

    @property
    def ok(self) -> bool:
        """Whether a valid program was obtained."""
        return self.program is not None

    @property
    def error(self) -> str | None:
        """Why there is no valid program: the failed request, or the last attempt's errors (None when valid)."""
        if self.llm_error is not None:
            return f"the LLM request failed: {self.llm_error}"
        return self.attempts[-1].errors if self.attempts else "no attempt was made"

    @property
    def llm_seconds(self) -> float:
        """Time spent waiting for the model (0 for cached replies)."""
        return sum(a.completion.seconds for a in self.attempts)

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens over all attempts (those the backend reported)."""
        return sum(a.completion.prompt_tokens or 0 for a in self.attempts)

    @property
    def completion_tokens(self) -> int:
        """Generated tokens over all attempts (those the backend reported)."""
        return sum(a.completion.completion_tokens or 0 for a in self.attempts)


class ProgramGenerator:
    """Writes programs for questions with an LLM.

    Args:
        llm: The model (any :class:`~vpd.tools.protocols.TextGenerator`: the ``llm``
            backends of vpd, or your own object with ``generate`` and ``cache_identity``).
        library: Worked examples to choose from (default: the built-in library).
        cache: Where completions are cached: a :class:`CompletionCache`, ``None`` for the
            default location, or ``False`` for no cache.
        config: Sampling settings.
        tools: The user tools programs may call (default: those registered with ``@vpd.tool``).
        prompt: A prompt of your own (:class:`~vpd.programs.custom_prompt.PromptTemplate`,
            e.g. a ViperGPT prompt file) instead of vpd's; None for vpd's.
    """

    def __init__(
        self,
        llm: TextGenerator,
        *,
        library: ExampleLibrary | None = None,
        cache: CompletionCache | bool | None = None,
        config: GenerationConfig | None = None,
        tools: ToolRegistry | None = None,
        prompt: PromptTemplate | None = None,
    ) -> None:
        if prompt is not None and not isinstance(prompt, PromptTemplate):
            raise InvalidArgumentError(f"prompt must be a PromptTemplate, got {type(prompt).__name__}.")
        self.template = prompt
        if not callable(getattr(llm, "generate", None)) or not callable(getattr(llm, "cache_identity", None)):
            raise InvalidArgumentError(
                f"{type(llm).__name__} cannot write programs: it needs generate(messages, ...) and "
                "cache_identity() (see vpd.tools.protocols.TextGenerator)."
            )
        self.llm = llm
        if tools is None:
            from vpd.tools.user_tools import tool_registry

            tools = tool_registry
        self.tools = tools
        if library is None:
            library = ExampleLibrary.builtin(tools=tools)
        self.library = library
        if cache is None or cache is True:
            cache = CompletionCache()
        # Not "cache or None": an empty cache has length 0.
        self.cache: CompletionCache | None = cache if isinstance(cache, CompletionCache) else None
        self.config = config or GenerationConfig()

    def prompt(self, question: str) -> list[ChatMessage]:
        """The conversation that asks for a program answering ``question`` (from the custom prompt, if any)."""
        template = self.template
        wants_examples = template is None or template.uses_examples
        examples = (
            self.library.select(question, self.config.examples) if self.config.examples and wants_examples else []
        )
        if template is not None:
            return template.messages(question, tools=self.tools, examples=list(examples))
        return list(render_prompt(question, examples=examples, tools=self.tools))

    def sample(
        self,
        question: str,
        *,
        k: int | None = None,
        messages: list[ChatMessage] | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> list[ProgramSample]:
        """Sample ``k`` programs for ``question`` (concurrently), each checked and repaired.

        All first attempts go out before any repair: they share one prompt, which a local
        model evaluates once. A sample whose request fails (after the backend's retries)
        is recorded as failed (:attr:`ProgramSample.llm_error`); only when every sample fails
        is the error raised.

        Args:
            question: The question about the image.
            k: Programs to sample (default: ``config.k``).
            messages: The prompt, if already built with :meth:`prompt` (it is not built twice).
            progress: Called with a short message as each request completes.

        Returns:
            One :class:`ProgramSample` per sample, in order; invalid ones included.

        Raises:
            InvalidArgumentError: An empty question or a bad ``k``.
            BackendError, BackendUnavailable: Every sample's request failed (the first error), e.g.
                a wrong key, an unreachable server or a model that is not installed.
        """
        if not isinstance(question, str) or not question.strip():
            raise InvalidArgumentError("The question must be a non-empty string.")
        k = self.config.k if k is None else k
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidArgumentError(f"k must be a positive integer, got {k!r}.")
        if messages is None:
            messages = self.prompt(question.strip())
        say = progress or (lambda message: None)
        attempts: list[list[Attempt]] = [[] for _ in range(k)]
        failures: dict[int, VPDError] = {}
        lock = threading.Lock()

        def request(index: int, attempt_number: int) -> None:
            conversation = messages
            if attempt_number > 0:
                last = attempts[index][-1]
                shown = last.program if last.program is not None else last.completion.text
                conversation = list(repair_messages(messages, shown, last.errors or ""))
            temperature = self.config.temperature_of(index)
            try:
                attempt = self._check(self._complete(conversation, index, attempt_number, temperature))
            except VPDError as exc:
                failures[index] = exc
                outcome = f"the request failed: {exc}"
            else:
                attempts[index].append(attempt)
                outcome = "a valid program" if attempt.ok else "an invalid program"
            with lock:  # one message at a time
                say(f"{'repair' if attempt_number else 'sample'} {index + 1} of {k}: {outcome}")

        workers = max(1, min(self.config.max_workers, k))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vpd-sample") as pool:
            for attempt_number in range(self.config.max_repairs + 1):
                pending = [i for i in range(k) if i not in failures and (attempt_number == 0 or not attempts[i][-1].ok)]
                if not pending:
                    break
                list(pool.map(lambda i, n=attempt_number: request(i, n), pending))
        if len(failures) == k:
            raise failures[min(failures)]
        return [
            ProgramSample(
                i,
                self.config.temperature_of(i),
                tuple(attempts[i]),
                llm_error=str(failures[i]) if i in failures else None,
            )
            for i in range(k)
        ]

    def _complete(self, messages: list[ChatMessage], index: int, attempt: int, temperature: float) -> Completion:
        params: dict[str, Any] = {"temperature": temperature, "max_tokens": self.config.max_tokens}
        seed = self.config.seed + index
        key = ""
        if self.cache is not None:
            key = CompletionCache.key(self.llm.cache_identity(), messages, params | {"seed": seed}, index, attempt)
            cached = self.cache.get(key)
            if cached is not None:
                return cached
        started = time.perf_counter()
        completion = self.llm.generate(messages, temperature=temperature, max_tokens=self.config.max_tokens, seed=seed)
        if not completion.seconds:
            completion = _with_seconds(completion, time.perf_counter() - started)
        if self.cache is not None:
            completion = self.cache.put(key, completion)  # another run's reply if it stored first
        return completion

    def _check(self, completion: Completion) -> Attempt:
        extracted = extract_program(completion.text)
        if extracted.code is None:
            return Attempt(completion, None, extracted.notes, extracted.error)
        errors = check_program(extracted.code, self.tools)
        return Attempt(completion, extracted.code, extracted.notes, format_errors(errors) if errors else None)


def _with_seconds(completion: Completion, seconds: float) -> Completion:
    import dataclasses

    return dataclasses.replace(completion, seconds=seconds)


def unique_programs(samples: Sequence[ProgramSample]) -> dict[str, list[int]]:
    """Valid programs and the samples that produced each (identical programs run once)."""
    programs: dict[str, list[int]] = {}
    for sample in samples:
        if sample.program is not None:
            programs.setdefault(sample.program, []).append(sample.index)
    return programs
