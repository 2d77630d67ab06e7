"""Append-only JSONL record files (a run's ``records.jsonl``, an evaluation's ``predictions.jsonl``).

Written one whole line per record by :class:`vpd.distill.runs.RunDirectory`; read here, so
that both the pipeline and the views (``vpd show`` on a run) read them the same way: a
torn last line (the record being written when a process died) is left out, any other bad
line is an error naming it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from vpd.errors import TraceFileError

__all__ = ["read_records", "scan_records"]


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The complete records of a records file (a torn last line, if any, is left out).

    Raises:
        TraceFileError: A line other than the last is not a JSON object (the file was
            changed by something else), named by line number.
    """
    return [record for record, _ in scan_records(Path(path))[0]]


def scan_records(path: Path) -> tuple[list[tuple[dict[str, Any], int]], int]:
    """``(record, end offset)`` of each complete line, and the offset where complete lines end.

    Raises:
        TraceFileError: A line other than the last is not a JSON object.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    records: list[tuple[dict[str, Any], int]] = []
    good_end = 0
    start = 0
    number = 0
    while start < len(data):
        number += 1
        newline = data.find(b"\n", start)
        end = len(data) if newline < 0 else newline + 1
        line = data[start:end]
        last = end >= len(data)
        if not line.strip() and line.endswith(b"\n"):  # a blank line: nothing to read
            good_end = start = end
            continue
        try:
            record = json.loads(line)
            ok = isinstance(record, dict) and line.endswith(b"\n")
        except ValueError:
            ok = False
        if not ok:
            if last:  # a torn tail: the example being written when the process died
                break
            raise TraceFileError(
                f"{path}:{number}: not a complete JSON record; the file was changed by something other than vpd. "
                "Move the bad line out of the way (or start a new run directory)."
            )
        records.append((record, end))
        good_end = end
        start = end
    return records, good_end
