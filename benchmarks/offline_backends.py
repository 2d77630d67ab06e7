"""Latency of each offline backend, and what a result-cache hit saves.

Measured side by side in one run (the machines are shared and noisy): for every offline
backend, the first call (model load included), then the median of repeated uncached
calls; then the same ImagePatch operation served from the result cache.

    python benchmarks/offline_backends.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from PIL import Image
from skimage import data

import vpd
from vpd.testing import street_sign
from vpd.tools.registry import backend_registry


def _time(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return first, statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    coffee = Image.fromarray(data.coffee())
    sign = street_sign()
    box = (140.0, 11.0, 427.0, 398.0)
    rows: list[tuple[str, str, float, float]] = []

    detector = backend_registry.get("detect", "nanodet")()
    rows.append(
        ("detect", "nanodet (coffee 600x400)", *_time(lambda: detector.detect([coffee], [["cup"]]), args.repeats))
    )
    reader = backend_registry.get("ocr", "rapidocr")()
    rows.append(("ocr", "rapidocr (sign 640x360)", *_time(lambda: reader.read_text([sign]), args.repeats)))
    grabcut = backend_registry.get("segment", "grabcut")()
    rows.append(("segment", "grabcut (one box)", *_time(lambda: grabcut.segment([coffee], [[box]]), args.repeats)))
    ground = backend_registry.get("depth", "ground_plane")()
    rows.append(("depth", "ground_plane", *_time(lambda: ground.estimate_depth([coffee]), args.repeats)))

    print(f"{'capability':<10} {'backend':<28} {'first call (load)':>18} {'median call':>12}")
    for cap, name, first, median in rows:
        print(f"{cap:<10} {name:<28} {first * 1000:>15.1f} ms {median * 1000:>9.1f} ms")

    print("\nResult cache: the same ImagePatch call, uncached vs cached")
    toolkit = vpd.Toolkit.offline()
    for label, image, op in (
        ("find('cup') on coffee", coffee, lambda p: p.find("cup")),
        ("ocr() on the sign", sign, lambda p: p.ocr()),
    ):
        patch = vpd.ImagePatch(image, toolkit=toolkit)
        op(patch)  # load models outside the measurement
        misses = []
        for _ in range(args.repeats):
            assert toolkit.cache is not None
            toolkit.cache.clear()
            start = time.perf_counter()
            op(patch)
            misses.append(time.perf_counter() - start)
        hits = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            op(patch)
            hits.append(time.perf_counter() - start)
        miss, hit = statistics.median(misses), statistics.median(hits)
        print(
            f"  {label:<24} uncached {miss * 1000:8.1f} ms   cached {hit * 1e6:8.1f} us   speed-up {miss / hit:8.0f}x"
        )


if __name__ == "__main__":
    main()
