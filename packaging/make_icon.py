"""Draw the Slider Studio icon (a slider knob on a track) as SVG, PNGs, .ico and .icns.

Generated at build time instead of committing binaries: one geometry, drawn once with PIL (for
the raster formats every platform needs) and once as SVG (for Linux desktops that scale it).

    python packaging/make_icon.py OUT_DIR
"""
from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw

UNIT = 1024                      # geometry below is in a 1024 × 1024 canvas
BACKGROUND = ((38, 50, 92), (24, 30, 56))   # top and bottom of the tile's gradient
TRACK_LEFT, TRACK_RIGHT = (86, 140, 255), (255, 120, 84)  # "less" blue → "more" orange
KNOB, KNOB_RING = (250, 250, 252), (24, 30, 56)
TILE_RADIUS = 200
TRACK_Y, TRACK_X0, TRACK_X1, TRACK_H = 560, 190, 834, 64
KNOB_X, KNOB_R = 640, 132
TICKS_Y0, TICKS_Y1 = 730, 790
TICK_XS = (190, 351, 512, 673, 834)
SIZES = (16, 24, 32, 48, 64, 128, 256, 512, 1024)


def _mix(a: tuple[int, ...], b: tuple[int, ...], t: float) -> tuple[int, ...]:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))


def draw(size: int = UNIT) -> Image.Image:
    """The icon at `size` pixels, drawn 4× larger and scaled down for smooth edges."""
    big = size * 4 if size < UNIT else size
    s = big / UNIT
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    gradient = Image.new("RGBA", (1, big))
    for y in range(big):
        gradient.putpixel((0, y), _mix(BACKGROUND[0], BACKGROUND[1], y / big) + (255,))
    mask = Image.new("L", (big, big), 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, big - 1, big - 1), radius=TILE_RADIUS * s, fill=255)
    image.paste(gradient.resize((big, big)), (0, 0), mask)
    pen = ImageDraw.Draw(image)
    x0, x1, half = TRACK_X0 * s, TRACK_X1 * s, TRACK_H * s / 2
    for x in range(int(x0), int(x1) + 1):          # the track: a blue → orange gradient bar
        pen.line((x, TRACK_Y * s - half, x, TRACK_Y * s + half), fill=_mix(TRACK_LEFT, TRACK_RIGHT,
                                                                         (x - x0) / (x1 - x0)))
    pen.ellipse((x0 - half, TRACK_Y * s - half, x0 + half, TRACK_Y * s + half), fill=TRACK_LEFT)
    pen.ellipse((x1 - half, TRACK_Y * s - half, x1 + half, TRACK_Y * s + half), fill=TRACK_RIGHT)
    for tx in TICK_XS:
        pen.rounded_rectangle((tx * s - 12 * s, TICKS_Y0 * s, tx * s + 12 * s, TICKS_Y1 * s), radius=12 * s,
                              fill=(170, 180, 215))
    cx, cy, r = KNOB_X * s, TRACK_Y * s, KNOB_R * s
    pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=KNOB, outline=KNOB_RING, width=round(22 * s))
    pen.rounded_rectangle((cx - 14 * s, cy - 62 * s, cx + 14 * s, cy + 62 * s), radius=14 * s, fill=KNOB_RING)
    return image.resize((size, size), Image.Resampling.LANCZOS) if big != size else image


def svg() -> str:
    """The same drawing as SVG."""
    ticks = "".join(f'<rect x="{x - 12}" y="{TICKS_Y0}" width="24" height="{TICKS_Y1 - TICKS_Y0}" rx="12" '
                    f'fill="#aab4d7"/>' for x in TICK_XS)
    hexes = [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in (*BACKGROUND, TRACK_LEFT, TRACK_RIGHT, KNOB, KNOB_RING)]
    return f"""<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {UNIT} {UNIT}" width="{UNIT}" height="{UNIT}">
  <defs>
    <linearGradient id="bg" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="{hexes[0]}"/><stop offset="1" stop-color="{hexes[1]}"/></linearGradient>
    <linearGradient id="track" x1="0" y1="0" x2="1" y2="0"><stop offset="0" stop-color="{hexes[2]}"/><stop offset="1" stop-color="{hexes[3]}"/></linearGradient>
  </defs>
  <rect width="{UNIT}" height="{UNIT}" rx="{TILE_RADIUS}" fill="url(#bg)"/>
  <rect x="{TRACK_X0 - TRACK_H / 2}" y="{TRACK_Y - TRACK_H / 2}" width="{TRACK_X1 - TRACK_X0 + TRACK_H}" height="{TRACK_H}" rx="{TRACK_H / 2}" fill="url(#track)"/>
  {ticks}
  <circle cx="{KNOB_X}" cy="{TRACK_Y}" r="{KNOB_R - 11}" fill="{hexes[4]}" stroke="{hexes[5]}" stroke-width="22"/>
  <rect x="{KNOB_X - 14}" y="{TRACK_Y - 62}" width="28" height="124" rx="14" fill="{hexes[5]}"/>
</svg>
"""


def write_icons(out: Path) -> dict[str, Path]:
    """sliderstudio.svg, sliderstudio-<N>.png, sliderstudio.png (256), .ico and .icns in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    master = draw(UNIT)
    files = {"svg": out / "sliderstudio.svg", "png": out / "sliderstudio.png",
             "ico": out / "sliderstudio.ico", "icns": out / "sliderstudio.icns"}
    files["svg"].write_text(svg(), encoding="utf-8")
    for size in SIZES:
        draw(size).save(out / f"sliderstudio-{size}.png")
    draw(256).save(files["png"])
    master.save(files["ico"], sizes=[(n, n) for n in (16, 24, 32, 48, 64, 128, 256)])
    master.save(files["icns"])
    return files


if __name__ == "__main__":
    for kind, path in write_icons(Path(sys.argv[1] if len(sys.argv) > 1 else "build/icons")).items():
        print(f"{kind}: {path}")
