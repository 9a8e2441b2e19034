"""Generated photos of simple shapes, with captions: the tiny CLIP's world.

Each scene holds one to three objects (a shape, a colour, a size, a cell of a 3×3 grid) on a
background (plain, gradient, striped, checkered or noisy, with a named colour). Everything is
drawn by Pillow and numpy, and every scene is a pure function of ``(seed, index, stream)``:
generating 100 images or 10,000 from the same seed gives the same first 100.

Captions name every object's colour, shape and size, the background, and (for one or two
objects) where each object is: what a retrieval test needs to tell one image from another.

It lives in the app package (not in ``export/``) because the app uses it too: ``photofind
--demo`` builds its offline demo library from these scenes. ``export/synth.py`` (training
data, ``python -m export synth --out DIR --count N --seed S``) re-exports it. The files are
JPEG and PNG, several sizes, some not square; ``captions.json`` is in the COCO captions
format, each entry of ``images`` also carrying the scene's attributes under ``"synth"``.
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# Colours chosen far apart in RGB so that JPEG and a 64-pixel resize keep them apart.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (250, 140, 0),
    "yellow": (250, 225, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 230),
    "purple": (140, 40, 190),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
# A background may also be grey; objects never are (it would vanish on many backgrounds).
BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {**COLOURS, "grey": (128, 128, 128)}
SHAPES = ("circle", "square", "triangle", "star", "heart", "cross")
PLURALS = {shape: shape + ("es" if shape.endswith("s") else "s") for shape in SHAPES}
SIZES = ("small", "large")
# Row-major cells of a 3×3 grid over the central square of the picture.
POSITIONS = (
    "top left",
    "top",
    "top right",
    "left",
    "centre",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)
BACKGROUND_KINDS = ("plain", "gradient", "striped", "checkered", "noisy")
# (width, height) of the saved files: square, landscape and portrait.
IMAGE_SIZES = ((256, 256), (320, 240), (240, 320), (300, 200), (200, 300), (384, 288), (224, 224))
FORMATS = ("jpg", "png")

# Streams keep the scenes of different uses apart: the same seed in another stream gives
# unrelated scenes, so no `synth --seed` can ever reproduce the training images.
STREAM_PUBLIC = 0
STREAM_TRAIN = 1
# The demo's planted scenes (photofind.demo_scenes): apart from both of the above.
STREAM_DEMO = 2

# Fraction of the central square's side an object spans, by size.
_SPAN = {"small": (0.17, 0.21), "large": (0.29, 0.33)}
# Object and background colours closer than this (RGB distance) never meet: hard to see.
_MIN_CONTRAST = 150.0
_SUPERSAMPLE = 4
_NUMBERS = {2: "two", 3: "three"}


@dataclass(frozen=True)
class SynthObject:
    shape: str
    colour: str
    size: str
    position: str


@dataclass(frozen=True)
class Scene:
    objects: tuple[SynthObject, ...]
    background: str  # one of BACKGROUND_KINDS
    background_colour: str
    width: int
    height: int
    format: str  # "jpg" or "png"
    render_seed: int  # drives the drawing's small random details (jitter, noise)

    def attributes(self) -> dict:
        """JSON-ready description, stored beside each image in captions.json."""
        return {
            "objects": [asdict(obj) for obj in self.objects],
            "background": {"kind": self.background, "colour": self.background_colour},
        }


def scene_rng(seed: int, index: int, stream: int = STREAM_PUBLIC) -> np.random.Generator:
    return np.random.default_rng([stream, seed, index])


def _contrast(a: str, b: str) -> float:
    return math.dist(COLOURS[a], BACKGROUND_COLOURS[b])


def make_scene(rng: np.random.Generator) -> Scene:
    """Draw a scene's attributes (not its pixels) from ``rng``."""
    count = int(rng.choice([1, 2, 3], p=[0.45, 0.35, 0.20]))
    background_colour = str(rng.choice(list(BACKGROUND_COLOURS)))
    visible = [c for c in COLOURS if _contrast(c, background_colour) >= _MIN_CONTRAST]
    cells = rng.permutation(len(POSITIONS))[:count]
    objects: list[SynthObject] = []
    for i, cell in enumerate(cells):
        # Sometimes repeat the previous object exactly, so that "two small green squares"
        # style captions exist.
        if i > 0 and rng.random() < 0.25:
            prev = objects[-1]
            objects.append(SynthObject(prev.shape, prev.colour, prev.size, POSITIONS[cell]))
            continue
        objects.append(
            SynthObject(
                shape=str(rng.choice(SHAPES)),
                colour=str(rng.choice(visible)),
                size=str(rng.choice(SIZES)),
                position=POSITIONS[cell],
            )
        )
    width, height = IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
    return Scene(
        objects=tuple(objects),
        background=str(rng.choice(BACKGROUND_KINDS)),
        background_colour=background_colour,
        width=width,
        height=height,
        format=str(rng.choice(FORMATS, p=[0.6, 0.4])),
        render_seed=int(rng.integers(2**31)),
    )


# ---------------------------------------------------------------------------------------------
# Drawing


def _jitter(rgb: tuple[int, int, int], rng: np.random.Generator, amount: int) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) + rng.integers(-amount, amount + 1, 3), 0, 255)


def _background(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    w, h = scene.width, scene.height
    base = _jitter(BACKGROUND_COLOURS[scene.background_colour], rng, 10)
    # A lighter and a darker shade of the same colour, so the colour name stays true.
    light = base + (255 - base) * 0.35
    dark = base * 0.6
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = scene.background
    if kind == "plain":
        img = np.broadcast_to(base, (h, w, 3)).copy()
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(angle) + yy * math.sin(angle)
        t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
        img = light * (1 - t[..., None]) + dark * t[..., None]
    elif kind == "striped":
        period = rng.uniform(0.08, 0.16) * min(w, h)
        angle = rng.uniform(0, math.pi)
        t = xx * math.cos(angle) + yy * math.sin(angle)
        band = (np.floor(t / (period / 2)) % 2).astype(np.float32)[..., None]
        other = light if rng.random() < 0.5 else dark
        img = base * (1 - band) + other * band
    elif kind == "checkered":
        cell = rng.uniform(0.08, 0.16) * min(w, h)
        board = ((np.floor(xx / cell) + np.floor(yy / cell)) % 2).astype(np.float32)[..., None]
        other = light if rng.random() < 0.5 else dark
        img = base * (1 - board) + other * board
    elif kind == "noisy":
        # Coarse blotches survive the resize to the model's resolution; fine grain on top.
        # Brightness noise, the same on the three channels, keeps the colour's name true.
        coarse = rng.normal(0, 30, (max(h // 24, 2), max(w // 24, 2))).astype(np.float32)
        coarse_img = Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8))
        blotches = np.asarray(coarse_img.resize((w, h), Image.BILINEAR), np.float32) - 128
        grain = rng.normal(0, 14, (h, w, 1)).astype(np.float32)
        img = base + blotches[..., None] + grain
    else:  # pragma: no cover - make_scene only draws known kinds
        raise ValueError(f"unknown background kind {kind!r}")
    return np.clip(img, 0, 255).astype(np.uint8)


def _polygon(points: np.ndarray, cx: float, cy: float, r: float, angle: float) -> list:
    """Unit-radius ``points`` (x, y with y up) scaled by r, rotated, moved to (cx, cy)."""
    c, s = math.cos(angle), math.sin(angle)
    out = []
    for x, y in points:
        rx, ry = x * c - y * s, x * s + y * c
        out.append((cx + r * rx, cy - r * ry))
    return out


def _regular(n: int, start: float) -> np.ndarray:
    a = start + np.arange(n) * 2 * math.pi / n
    return np.stack([np.cos(a), np.sin(a)], 1)


_STAR = np.array(
    [
        (math.cos(a) * rad, math.sin(a) * rad)
        for i in range(10)
        for a, rad in [(math.pi / 2 + i * math.pi / 5, 1.0 if i % 2 == 0 else 0.45)]
    ]
)
_HEART_T = np.linspace(0, 2 * math.pi, 60, endpoint=False)
_HEART = (
    np.stack(
        [
            16 * np.sin(_HEART_T) ** 3,
            13 * np.cos(_HEART_T)
            - 5 * np.cos(2 * _HEART_T)
            - 2 * np.cos(3 * _HEART_T)
            - np.cos(4 * _HEART_T),
        ],
        1,
    )
    / 16.0
)
_HEART[:, 1] += 0.2  # centre the heart's bounding box on the origin
_ARM = 0.34
_CROSS = np.array(
    [
        (-_ARM, 1),
        (_ARM, 1),
        (_ARM, _ARM),
        (1, _ARM),
        (1, -_ARM),
        (_ARM, -_ARM),
        (_ARM, -1),
        (-_ARM, -1),
        (-_ARM, -_ARM),
        (-1, -_ARM),
        (-1, _ARM),
        (-_ARM, _ARM),
    ]
)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx, cy, r, angle, fill) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        return
    points = {
        "square": _regular(4, math.pi / 4) * 1.0,
        "triangle": _regular(3, math.pi / 2) * 1.1 + np.array([0.0, -0.15]),
        "star": _STAR * 1.1,
        "heart": _HEART,
        "cross": _CROSS * 0.95,
    }[shape]
    draw.polygon(_polygon(points, cx, cy, r, angle), fill=fill)


def render(scene: Scene) -> Image.Image:
    """The scene's pixels as an RGB image of ``scene.width`` × ``scene.height``."""
    rng = np.random.default_rng(scene.render_seed)
    canvas = Image.fromarray(_background(scene, rng))
    w, h = scene.width, scene.height
    # Objects live in the central square, which the runtime's centre crop always keeps.
    side = min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    cell = side / 3
    ss = _SUPERSAMPLE
    for obj in scene.objects:
        row, col = divmod(POSITIONS.index(obj.position), 3)
        span = rng.uniform(*_SPAN[obj.size]) * side
        slack = max(cell - span, 0) / 2 * 0.8
        cx = left + (col + 0.5) * cell + rng.uniform(-slack, slack)
        cy = top + (row + 0.5) * cell + rng.uniform(-slack, slack)
        angle = 0.0 if obj.shape == "circle" else math.radians(rng.uniform(-12, 12))
        fill = tuple(int(v) for v in _jitter(COLOURS[obj.colour], rng, 12))
        # Anti-aliased edges: draw a supersampled mask over the object's box only, average
        # it down, and paint the colour through it.
        x0, y0 = int(cx - span * 0.65), int(cy - span * 0.65)
        box = int(math.ceil(span * 1.3)) + 1
        mask = Image.new("L", (box * ss, box * ss), 0)
        _draw_shape(
            ImageDraw.Draw(mask),
            obj.shape,
            (cx - x0) * ss,
            (cy - y0) * ss,
            span / 2 * ss,
            angle,
            255,
        )
        canvas.paste(fill, (x0, y0, x0 + box, y0 + box), mask.reduce(ss))
    return canvas


def encode(image: Image.Image, fmt: str) -> bytes:
    """The bytes of the file as saved (JPEG quality 90 or PNG)."""
    buffer = io.BytesIO()
    if fmt == "jpg":
        image.save(buffer, format="JPEG", quality=90)
    else:
        # Light compression: the same pixels, written several times faster.
        image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Captions


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _size_word(size: str, rng: np.random.Generator) -> str:
    if size == "large":
        return "large" if rng.random() < 0.7 else "big"
    return "small"


def _where(position: str, rng: np.random.Generator) -> str:
    if position == "centre":
        return str(rng.choice(["in the centre", "in the middle", "in the center"]))
    if position in ("left", "right"):
        return f"on the {position}"
    if position in ("top", "bottom"):
        return f"at the {position}"
    if rng.random() < 0.3:
        return f"in the {position} corner"
    return f"at the {position}"


def _background_phrase(scene: Scene, rng: np.random.Generator) -> str:
    colour, kind = scene.background_colour, scene.background
    if kind == "plain":
        words = f"plain {colour}" if rng.random() < 0.3 else colour
    elif kind == "gradient":
        words = f"{colour} gradient"
    else:
        words = f"{kind} {colour}" if rng.random() < 0.5 else f"{colour} {kind}"
    return f"{_article(words)} {words} background"


def _groups(objects, rng) -> list[tuple[SynthObject, list[str]]]:
    """Objects with equal shape, colour and size, merged; each with its positions."""
    groups: dict[tuple, list[str]] = {}
    first: dict[tuple, SynthObject] = {}
    for obj in objects:
        key = (obj.shape, obj.colour, obj.size)
        groups.setdefault(key, []).append(obj.position)
        first.setdefault(key, obj)
    order = list(groups)
    rng.shuffle(order)
    return [(first[key], groups[key]) for key in order]


def _noun_phrase(obj: SynthObject, count: int, rng, *, size: bool) -> str:
    words = [obj.colour, obj.shape if count == 1 else PLURALS[obj.shape]]
    if size:
        words.insert(0, _size_word(obj.size, rng))
    phrase = " ".join(words)
    return f"{_article(phrase)} {phrase}" if count == 1 else f"{_NUMBERS[count]} {phrase}"


def _join(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def describe(
    scene: Scene,
    rng: np.random.Generator,
    *,
    size: bool = True,
    position: bool = True,
    background: bool = True,
    only: SynthObject | None = None,
) -> str:
    """One caption of ``scene``; the flags leave attributes out (training uses that).

    ``only`` describes that one object alone (true of the picture, if not complete).
    Positions are given for scenes of one or two distinct groups, where a sentence stays short.
    """
    groups = [(only, [only.position])] if only else _groups(scene.objects, rng)
    with_position = position and len(groups) <= 2
    parts = []
    for obj, positions in groups:
        phrase = _noun_phrase(obj, len(positions), rng, size=size)
        if with_position and len(positions) == 1:
            phrase += " " + _where(positions[0], rng)
        parts.append(phrase)
    objects = _join(parts)
    if not background:
        template = rng.choice(["{o}", "a photo of {o}", "a picture of {o}"])
        return str(template).format(o=objects)
    bg = _background_phrase(scene, rng)
    template = rng.choice(
        [
            "{o} on {b}",
            "a photo of {o} on {b}",
            "{b} with {o}",
            "an image of {o}, on {b}",
            "a picture of {o} on {b}",
        ]
    )
    return str(template).format(o=objects, b=bg)


def captions(scene: Scene, rng: np.random.Generator, count: int) -> list[str]:
    """``count`` complete captions in different phrasings (distinct where phrasings allow)."""
    out: list[str] = []
    for _ in range(count * 10):
        text = describe(scene, rng)
        if text not in out:
            out.append(text)
        if len(out) == count:
            break
    while len(out) < count:
        out.append(describe(scene, rng))
    return out


# ---------------------------------------------------------------------------------------------
# Data sets on disk


def generate(seed: int, index: int, stream: int = STREAM_PUBLIC, captions_per_image: int = 3):
    """(scene, image, captions) of one item: a pure function of its arguments."""
    rng = scene_rng(seed, index, stream)
    scene = make_scene(rng)
    return scene, render(scene), captions(scene, rng, captions_per_image)


def write_dataset(out: Path, count: int, seed: int, captions_per_image: int = 3) -> Path:
    """Write ``count`` images and ``out/captions.json``; returns the captions file's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(count):
        scene, image, texts = generate(seed, index, captions_per_image=captions_per_image)
        name = f"synth_{seed}_{index:06d}.{scene.format}"
        (out / name).write_bytes(encode(image, scene.format))
        image_id = index + 1
        images.append(
            {
                "id": image_id,
                "file_name": name,
                "width": scene.width,
                "height": scene.height,
                "synth": scene.attributes(),
            }
        )
        for text in texts:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "caption": text})
    data = {
        "info": {
            "description": f"photofind synthetic shapes, seed {seed}",
            "generator": "python -m export synth",
            "seed": seed,
        },
        "images": images,
        "annotations": annotations,
    }
    target = out / "captions.json"
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target
