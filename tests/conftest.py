"""Shared fixtures and marker handling.

Tests marked ``hub`` load real checkpoints from the Hugging Face hub; they run only when
the hub answers (checked once per session, with a short timeout) and are skipped with a
clear reason otherwise.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import make_user_tools

import vpd
from vpd.tools.cache import default_cache_dir
from vpd.tools.user_tools import ToolRegistry

# litellm reads this when first imported (test modules import it at collection): without it,
# it tries to download its model cost map, which fails offline after retries.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _private_cache_dir() -> None:
    """Point ``VPD_CACHE_DIR`` at a directory of this test session's own.

    Tests must never read completions an earlier run stored: the fake LLM servers listen on
    ephemeral ports, so a port the OS hands out again would make a later run's request hit an
    old run's cached reply (and tests would write into the user's real cache). Assembled model
    files are expensive and immutable, so ``models/`` links to the user's real one.
    """
    models = default_cache_dir() / "models"
    models.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix="vpd-test-cache-"))
    (private / "models").symlink_to(models, target_is_directory=True)
    os.environ["VPD_CACHE_DIR"] = str(private)  # subprocesses (CLI tests, torchrun) inherit it
    atexit.register(shutil.rmtree, private, ignore_errors=True)


_private_cache_dir()

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _hub_reachable() -> bool:
    if os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=3):
            return True
    except OSError:
        return False


_HUB: bool | None = None


def pytest_runtest_setup(item: pytest.Item) -> None:
    global _HUB
    if item.get_closest_marker("hub") is not None:
        if _HUB is None:
            _HUB = _hub_reachable()
        if not _HUB:
            pytest.skip("the Hugging Face hub is unreachable (tests marked 'hub' need real checkpoints)")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"sample data not found at {SHARED_DATA} (it lives beside the checkout, see README)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sandbox() -> Iterator[vpd.Sandbox]:
    """One sandbox for the session (its template process starts once), with generous test limits."""
    box = vpd.Sandbox(vpd.SandboxLimits(timeout=20, cpu_seconds=10, memory_mb=256))
    try:
        yield box
    finally:
        box.close()


@pytest.fixture(scope="session")
def user_tools() -> ToolRegistry:
    """See :func:`support.make_user_tools` (tests read it; one that registers more tools copies it first)."""
    return make_user_tools()
