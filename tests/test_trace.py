"""The Trace data model: exact JSON round trip, versioning, accessors."""

from __future__ import annotations

import dataclasses
import json

import pytest

from vpd import ProgramError, Trace
from vpd.traces import TRACE_VERSION, Assignment, PrintOutput, ToolCall


def _trace() -> Trace:
    return Trace(
        program="def execute_command(image):\n    return 1\n",
        image={"sha256": "ab" * 32, "width": 640, "height": 480},
        events=(
            Assignment(0, 2, "image_patch", "ImagePatch(left=0, lower=0, right=640, upper=480)"),
            ToolCall(
                index=1,
                operation="find",
                capability="detect",
                backend="nanodet",
                model="nanodet-416",
                inputs={"object_name": "cup"},
                output=[{"box": [1, 2, 3, 4], "score": 0.5}],
                box=[0, 0, 640, 480],
                line=3,
                seconds=0.01,
                cache_hit=False,
                details={"query_mapping": [{"query": "cup", "classes": ["cup"]}]},
            ),
            PrintOutput(2, 4, "héllo <script>\n"),
        ),
        answer={"n": [1, 2.5, None, True, "x"]},
        error=None,
        wall_seconds=0.5,
        tool_seconds=0.01,
        meta={"question": "How many cups?"},
    )


def test_round_trip_is_exact():
    trace = _trace()
    text = trace.to_json()
    again = Trace.from_json(text)
    assert again == trace
    assert again.to_json() == text
    assert json.loads(text)["version"] == TRACE_VERSION


def test_accessors():
    trace = _trace()
    assert [c.operation for c in trace.tool_calls] == ["find"]
    assert [a.name for a in trace.assignments] == ["image_patch"]
    assert trace.prints[0].text.startswith("héllo")
    assert trace.ok


def test_error_round_trip():
    trace = Trace(program="x", image={}, error=ProgramError("timeout", "too slow", 3))
    again = Trace.from_json(trace.to_json())
    assert again.error == ProgramError("timeout", "too slow", 3) and not again.ok


def test_unknown_version_and_event_type():
    data = _trace().to_dict()
    with pytest.raises(ValueError, match="Unsupported trace version"):
        Trace.from_dict({**data, "version": "vpd.trace/999"})
    data["events"][0]["type"] = "teleport"
    with pytest.raises(ValueError, match="Unknown trace event type"):
        Trace.from_dict(data)


def test_nan_is_refused_by_to_json():
    with pytest.raises(ValueError):
        Trace(program="x", image={}, answer=float("nan")).to_json()


def test_placing_a_tool_call_copies_it_with_its_index_and_changes() -> None:
    call = _trace().tool_calls[0]
    placed = call.placed(7, line=9, error="boom")
    assert (placed.index, placed.line, placed.error) == (7, 9, "boom")
    assert placed == dataclasses.replace(call, index=7, line=9, error="boom")
    assert (call.index, call.line, call.error) == (1, 3, None)  # the original is untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        placed.index = 0  # type: ignore[misc]
    with pytest.raises(TypeError, match="no fields"):
        call.placed(0, colour="red")
