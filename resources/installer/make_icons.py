"""Draw the photofind icon: a magnifier over a photo (landscape with sun and hills).

    python resources/installer/make_icons.py

Writes icons/photofind.svg (the source for Linux' scalable icon) and, drawn with Pillow from
the same geometry, icons/photofind-{48,128,256}.png (Linux hicolor sizes), photofind.ico
(Windows: Inno Setup and the .exe) and photofind.icns (macOS .app). The outputs are
committed (a few KB each), so a build needs none of this.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
ICONS = HERE / "icons"

# Geometry on a 256 grid, shared by the SVG and the raster drawing.
PHOTO = (20, 44, 196, 184)  # the photo's frame: left, top, right, bottom
FRAME, SKY, HILL, HILL_FAR, SUN = "#f4f1ea", "#8ecae6", "#2a9d8f", "#52b788", "#ffb703"
LENS_CENTRE, LENS_RADIUS, LENS_RING = (160, 150), 58, 16
HANDLE = ((202, 192), (240, 230))
METAL, GLASS = "#264653", "#ffffff"

SVG = f"""<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256" viewBox="0 0 256 256">
  <title>photofind</title>
  <rect x="{PHOTO[0]}" y="{PHOTO[1]}" width="{PHOTO[2] - PHOTO[0]}" height="{PHOTO[3] - PHOTO[1]}"
        rx="10" fill="{FRAME}" stroke="#b8b2a7" stroke-width="3"/>
  <rect x="{PHOTO[0] + 10}" y="{PHOTO[1] + 10}" width="{PHOTO[2] - PHOTO[0] - 20}"
        height="{PHOTO[3] - PHOTO[1] - 20}" fill="{SKY}"/>
  <circle cx="64" cy="84" r="16" fill="{SUN}"/>
  <polygon points="30,174 82,112 130,174" fill="{HILL_FAR}"/>
  <polygon points="80,174 136,100 186,174" fill="{HILL}"/>
  <line x1="{HANDLE[0][0]}" y1="{HANDLE[0][1]}" x2="{HANDLE[1][0]}" y2="{HANDLE[1][1]}"
        stroke="{METAL}" stroke-width="22" stroke-linecap="round"/>
  <circle cx="{LENS_CENTRE[0]}" cy="{LENS_CENTRE[1]}" r="{LENS_RADIUS - LENS_RING / 2}"
          fill="{GLASS}" fill-opacity="0.35" stroke="{METAL}" stroke-width="{LENS_RING}"/>
</svg>
"""


def draw(size: int) -> Image.Image:
    """The icon at ``size`` pixels, drawn 4x larger and scaled down (cheap anti-aliasing)."""
    scale = size * 4 / 256
    big = Image.new("RGBA", (size * 4, size * 4), (0, 0, 0, 0))
    pen = ImageDraw.Draw(big)

    def s(*values):
        return [round(v * scale) for v in values]

    pen.rounded_rectangle(
        s(*PHOTO),
        radius=round(10 * scale),
        fill=FRAME,
        outline="#b8b2a7",
        width=max(1, round(3 * scale)),
    )
    pen.rectangle(s(PHOTO[0] + 10, PHOTO[1] + 10, PHOTO[2] - 10, PHOTO[3] - 10), fill=SKY)
    pen.ellipse(s(48, 68, 80, 100), fill=SUN)
    pen.polygon(s(30, 174, 82, 112, 130, 174), fill=HILL_FAR)
    pen.polygon(s(80, 174, 136, 100, 186, 174), fill=HILL)
    pen.line(s(*HANDLE[0], *HANDLE[1]), fill=METAL, width=round(22 * scale))
    for end in HANDLE:  # round caps
        pen.ellipse(s(end[0] - 11, end[1] - 11, end[0] + 11, end[1] + 11), fill=METAL)
    cx, cy = LENS_CENTRE
    r = LENS_RADIUS
    glass = Image.new("RGBA", big.size, (0, 0, 0, 0))
    ImageDraw.Draw(glass).ellipse(s(cx - r, cy - r, cx + r, cy + r), fill=(255, 255, 255, 90))
    big = Image.alpha_composite(big, glass)
    ImageDraw.Draw(big).ellipse(
        s(cx - r, cy - r, cx + r, cy + r), outline=METAL, width=round(LENS_RING * scale)
    )
    return big.resize((size, size), Image.LANCZOS)


def main() -> int:
    ICONS.mkdir(exist_ok=True)
    (ICONS / "photofind.svg").write_text(SVG, encoding="utf-8")
    for size in (48, 128, 256):
        draw(size).save(ICONS / f"photofind-{size}.png", optimize=True)
    master = draw(512)
    master.save(HERE / "photofind.ico", sizes=[(16, 16), (32, 32), (48, 48), (256, 256)])
    master.save(HERE / "photofind.icns")
    print(f"wrote {ICONS}/photofind.svg, photofind-{{48,128,256}}.png, photofind.ico/.icns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
