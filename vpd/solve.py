"""``vpd.solve(image, question)``: write programs, run them, vote.

The steps, each inspectable in the returned :class:`Solution`:

1. an LLM writes ``k`` programs for the question (:class:`~vpd.programs.generation.ProgramGenerator`:
   prompt from the live API and the nearest worked examples, code extraction, static
   checks, self-repair, an on-disk completion cache);
2. each distinct valid program runs once in the sandbox (:func:`vpd.run_programs`); the k
   programs of a question share tool results through the toolkit's result cache;
3. the answers of the programs that ran are normalised (:func:`vpd.normalize_answer`) and
   voted on (self-consistency); ties go to the earliest sample (sample 0 is greedy);
4. when no program produced an answer and the toolkit has a VQA model, the question goes
   to it directly (``fallback=True``), and the solution says so.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from vpd.errors import BackendUnavailable, InvalidArgumentError, VPDError
from vpd.image import ImageData, ImageSource, load_image
from vpd.traces.answers import normalize_answer, vote
from vpd.traces.execution import Execution
from vpd.traces.trace import Trace

if TYPE_CHECKING:
    from vpd.programs.completions import CompletionCache
    from vpd.programs.custom_prompt import PromptTemplate
    from vpd.programs.generation import ProgramSample
    from vpd.programs.library import ExampleLibrary
    from vpd.programs.sandbox import Sandbox, SandboxLimits
    from vpd.tools.config import BackendSpec
    from vpd.tools.protocols import TextGenerator
    from vpd.tools.toolkit import Toolkit

__all__ = ["Candidate", "Solution", "SolveProgress", "SolveTimings", "Solver", "solve"]

#: The progress callback of :func:`solve`: it receives a stage name and a short message.
SolveProgress = Callable[[str, str], None]


@dataclass(frozen=True)
class Candidate:
    """One of the k sampled programs, how it ran and how its answer fared in the vote.

    Attributes:
        sample: How the program was obtained (replies, repairs, errors).
        execution: Its run (shared with identical programs of other samples), or None
            when no valid program was obtained.
        answer: Its normalised answer (None when it failed or returned None).
        votes: Votes for its answer (0 when it has none).
        chosen: Whether its answer won and it is the solution's program.
    """

    sample: ProgramSample
    execution: Execution | None
    answer: str | None
    votes: int = 0
    chosen: bool = False

    def __repr__(self) -> str:
        state = f"answer={self.answer!r} votes={self.votes}" if self.answer is not None else f"error={self.error!r}"
        return f"<Candidate #{self.index} {state}{' chosen' if self.chosen else ''}>"

    @property
    def index(self) -> int:
        """The sample's number."""
        return self.sample.index

    @property
    def program(self) -> str | None:
        """The valid program, or None."""
        return self.sample.program

    @property
    def error(self) -> str | None:
        """Why this candidate has no answer: its generation or run error (None when it has one)."""
        if self.sample.program is None:
            return f"no valid program: {self.sample.error}"
        if self.execution is not None and self.execution.error is not None:
            return f"{self.execution.error.kind}: {self.execution.error.message}"
        if self.answer is None:
            return "the program returned no answer"
        return None


@dataclass(frozen=True)
class SolveTimings:
    """Where the time of one :func:`solve` went (seconds).

    Attributes:
        total: Wall time of the whole call.
        load: Loading the LLM (0 when it was already loaded).
        prompt: Choosing the worked examples (the first call loads the text embedder).
        llm: Wall time of program generation (samples are concurrent; cached replies cost 0).
        tools: Time the toolkit spent serving tool calls, summed over programs.
        sandbox: Run time of the programs minus their tool time, summed (isolation, IPC,
            the programs' own Python).
        prompt_tokens: Prompt tokens of every reply used, cached ones included (as the model reported them).
        completion_tokens: Tokens generated, likewise.
        cached_replies: Replies served from the completion cache.
    """

    total: float = 0.0
    load: float = 0.0
    prompt: float = 0.0
    llm: float = 0.0
    tools: float = 0.0
    sandbox: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_replies: int = 0


@dataclass(frozen=True)
class Solution:
    """The answer to a question, with the program behind it and every candidate.

    ``str(solution)`` is the answer ("" when there is none).

    Attributes:
        question: The question.
        answer: The normalised answer (see :func:`vpd.normalize_answer`), or None.
        raw_answer: The chosen program's answer as it returned it (JSON), or the fallback's.
        program: The chosen program's source, or None.
        execution: The chosen program's run, or None.
        candidates: All k candidates, in sample order.
        votes: Votes per normalised answer.
        source: ``"program"`` (voted), ``"fallback"`` (no program answered; the VQA model
            did), or ``"none"``.
        model: The LLM that wrote the programs (its cache identity: model and options).
        model_name: The same, short (backend and model), for display.
        timings: Where the time went.
        error: Why there is no answer (None when there is one).
        prompt: The prompt that asked for the programs: ``"vpd"`` (vpd's own) or
            ``custom prompt PATH (style, sha256 ...)``.
    """

    question: str
    answer: str | None
    raw_answer: Any = None
    program: str | None = None
    execution: Execution | None = None
    candidates: tuple[Candidate, ...] = ()
    votes: dict[str, int] = field(default_factory=dict)
    source: Literal["program", "fallback", "none"] = "none"
    model: str = ""
    model_name: str = ""
    timings: SolveTimings = field(default_factory=SolveTimings)
    error: str | None = None
    prompt: str = "vpd"
    image: ImageData | None = field(default=None, repr=False, compare=False)

    @property
    def trace(self) -> Trace | None:
        """The chosen program's trace, or None."""
        return self.execution.trace if self.execution is not None else None

    @property
    def ok(self) -> bool:
        """Whether there is an answer."""
        return self.answer is not None

    def __str__(self) -> str:
        return "" if self.answer is None else self.answer

    def __repr__(self) -> str:
        from vpd.render.text import format_solution

        return format_solution(self)

    def _repr_html_(self) -> str:
        """Notebook view: every candidate with its votes, the chosen one open, boxes drawn on the image."""
        from vpd.render.html import render_candidates

        return render_candidates(
            self.candidates, self.image, question=self.question, answer=self.answer, votes=self.votes
        )

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain JSON (``vpd solve --json`` prints this)."""
        return {
            "question": self.question,
            "answer": self.answer,
            "raw_answer": self.raw_answer,
            "source": self.source,
            "program": self.program,
            "votes": dict(self.votes),
            "model": self.model,
            "model_name": self.model_name,
            "prompt": self.prompt,
            "error": self.error,
            "timings": dataclasses.asdict(self.timings),
            "candidates": [_candidate_dict(c) for c in self.candidates],
        }


def solve(
    image: ImageSource,
    question: str,
    *,
    k: int = 5,
    toolkit: Toolkit | None = None,
    llm: TextGenerator | str | None = None,
    api_base: str | None = None,
    api_key: str | None = None,
    temperature: float = 0.7,
    max_repairs: int = 2,
    examples: ExampleLibrary | None = None,
    n_examples: int = 4,
    cache: CompletionCache | bool | None = None,
    seed: int = 0,
    limits: SandboxLimits | None = None,
    sandbox: Sandbox | None = None,
    fallback: bool = True,
    typed_vote: bool = True,
    progress: SolveProgress | None = None,
    prompt: PromptTemplate | str | os.PathLike[str] | None = None,
) -> Solution:
    """Answer a question about an image with programs written by an LLM.

    Args:
        image: The image (a path, PIL image, numpy array or :class:`vpd.ImageData`).
        question: The question.
        k: Programs to sample (the paper samples 5; 1 for the fastest answer).
        toolkit: The vision tools (default: the current toolkit, ``VPD_*`` configured).
        llm: The model that writes programs: a litellm model string
            (``"openai/gpt-4o-mini"``, ``"ollama/qwen2.5-coder"``, ``"openai/<alias>"`` with
            ``api_base``), ``"local"`` / ``"local:0.5b"`` / a ``.gguf`` path for the embedded
            llama.cpp model, or a :class:`~vpd.tools.protocols.TextGenerator`. Default: the
            toolkit's ``llm`` backend when it can write programs, else the embedded model.
            A model given here also answers the programs' ``llm_query`` calls.
        api_base: Server URL of an OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp server).
        api_key: Its key (default: the provider's environment variable).
        temperature: Sampling temperature of samples 1..k-1 (sample 0 is greedy).
        max_repairs: Times an invalid program goes back to the model with its error.
        examples: The worked examples to choose from (default: the built-in library).
        n_examples: Examples in the prompt.
        cache: Completion cache: a :class:`~vpd.programs.completions.CompletionCache`,
            None for the default (``$VPD_CACHE_DIR``), False for none.
        seed: Base sampling seed (sample i uses seed + i).
        limits: Sandbox limits per program.
        sandbox: The sandbox (default: the process-wide one).
        fallback: Ask the toolkit's VQA model directly when no program answers.
        typed_vote: Answers of the wrong kind for the question lose their vote (a yes/no
            question answered with a colour, a counting question with text, a "what"
            question with yes/no; see :func:`vpd.traces.answers.answer_fits`), unless none fits.
        progress: Called with ``(stage, message)`` as the work advances (the CLI prints it).
        prompt: Your own program-writing prompt instead of vpd's: a file path (a ViperGPT
            prompt with ``INSERT_QUERY_HERE``, or a template with ``{question}`` and
            optionally ``{api}`` and ``{examples}``) or a
            :class:`~vpd.programs.custom_prompt.PromptTemplate`. ``Solution.prompt`` records it.

    Returns:
        The :class:`Solution`; a question nobody could answer has ``answer=None`` and an
        ``error`` saying why (failed programs are data, not exceptions).

    Raises:
        InvalidArgumentError: An empty question, a bad ``k`` or other argument.
        ImageError: The image cannot be read.
        BackendUnavailable: No LLM can be reached or loaded (the message says what to install or set).
        BackendError: The LLM failed after its retries.
    """
    if not isinstance(question, str) or not question.strip():
        raise InvalidArgumentError("The question must be a non-empty string.")
    data = load_image(image)
    solver = Solver(
        k=k,
        toolkit=toolkit,
        llm=llm,
        api_base=api_base,
        api_key=api_key,
        temperature=temperature,
        max_repairs=max_repairs,
        examples=examples,
        n_examples=n_examples,
        cache=cache,
        seed=seed,
        limits=limits,
        sandbox=sandbox,
        typed_vote=typed_vote,
        progress=progress,
        prompt=prompt,
    )
    return solver.solve(data, question, fallback=fallback, progress=progress)


class Solver:
    """The machinery of :func:`solve`, prepared once for many questions.

    The LLM is resolved (and loaded), the worked examples chosen from and the program
    generator built once; :meth:`solve` then answers one question at a time, from any
    number of threads. :func:`vpd.distill.synthesize` runs a dataset through one.

    Args:
        (as :func:`solve`, without the image and question): ``progress`` reports the
        preparation (preparing and loading the model).

    Raises:
        InvalidArgumentError: A bad ``k`` or other argument.
        BackendUnavailable: No LLM can be reached or loaded.
    """

    def __init__(
        self,
        *,
        k: int = 5,
        toolkit: Toolkit | None = None,
        llm: TextGenerator | str | None = None,
        api_base: str | None = None,
        api_key: str | None = None,
        temperature: float = 0.7,
        max_repairs: int = 2,
        examples: ExampleLibrary | None = None,
        n_examples: int = 4,
        cache: CompletionCache | bool | None = None,
        seed: int = 0,
        limits: SandboxLimits | None = None,
        sandbox: Sandbox | None = None,
        typed_vote: bool = True,
        progress: SolveProgress | None = None,
        prompt: PromptTemplate | str | os.PathLike[str] | None = None,
    ) -> None:
        from vpd.programs.generation import GenerationConfig, ProgramGenerator
        from vpd.tools.toolkit import current_toolkit

        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 64:
            raise InvalidArgumentError(f"k must be an integer from 1 to 64, got {k!r}.")
        say = progress or (lambda stage, message: None)
        self.k = k
        from vpd.programs.custom_prompt import PromptTemplate

        if prompt is not None and not isinstance(prompt, (PromptTemplate, str, os.PathLike)):
            raise InvalidArgumentError(f"prompt must be a file path or a PromptTemplate, got {type(prompt).__name__}.")
        self.template = prompt if prompt is None or isinstance(prompt, PromptTemplate) else PromptTemplate.load(prompt)
        self.config = GenerationConfig(
            k=k, temperature=temperature, max_repairs=max_repairs, examples=n_examples, seed=seed, max_workers=min(k, 8)
        )
        self.toolkit, self.writer = resolve_llm(toolkit or current_toolkit(), llm, api_base=api_base, api_key=api_key)
        self.limits = limits
        self.sandbox = sandbox
        self.typed_vote = typed_vote
        ensure_file = getattr(self.writer, "ensure_model_file", None)
        if callable(ensure_file):  # the embedded model: assembled from its parts on first use
            shown: list[int] = []

            def file_progress(done: int, total: int) -> None:
                tenth = 10 * done // total if total else 10
                if not shown or tenth > shown[-1]:
                    shown.append(tenth)
                    say("prepare", f"preparing the model file (first use only): {10 * tenth}%")

            ensure_file(file_progress)
        self.load_seconds = 0.0
        loader = getattr(self.writer, "load", None)
        if callable(loader):
            say("load", f"loading {_model_name(self.writer)}")
            t0 = time.perf_counter()
            loader()
            self.load_seconds = time.perf_counter() - t0
        self.examples = examples if examples is not None else _builtin_library(self.toolkit)
        self.generator = ProgramGenerator(
            self.writer,
            library=self.examples,
            cache=cache,
            config=self.config,
            tools=self.toolkit.tools,
            prompt=self.template,
        )
        self._loads_reported = False
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        """The LLM that writes the programs (its cache identity: model and options)."""
        return str(self.writer.cache_identity())

    @property
    def model_name(self) -> str:
        """The same, short (backend and model), for display."""
        return _model_name(self.writer)

    @property
    def prompt(self) -> str:
        """Which prompt writes the programs: ``"vpd"`` or ``custom prompt PATH (style, sha256 ...)``."""
        return "vpd" if self.template is None else self.template.describe()

    def solve(
        self,
        image: ImageSource,
        question: str,
        *,
        fallback: bool = True,
        progress: SolveProgress | None = None,
        choices: list[str] | tuple[str, ...] | None = None,
    ) -> Solution:
        """Answer one question about an image (see :func:`solve`).

        ``choices`` (a multiple-choice question's options) go to programs that declare
        ViperGPT's ``possible_answers`` parameter, and into each trace's meta.
        """
        from vpd.programs.generation import unique_programs
        from vpd.programs.sandbox import default_sandbox

        started = time.perf_counter()
        if not isinstance(question, str) or not question.strip():
            raise InvalidArgumentError("The question must be a non-empty string.")
        question = question.strip()
        if choices is not None and (isinstance(choices, str) or not all(isinstance(choice, str) for choice in choices)):
            raise InvalidArgumentError("choices must be a list of strings (the options of the question).")
        say = progress or (lambda stage, message: None)
        data = load_image(image)
        toolkit, writer, k = self.toolkit, self.writer, self.k
        with self._lock:  # the model's loading time is counted in the first solution only
            load_seconds, self._loads_reported = (0.0 if self._loads_reported else self.load_seconds), True

        say("prompt", "choosing worked examples for the prompt")
        t0 = time.perf_counter()
        messages = self.generator.prompt(question)  # the first selection loads the text embedder
        prompt_seconds = time.perf_counter() - t0
        say("generate", f"writing {k} program{'s' if k > 1 else ''} with {_model_name(writer)}")
        t0 = time.perf_counter()
        samples = self.generator.sample(
            question, k=k, messages=messages, progress=lambda message: say("generate", message)
        )
        llm_seconds = time.perf_counter() - t0

        programs = unique_programs(samples)
        executions: dict[str, Execution] = {}
        if programs:
            say("run", f"running {len(programs)} distinct program{'s' if len(programs) > 1 else ''}")
            box = self.sandbox or default_sandbox()
            codes = list(programs)
            metas = [
                {
                    "question": question,
                    "samples": programs[code],
                    "model": writer.cache_identity(),
                    **({"prompt": self.prompt, "prompt_style": self.template.style} if self.template else {}),
                    **({"choices": list(choices)} if choices is not None else {}),
                }
                for code in codes
            ]
            runs = box.run_many(codes, data, toolkit=toolkit, limits=self.limits, metas=metas)
            executions = dict(zip(codes, runs))

        answers: list[str | None] = []
        for s in samples:
            execution = executions.get(s.program) if s.program is not None else None
            answers.append(normalize_answer(execution.answer) if execution is not None and execution.ok else None)
        winner, counts = vote(answers, question if self.typed_vote else None)
        chosen_index = next((i for i, a in enumerate(answers) if winner is not None and a == winner), None)
        candidates = tuple(
            Candidate(
                sample=s,
                execution=executions.get(s.program) if s.program is not None else None,
                answer=answer,
                votes=counts.get(answer, 0) if answer is not None else 0,
                chosen=i == chosen_index,
            )
            for i, (s, answer) in enumerate(zip(samples, answers))
        )

        source: Literal["program", "fallback", "none"] = "none"
        raw: Any = None
        error: str | None = None
        chosen = candidates[chosen_index] if chosen_index is not None else None
        if chosen is not None and chosen.execution is not None:
            source, raw = "program", chosen.execution.answer
        else:
            error = _why_no_answer(candidates)
            if fallback and toolkit.has("vqa"):
                say("fallback", "no program answered; asking the VQA model directly")
                try:
                    raw = toolkit.simple_query(data, (0, 0, data.width, data.height), question)
                    winner = normalize_answer(raw)
                    source = "fallback" if winner is not None else "none"
                except VPDError as exc:
                    error += f"; the VQA fallback failed too: {exc}"

        executed = list(executions.values())
        timings = SolveTimings(
            total=time.perf_counter() - started + load_seconds,
            load=load_seconds,
            prompt=prompt_seconds,
            llm=llm_seconds,
            tools=sum(e.tool_seconds for e in executed),
            sandbox=sum(max(0.0, e.wall_seconds - e.tool_seconds) for e in executed),
            prompt_tokens=sum(s.prompt_tokens for s in samples),
            completion_tokens=sum(s.completion_tokens for s in samples),
            cached_replies=sum(a.completion.cached for s in samples for a in s.attempts),
        )
        return Solution(
            question=question,
            answer=winner,
            raw_answer=raw,
            program=chosen.program if chosen is not None else None,
            execution=chosen.execution if chosen is not None else None,
            candidates=candidates,
            votes=counts,
            source=source,
            model=writer.cache_identity(),
            model_name=_model_name(writer),
            prompt=self.prompt,
            timings=timings,
            error=None if winner is not None else error,
            image=data,
        )


# The built-in library per model store: its example embeddings are computed once, and the
# embedder is the one the detector's query mapping loads (weak keys: no model outlives its toolkit).
_LIBRARIES: weakref.WeakKeyDictionary[Any, tuple[Any, ExampleLibrary]] = weakref.WeakKeyDictionary()
_LIBRARIES_LOCK = threading.Lock()


def _builtin_library(toolkit: Toolkit) -> ExampleLibrary:
    from vpd.programs.library import ExampleLibrary

    with _LIBRARIES_LOCK:
        cached = _LIBRARIES.get(toolkit.models)
        if cached is not None and cached[0] is toolkit.tools:
            return cached[1]
        library = ExampleLibrary.builtin(models=toolkit.models, tools=toolkit.tools)
        _LIBRARIES[toolkit.models] = (toolkit.tools, library)
        return library


def _candidate_dict(candidate: Candidate) -> dict[str, Any]:
    return {
        "index": candidate.index,
        "temperature": candidate.sample.temperature,
        "program": candidate.program,
        "answer": candidate.answer,
        "votes": candidate.votes,
        "chosen": candidate.chosen,
        "error": candidate.error,
        "attempts": [
            {
                "reply": a.completion.text,
                "program": a.program,
                "notes": list(a.notes),
                "errors": a.errors,
                "prompt_tokens": a.completion.prompt_tokens,
                "completion_tokens": a.completion.completion_tokens,
                "seconds": a.completion.seconds,
                "cached": a.completion.cached,
            }
            for a in candidate.sample.attempts
        ],
        "trace": candidate.execution.trace.to_dict() if candidate.execution is not None else None,
    }


def _why_no_answer(candidates: tuple[Candidate, ...]) -> str:
    reasons = [f"sample {c.index}: {c.error}" for c in candidates if c.error]
    shown = "; ".join(r if len(r) <= 300 else r[:297] + "..." for r in reasons[:5])
    more = f" (and {len(reasons) - 5} more)" if len(reasons) > 5 else ""
    return f"No program produced an answer. {shown}{more}"


def _model_name(writer: Any) -> str:
    backend = getattr(writer, "name", None)
    model = getattr(writer, "model_id", None)
    if isinstance(backend, str) and model:
        return f"{backend} {model}"
    return str(model or type(writer).__name__)


def resolve_llm(
    toolkit: Toolkit,
    llm: TextGenerator | str | None,
    *,
    api_base: str | None = None,
    api_key: str | None = None,
) -> tuple[Toolkit, TextGenerator]:
    """The toolkit to run programs with and the model that writes them.

    A model named here replaces the toolkit's ``llm`` backend (so ``llm_query`` in the
    programs uses it too); with nothing named, the toolkit's own ``llm`` backend writes
    the programs if it can, else the embedded llama.cpp model. A hosted model is never
    picked without being named, even when a provider's key is in the environment.

    Raises:
        InvalidArgumentError: ``llm`` is neither a string nor a text generator.
        BackendUnavailable: Nothing is named, the toolkit has no LLM and the embedded model
            cannot run here (the message names both ways forward: a provider's key with
            ``VPD_LLM``, or ``pip install 'vpd[local]'``).
    """
    from vpd.tools.backend import Backend

    if llm is None and api_base is None and api_key is None:
        if toolkit.has("llm"):
            current = toolkit.backend("llm")
            if callable(getattr(current, "generate", None)):
                return toolkit, current  # type: ignore[return-value]
        embedded = toolkit.registry.get("llm", "llama_cpp")
        availability = embedded.check_available(embedded.default_model)
        if not availability:
            # A bare `pip install vpd` lands here: fail naming both ways to get an LLM, rather than
            # with the embedded model's own error, which names only the extra that installs it.
            raise BackendUnavailable(
                f"No LLM is configured to write the programs, and the embedded model cannot run here: "
                f"{availability.reason}.",
                capability="llm",
                backend=embedded.name,
            )
        toolkit = toolkit.replace(llm="llama_cpp")
        return toolkit, toolkit.backend("llm")  # type: ignore[return-value]
    if llm is None or isinstance(llm, str):
        spec = _writer_spec(llm, api_base=api_base, api_key=api_key, toolkit=toolkit)
        toolkit = toolkit.replace(llm=spec)
        return toolkit, toolkit.backend("llm")  # type: ignore[return-value]
    if not callable(getattr(llm, "generate", None)) or not callable(getattr(llm, "cache_identity", None)):
        raise InvalidArgumentError(
            f"llm must be a model string or an object with generate() and cache_identity(), not {type(llm).__name__}."
        )
    if isinstance(llm, Backend):
        toolkit = toolkit.replace(llm=llm)
    return toolkit, llm


def _writer_spec(
    llm: str | None, *, api_base: str | None = None, api_key: str | None = None, toolkit: Toolkit | None = None
) -> BackendSpec:
    """A :class:`~vpd.tools.config.BackendSpec` for an ``llm`` string (see :func:`solve`).

    ``"local"``, ``"local:0.5b"``, a known local model name or a ``.gguf`` path select the
    embedded llama.cpp backend; a registered ``llm`` backend name selects it; anything else
    is a litellm model string (see :func:`vpd.tools.config.llm_spec`). Without ``api_base``
    and ``api_key``, a litellm model keeps the endpoint of the toolkit's litellm backend.
    """
    from vpd.tools.config import llm_spec as parse

    options: dict[str, Any] = {}
    if api_base:
        options["api_base"] = api_base
    if api_key:
        options["api_key"] = api_key
    if llm is None:
        if not api_base:
            raise InvalidArgumentError("Name the model with llm=... (e.g. 'openai/gpt-4o-mini').")
        llm = "openai/default"  # a server at api_base serving one model
    spec = parse(llm, source="solve(llm=...)", options=options)
    if spec.backend == "litellm" and not options and toolkit is not None and toolkit.has("llm"):
        current = toolkit.backend("llm")
        if current.name == "litellm":
            kept = {k: v for k, v in current.options.items() if k in ("api_base", "api_key") and v is not None}
            spec = parse(llm, source="solve(llm=...)", options=kept)
    return spec
