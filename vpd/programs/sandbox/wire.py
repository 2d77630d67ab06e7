"""Messages between the host and a program's worker: one JSON object per SEQPACKET datagram.

SOCK_SEQPACKET keeps message boundaries, so a message is never split or interleaved.
Both sides cap message size; anything malformed ends the run as a worker failure.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

__all__ = [
    "HOST_SUPPLIED",
    "MAX_ANSWER_CHARS",
    "MAX_ANSWER_DEPTH",
    "MAX_ANSWER_ITEMS",
    "MAX_MESSAGE_BYTES",
    "MEMFD_JOB",
    "PATCH",
    "REGION",
    "WireError",
    "answer_problem",
    "receive",
    "receive_nowait",
    "send",
]

#: Largest message either side accepts (well under the kernel's socket buffer).
MAX_MESSAGE_BYTES = 96 * 1024
#: The job datagram that says "the job is in the memory file sent with it" (large programs).
MEMFD_JOB = b"memfd"
#: Key of an ImagePatch on the wire: ``{"$patch": [x0, y0, x1, y1]}`` (top-left origin).
PATCH = "$patch"
#: Key of a :class:`~vpd.tools.contract.Region` on the wire (its fields, the mask left out).
REGION = "$region"
#: Parameter types of the operations contract that the host supplies itself (the worker holds
#: neither pixels nor masks), as the annotations read in ``vpd.tools.contract``.
HOST_SUPPLIED = frozenset({"ImageData", "np.ndarray | None"})

#: Limits of a program's answer, applied by both sides with :func:`answer_problem`.
MAX_ANSWER_ITEMS = 1000
MAX_ANSWER_DEPTH = 8
MAX_ANSWER_CHARS = 20_000


def answer_problem(value: Any) -> str | None:
    """Why a program's answer (plain JSON) is over the limits, or None.

    The worker checks its answer with this before sending it and the host checks what
    arrives with it too, so both sides agree on every answer. Items are every value and
    every key; characters are code points of text (keys included), whatever their encoding.
    """
    items = chars = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        items += 1
        if items > MAX_ANSWER_ITEMS:
            return f"the answer has more than {MAX_ANSWER_ITEMS} items"
        if depth > MAX_ANSWER_DEPTH:
            return f"the answer is nested deeper than {MAX_ANSWER_DEPTH} levels"
        if isinstance(item, str):
            chars += len(item)
            if chars > MAX_ANSWER_CHARS:
                return f"the answer holds more than {MAX_ANSWER_CHARS} characters of text"
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, dict):
            for key, v in item.items():
                stack.append((key, depth + 1))
                stack.append((v, depth + 1))
    return None


class WireError(Exception):
    """A malformed, oversized or missing message."""


def send(sock: socket.socket, message: dict[str, Any]) -> None:
    """Send one message (raises :class:`WireError` if it is too large or not JSON).

    Lone surrogates in strings (which UTF-8 cannot carry) become ``?``. A ``RecursionError``
    (the caller is near the recursion limit, or the message is nested too deeply) is
    raised as it is, with nothing sent: the caller can keep what it was sending.
    """
    try:
        text = json.dumps(message, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise WireError(f"message is not JSON: {type(exc).__name__}") from exc
    data = text.encode("utf-8", "replace")
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {len(data)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    sock.sendall(data)


def receive_nowait(sock: socket.socket, until: float) -> dict[str, Any] | None:
    """One message if one arrives before ``until`` (monotonic seconds), else None (also at end of stream).

    Raises:
        WireError: The datagram is truncated, not UTF-8 JSON, or not an object.
    """
    while True:
        try:
            data, _, flags, _ = sock.recvmsg(MAX_MESSAGE_BYTES + 1, 0, socket.MSG_DONTWAIT)
        except BlockingIOError:
            if time.monotonic() >= until:
                return None
            time.sleep(0.002)
            continue
        return _parse(data, flags) if data else None


def receive(sock: socket.socket, buffer: bytearray | None = None, spin: float = 0.0) -> dict[str, Any] | None:
    """Receive one message; None at end of stream.

    Args:
        sock: The socket.
        buffer: A preallocated buffer of at least ``MAX_MESSAGE_BYTES + 1`` bytes to receive
            into (the worker passes one, so a full address space cannot stop it receiving).

    Raises:
        WireError: The datagram is truncated, not UTF-8 JSON, or not an object.
        TimeoutError: The socket's timeout expired.
    """
    if buffer is not None:
        size, flags = _receive_into(sock, buffer, spin)
        data = bytes(memoryview(buffer)[:size])
    else:
        data, flags = _receive(sock, spin)
    if not data:
        return None
    return _parse(data, flags)


def _parse(data: bytes, flags: int) -> dict[str, Any]:
    if len(data) > MAX_MESSAGE_BYTES or flags & socket.MSG_TRUNC:
        raise WireError("oversized message")
    try:
        message = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise WireError(f"undecodable message: {type(exc).__name__}") from exc
    if not isinstance(message, dict):
        raise WireError("a message must be a JSON object")
    return message


def _receive_into(sock: socket.socket, buffer: bytearray, spin: float) -> tuple[int, int]:
    """``recvmsg_into``, polling for up to ``spin`` seconds before blocking.

    A reply that comes within microseconds is taken without the sleep and wake-up of a
    blocking receive, which on virtual machines costs tens of microseconds per message.
    """
    if spin > 0:
        give_up = time.perf_counter() + spin
        while True:
            try:
                size, _, flags, _ = sock.recvmsg_into([buffer], 0, socket.MSG_DONTWAIT)
                return size, flags
            except BlockingIOError:
                if time.perf_counter() > give_up:
                    break
    size, _, flags, _ = sock.recvmsg_into([buffer])
    return size, flags


def _receive(sock: socket.socket, spin: float) -> tuple[bytes, int]:
    """``recvmsg`` into a new buffer, polling for up to ``spin`` seconds before blocking."""
    if spin > 0:
        give_up = time.perf_counter() + spin
        while True:
            try:
                data, _, flags, _ = sock.recvmsg(MAX_MESSAGE_BYTES + 1, 0, socket.MSG_DONTWAIT)
                return data, flags
            except BlockingIOError:
                if time.perf_counter() > give_up:
                    break
    data, _, flags, _ = sock.recvmsg(MAX_MESSAGE_BYTES + 1)
    return data, flags
