"""The on-disk completion cache."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from vpd.errors import ConfigError
from vpd.programs.completions import CompletionCache, default_cache_dir
from vpd.tools.types import Completion

MESSAGES = [{"role": "user", "content": "Write a program."}]


def test_round_trip_marks_cached(tmp_path: Path) -> None:
    cache = CompletionCache(tmp_path)
    key = CompletionCache.key("m", MESSAGES, {"temperature": 0.7}, sample=2, attempt=1)
    assert cache.get(key) is None
    stored = cache.put(key, Completion("code", "m", 10, 5, seconds=1.5, first_token_seconds=0.5))
    assert stored.text == "code" and not stored.cached
    again = cache.get(key)
    assert again is not None and again.cached and again.seconds == 0 and again.prompt_tokens == 10
    assert (cache.hits, cache.misses) == (1, 1)
    assert len(cache) == 1 and (tmp_path / "completions.sqlite").exists()


def test_key_depends_on_everything_that_changes_the_reply() -> None:
    base = CompletionCache.key("m", MESSAGES, {"temperature": 0.7}, 0, 0)
    assert base != CompletionCache.key("m2", MESSAGES, {"temperature": 0.7}, 0, 0)
    assert base != CompletionCache.key("m", [{"role": "user", "content": "x"}], {"temperature": 0.7}, 0, 0)
    assert base != CompletionCache.key("m", MESSAGES, {"temperature": 0.8}, 0, 0)
    assert base != CompletionCache.key("m", MESSAGES, {"temperature": 0.7}, 1, 0)
    assert base != CompletionCache.key("m", MESSAGES, {"temperature": 0.7}, 0, 1)
    assert base == CompletionCache.key("m", MESSAGES, {"temperature": 0.7}, 0, 0)


def test_first_writer_wins_across_connections(tmp_path: Path) -> None:
    a, b = CompletionCache(tmp_path / "c.sqlite"), CompletionCache(tmp_path / "c.sqlite")
    key = CompletionCache.key("m", MESSAGES, {}, 0)
    a.put(key, Completion("first", "m"))
    used = b.put(key, Completion("second", "m"))
    assert used.text == "first" and used.cached
    assert b.get(key).text == "first"  # type: ignore[union-attr]


def test_unreadable_entry_is_a_miss(tmp_path: Path) -> None:
    cache = CompletionCache(tmp_path)
    key = CompletionCache.key("m", MESSAGES, {}, 0)
    with sqlite3.connect(tmp_path / "completions.sqlite") as db:
        db.execute("INSERT INTO completions (key, value) VALUES (?, ?)", (key, '{"unknown": 1}'))
    assert cache.get(key) is None


def test_unwritable_location_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="VPD_CACHE_DIR"):
        CompletionCache(blocker / "sub")


def test_default_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VPD_CACHE_DIR", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("VPD_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "vpd"


def test_size_bound_drops_the_oldest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CompletionCache, "CHECK_EVERY", 5)
    cache = CompletionCache(tmp_path, max_entries=20)
    keys = [CompletionCache.key("m", MESSAGES, {}, i) for i in range(40)]
    for i, key in enumerate(keys):
        cache.put(key, Completion(f"reply {i}", "m"))
    assert len(cache) <= 20
    assert cache.get(keys[-1]) is not None  # the newest are kept
    assert cache.get(keys[0]) is None  # the oldest went first
    with pytest.raises(ConfigError, match="max_entries"):
        CompletionCache(tmp_path, max_entries=0)
