"""A bare ``pip install vpd`` (no extras) answers a question, end to end, without torch.

A fresh virtual environment gets this checkout installed from PyPI's packages with no
extras; in it, ``import vpd`` stays light, ``vpd tools`` shows the offline detector and OCR
ready, and ``vpd solve`` answers the demo question with the packaged NanoDet, the program
written by a scripted OpenAI-compatible server that runs here, in the test process.

The first run downloads about 220 MB from PyPI (then pip's cache); the install takes under
a minute on 2 cores either way. The test is skipped only when PyPI is unreachable.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import venv
from pathlib import Path
from typing import NamedTuple

import pytest

from vpd.testing.openai_server import FakeOpenAIServer

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "examples" / "images" / "coffee.jpg"
PROGRAM = 'def execute_command(image):\n    return len(ImagePatch(image).find("cup"))'
# Provider keys and vpd settings of the developer's shell must not steer the installed vpd.
_SCRUBBED_PREFIXES = ("VPD_", "PYTHON", "OPENAI_", "ANTHROPIC_", "GEMINI_", "LITELLM_", "VIRTUAL_ENV")


def _pypi_reachable() -> bool:
    try:
        with socket.create_connection(("pypi.org", 443), timeout=5):
            return True
    except OSError:
        return False


def _source_copy(destination: Path) -> Path:
    """What pip builds from: the checkout without its virtualenv, caches and build leftovers.

    Building in a copy keeps stale ``build/`` output of earlier builds out of the wheel and
    leaves the checkout untouched.
    """
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "test-artifacts", ".vpd-cache"
    )
    shutil.copytree(REPO, destination, ignore=ignore)
    return destination


def _run(args: list[str], env: dict[str, str], timeout: float, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


class BareInstall(NamedTuple):
    """The venv's scripts folder, the environment to run them in, and the source pip built from."""

    bin_dir: Path
    env: dict[str, str]
    source: Path


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> BareInstall:
    """A venv with this checkout installed without extras."""
    if not _pypi_reachable():
        pytest.skip("PyPI is unreachable: a bare install needs to download vpd's dependencies")
    root = tmp_path_factory.mktemp("bare-install")
    source = _source_copy(root / "src")
    venv.EnvBuilder(with_pip=True, clear=True).create(root / "venv")
    bin_dir = root / "venv" / ("Scripts" if os.name == "nt" else "bin")
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    env.update(
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # litellm would fetch its cost map from GitHub
        VPD_CACHE_DIR=str(root / "vpd-cache"),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    python = str(bin_dir / "python")
    # A current pip, as users have: it also shows the build backend's warnings under --quiet.
    upgrade = _run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], env, timeout=600, cwd=root)
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    install = _run([python, "-m", "pip", "install", "--quiet", str(source)], env, timeout=1800, cwd=root)
    assert install.returncode == 0, f"pip install of the bare package failed:\n{install.stdout}\n{install.stderr}"
    # No packaging warning about the license field (setuptools >= 77 wants an SPDX string).
    assert "license" not in install.stderr.lower(), install.stderr
    return BareInstall(bin_dir, env, source)


def test_import_is_light_and_torch_is_not_installed(bare: BareInstall, tmp_path: Path) -> None:
    bin_dir, env, _ = bare
    code = (
        "import importlib.util, sys, vpd\n"
        "print(vpd.__file__)\n"
        "assert 'torch' not in sys.modules, 'import vpd imported torch'\n"
        "missing = [m for m in ('torch', 'sentence_transformers', 'llama_cpp') if importlib.util.find_spec(m)]\n"
        "assert not missing, f'installed without being asked for: {missing}'\n"
        "assert importlib.util.find_spec('litellm') and importlib.util.find_spec('rapidocr')\n"
    )
    result = _run([str(bin_dir / "python"), "-c", code], env, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert str(bin_dir.parent) in result.stdout  # the installed vpd, not this checkout
    pip_list = _run([str(bin_dir / "python"), "-m", "pip", "list", "--format=json"], env, timeout=300, cwd=tmp_path)
    installed = {p["name"].lower() for p in json.loads(pip_list.stdout)}
    assert not installed & {"torch", "opencv-python", "sentence-transformers"}, sorted(installed)
    assert {"opencv-python-headless", "onnxruntime", "litellm"} <= installed


def test_tools_shows_nanodet_and_rapidocr_ready(bare: BareInstall, tmp_path: Path) -> None:
    bin_dir, env, _ = bare
    result = _run([str(bin_dir / "vpd"), "tools", "--json"], env, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {row["capability"]: row for row in json.loads(result.stdout)["capabilities"]}
    for capability, backend in (("detect", "nanodet"), ("ocr", "rapidocr")):
        info = rows[capability]["backend"]
        assert info is not None and info["backend"] == backend and info["available"], rows[capability]
    assert "tables only" in rows["detect"]["backend"]["reason"]  # no MiniLM: the mapping says it is lexical
    # No LLM is installed or configured: the reason names both ways to get one.
    assert rows["llm"]["backend"] is None
    assert "VPD_LLM=openai/gpt-4o-mini" in rows["llm"]["reason"] and "vpd[local]" in rows["llm"]["reason"]


def test_solve_answers_with_a_hosted_llm(bare: BareInstall, tmp_path: Path) -> None:
    bin_dir, env, _ = bare
    with FakeOpenAIServer(replies=lambda body: f"```python\n{PROGRAM}\n```") as server:
        result = _run(
            [
                str(bin_dir / "vpd"),
                "solve",
                str(IMAGE),
                "How many cups are there?",
                "--k",
                "1",
                "--llm",
                "openai/test",
                "--api-base",
                server.base_url,
                "--api-key",
                "x",
                "--json",
            ],
            env,
            timeout=600,
            cwd=tmp_path,
        )
        requests = server.requests
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    solution = json.loads(result.stdout)
    assert solution["answer"] == "1" and solution["source"] == "program", solution["error"]
    assert any(r.path.endswith("/chat/completions") for r in requests)  # the program came from our server
    (event,) = solution["candidates"][0]["trace"]["events"]
    assert (event["operation"], event["backend"]) == ("find", "nanodet")


def test_the_llm_extra_still_installs_without_a_warning(bare: BareInstall, tmp_path: Path) -> None:
    # litellm is a default dependency now; `pip install 'vpd[llm]'` must keep working quietly.
    python = str(bare.bin_dir / "python")
    for extra, warned in (("llm", False), ("no-such-extra", True)):  # the second shows the check can fail
        result = _run(
            [python, "-m", "pip", "install", "--dry-run", "--quiet", f"{bare.source}[{extra}]"],
            bare.env,
            timeout=600,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert ("does not provide the extra" in result.stderr) is warned, result.stderr
