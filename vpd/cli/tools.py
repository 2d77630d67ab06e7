"""``vpd tools``: which backend serves each capability, with which model, and why."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any, TextIO

from vpd.cli.options import add_toolkit_option, toolkit_from_arg
from vpd.errors import VPDError

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Add the ``tools`` command to the ``vpd`` parser's subparsers."""
    tools = sub.add_parser("tools", help="show which backend serves each capability, and why")
    add_toolkit_option(tools)
    tools.add_argument("--all", action="store_true", help="also list every registered backend and its availability")
    tools.add_argument("--json", action="store_true", help="print JSON instead of a table")
    tools.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``vpd tools``; returns the exit code."""
    from vpd.tools.registry import backend_registry
    from vpd.tools.types import CAPABILITIES

    toolkit = toolkit_from_arg(args.toolkit)
    rows = toolkit.describe()
    if args.json:
        payload: dict[str, Any] = {
            "capabilities": [
                {"capability": r.capability, "reason": r.reason, "backend": asdict(r.info) if r.info else None}
                for r in rows
            ]
        }
        if args.all:
            payload["registered"] = {
                cap: {name: _availability(cap, name) for name in backend_registry.names(cap)} for cap in CAPABILITIES
            }
        json.dump(payload, out, indent=2, default=str)
        out.write("\n")
        return 0
    table: list[tuple[str, ...]] = [("capability", "backend", "model", "status")]
    reasons = [""]
    for r in rows:
        if r.info is None:
            table.append((r.capability, "-", "-", "off"))
        else:
            status = "ready" if r.info.available else f"unavailable: {r.info.reason}"
            table.append((r.capability, r.info.backend, _short(r.info.model), status))
        reasons.append(r.reason)
    _print_table(table, out, reasons)
    if args.all:
        out.write("\nRegistered backends:\n")
        for cap in CAPABILITIES:
            for name in backend_registry.names(cap):
                info = _availability(cap, name)
                out.write(
                    f"  {cap:<8} {name:<16} {'ready' if info['available'] else 'unavailable'}: {info['reason']}\n"
                )
                if info["description"]:
                    out.write(f"  {'':<8} {'':<16} {info['description']}\n")
    return 0


def _availability(capability: str, name: str) -> dict[str, object]:
    from vpd.tools.registry import backend_registry

    try:
        cls = backend_registry.get(capability, name)
    except VPDError as exc:
        return {"available": False, "reason": str(exc), "description": ""}
    availability = cls.check_available(cls.default_model)
    return {"available": availability.ok, "reason": availability.reason, "description": cls.description}


def _short(model: str | None, width: int = 48) -> str:
    if not model:
        return "-"
    return model if len(model) <= width else "..." + model[-(width - 3) :]


def _print_table(rows: list[tuple[str, ...]], out: TextIO, notes: list[str]) -> None:
    """Print aligned columns, each row followed by its note (why) on an indented line."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row, note in zip(rows, notes):
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        out.write("  ".join([*cells, row[-1]]).rstrip() + "\n")
        if note:
            out.write(f"{'':<{widths[0]}}  why: {note}\n")
