"""The ``vpd`` command line: one module per command.

``vpd tools`` shows which backend serves each capability, with which model, and why
(:mod:`vpd.cli.tools`). ``vpd solve IMAGE QUESTION`` answers a question
(:mod:`vpd.cli.solve`). ``vpd show TRACES.jsonl -o report.html`` writes a report to browse
traces (:mod:`vpd.cli.show`). ``vpd synthesize DATA --out RUN_DIR`` samples, runs and verifies
programs for a labelled dataset (:mod:`vpd.cli.synthesize`); ``vpd rewrite RUN_DIR`` turns
the verified ones into rationales (:mod:`vpd.cli.rewrite`) and ``vpd export RUN_DIR --out DIR``
writes the training set (:mod:`vpd.cli.export`); ``vpd train DATA --student MODEL --out DIR``
fine-tunes a student on it (:mod:`vpd.cli.train`) and ``vpd ask --student DIR IMAGE QUESTION``
asks the student (:mod:`vpd.cli.ask`); ``vpd eval DATA --out DIR --teacher --student DIR``
scores them side by side (:mod:`vpd.cli.evaluate`). Options several commands share
are in :mod:`vpd.cli.options`.
A new command is a module with ``add_parser(subparsers)`` (which sets ``func`` to its
``run(args, out) -> int``), listed in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import TextIO

from vpd.cli import ask, evaluate, export, rewrite, show, solve, synthesize, tools, train, train_writer
from vpd.errors import VPDError

__all__ = ["COMMANDS", "build_parser", "main"]

#: The command modules, in the order ``vpd --help`` lists them.
COMMANDS: tuple[ModuleType, ...] = (tools, solve, synthesize, rewrite, export, train, ask, evaluate, train_writer, show)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``vpd`` command."""
    parser = argparse.ArgumentParser(prog="vpd", description="Visual Program Distillation.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
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
