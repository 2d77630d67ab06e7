"""Messages between the host and a program's worker: one JSON object per SEQPACKET datagram.

SOCK_SEQPACKET keeps message boundaries, so a message is never split or interleaved.
Both sides cap message size; anything malformed ends the run as a worker failure.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

__all__ = ["HOST_SUPPLIED", "MAX_MESSAGE_BYTES", "PATCH", "REGION", "WireError", "receive", "send"]

#: Largest message either side accepts (well under the kernel's socket buffer).
MAX_MESSAGE_BYTES = 96 * 1024
#: Key of an ImagePatch on the wire: ``{"$patch": [x0, y0, x1, y1]}`` (top-left origin).
PATCH = "$patch"
#: Key of a :class:`~vpd.tools.contract.Region` on the wire (its fields, the mask left out).
REGION = "$region"
#: Parameter types of the operations contract that the host supplies itself (the worker holds
#: neither pixels nor masks), as the annotations read in ``vpd.tools.contract``.
HOST_SUPPLIED = frozenset({"ImageData", "np.ndarray | None"})


class WireError(Exception):
    """A malformed, oversized or missing message."""


def send(sock: socket.socket, message: dict[str, Any]) -> None:
    """Send one message (raises :class:`WireError` if it is too large or not JSON).

    Lone surrogates in strings (which UTF-8 cannot carry) become ``?``.
    """
    try:
        text = json.dumps(message, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise WireError(f"message is not JSON: {type(exc).__name__}") from exc
    data = text.encode("utf-8", "replace")
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {len(data)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    sock.sendall(data)


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
