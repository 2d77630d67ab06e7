"""Offline tools on real photos: no network, no GPU.

Runs the offline toolkit (NanoDet COCO-80 detection, RapidOCR) through the ImagePatch
API on scikit-image's sample photos and a rendered street sign, and prints every tool
call the toolkit served.

    python examples/offline_tools.py
"""

from __future__ import annotations

from skimage import data

import vpd
from vpd.testing import street_sign


def main() -> None:
    toolkit = vpd.Toolkit.offline()
    with vpd.record_tool_calls() as events:
        coffee = vpd.ImagePatch(data.coffee(), toolkit=toolkit)
        cups = coffee.find("cup")
        print(f"coffee.png: find('cup') -> {cups}")
        print(f"coffee.png: exists('dog') -> {coffee.exists('dog')}")
        print(f"coffee.png: exists('mug') -> {coffee.exists('mug')}  (mapped onto COCO 'cup')")

        astronaut = vpd.ImagePatch(data.astronaut(), toolkit=toolkit)
        people = astronaut.find("woman")
        print(f"astronaut.png: find('woman') -> {people}")

        sign = vpd.ImagePatch(street_sign(), toolkit=toolkit)
        print(f"street sign: ocr() -> {sign.ocr()!r}")
        print(f"street sign, left half: ocr() -> {sign.crop(0, 0, 320, 360).ocr()!r}")

        print(f"again, from the cache: find('cup') -> {len(coffee.find('cup'))} patch(es)")

    print("\nTool calls:")
    for e in events:
        hit = "cache hit" if e.cache_hit else f"{e.seconds * 1000:.0f} ms"
        print(f"  {e.operation:<8} {e.backend:<9} {e.inputs!s:<28} -> {e.output!s:.70}  ({hit})")


if __name__ == "__main__":
    main()
