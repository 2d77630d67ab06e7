"""Options shared by several ``vpd`` commands, defined once."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vpd.tools.toolkit import Toolkit

__all__ = ["add_toolkit_option", "toolkit_from_arg"]


def add_toolkit_option(parser: argparse.ArgumentParser) -> None:
    """``--toolkit offline|hub|auto|FILE``: which tools a command uses."""
    parser.add_argument(
        "--toolkit",
        metavar="offline|hub|auto|FILE",
        help="the tools: a preset or a toolkit TOML file (default: from VPD_* environment variables)",
    )


def toolkit_from_arg(value: str | None) -> Toolkit:
    """The toolkit ``--toolkit`` names: a preset, ``auto``, a TOML file, or (None) the environment's."""
    from vpd.tools.config import PRESETS, ToolkitConfig
    from vpd.tools.toolkit import Toolkit

    if value is None:
        return Toolkit.from_env()
    if value in PRESETS or value == "auto":
        return Toolkit(ToolkitConfig(preset=value))
    return Toolkit.from_toml(value)
