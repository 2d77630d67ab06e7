"""Offline tools on real photos: no network, no GPU.

Runs the offline toolkit (NanoDet COCO-80 detection, RapidOCR) through the ImagePatch
API on scikit-image's sample photos and a rendered street sign, and prints every tool
call the toolkit served.

    python examples/offline_tools.py
"""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont
from skimage import data

import vpd


def street_sign() -> Image.Image:
    """A white sign with black text on a grey wall."""
    image = Image.new("RGB", (640, 360), (120, 120, 120))
    draw = ImageDraw.Draw(image)
    draw.rectangle((120, 100, 520, 260), fill=(250, 250, 250), outline=(0, 0, 0), width=4)
    draw.text((160, 130), "STOP 42", fill=(0, 0, 0), font=ImageFont.load_default(size=64))
    draw.text((170, 205), "Main St.", fill=(0, 0, 0), font=ImageFont.load_default(size=40))
    return image


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
