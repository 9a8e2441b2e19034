"""Which scenes the demo library holds, and which of them an example search should find.

The demo suggests searches (:data:`photofind.demo.EXAMPLE_SEARCHES`). Drawn at random, 300
scenes hold one or two pictures of "two green squares" or "a yellow star on a purple
background": no model can show five of them in its top ten. So every fifth demo photo is
*planted*: a random scene made true of one example (its objects and background forced), in
turn over the examples. The other photos stay the plain random ones of
:mod:`photofind.synthetic`.

:func:`scene_matches` reads an example in the demo's own vocabulary (colours, shapes, sizes,
"two"/"three", backgrounds, ``+``/``-`` terms) and says whether a scene's generated
attributes make it true: the ground truth the demo's test measures the search against.
Every positive term must be true of the scene and every negative term false.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from photofind.query import TEXT, parse_query

# (_MIN_CONTRAST, _contrast: the generator's own rule of what stays visible, so that a
# planted scene obeys it too.)
from photofind.synthetic import (
    _MIN_CONTRAST,
    BACKGROUND_COLOURS,
    BACKGROUND_KINDS,
    COLOURS,
    PLURALS,
    POSITIONS,
    SHAPES,
    SIZES,
    STREAM_DEMO,
    STREAM_PUBLIC,
    Scene,
    SynthObject,
    _contrast,
    make_scene,
    scene_rng,
)

#: every PLANT_EVERY-th photo of the demo is planted for an example search
PLANT_EVERY = 5
_COUNTS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3}
_SIZE_WORDS = {"small": "small", "large": "large", "big": "large"}
_SHAPE_WORDS = {**{s: s for s in SHAPES}, **{p: s for s, p in PLURALS.items()}}
_MAX_TRIES = 1000


@dataclass(frozen=True)
class Wanted:
    """One sentence of a search, in the demo's vocabulary (None: any)."""

    shape: str | None = None
    colour: str | None = None
    size: str | None = None
    count: int = 1
    background_colour: str | None = None
    background_kind: str | None = None

    def true_of(self, scene: Scene) -> bool:
        if self.background_colour not in (None, scene.background_colour):
            return False
        if self.background_kind not in (None, scene.background):
            return False
        if self.shape is None:
            return True
        found = sum(
            1
            for o in scene.objects
            if o.shape == self.shape
            and self.colour in (None, o.colour)
            and self.size in (None, o.size)
        )
        return found >= self.count


def read_sentence(text: str) -> Wanted:
    """``"two small green squares on a striped background"`` → what it asks for.

    Raises ValueError for a sentence the demo's world has no word of: an example must be
    something the ground truth can check.
    """
    words = re.findall(r"[a-z]+", text.lower())
    background: list[str] = []
    objects = words
    if "background" in words:
        cut = words.index("background")
        starts = [i for i, w in enumerate(words[:cut]) if w in ("on", "with")]
        start = starts[-1] + 1 if starts else 0
        background, objects = words[start:cut], words[: max(start - 1, 0)]
    shapes = [_SHAPE_WORDS[w] for w in objects if w in _SHAPE_WORDS]
    bg_colours = [w for w in background if w in BACKGROUND_COLOURS]
    bg_kinds = [w for w in background if w in BACKGROUND_KINDS]
    if len(shapes) > 1 or len(bg_colours) > 1 or len(bg_kinds) > 1 or not (shapes or background):
        raise ValueError(f"{text!r} is not one sentence of the demo's shapes and backgrounds")
    return Wanted(
        shape=shapes[0] if shapes else None,
        colour=next((w for w in objects if w in COLOURS), None),
        size=next((_SIZE_WORDS[w] for w in objects if w in _SIZE_WORDS), None),
        count=next((_COUNTS[w] for w in objects if w in _COUNTS), 1),
        background_colour=bg_colours[0] if bg_colours else None,
        background_kind=bg_kinds[0] if bg_kinds else None,
    )


def read_search(query: str) -> tuple[list[Wanted], list[Wanted]]:
    """The sentences a search adds and those it subtracts."""
    added, subtracted = [], []
    for term in parse_query(query).terms:
        if term.kind != TEXT:
            raise ValueError(f"{query!r}: the demo's examples are sentences, not pictures")
        (added if term.weight > 0 else subtracted).append(read_sentence(str(term.value)))
    return added, subtracted


def scene_matches(query: str, scene: Scene) -> bool:
    """Is ``scene`` a right answer to ``query``? (from its generated attributes)"""
    added, subtracted = read_search(query)
    return all(w.true_of(scene) for w in added) and not any(w.true_of(scene) for w in subtracted)


def _force(scene: Scene, added: list[Wanted], rng) -> Scene:
    """``scene`` with its background and first objects made what ``added`` asks for."""
    bg_colour, bg_kind = scene.background_colour, scene.background
    for w in added:
        bg_colour = w.background_colour or bg_colour
        bg_kind = w.background_kind or bg_kind
    objects = list(scene.objects)
    free = [p for p in POSITIONS if p not in {o.position for o in objects}]
    slot = 0
    for w in added:
        if w.shape is None:
            continue
        colour = w.colour or str(
            rng.choice([c for c in COLOURS if _contrast(c, bg_colour) >= _MIN_CONTRAST])
        )
        size = w.size or str(rng.choice(SIZES))
        for _ in range(w.count):
            if slot < len(objects):
                position = objects[slot].position
                objects[slot] = SynthObject(w.shape, colour, size, position)
            else:
                objects.append(SynthObject(w.shape, colour, size, free.pop(0)))
            slot += 1
    return replace(scene, objects=tuple(objects), background=bg_kind, background_colour=bg_colour)


def planted_scene(query: str, seed: int, index: int) -> Scene:
    """A random scene (of its own stream) that ``query`` should find: deterministic."""
    added, _ = read_search(query)
    rng = scene_rng(seed, index, STREAM_DEMO)
    for _ in range(_MAX_TRIES):
        scene = _force(make_scene(rng), added, rng)
        visible = all(
            _contrast(o.colour, scene.background_colour) >= _MIN_CONTRAST for o in scene.objects
        )
        if visible and scene_matches(query, scene):
            return scene
    raise ValueError(f"no visible scene makes {query!r} true")


def demo_scene(seed: int, index: int, examples: tuple[str, ...]) -> Scene:
    """Photo ``index`` of the demo: planted for an example, or a plain random scene."""
    if examples and index % PLANT_EVERY == PLANT_EVERY - 1:
        query = examples[(index // PLANT_EVERY) % len(examples)]
        return planted_scene(query, seed, index)
    return make_scene(scene_rng(seed, index, STREAM_PUBLIC))
