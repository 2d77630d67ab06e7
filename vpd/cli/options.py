"""Options shared by several ``vpd`` commands, defined once."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vpd.distill.datasets import Dataset
    from vpd.tools.toolkit import Toolkit

__all__ = ["add_dataset_options", "add_llm_options", "add_toolkit_option", "dataset_from_args", "toolkit_from_arg"]


def add_llm_options(parser: argparse.ArgumentParser) -> None:
    """``--llm``, ``--api-base``, ``--api-key``: the model that writes the programs."""
    parser.add_argument(
        "--llm",
        metavar="MODEL",
        help="litellm model string (openai/gpt-4o-mini, ollama/qwen2.5-coder, openai/<alias> with --api-base), "
        "'local', 'local:0.5b' or a .gguf path (default: VPD_LLM, else the embedded local model)",
    )
    parser.add_argument("--api-base", metavar="URL", help="OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1")
    parser.add_argument("--api-key", metavar="KEY", help="key for it (default: the provider's environment variable)")


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


def add_dataset_options(parser: argparse.ArgumentParser) -> None:
    """``data`` (positional), ``--format``, ``--images``, ``--split``: a labelled dataset."""
    from vpd.distill.datasets import DATASET_FORMATS

    parser.add_argument("data", help="the dataset file (vpd JSONL, or a benchmark's own questions file)")
    parser.add_argument("--format", default="auto", choices=("auto", *DATASET_FORMATS), help="the dataset's format")
    parser.add_argument("--images", metavar="DIR", help="the images folder (for the benchmarks' own formats)")
    parser.add_argument("--split", help="the part of the dataset (e.g. TallyQA simple or complex)")


def dataset_from_args(args: argparse.Namespace) -> Dataset:
    """The dataset :func:`add_dataset_options` describes."""
    from vpd.distill.datasets import load_dataset

    return load_dataset(args.data, args.format, images=args.images, split=args.split)
