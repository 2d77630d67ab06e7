"""ResultCache: LRU bound, byte bound, disk tier, read-only values, keys."""

from __future__ import annotations

import numpy as np
import pytest

from vpd import ConfigError, ResultCache
from vpd.tools.cache import cache_key


def test_lru_eviction_and_stats():
    cache = ResultCache(max_entries=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now most recent
    cache.put("c", 3)  # evicts b
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3
    assert cache.get("b", "missing") == "missing"
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.entries) == (3, 1, 2)
    assert stats.hit_rate == pytest.approx(0.75)


def test_none_and_falsy_values_are_cached():
    cache = ResultCache()
    cache.put("k", [])
    value = cache.lookup("k")
    assert not ResultCache.is_missing(value) and value == []
    assert ResultCache.is_missing(cache.lookup("other"))


def test_byte_budget():
    cache = ResultCache(max_entries=100, max_bytes=3_000_000)
    for i in range(5):
        cache.put(str(i), np.zeros(1_000_000, np.uint8))
    assert cache.memory_bytes <= 3_000_000
    assert len(cache) == 2 and "4" in cache


def test_arrays_become_read_only():
    cache = ResultCache()
    arr = np.zeros(3)
    cache.put("x", [arr])
    with pytest.raises(ValueError):
        cache.get("x")[0][0] = 1


def test_disk_tier_survives_a_new_instance(tmp_path):
    first = ResultCache(directory=tmp_path)
    first.put("k", {"boxes": [np.arange(4)], "text": "hi"})
    first.close()
    second = ResultCache(directory=tmp_path)
    value = second.get("k")
    assert value["text"] == "hi" and value["boxes"][0].tolist() == [0, 1, 2, 3]
    assert second.stats.disk_hits == 1
    second.clear(disk=True)
    assert ResultCache(directory=tmp_path).get("k") is None


def test_bad_settings(tmp_path):
    with pytest.raises(ConfigError):
        ResultCache(max_entries=0)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cache directory"):
        ResultCache(directory=blocker / "sub")


def test_cache_key_is_stable_and_sensitive():
    assert cache_key("a", (1, 2), {"q": ["x"]}) == cache_key("a", [1, 2], {"q": ["x"]})
    assert cache_key("a", (1, 2)) != cache_key("a", (1, 3))


def test_concurrent_misses_of_one_key_compute_once() -> None:
    import threading
    import time

    cache = ResultCache(16)
    calls: list[int] = []
    results: list[tuple[object, bool]] = []

    def compute() -> int:
        calls.append(1)
        time.sleep(0.2)
        return 42

    threads = [threading.Thread(target=lambda: results.append(cache.get_or_compute("k", compute))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(hit for _, hit in results) == [False, True, True, True]
    assert {value for value, _ in results} == {42}


def test_a_failed_computation_is_retried_by_waiters() -> None:
    cache = ResultCache(16)
    with pytest.raises(ValueError):
        cache.get_or_compute("k", lambda: (_ for _ in ()).throw(ValueError("boom")))
    assert cache.get_or_compute("k", lambda: 7) == (7, False)
    assert cache.get_or_compute("k", lambda: 8) == (7, True)


def test_waiters_get_the_owner_s_error_without_recomputing() -> None:
    import threading
    import time

    cache = ResultCache(16)
    calls: list[int] = []
    errors: list[BaseException] = []

    def compute() -> int:
        calls.append(1)
        time.sleep(0.2)
        raise ValueError("backend down")

    def ask() -> None:
        try:
            cache.get_or_compute("k", compute)
        except ValueError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
        time.sleep(0.01)  # the first one owns the computation
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(errors) == 4


def test_reentrant_computation_of_the_same_key_does_not_hang() -> None:
    cache = ResultCache(16)

    def outer() -> int:
        inner, hit = cache.get_or_compute("k", lambda: 1)
        return inner + 1

    assert cache.get_or_compute("k", outer) == (2, False)
    assert cache.get_or_compute("k", lambda: 3) == (2, True)
