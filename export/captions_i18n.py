"""Captions of generated scenes in English, Vietnamese and French.

English is :func:`photofind.synthetic.describe` itself; Vietnamese and French say the same
things (every object's colour, shape and size, where it is for one or two groups, the
background) in each language's own grammar:

- Vietnamese puts the noun first and the colour after ``màu``: "một hình tròn nhỏ màu đỏ"
  (a small red circle), "hai ngôi sao lớn màu vàng ở góc trên bên trái" (two large yellow
  stars at the top left); "ảnh một hình tròn màu đỏ" is "a photo of a red circle". Blue is
  "xanh dương" or "xanh lam", green "xanh lá" or "xanh lá cây", the cross "dấu cộng" or
  "hình chữ thập": each synonym is used, so a user's choice of either one finds the object.
- French agrees the article, the size and the colour with the noun's gender and number:
  "une petite étoile bleue", "deux croix blanches", "des cœurs orange" (orange, a noun used
  as a colour, does not agree).

Every phrasing is drawn from the caller's ``rng``, so a caption is a pure function of the
scene and the generator's state, as in :mod:`photofind.synthetic`.
"""

from __future__ import annotations

import numpy as np

from photofind import synthetic as synth
from photofind.synthetic import Scene, SynthObject

LANGUAGES = ("en", "vi", "fr")

# ---- Vietnamese ------------------------------------------------------------------------------

# The first name of each is the one the queries use; the others appear in captions too.
VI_COLOURS: dict[str, tuple[str, ...]] = {
    "red": ("đỏ",),
    "orange": ("cam",),
    "yellow": ("vàng",),
    "green": ("xanh lá", "xanh lá cây"),
    "blue": ("xanh dương", "xanh lam"),
    "purple": ("tím",),
    "white": ("trắng",),
    "black": ("đen",),
    "grey": ("xám",),
}
VI_SHAPES: dict[str, tuple[str, ...]] = {
    "circle": ("hình tròn",),
    "square": ("hình vuông",),
    "triangle": ("hình tam giác",),
    "star": ("ngôi sao", "hình ngôi sao"),
    "heart": ("trái tim", "hình trái tim"),
    "cross": ("dấu cộng", "hình chữ thập"),
}
VI_SIZES = {"small": ("nhỏ",), "large": ("lớn", "to")}
VI_NUMBERS = {1: "một", 2: "hai", 3: "ba"}
VI_POSITIONS = {
    "top left": ("ở góc trên bên trái", "ở phía trên bên trái"),
    "top": ("ở phía trên",),
    "top right": ("ở góc trên bên phải", "ở phía trên bên phải"),
    "left": ("ở bên trái",),
    "centre": ("ở giữa", "ở chính giữa"),
    "right": ("ở bên phải",),
    "bottom left": ("ở góc dưới bên trái", "ở phía dưới bên trái"),
    "bottom": ("ở phía dưới",),
    "bottom right": ("ở góc dưới bên phải", "ở phía dưới bên phải"),
}
VI_BACKGROUNDS = {
    "plain": ("nền", "nền trơn"),
    "gradient": ("nền chuyển màu",),
    "striped": ("nền sọc", "nền kẻ sọc"),
    "checkered": ("nền ca rô", "nền kẻ ô"),
    "noisy": ("nền lốm đốm",),
}

# ---- French ----------------------------------------------------------------------------------

# (masculine singular, feminine singular, masculine plural, feminine plural)
FR_COLOURS: dict[str, tuple[str, str, str, str]] = {
    "red": ("rouge", "rouge", "rouges", "rouges"),
    "orange": ("orange", "orange", "orange", "orange"),
    "yellow": ("jaune", "jaune", "jaunes", "jaunes"),
    "green": ("vert", "verte", "verts", "vertes"),
    "blue": ("bleu", "bleue", "bleus", "bleues"),
    "purple": ("violet", "violette", "violets", "violettes"),
    "white": ("blanc", "blanche", "blancs", "blanches"),
    "black": ("noir", "noire", "noirs", "noires"),
    "grey": ("gris", "grise", "gris", "grises"),
}
# (gender, singular, plural)
FR_SHAPES: dict[str, tuple[str, str, str]] = {
    "circle": ("m", "cercle", "cercles"),
    "square": ("m", "carré", "carrés"),
    "triangle": ("m", "triangle", "triangles"),
    "star": ("f", "étoile", "étoiles"),
    "heart": ("m", "cœur", "cœurs"),
    "cross": ("f", "croix", "croix"),
}
FR_SIZES = {
    "small": ("petit", "petite", "petits", "petites"),
    "large": ("grand", "grande", "grands", "grandes"),
}
FR_NUMBERS = {2: "deux", 3: "trois"}
FR_POSITIONS = {
    "top left": ("en haut à gauche", "dans le coin supérieur gauche"),
    "top": ("en haut",),
    "top right": ("en haut à droite", "dans le coin supérieur droit"),
    "left": ("à gauche",),
    "centre": ("au centre", "au milieu"),
    "right": ("à droite",),
    "bottom left": ("en bas à gauche", "dans le coin inférieur gauche"),
    "bottom": ("en bas",),
    "bottom right": ("en bas à droite", "dans le coin inférieur droit"),
}
FR_BACKGROUNDS = {
    "plain": ("un fond {c}", "un fond uni {c}"),
    "gradient": ("un fond dégradé {c}", "un dégradé {c}"),
    "striped": ("un fond rayé {c}", "un fond {c} à rayures"),
    "checkered": ("un fond à carreaux {c}", "un fond en damier {c}"),
    "noisy": ("un fond tacheté {c}", "un fond {c} tacheté"),
}


def _pick(rng: np.random.Generator, options) -> str:
    return str(options[int(rng.integers(len(options)))]) if len(options) > 1 else options[0]


def _groups(scene: Scene, only: SynthObject | None, rng) -> list[tuple[SynthObject, int, str]]:
    """(object, count, position) per group of equal objects, in a random order; the
    position is the group's own when it has one object."""
    if only is not None:
        return [(only, 1, only.position)]
    groups: dict[tuple, list[SynthObject]] = {}
    for obj in scene.objects:
        groups.setdefault((obj.shape, obj.colour, obj.size), []).append(obj)
    keys = list(groups)
    rng.shuffle(keys)
    return [(groups[k][0], len(groups[k]), groups[k][0].position) for k in keys]


def _vi_object(obj: SynthObject, count: int, rng, size: bool) -> str:
    words = [VI_NUMBERS[count], _pick(rng, VI_SHAPES[obj.shape])]
    if size:
        words.append(_pick(rng, VI_SIZES[obj.size]))
    colour = _pick(rng, VI_COLOURS[obj.colour])
    # "màu" (colour) before the name is the usual form; the bare name is common too.
    words.append(f"màu {colour}" if rng.random() < 0.8 else colour)
    return " ".join(words)


def _fr_object(obj: SynthObject, count: int, rng, size: bool) -> str:
    gender, singular, plural = FR_SHAPES[obj.shape]
    form = (0 if gender == "m" else 1) + (0 if count == 1 else 2)
    article = ("un" if gender == "m" else "une") if count == 1 else FR_NUMBERS[count]
    words = [article]
    if size:
        words.append(FR_SIZES[obj.size][form])
    words += [singular if count == 1 else plural, FR_COLOURS[obj.colour][form]]
    return " ".join(words)


def _fr_de(phrase: str) -> str:
    """ "de" + a noun phrase: elided before the vowel of "un"/"une"."""
    return "d'" + phrase if phrase[0] in "aeiouéu" else "de " + phrase


def _join(parts: list[str], conjunction: str) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + f" {conjunction} " + parts[-1]


def _describe_vi(scene, rng, *, size, position, background, only) -> str:
    groups = _groups(scene, only, rng)
    with_position = position and len(groups) <= 2
    parts = []
    for obj, count, where in groups:
        phrase = _vi_object(obj, count, rng, size)
        if with_position and count == 1:
            phrase += " " + _pick(rng, VI_POSITIONS[where])
        parts.append(phrase)
    objects = _join(parts, "và")
    if not background:
        return _pick(rng, ("{o}", "ảnh {o}", "hình ảnh {o}", "ảnh chụp {o}")).format(o=objects)
    kind = _pick(rng, VI_BACKGROUNDS[scene.background])
    bg = f"{kind} màu {_pick(rng, VI_COLOURS[scene.background_colour])}"
    template = _pick(
        rng, ("{o} trên {b}", "ảnh {o} trên {b}", "{b} có {o}", "hình ảnh {o} trên {b}")
    )
    return template.format(o=objects, b=bg)


def _describe_fr(scene, rng, *, size, position, background, only) -> str:
    groups = _groups(scene, only, rng)
    with_position = position and len(groups) <= 2
    parts = []
    for obj, count, where in groups:
        phrase = _fr_object(obj, count, rng, size)
        if with_position and count == 1:
            phrase += " " + _pick(rng, FR_POSITIONS[where])
        parts.append(phrase)
    objects = _join(parts, "et")
    if not background:
        template = _pick(rng, ("{o}", "une photo {do}", "une image {do}"))
        return template.format(o=objects, do=_fr_de(objects))
    # "fond" is masculine: the background's colour takes the masculine singular.
    colour = FR_COLOURS[scene.background_colour][0]
    bg = _pick(rng, FR_BACKGROUNDS[scene.background]).format(c=colour)
    template = _pick(
        rng, ("{o} sur {b}", "une photo {do} sur {b}", "{b} avec {o}", "une image {do}, sur {b}")
    )
    return template.format(o=objects, do=_fr_de(objects), b=bg)


def describe(
    scene: Scene,
    rng: np.random.Generator,
    lang: str,
    *,
    size: bool = True,
    position: bool = True,
    background: bool = True,
    only: SynthObject | None = None,
) -> str:
    """One caption of ``scene`` in ``lang``; the flags as :func:`photofind.synthetic.describe`."""
    flags = {"size": size, "position": position, "background": background, "only": only}
    if lang == "en":
        return synth.describe(scene, rng, **flags)
    if lang == "vi":
        return _describe_vi(scene, rng, **flags)
    if lang == "fr":
        return _describe_fr(scene, rng, **flags)
    raise ValueError(f"unknown language {lang!r}: expected one of {', '.join(LANGUAGES)}")


def captions(scene: Scene, rng: np.random.Generator, lang: str, count: int) -> list[str]:
    """``count`` complete captions in ``lang``, distinct where phrasings allow."""
    out: list[str] = []
    for _ in range(count * 10):
        text = describe(scene, rng, lang)
        if text not in out:
            out.append(text)
        if len(out) == count:
            break
    while len(out) < count:
        out.append(describe(scene, rng, lang))
    return out


def photo_query(colour: str, shape: str, lang: str, variant: int = 0) -> str:
    """ "a photo of a {colour} {shape}" in ``lang``; ``variant`` picks among the synonyms
    (Vietnamese), wrapping around."""
    if lang == "en":
        article = "an" if colour[0] in "aeiou" else "a"
        return f"a photo of {article} {colour} {shape}"
    if lang == "vi":
        names, colours = VI_SHAPES[shape], VI_COLOURS[colour]
        return f"ảnh một {names[variant % len(names)]} màu {colours[variant % len(colours)]}"
    if lang == "fr":
        obj = SynthObject(shape, colour, "small", "centre")
        return "une photo " + _fr_de(_fr_object(obj, 1, None, size=False))
    raise ValueError(f"unknown language {lang!r}")


def query_variants(colour: str, shape: str, lang: str) -> list[str]:
    """The photo query with each synonym at least once (Vietnamese has several)."""
    if lang != "vi":
        return [photo_query(colour, shape, lang)]
    count = max(len(VI_SHAPES[shape]), len(VI_COLOURS[colour]))
    return list(dict.fromkeys(photo_query(colour, shape, lang, v) for v in range(count)))
