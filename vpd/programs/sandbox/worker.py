"""What runs inside a program's worker process: the guards, the scope, the tool client.

The worker is a forked, resource-limited, disposable process (see
:mod:`vpd.programs.sandbox.zygote`). It holds no pixels and no models: ``ImagePatch`` is the
real class, but what serves it is a :class:`ToolClient` that forwards every operation of the
:class:`~vpd.tools.contract.PatchOperations` contract to the host over a socket, and the
image is a :class:`RemoteImage` that knows only its size and hash. Everything the program
assigns and prints is reported to the host as short text; its answer is converted to plain
JSON here, by exact type, so the host never calls a method of an object the program made.
"""

from __future__ import annotations

import functools
import inspect
import math
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any

from vpd.errors import BackendError, InvalidArgumentError, ToolError
from vpd.image import ImageData
from vpd.patch import LONG_ANSWER_DEFAULT, ImagePatch
from vpd.programs.modules import SAFE_MODULES, TYPING_NAMES, SafeModule
from vpd.programs.policy import (
    ASSIGN_HOOK,
    ENTRY_PARAMETERS,
    EXCEPTION_FIELDS,
    LOST_COUNTER,
    PATCH_ATTRIBUTES,
    PROGRAM_FILENAME,
    RECURSION_ERROR,
    SAFE_BUILTIN_NAMES,
)
from vpd.programs.sandbox import wire
from vpd.programs.sandbox.lines import LineCounts, program_frame_line
from vpd.tools.contract import OPERATIONS, Region, operation_signature
from vpd.tools.user_tools import ToolRegistry, ToolSpec

__all__ = ["RemoteImage", "SandboxViolation", "ToolClient", "run_worker"]

_PLAIN_TYPES = (str, bytes, list, dict, set, frozenset, tuple, int, float, bool, complex, range, slice)
_MAX_EVENTS = 2000
_BATCH_EVENTS = 50
_BATCH_CHARS = 8_000
_MAX_PRINT_CHARS = 20_000
#: Most characters one print keeps; the rest is replaced by a note of how many there were.
_MAX_PRINT_LINE_CHARS = 4000
_MAX_VALUE_CHARS = 200
_MAX_ANSWER_CHARS = wire.MAX_ANSWER_CHARS
_MAX_ANSWER_ITEMS = wire.MAX_ANSWER_ITEMS
_MAX_ANSWER_DEPTH = wire.MAX_ANSWER_DEPTH


#: Violations raised in this worker. A program may catch the exception, but the run still
#: fails: the record is kept here, outside the program's reach (names starting with "_").
_VIOLATIONS: list[str] = []


class WorkerFailure(BaseException):
    """The worker cannot go on (its link to the host failed); ends the worker, not catchable by programs.

    It derives from BaseException on purpose: programs may only catch Exception subclasses
    (bare ``except:`` is rejected when compiling), so a program cannot keep running on a
    desynchronised link and make the trace disagree with what it saw. The failure is also
    remembered (``_FAILED``), so even a program that somehow went on gets no further reply
    and no answer.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        _FAILED.append(message)


_FAILED: list[str] = []


class WorkerStop(BaseException):
    """The host asked the worker to stop (its deadline, or a broken rule): raised by a signal.

    Programs cannot catch it (they may only catch Exception subclasses); the worker reports
    what it recorded so far, then exits.
    """


#: The program line the stop signal interrupted (reported with ``stopped``: where a timeout landed).
_STOP_LINE: list[int | None] = [None]


def _stop(signum: int, frame: FrameType | None) -> None:
    if _STOP_LINE[0] is None:  # a second signal must not erase where the first one landed
        _STOP_LINE[0] = program_frame_line(frame)
    raise WorkerStop


# While the worker hands events to the socket, the stop signal waits: a batch taken out of
# the buffer is then either sent whole or still counted, never lost between the two. The
# signal is delivered (and WorkerStop raised) as soon as the send is done.
_STOP_SIGNALS = {signal.SIGUSR1}
_held = [0]


def _hold_stop() -> None:
    if _held[0] == 0:
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    _held[0] += 1


def _release_stop() -> None:
    _held[0] -= 1
    if _held[0] == 0:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


class SandboxViolation(Exception):
    """A program broke a sandbox rule; the run fails with kind ``violation`` even if it is caught."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        _VIOLATIONS.append(message)


@dataclass(frozen=True, eq=False)
class RemoteImage(ImageData):
    """An image whose pixels stay in the host: only its size and hash are known here."""

    dims: tuple[int, int] = (0, 0)

    @property
    def width(self) -> int:
        """Width in pixels."""
        return self.dims[0]

    @property
    def height(self) -> int:
        """Height in pixels."""
        return self.dims[1]

    def to_numpy(self) -> Any:
        """Not available in a sandbox."""
        raise SandboxViolation("Programs cannot read pixels; use the ImagePatch methods.")

    def crop(self, box: tuple[int, int, int, int]) -> Any:
        """Not available in a sandbox."""
        raise SandboxViolation("Programs cannot read pixels; use the ImagePatch methods.")


def program_line() -> int | None:
    """The line of the program currently executing (found by the compiled filename)."""
    return program_frame_line(sys._getframe(1))


# -- rendering values as bounded text -------------------------------------------------------
def _patch_text(patch: ImagePatch) -> str:
    left, lower, right, upper = patch._box
    return f"ImagePatch(left={left}, lower={lower}, right={right}, upper={upper})"


def short(value: Any, budget: int = _MAX_VALUE_CHARS, depth: int = 0) -> str:
    """A bounded rendering of ``value`` that never calls a method of a program-made object."""
    kind = type(value)
    if value is None or kind is bool:
        text = str(value)
    elif kind is int:
        text = str(value) if value.bit_length() < 200 else f"<int of {value.bit_length()} bits>"
    elif kind is float:
        text = repr(value)
    elif kind is str:
        text = repr(value[: budget + 2])
    elif kind is ImagePatch:
        text = _patch_text(value)
    elif kind in (list, tuple, set, frozenset) and depth < 3:
        items = [short(v, budget // 2, depth + 1) for _, v in zip(range(6), value)]
        more = ", ..." if len(value) > 6 else ""
        brackets = "[]" if kind is list else "()" if kind is tuple else "{}"
        text = f"{brackets[0]}{', '.join(items)}{more}{brackets[1]}"
    elif kind is dict and depth < 3:
        items = [
            f"{short(k, 40, depth + 1)}: {short(v, budget // 2, depth + 1)}"
            for _, (k, v) in zip(range(6), value.items())
        ]
        text = "{" + ", ".join(items) + (", ..." if len(value) > 6 else "") + "}"
    else:
        text = f"<{kind.__name__}>"
    return text if len(text) <= budget else text[: budget - 3] + "..."


class AnswerError(Exception):
    """The program's return value cannot be turned into JSON."""


def to_json(value: Any, depth: int = 0, counter: list[int] | None = None) -> Any:
    """Convert an answer to plain JSON by exact type, with size and depth caps.

    Raises:
        AnswerError: An unsupported type, a non-finite float, or a cap exceeded.
    """
    counter = counter if counter is not None else [0, 0]  # items, characters
    counter[0] += 1
    if counter[0] > _MAX_ANSWER_ITEMS:
        raise AnswerError(f"the answer has more than {_MAX_ANSWER_ITEMS} items")
    if depth > _MAX_ANSWER_DEPTH:
        raise AnswerError(f"the answer is nested deeper than {_MAX_ANSWER_DEPTH} levels")
    kind = type(value)
    if value is None or kind is bool:
        return value
    if kind is int:
        if not -(2**63) <= value < 2**63:
            raise AnswerError("the answer is an integer too large for JSON (more than 64 bits)")
        return value
    if kind is float:
        if not math.isfinite(value):
            raise AnswerError(f"the answer is {value!r}, which JSON cannot represent")
        return value
    if kind is str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise AnswerError("the answer holds text that is not valid Unicode (a lone surrogate)") from None
        counter[1] += len(value)
        if len(value) > _MAX_ANSWER_CHARS or counter[1] > _MAX_ANSWER_CHARS:
            raise AnswerError(f"the answer holds more than {_MAX_ANSWER_CHARS} characters of text")
        return value
    if kind is ImagePatch:
        left, lower, right, upper = value._box
        return {"left": left, "lower": lower, "right": right, "upper": upper}
    if kind in (list, tuple):
        return [to_json(v, depth + 1, counter) for v in value]
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise AnswerError("answer dictionaries must have string keys")
            out[to_json(key, depth + 1, counter)] = to_json(item, depth + 1, counter)
        return out
    raise AnswerError(
        f"execute_command returned a {kind.__name__}; return a str, int, float, bool, None, "
        "an ImagePatch, or a list/dict of these"
    )


# -- the tool client ------------------------------------------------------------------------
class ToolClient:
    """Stands in for the toolkit inside the worker: every call goes to the host."""

    def __init__(self, sock: socket.socket, tools: Sequence[dict[str, Any]], reporter: Reporter) -> None:
        self._sock = sock
        self._reporter = reporter
        self._calls = 0
        # How long to poll for a reply before sleeping (set by the host: 0 when the machine is busy).
        self.spin = 0.0
        # Allocated up front: a program that fills its address space must not be able to
        # make a reply unreadable (and the link desynchronised).
        self._buffer = bytearray(wire.MAX_MESSAGE_BYTES + 1)
        self.tools = ToolRegistry()
        for entry in tools:
            name, kind = str(entry["name"]), entry["kind"]
            # Placeholders: the real function runs in the host; only the names matter here.
            self.tools.add(ToolSpec(name, _absent, kind, _EMPTY_SIGNATURE, str(entry.get("doc", ""))))

    def _call(self, op: str, **args: Any) -> Any:
        if _FAILED:
            raise WorkerFailure("the link to the host failed earlier")
        self._calls += 1
        line = program_line()
        request: dict[str, Any] = {"type": "call", "id": self._calls, "op": op, "args": args, "line": line}
        carried: list[dict[str, Any]] = []  # trace events taken along, and not yet sent
        _hold_stop()
        try:
            # Pending trace events ride along with the call (one message instead of two).
            self._reporter.flush(request)
            carried = request.get("events", [])
            try:
                wire.send(self._sock, request)
                carried = []
            except wire.WireError:
                if "events" not in request:
                    raise
                # Too large with the events on board: the events go first, on their own.
                self._reporter.send_events(request.pop("events"))
                carried = []
                wire.send(self._sock, request)
        except wire.WireError as exc:  # the arguments could not be encoded: nothing was sent
            # The host records the call it never saw, so the trace shows what the program tried.
            name = str(args.get("name", op)) if op == "call_tool" else op
            message = f"the arguments of {name} are too large or not JSON, so they cannot be sent ({exc})"
            self._reporter.rejected(line, name, message)
            raise InvalidArgumentError(message) from None
        except (WorkerStop, WorkerFailure):
            raise
        except RecursionError:  # at the recursion limit nothing was sent: the program sees a RecursionError
            self._reporter.restore(carried)  # sent later, from a shallower frame
            raise
        except BaseException as exc:
            raise WorkerFailure(f"sending a tool call failed: {type(exc).__name__}") from None
        finally:
            _release_stop()  # a stop asked for meanwhile is raised here: while waiting, not while sending
        try:
            reply = wire.receive(self._sock, self._buffer, spin=self.spin)
        except WorkerStop:
            raise
        except BaseException as exc:
            raise WorkerFailure(f"receiving a tool result failed: {type(exc).__name__}") from None
        if reply is None or reply.get("id") != self._calls:
            raise WorkerFailure("the host went away or answered out of turn")
        if "error" in reply:
            error = reply["error"]
            message = str(error.get("message", "tool call failed"))
            kind = error.get("kind")
            if kind == "invalid":
                raise InvalidArgumentError(message)
            if kind == "violation":
                raise SandboxViolation(message)
            if op == "call_tool":
                raise ToolError(message, tool=str(args.get("name", op)))
            capability, backend = error.get("capability"), error.get("backend")
            raise BackendError(
                message,
                capability=capability if isinstance(capability, str) else None,
                backend=backend if isinstance(backend, str) else None,
            )
        return reply.get("result")

    def __getattr__(self, name: str) -> Callable[..., Any]:
        # Every operation of the contract, forwarded as declared there (no list of them here);
        # bound once per client, then found as an ordinary attribute.
        if name not in _FORWARDERS:
            raise AttributeError(name)
        operation = functools.partial(_FORWARDERS[name], self)
        self.__dict__[name] = operation
        return operation

    def call_tool(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Ask the host to run a user tool."""
        result = self._call(
            "call_tool", name=name, args=[_encode(a) for a in args], kwargs={k: _encode(v) for k, v in kwargs.items()}
        )
        return _decode(result, self._root)

    _root: ImagePatch | None = None


def _forwarder(name: str) -> Callable[..., Any]:
    """A function that sends operation ``name`` to the host.

    Its arguments are bound to the contract's signature and encoded, except those the host
    supplies itself (the image, masks).
    """
    signature = operation_signature(name)
    parameters = list(signature.parameters.values())
    sent = [(i, p.name) for i, p in enumerate(parameters) if p.annotation not in wire.HOST_SUPPLIED]

    def forward(client: ToolClient, *args: Any, **kwargs: Any) -> Any:
        if kwargs or len(args) != len(parameters):  # ImagePatch passes every argument by position
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{name}(): {exc}") from None
            bound.apply_defaults()
            args = tuple(bound.arguments[p.name] for p in parameters)
        arguments = {key: _encode(args[i]) for i, key in sent}
        return _decode(client._call(name, **arguments), client._root, regions=True)

    # Introspection (and the contract tests) see the declared signature, not *args/**kwargs.
    client = inspect.Parameter("client", inspect.Parameter.POSITIONAL_ONLY)
    forward.__dict__["__signature__"] = signature.replace(parameters=[client, *parameters])
    forward.__name__ = name
    return forward


_FORWARDERS: dict[str, Callable[..., Any]] = {name: _forwarder(name) for name in OPERATIONS}


def _absent(*args: Any, **kwargs: Any) -> Any:
    raise SandboxViolation("user tools run in the host")


_EMPTY_SIGNATURE = inspect.Signature()


_PLAIN = frozenset({str, int, float, bool, type(None)})


def _encode(value: Any) -> Any:
    """Encode a tool argument: patches as their box, containers recursively, plain values as is."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is list or kind is tuple:  # boxes and lists of options, mostly: plain items
        return [v if type(v) in _PLAIN else _encode(v) for v in value]
    if kind is ImagePatch:
        return {wire.PATCH: list(value.xyxy)}
    if kind is dict:
        return {str(k): _encode(v) for k, v in value.items()}
    raise InvalidArgumentError(f"a {kind.__name__} cannot be passed to a tool")


def _decode(value: Any, root: ImagePatch | None, *, regions: bool = False) -> Any:
    """A result from the host, with patches and (``regions``) regions rebuilt.

    ``$patch`` boxes become patches; ``$region`` objects become regions only in an
    operation's result (``regions=True``), never in a user tool's, which is plain data.
    """
    if type(value) in _PLAIN:
        return value
    if isinstance(value, dict):
        if set(value) == {wire.PATCH} and root is not None:
            return ImagePatch._from_region(root, tuple(value[wire.PATCH]))
        if regions and set(value) == {wire.REGION}:
            fields = value[wire.REGION]
            return Region(**{**fields, "box": tuple(fields["box"])})
        return {k: _decode(v, root, regions=regions) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, root, regions=regions) for v in value]
    return value


# -- events ----------------------------------------------------------------------------------
class Reporter:
    """Buffers assignment and print events; flushed before every tool call and at the end."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer: list[tuple[dict[str, Any], int]] = []  # (event, characters)
        self._bytes = 0
        self._count = 0
        self.dropped = 0
        self.printed = 0
        # Assignments whose hook could not be called (the compiled program counts them here).
        self.lost = [0]

    @property
    def not_recorded(self) -> int:
        """Events this worker did not send: over its cap, or whose hook failed."""
        return self.dropped + self.lost[0]

    def add(self, event: dict[str, Any], size: int) -> None:
        if self._count >= _MAX_EVENTS:
            self.dropped += 1
            return
        self._count += 1
        self._buffer.append((event, size))
        self._bytes += size
        # Events are bounded (names 100, values 200, prints 4,000 characters), so a batch
        # flushed at 8,000 characters stays far below the message limit even in UTF-8.
        if len(self._buffer) >= _BATCH_EVENTS or self._bytes >= _BATCH_CHARS:
            # Not contextlib.suppress: entering it is a call, which fails at the recursion limit.
            try:  # noqa: SIM105
                self.flush()
            except RecursionError:
                pass  # at the recursion limit: the events stay buffered, sent from a shallower frame

    def flush(self, carrier: dict[str, Any] | None = None) -> None:
        """Send the buffered events, on their own or inside ``carrier`` (a message about to be sent).

        Every message also carries how many events were not recorded so far, so the host
        knows it at whatever moment the run ends.
        """
        if carrier is not None:  # the caller holds the stop signal until the carrier is sent
            carrier["dropped"] = self.not_recorded
            if self._buffer and len(self._buffer) <= _BATCH_EVENTS and self._bytes <= _BATCH_CHARS:
                carrier["events"] = self._take(len(self._buffer))
                return
        while self._buffer:  # in batches: events kept back at the recursion limit may have piled up
            count, chars = 0, 0
            for _, size in self._buffer:
                if count == _BATCH_EVENTS or (count and chars + size > _BATCH_CHARS):
                    break
                count, chars = count + 1, chars + size
            _hold_stop()
            try:
                batch = self._take(count)
                try:
                    self.send_events(batch)
                except RecursionError:  # not sent: back to the front, sent from a shallower frame
                    self._put_back(batch)
                    raise
            finally:
                _release_stop()

    def _take(self, count: int) -> list[dict[str, Any]]:
        taken, self._buffer = self._buffer[:count], self._buffer[count:]
        self._bytes -= sum(size for _, size in taken)
        return [event for event, _ in taken]

    def _put_back(self, batch: list[dict[str, Any]]) -> None:
        sized = [(event, _event_size(event)) for event in batch]
        self._buffer[:0] = sized
        self._bytes += sum(size for _, size in sized)

    def restore(self, batch: list[dict[str, Any]]) -> None:
        """Put back events a message took but could not deliver (they go with the next one)."""
        self._put_back(batch)

    def send_events(self, batch: list[dict[str, Any]]) -> None:
        """Send ``batch`` in a message of its own."""
        _hold_stop()
        try:
            wire.send(self._sock, {"type": "events", "events": batch, "dropped": self.not_recorded})
        except RecursionError:
            raise  # nothing was sent; the caller keeps the batch
        except BaseException as exc:  # losing trace events silently is not an option
            raise WorkerFailure(f"sending trace events failed: {type(exc).__name__}") from None
        finally:
            _release_stop()

    def rejected(self, line: int | None, op: str, message: str) -> None:
        """Record a tool call that could not even be sent (its arguments were too large)."""
        event = {"kind": "rejected", "line": line, "op": op[:100], "error": message[:500]}
        self.add(event, _event_size(event))
        self.flush()

    def assign(self, line: int, name: str, value: Any) -> Any:
        """Report an assignment; returns ``value`` (so it can wrap ``:=`` expressions).

        Never raises into the program: a failure to render or buffer the value is counted
        as an event not recorded.
        """
        try:
            text = short(value)
            event = {"kind": "assign", "line": line, "name": name[:100], "value": text}
            self.add(event, _event_size(event))
        except Exception:
            self.dropped += 1
        return value

    def print(self, line: int | None, text: str, total: int | None = None) -> None:
        """Record a print of ``total`` characters, of which ``text`` is the start (all of it when None)."""
        room = _MAX_PRINT_CHARS - self.printed
        if room <= 0:
            self.dropped += 1
            return
        total = len(text) if total is None else total
        keep = min(room, _MAX_PRINT_LINE_CHARS)
        if total > keep:  # clipped visibly, within keep: the trace says how much the print held
            if keep <= 40:  # no room left for the note: counted as not recorded
                self.dropped += 1
                return
            head = keep - 40  # the note takes at most 40 characters
            text = f"{text[:head]}… [{total - head} more characters]"
        self.printed += len(text)
        try:
            event = {"kind": "print", "line": line, "text": text}
            self.add(event, _event_size(event))
        except Exception:
            self.dropped += 1


def _event_size(event: dict[str, Any]) -> int:
    """The characters of an event's text, what batches are bounded by."""
    return sum(len(event.get(key, "")) for key in ("name", "value", "text", "op", "error"))


def _print_factory(reporter: Reporter) -> type:
    class Printer:
        """RestrictedPython's print collector, sending what is printed to the host."""

        def __init__(self, _getattr_: Any = None) -> None:
            pass

        def _call_print(self, *objects: Any, **kwargs: Any) -> None:
            if set(kwargs) - {"sep", "end"}:
                raise SandboxViolation("print() accepts only sep= and end= in programs")
            sep = kwargs.get("sep", " ")
            end = kwargs.get("end", "\n")
            if type(sep) is not str or type(end) is not str:
                raise TypeError("sep and end must be strings")
            parts = [o if type(o) is str else short(o, 1000) for o in objects]
            end = end[:10]
            total = sum(map(len, parts)) + len(sep) * max(0, len(parts) - 1) + len(end)
            if total <= _MAX_PRINT_LINE_CHARS:
                text = sep.join(parts) + end
            else:  # only the start the trace keeps is copied (each piece clipped keeps it the same)
                keep = _MAX_PRINT_LINE_CHARS
                text = sep[:keep].join(part[:keep] for part in parts)[:keep]
            reporter.print(program_line(), text, total)

        def __call__(self) -> str:
            return ""

    return Printer


# -- guards ----------------------------------------------------------------------------------
def _make_getattr(client: ToolClient) -> Callable[..., Any]:
    from RestrictedPython.Guards import safer_getattr_raise as safer_getattr

    def guarded_getattr(obj: Any, name: str, default: Any = None) -> Any:
        if type(name) is not str or name.startswith("_"):
            raise SandboxViolation(f"access to attribute {name!r} is not allowed")
        kind = type(obj)
        if kind is ImagePatch:
            if name in PATCH_ATTRIBUTES or client.tools.get(name, "method") is not None:
                return getattr(obj, name)
            raise AttributeError(
                f"ImagePatch has no attribute {name!r}; available: {', '.join(sorted(PATCH_ATTRIBUTES))}"
            )
        if kind is SafeModule:
            return obj.member(name)
        if kind is RemoteImage:
            if name in ("width", "height", "size"):
                return getattr(obj, name)
            raise AttributeError(f"the image has no attribute {name!r}; wrap it: ImagePatch(image)")
        if isinstance(obj, Exception) and name in EXCEPTION_FIELDS:
            # What failed, when a tool call failed: None where the exception does not say.
            return getattr(obj, name, None)
        if kind in _PLAIN_TYPES or any(obj is t for t in _PLAIN_TYPES) or isinstance(obj, Exception):
            return safer_getattr(obj, name)
        raise SandboxViolation(f"attribute access on {kind.__name__} objects is not allowed")

    return guarded_getattr


def _guarded_getitem(obj: Any, key: Any) -> Any:
    if type(obj) in (list, tuple, dict, str, range, bytes):
        return obj[key]
    raise SandboxViolation(f"indexing {type(obj).__name__} objects is not allowed")


def _guarded_write(obj: Any) -> Any:
    if type(obj) in (list, dict):
        return obj
    raise SandboxViolation(f"programs may not modify {type(obj).__name__} objects")


_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": lambda a, b: a + b,
    "-=": lambda a, b: a - b,
    "*=": lambda a, b: a * b,
    "/=": lambda a, b: a / b,
    "//=": lambda a, b: a // b,
    "%=": lambda a, b: a % b,
    "**=": lambda a, b: a**b,
    "<<=": lambda a, b: a << b,
    ">>=": lambda a, b: a >> b,
    "|=": lambda a, b: a | b,
    "^=": lambda a, b: a ^ b,
    "&=": lambda a, b: a & b,
}


def _inplacevar(op: str, x: Any, y: Any) -> Any:
    if op not in _INPLACE:
        raise SandboxViolation(f"operator {op} is not allowed")
    return _INPLACE[op](x, y)


def build_scope(client: ToolClient, reporter: Reporter) -> dict[str, Any]:
    """The globals a program runs with: safe builtins, the API, guards and hooks."""
    import builtins

    from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence

    import vpd.helpers as helpers

    safe = {name: getattr(builtins, name) for name in SAFE_BUILTIN_NAMES if name != "print"}
    scope: dict[str, Any] = {
        "__builtins__": safe,
        "__name__": "program",
        "_getattr_": _make_getattr(client),
        "_getitem_": _guarded_getitem,
        "_getiter_": iter,
        "_write_": _guarded_write,
        "_inplacevar_": _inplacevar,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_print_": _print_factory(reporter),
        "_apply_": lambda f, *a, **k: f(*a, **k),
        ASSIGN_HOOK: reporter.assign,
        LOST_COUNTER: reporter.lost,
        RECURSION_ERROR: RecursionError,
        "ImagePatch": ImagePatch,
    }
    for name in (*helpers.HELPER_API, *helpers.COMPAT_HELPERS):
        scope[name] = getattr(helpers, name)
    scope.update(SAFE_MODULES)
    typing_module = SAFE_MODULES["typing"]
    scope.update({name: typing_module.member(name) for name in TYPING_NAMES})
    for spec in client.tools.specs("function"):
        scope[spec.name] = _function_tool(client, spec.name)
    return scope


def _function_tool(client: ToolClient, name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return client.call_tool(name, *args, **kwargs)

    call.__name__ = name
    return call


def _entry_arguments(
    entry: Callable[..., Any], inputs: dict[str, Any], scope: dict[str, Any], reporter: Reporter
) -> dict[str, Any]:
    """Values for ``execute_command``'s parameters after the image, by name.

    ViperGPT's programs declare them (see :data:`vpd.programs.policy.ENTRY_PARAMETERS`);
    each value is traced as an assignment on the ``def`` line.
    """
    import inspect

    parameters = list(inspect.signature(entry).parameters.values())[1:]
    line = entry.__code__.co_firstlineno
    values: dict[str, Any] = {}
    for parameter in parameters:
        name = parameter.name
        if name in ENTRY_PARAMETERS:
            source = ENTRY_PARAMETERS[name]
            value = None if source is None else inputs.get(source)
        elif name in scope and not name.startswith("_") and name != "execute_command":
            value = scope[name]  # ImagePatch, llm_query...: the API under its own name
        else:
            continue  # has a default (the static check refused the rest)
        values[name] = value
        reporter.assign(line, name, value)
    return values


# -- the worker's main -------------------------------------------------------------------------
def _error_line(exc: BaseException) -> int | None:
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == PROGRAM_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _message(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = ""
    return f"{type(exc).__name__}: {text[:1000]}" if text else type(exc).__name__


def run_worker(sock: socket.socket, job: dict[str, Any], code: CodeType) -> None:
    """Run one program and report to the host. Never returns: leaves with ``os._exit``.

    The host may stop the program at any moment with ``SIGUSR1`` (its deadline, a broken
    rule): the worker then sends the events it still holds and how many it did not record,
    says ``stopped``, and exits; the host kills it if that does not come soon.
    """
    import os

    status = 0
    reporter = Reporter(sock)
    lines = LineCounts(code)
    try:
        signal.signal(signal.SIGUSR1, _stop)
        wire.send(sock, {"type": "hello", "pid": os.getpid()})
        client = ToolClient(sock, job.get("tools", []), reporter)
        spin = job.get("spin", 0.0)
        client.spin = min(float(spin), 0.001) if isinstance(spin, (int, float)) and spin > 0 else 0.0
        image_info = job["image"]
        image = RemoteImage(
            pil=None,  # type: ignore[arg-type]
            sha256=str(image_info["sha256"]),
            original_size=(int(image_info["width"]), int(image_info["height"])),
            dims=(int(image_info["width"]), int(image_info["height"])),
            source="host",
        )
        from vpd.tools.toolkit import use_toolkit

        scope = build_scope(client, reporter)
        lines.install(scope)
        if (job.get("inputs") or {}).get("api") == "vipergpt":
            LONG_ANSWER_DEFAULT.set(True)  # this process runs this one program
        answer: Any = None
        error: dict[str, Any] | None = None
        started = time.perf_counter()
        with use_toolkit(client):
            client._root = ImagePatch(image)
            try:
                exec(code, scope)
                entry = scope.get("execute_command")
                if not callable(entry):
                    raise NameError("the program must define execute_command(image)")
                result = entry(image, **_entry_arguments(entry, job.get("inputs") or {}, scope, reporter))
                answer = to_json(result)
                problem = wire.answer_problem(answer)  # as the host will count it (patches as dicts)
                if problem is not None:
                    raise AnswerError(problem)
            except AnswerError as exc:
                error = {"kind": "answer", "message": str(exc), "line": None}
            except SandboxViolation as exc:
                error = {"kind": "violation", "message": _message(exc), "line": _error_line(exc)}
            except MemoryError as exc:
                error = {
                    "kind": "memory",
                    "message": "MemoryError: the program ran out of memory",
                    "line": _error_line(exc),
                }
            except RecursionError as exc:
                error = {
                    "kind": "runtime",
                    "message": "RecursionError: maximum recursion depth exceeded",
                    "line": _error_line(exc),
                }
            except (BackendError, ToolError) as exc:
                error = {"kind": "tool", "message": _message(exc), "line": _error_line(exc)}
            except Exception as exc:
                error = {"kind": "runtime", "message": _message(exc), "line": _error_line(exc)}
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # the report below is not interrupted
        if _FAILED:
            raise WorkerFailure(_FAILED[0])
        if error is None and _VIOLATIONS:
            error = {"kind": "violation", "message": f"SandboxViolation: {_VIOLATIONS[0][:1000]}", "line": None}
        reporter.flush()
        done = {
            "type": "done",
            "answer": answer,
            "error": error,
            "dropped": reporter.not_recorded,
            "cpu_seconds": time.process_time(),
            "seconds": time.perf_counter() - started,
            **lines.report(answered=error is None),
        }
        try:
            wire.send(sock, done)
        except wire.WireError:
            try:
                wire.send(sock, {**done, "lines": None})  # first without the counts: they give way
            except wire.WireError:
                done.update(
                    lines=None,
                    answer=None,
                    error={
                        "kind": "answer",
                        "message": "the answer is too large to send; return a smaller value (a summary, not the data)",
                        "line": None,
                    },
                )
                wire.send(sock, done)
    except WorkerStop:
        status = _report_stop(reporter, sock, lines)
    except BaseException:  # the host learns from the missing "done" and the exit status
        status = 70
    finally:
        os._exit(status)


def _report_stop(reporter: Reporter, sock: socket.socket, lines: LineCounts) -> int:
    """After ``SIGUSR1``: send what is left of the trace, then ``stopped`` (exit status).

    ``stopped`` carries the line counts and the program line the signal interrupted.
    """
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        reporter.flush()
        stopped = {
            "type": "stopped",
            "dropped": reporter.not_recorded,
            "line": _STOP_LINE[0],
            **lines.report(answered=False),
        }
        wire.send(sock, stopped)
    except BaseException:
        return 70
    return 0
