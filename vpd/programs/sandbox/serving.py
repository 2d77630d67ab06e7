"""Serving one program's tool requests in the host, through a toolkit.

The worker is untrusted, so each request is checked before anything runs: the operation
must be one of the :class:`~vpd.tools.contract.PatchOperations` contract (or a registered
user tool), it may carry only the arguments the contract declares, boxes must be four
integers (then clamped to the image), and the image and the masks are supplied by the host,
never by the program. Texts, lists of texts and flags go to the toolkit as sent: it checks
them as it checks a direct call, so a program gets the same error either way. Results go
back as plain JSON: regions without their masks (the host keeps the masks, within a memory
budget, for a later ``depth()`` of the same box), patches as boxes.

No list of operations lives here: :data:`_READERS` knows how to read each *type* of
parameter, and every operation is served by calling the toolkit's method of that name.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from vpd.errors import BackendError, InvalidArgumentError, ToolError, VPDError
from vpd.image import ImageData
from vpd.patch import ImagePatch
from vpd.programs.sandbox import wire
from vpd.programs.sandbox.recording import bounded
from vpd.tools.contract import OPERATIONS, Box, Region, operation_signature
from vpd.tools.events import record_tool_calls
from vpd.traces.trace import ToolCall

if TYPE_CHECKING:
    from vpd.tools.toolkit import Toolkit

__all__ = ["MASK_BYTES", "Served", "ToolServer", "json_safe"]

#: Masks kept per run for ``depth()`` of a found object (oldest dropped first beyond it).
MASK_BYTES = 64 * 1024 * 1024
_MAX_TOOL_LIST = 256


class Served(NamedTuple):
    """What serving one request produced (a named tuple: one is made per tool call).

    Attributes:
        reply: The message for the worker: ``{"result": ...}`` or ``{"error": {"kind", "message"}}``.
        calls: The tool calls the toolkit served for it (empty when it was rejected first).
        seconds: Time spent.
    """

    reply: dict[str, Any]
    calls: list[ToolCall]
    seconds: float


def json_safe(value: Any, error: type[VPDError] = ToolError, *, regions: bool = True, depth: int = 0) -> Any:
    """A value a tool returned, as plain JSON for the worker (numpy scalars included).

    Patches become ``{"$patch": box}``; with ``regions``, :class:`~vpd.tools.contract.Region`
    objects (what ``find`` returns) become ``{"$region": fields}``, without their mask.

    Args:
        value: The value.
        error: What to raise when it cannot be sent: :class:`~vpd.errors.BackendError` for an
            operation's result, :class:`~vpd.errors.ToolError` for a user tool's.
        regions: Whether regions may be sent (only operations return them; a user tool's
            result holds plain values and patches).
        depth: Nesting so far.

    Raises:
        VPDError: ``error``: a value no program can receive (too deep, non-finite, an unknown type).
    """
    if depth > 8:
        raise error("a tool returned a value nested too deeply")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise error("a tool returned text that is not valid Unicode (a lone surrogate)") from None
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise error(f"a tool returned {value!r}, which cannot be sent to a program")
        return float(value)
    if isinstance(value, ImagePatch):
        return {wire.PATCH: list(value.xyxy)}
    if regions and isinstance(value, Region):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.name != "mask"}
        return {wire.REGION: json_safe(fields, error, regions=regions, depth=depth + 1)}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, error, regions=regions, depth=depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v, error, regions=regions, depth=depth + 1) for k, v in value.items()}
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        return json_safe(item(), error, regions=regions, depth=depth + 1)
    raise error(f"a tool returned a {type(value).__name__}, which cannot be sent to a program")


class ToolServer:
    """Serves the tool requests of one run (one thread), with a budget of calls.

    Args:
        toolkit: What serves the operations.
        image: The image the program runs on.
        max_tool_calls: Requests served before the run is a violation.
    """

    def __init__(self, toolkit: Toolkit, image: ImageData, max_tool_calls: int) -> None:
        self.toolkit = toolkit
        self.image = image
        self.max_tool_calls = max_tool_calls
        self.root = ImagePatch(image, toolkit=toolkit)
        self.calls = 0
        self.seconds = 0.0
        # Whether a request is being served right now (read by a thread abandoning the run).
        self.busy = False
        self.violation: str | None = None
        self.masks: dict[tuple[int, ...], Any] = {}
        self._mask_bytes = 0

    def serve(self, op: Any, args: Any) -> Served:
        """Serve one request; never raises (a failure is an error reply)."""
        start = time.perf_counter()
        self.busy = True
        self.calls += 1
        calls: list[ToolCall] = []
        reply: dict[str, Any]
        if self.calls > self.max_tool_calls:
            self.violation = f"The program made more than {self.max_tool_calls} tool calls."
            reply = {"error": {"kind": "violation", "message": self.violation}}
        elif not isinstance(op, str) or not isinstance(args, dict) or not (op == "call_tool" or op in _PARAMETERS):
            self.violation = "The worker asked for an unknown operation."
            reply = {"error": {"kind": "violation", "message": self.violation}}
        else:
            with record_tool_calls(numbered=False) as calls:  # the recorder places them in the run
                try:
                    if op == "call_tool":
                        reply = {"result": json_safe(self._call_tool(args), ToolError, regions=False)}
                    else:
                        reply = {"result": json_safe(self._operation(op, args), BackendError)}
                except InvalidArgumentError as exc:
                    reply = {"error": {"kind": "invalid", "message": bounded(exc)}}
                except BackendError as exc:
                    # What the program's BackendError carries: the capability and backend that failed.
                    failed = {"capability": exc.capability, "backend": exc.backend}
                    reply = {"error": {"kind": "tool", "message": bounded(exc), **failed}}
                except VPDError as exc:
                    reply = {"error": {"kind": "tool", "message": bounded(exc)}}
                except BaseException as exc:  # a user tool's own bug (SystemExit included): a ToolError
                    reply = {"error": {"kind": "tool", "message": bounded(f"{type(exc).__name__}: {exc}")}}
        self.busy = False
        seconds = time.perf_counter() - start
        self.seconds += seconds
        return Served(reply, calls, seconds)

    # -- the operations of the contract ----------------------------------------------------
    def _operation(self, op: str, args: dict[str, Any]) -> Any:
        if not args.keys() <= _NAMES[op]:
            unexpected = sorted(str(key) for key in args if key not in _NAMES[op])
            raise InvalidArgumentError(f"{op}() got unexpected arguments: {', '.join(unexpected)}.")
        values: dict[str, Any] = {}
        for name, read, host_supplied, default in _PARAMETERS[op]:
            if host_supplied or name in args:
                values[name] = read(self, name, args.get(name), values)
            elif default is not inspect.Parameter.empty:
                values[name] = default
            else:
                raise InvalidArgumentError(f"{op}() is missing its argument {name!r}.")
        result = getattr(self.toolkit, op)(**values)
        if type(result) is list:
            for region in result:
                if type(region) is Region and region.mask is not None:
                    self.remember_mask(region.box, region.mask)
        return result

    def _call_tool(self, args: dict[str, Any]) -> Any:
        name = args.get("name")
        if not isinstance(name, str):
            raise InvalidArgumentError("A user tool's name must be a string.")
        positional = args.get("args", [])
        keywords = args.get("kwargs", {})
        if not isinstance(positional, list) or not isinstance(keywords, dict):
            raise InvalidArgumentError("Malformed tool arguments.")
        return self.toolkit.call_tool(name, *self.decode(positional), **self.decode(keywords))

    # -- reading arguments (the worker is untrusted) ----------------------------------------
    def box(self, value: Any) -> Box:
        """A region from the worker: four integers, clamped to the image."""
        return _box(self, "box", value, {})

    def decode(self, value: Any, depth: int = 0) -> Any:
        """A user tool's argument: ``$patch`` boxes become patches of this image (with their mask)."""
        if depth > 4:
            raise InvalidArgumentError("Tool arguments are nested too deeply.")
        if isinstance(value, dict):
            if set(value) == {wire.PATCH}:
                box = self.box(value[wire.PATCH])
                return ImagePatch._from_region(self.root, box, mask=self.masks.get(box))
            return {k: self.decode(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            if len(value) > _MAX_TOOL_LIST:
                raise InvalidArgumentError(f"Tool arguments hold at most {_MAX_TOOL_LIST} items per list.")
            return [self.decode(v, depth + 1) for v in value]
        return value

    def remember_mask(self, box: tuple[int, ...], mask: Any) -> None:
        """Keep a mask for depth() on the same box, within a memory budget (oldest dropped first)."""
        self.masks.pop(box, None)
        self.masks[box] = mask
        self._mask_bytes += int(getattr(mask, "nbytes", 0))
        while self._mask_bytes > MASK_BYTES and len(self.masks) > 1:
            oldest = next(iter(self.masks))
            self._mask_bytes -= int(getattr(self.masks.pop(oldest), "nbytes", 0))


# -- one reader per parameter type of the contract ------------------------------------------
Reader = Callable[[ToolServer, str, Any, dict[str, Any]], Any]


def _box(server: ToolServer, name: str, value: Any, read: dict[str, Any]) -> Box:
    if type(value) is not list or len(value) != 4 or not all(type(v) is int for v in value):
        raise InvalidArgumentError("A region is four integers.")
    return server.toolkit.check_box(server.image, value)


def _as_sent(server: ToolServer, name: str, value: Any, read: dict[str, Any]) -> Any:
    # Texts, lists of texts and flags arrive as plain JSON and go to the toolkit as they are:
    # it checks them as it checks a direct call, so a program gets the same message either way.
    return value


def _boxes(server: ToolServer, name: str, value: Any, read: dict[str, Any]) -> list[Box]:
    # No count limit here: the message size bounds the list, and the toolkit's own limit
    # (with its own message) applies to the operation.
    if not isinstance(value, list):
        raise InvalidArgumentError(f"{name} must be a list of regions.")
    return [server.box(b) for b in value]


def _mask(server: ToolServer, name: str, value: Any, read: dict[str, Any]) -> Any:
    # The mask of an object found earlier in this run, for the same box (None otherwise).
    box = read.get("box")
    return server.masks.get(tuple(box)) if box is not None else None


_READERS: dict[str, Reader] = {
    "ImageData": lambda server, name, value, read: server.image,
    "np.ndarray | None": _mask,
    "Box": _box,
    "Sequence[Box]": _boxes,
    "str": _as_sent,
    "Sequence[str]": _as_sent,
    "bool": _as_sent,
}


def _parameters(op: str) -> tuple[tuple[str, Reader, bool, Any], ...]:
    """How to read each parameter of ``op``: its name, reader, whether the host supplies it, default."""
    read = []
    for parameter in operation_signature(op).parameters.values():
        if parameter.annotation not in _READERS:
            # Fails at import (and so in every test run) when the contract gains a parameter type
            # this module cannot carry, instead of when a program first calls the operation.
            raise TypeError(
                f"PatchOperations.{op} has a parameter {parameter.name}: {parameter.annotation}; "
                f"the sandbox can carry only {', '.join(_READERS)}. Add a reader in {__name__}."
            )
        host_supplied = parameter.annotation in wire.HOST_SUPPLIED
        read.append((parameter.name, _READERS[parameter.annotation], host_supplied, parameter.default))
    return tuple(read)


_PARAMETERS = {op: _parameters(op) for op in OPERATIONS}
_NAMES = {op: frozenset(name for name, *_ in parameters) for op, parameters in _PARAMETERS.items()}
