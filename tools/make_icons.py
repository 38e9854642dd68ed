"""Draw the app icons of the web app manifest (static/parley/manifest.webmanifest) from the
design of static/parley/icon.svg: a white bold "P" on an indigo rounded square.

    .venv/bin/pip install pillow && .venv/bin/python tools/make_icons.py

Writes static/parley/icons/: icon-192.png and icon-512.png ("any": the rounded square on a
transparent corner), maskable-512.png (the full square: the platform cuts its own shape, and
the letter stays inside the central 80% circle every mask keeps), and apple-touch-icon.png
(180 px, opaque: iOS adds its own corners). The PNGs are committed; run this again only
when the design changes. The letter is drawn as shapes, not with a font, so the result is
the same on every machine.
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

INDIGO = (63, 70, 200, 255)  # #3f46c8, the SVG's fill and the manifest's theme colour
WHITE = (255, 255, 255, 255)
OUT = Path(__file__).resolve().parent.parent / "static" / "parley" / "icons"
SUPERSAMPLE = 4


def draw_p(draw: ImageDraw.ImageDraw, *, size: int, scale: float) -> None:
    """The letter on a 32-unit grid (the SVG's viewBox), centred, ``scale`` times its SVG size."""
    unit = size / 32 * scale
    left, top = 16 - 5.9, 16 - 7.6  # the glyph's box is about 11.8 by 15.2 units

    def box(x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
        shift = (1 - scale) * 16  # keep the letter centred when scaled
        return (round((x0 * scale + shift) * size / 32), round((y0 * scale + shift) * size / 32),
                round((x1 * scale + shift) * size / 32), round((y1 * scale + shift) * size / 32))

    stroke = 3.2
    bowl_bottom = top + 9.0
    # The bowl: a rounded block, with its hole cut out in the background colour.
    draw.rounded_rectangle(box(left, top, left + 11.8, bowl_bottom), radius=round(4.3 * unit), fill=WHITE,
                           corners=(False, True, True, False))
    draw.rounded_rectangle(box(left + stroke, top + stroke * 0.85, left + 11.8 - stroke, bowl_bottom - stroke * 0.85),
                           radius=round(1.6 * unit), fill=INDIGO, corners=(False, True, True, False))
    # The stem, over the bowl's left side, down to the baseline.
    draw.rectangle(box(left, top, left + stroke, top + 15.2), fill=WHITE)


def icon(size: int, *, maskable: bool = False, opaque: bool = False) -> Image.Image:
    big = size * SUPERSAMPLE
    image = Image.new("RGBA", (big, big), INDIGO if (maskable or opaque) else (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    if not (maskable or opaque):
        draw.rounded_rectangle((0, 0, big - 1, big - 1), radius=big * 8 / 32, fill=INDIGO)
    draw_p(draw, size=big, scale=0.62 if maskable else 1.0)
    image = image.resize((size, size), Image.LANCZOS)
    return image.convert("RGB") if (maskable or opaque) else image


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    icon(192).save(OUT / "icon-192.png", optimize=True)
    icon(512).save(OUT / "icon-512.png", optimize=True)
    icon(512, maskable=True).save(OUT / "maskable-512.png", optimize=True)
    icon(180, opaque=True).save(OUT / "apple-touch-icon.png", optimize=True)
    print(f"wrote {sorted(p.name for p in OUT.glob('*.png'))} to {OUT}")


if __name__ == "__main__":
    main()
