"""A photo to the image encoder's input by the package's own resize mode and filter.

CLIP's "shortest side, bicubic, centre crop" keeps the exact, bit-faithful path of
:mod:`photofind.clip.preprocess` (and its fast JPEG path). The others come from the models
Immich publishes (their ``preprocess_cfg.json``) and OpenCLIP's transforms:

* ``squash``: both sides to S, the aspect ratio not kept (SigLIP, DFN5B);
* ``letterbox``: the longer side to S, centred on a square of the ``fill`` grey level
  (OpenCLIP's "longest" resize with padding);
* ``squash-then-crop``: both sides to ``resize_size`` (R), then the centre S x S, its
  offset (R - S) // 2 as Hugging Face's image processors crop (EfficientNet's, so ALIGN's);
* ``shortest`` with another filter than bicubic.

Each filter is Pillow's (antialiased, as torchvision's resize of a PIL image is).
"""

from __future__ import annotations

from PIL import Image

from photofind.clip.preprocess import (
    DEFAULT_MAX_PIXELS,
    DRAFT_MULTIPLE,
    Picture,
    _normalise,
    center_crop_box,
    draft_side,
    load_and_preprocess,
    open_image,
    resized_size,
)

FILTERS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def resize_picture(
    rgb: Image.Image,
    size: int,
    mode: str,
    interpolation: str,
    fill: int = 0,
    *,
    fast=False,
    resize_size: int = 0,
) -> Image.Image:
    """An upright RGB picture as the S x S square ``mode`` makes of it (``resize_size``: the
    squashed side of squash-then-crop)."""
    resample = FILTERS[interpolation]
    gap = DRAFT_MULTIPLE if fast else None
    width, height = rgb.size
    if mode == "squash":
        return rgb.resize((size, size), resample, reducing_gap=gap)
    if mode == "squash-then-crop":
        side = max(size, resize_size)
        # Floor, not torchvision's round: transformers' center_crop (both its backends).
        offset = (side - size) // 2
        squashed = rgb.resize((side, side), resample, reducing_gap=gap)
        return squashed.crop((offset, offset, offset + size, offset + size))
    if mode == "letterbox":
        scale = size / max(width, height)
        new = (max(1, min(size, round(width * scale))), max(1, min(size, round(height * scale))))
        canvas = Image.new("RGB", (size, size), (fill, fill, fill))
        canvas.paste(
            rgb.resize(new, resample, reducing_gap=gap),
            ((size - new[0]) // 2, (size - new[1]) // 2),
        )
        return canvas
    if mode == "shortest":
        new_w, new_h = resized_size(width, height, size)
        left, top, right, bottom = center_crop_box(new_w, new_h, size)
        sx, sy = width / new_w, height / new_h
        box = (left * sx, top * sy, right * sx, bottom * sy)
        return rgb.resize((size, size), resample, box=box, reducing_gap=gap)
    raise ValueError(f"unknown resize mode {mode!r}")


def preprocess_for(item, spec, *, fast: bool = True, max_pixels=DEFAULT_MAX_PIXELS):
    """One photo (path, PIL image or :class:`Picture`) as float32 [3, S, S] for ``spec``
    (a :class:`~photofind.clip.package.ModelSpec`)."""
    size = spec.image_size
    if spec.resize == "shortest" and spec.interpolation == "bicubic":
        return load_and_preprocess(
            item, size, spec.mean, spec.std, fast=fast, max_pixels=max_pixels
        )
    want = draft_side(size)
    if fast and isinstance(item, Picture) and item.side >= want:
        rgb = item.image()  # the pass's shared decode
    else:
        source = item.path if isinstance(item, Picture) else item
        rgb = open_image(source, max_pixels=max_pixels, draft_size=(want, want) if fast else None)
    square = resize_picture(
        rgb,
        size,
        spec.resize,
        spec.interpolation,
        spec.fill,
        fast=fast,
        resize_size=spec.resize_size,
    )
    return _normalise(square, spec.mean, spec.std)
