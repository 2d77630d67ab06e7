"""The ``vpd`` command line.

``vpd tools`` shows which backend serves each capability, with which model, and why.
``vpd solve IMAGE QUESTION`` answers a question (see :mod:`vpd.cli_solve`).
``vpd show TRACES.jsonl -o report.html`` writes a report to browse traces (see :mod:`vpd.render.report`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TextIO

from vpd.errors import VPDError

if TYPE_CHECKING:
    from vpd.tools.toolkit import Toolkit

__all__ = ["main"]


def _toolkit_from_arg(value: str | None) -> Toolkit:
    from vpd.tools.config import PRESETS, ToolkitConfig
    from vpd.tools.toolkit import Toolkit

    if value is None:
        return Toolkit.from_env()
    if value in PRESETS or value == "auto":
        return Toolkit(ToolkitConfig(preset=value))
    return Toolkit.from_toml(value)


def _cmd_tools(args: argparse.Namespace, out: TextIO) -> int:
    from vpd.tools.registry import backend_registry
    from vpd.tools.types import CAPABILITIES

    toolkit = _toolkit_from_arg(args.toolkit)
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``vpd`` command."""
    parser = argparse.ArgumentParser(prog="vpd", description="Visual Program Distillation.")
    sub = parser.add_subparsers(dest="command", required=True)
    tools = sub.add_parser("tools", help="show which backend serves each capability, and why")
    tools.add_argument(
        "--toolkit",
        metavar="offline|hub|auto|FILE",
        help="a preset or a toolkit TOML file (default: from VPD_* environment variables)",
    )
    tools.add_argument("--all", action="store_true", help="also list every registered backend and its availability")
    tools.add_argument("--json", action="store_true", help="print JSON instead of a table")
    tools.set_defaults(func=_cmd_tools)
    from vpd import cli_solve

    cli_solve.add_parser(sub)
    from vpd.render.report import add_show_command

    add_show_command(sub)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the ``vpd`` command; returns the exit code (0 ok, 1 error, 2 usage, 3 no answer, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    stream = out or sys.stdout
    try:
        return int(args.func(args, stream))
    except VPDError as exc:
        print(f"vpd: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vpd: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
