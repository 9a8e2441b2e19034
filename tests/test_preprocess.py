"""Tests of photofind.clip.preprocess: decoding odd and broken files, CLIP geometry, fast path.

torchvision is not installed, so parity is checked against hand-computed torchvision
geometry (resized size, crop offsets) and a plain numpy normalisation written here.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

sys.path.insert(0, str(Path(__file__).resolve().parent))

import images  # noqa: E402

from photofind.clip.preprocess import (  # noqa: E402
    DEFAULT_MAX_PIXELS,
    center_crop_box,
    load_and_preprocess,
    open_image,
    preprocess,
    resized_size,
)
from photofind.errors import ImageError, ImageTooLarge  # noqa: E402

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
STD_CHW = np.asarray(STD, np.float32).reshape(3, 1, 1)


def pixel_mad(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |a - b| of two normalised tensors in 0..1 pixel units (std scaling undone)."""
    return float(np.mean(np.abs((a - b) * STD_CHW)))


def reference_tensor(img: Image.Image, new_size, crop_box) -> np.ndarray:
    """CLIP's transform spelt out with the geometry given by hand, normalised in float64."""
    resized = img.resize(new_size, Image.Resampling.BICUBIC) if new_size != img.size else img
    pixels = np.asarray(resized.crop(crop_box), dtype=np.float64) / 255.0
    mean = np.asarray(MEAN, np.float64)
    std = np.asarray(STD, np.float64)
    return ((pixels - mean) / std).transpose(2, 0, 1)


# --------------------------------------------------------------------------------------------
# Geometry and parity


@pytest.mark.parametrize(
    ("size", "image_size", "expected"),
    [
        ((640, 480), 224, (298, 224)),  # 224*640/480 = 298.67 -> truncated, not rounded
        ((480, 640), 224, (224, 298)),
        ((500, 333), 224, (336, 224)),  # 336.34
        ((333, 500), 224, (224, 336)),
        ((301, 299), 224, (225, 224)),  # 225.50 -> 225
        ((300, 300), 224, (224, 224)),
        ((225, 224), 224, (225, 224)),  # already the right size: left alone
        ((100, 37), 224, (605, 224)),  # upscaling: 605.41
        ((4000, 3000), 336, (448, 336)),
        ((1001, 97), 64, (660, 64)),  # 660.45
    ],
)
def test_resized_size_truncates_like_torchvision(size, image_size, expected):
    assert resized_size(*size, image_size) == expected


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((298, 224), (37, 0)),  # margin 74 -> 37
        ((225, 224), (0, 0)),  # margin 1: round(0.5) = 0 (half to even)
        ((227, 224), (2, 0)),  # margin 3: round(1.5) = 2
        ((229, 224), (2, 0)),  # margin 5: round(2.5) = 2 (half to even)
        ((224, 231), (0, 4)),  # margin 7: round(3.5) = 4
        ((224, 224), (0, 0)),
    ],
)
def test_center_crop_rounds_like_torchvision(size, expected):
    left, top = expected
    assert center_crop_box(*size, 224) == (left, top, left + 224, top + 224)


@pytest.mark.parametrize(
    ("size", "new_size", "crop"),
    [
        ((333, 217), (343, 224), (60, 0, 284, 224)),  # 343.67; margin 119 -> round(59.5) = 60
        ((217, 333), (224, 343), (0, 60, 224, 284)),
        ((451, 449), (224, 224), (0, 0, 224, 224)),  # 224.998 -> 224
        ((1001, 297), (754, 224), (265, 0, 489, 224)),  # 754.96; margin 530 -> 265
        ((150, 120), (280, 224), (28, 0, 252, 224)),  # upscaling; margin 56 -> 28
    ],
)
def test_preprocess_matches_hand_computed_reference(size, new_size, crop):
    rng = np.random.default_rng(sum(size))
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    out = preprocess(img, 224, MEAN, STD)
    assert out.shape == (3, 224, 224)
    assert out.dtype == np.float32
    assert out.flags.c_contiguous
    np.testing.assert_allclose(out, reference_tensor(img, new_size, crop), rtol=0, atol=2e-6)


def test_preprocess_is_float32_torch_arithmetic():
    # torchvision does x.float().div(255), then .sub_(mean).div_(std), all in float32.
    values = np.arange(224 * 224 * 3).reshape(224, 224, 3) % 256
    img = Image.fromarray(values.astype(np.uint8))
    pixels = np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32)
    mean = np.asarray(MEAN, np.float32).reshape(3, 1, 1)
    std = np.asarray(STD, np.float32).reshape(3, 1, 1)
    expected = (pixels / np.float32(255) - mean) / std
    np.testing.assert_array_equal(preprocess(img, 224, MEAN, STD), expected)


def test_preprocess_crop_keeps_the_centre():
    # A 600x200 picture: black, with a white 200x200 square in the middle. After resize to
    # 672x224 and a centre crop, the crop is all white apart from filter ringing at the edges.
    a = np.zeros((200, 600, 3), np.uint8)
    a[:, 200:400] = 255
    out = preprocess(Image.fromarray(a), 224, (0, 0, 0), (1, 1, 1))
    assert out[:, :, 4:-4].min() > 0.99


def test_preprocess_survives_absurd_aspect_ratio():
    strip = Image.new("RGB", (60_000, 1), (10, 200, 30))
    out = preprocess(strip, 224, (0, 0, 0), (1, 1, 1))
    assert out.shape == (3, 224, 224)
    np.testing.assert_allclose(out[:, 100, 100], np.array([10, 200, 30]) / 255, atol=1e-6)


def test_image_size_must_be_positive_int():
    with pytest.raises(ValueError, match="image_size"):
        preprocess(Image.new("RGB", (10, 10)), 0, MEAN, STD)


# --------------------------------------------------------------------------------------------
# EXIF orientation


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, orientation):
    upright = images.marker_image(64, 48)
    path = images.write_exif_rotated(tmp_path / "o.png", upright, orientation)
    with Image.open(path) as stored:
        assert stored.size == ((48, 64) if orientation >= 5 else (64, 48))
    got = open_image(path)
    assert got.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(got), np.asarray(upright))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_on_jpeg_exact_and_fast_paths(tmp_path, orientation):
    # Odd sizes, not multiples of 8: libjpeg's partial last block must land on the right edge.
    upright = images.write_photo_jpeg(tmp_path / "up.jpg", 1203, 901, seed=5, quality=95)
    rotated = images.write_photo_jpeg(
        tmp_path / "rot.jpg", 1203, 901, seed=5, quality=95, orientation=orientation
    )
    assert open_image(rotated).size == (1203, 901)
    exact_up = load_and_preprocess(upright, 64, MEAN, STD, fast=False)
    exact_rot = load_and_preprocess(rotated, 64, MEAN, STD, fast=False)
    fast_rot = load_and_preprocess(rotated, 64, MEAN, STD, fast=True)
    assert pixel_mad(exact_rot, exact_up) < 0.5 / 255  # only JPEG re-compression differs
    # Measured ~0.63/255 (the fast path on the upright file: ~0.62/255). Mapping the crop
    # without moving libjpeg's partial edge block to the flipped side gives 2.6-5.4/255.
    assert pixel_mad(fast_rot, exact_up) < 1 / 255


def test_draft_size_is_in_displayed_orientation(tmp_path):
    # Displayed 1600x1200, stored sideways as 1200x1600.
    path = images.write_photo_jpeg(tmp_path / "r.jpg", 1600, 1200, seed=2, orientation=6)
    assert open_image(path).size == (1600, 1200)
    # Asked as displayed (200, 150): 1/8 scale fits. Had the request gone to libjpeg
    # unswapped, (200, 150) against stored 1200x1600 would only allow 1/4 -> 400x300.
    assert open_image(path, draft_size=(200, 150)).size == (200, 150)
    assert open_image(path, draft_size=(201, 150)).size == (400, 300)


def test_pil_image_input_is_not_modified(tmp_path):
    path = images.write_exif_rotated(tmp_path / "o.jpg", images.marker_image(), 6)
    with Image.open(path) as img:
        before = (img.size, img.mode)
        got = open_image(img)
        assert (img.size, img.mode) == before
        assert got.size == (64, 48)
        out = load_and_preprocess(img, 32, MEAN, STD)
        assert out.shape == (3, 32, 32)


# --------------------------------------------------------------------------------------------
# Odd modes and formats


def rgb_at(img: Image.Image, x: int, y: int) -> tuple[int, int, int]:
    assert img.mode == "RGB"
    return tuple(int(v) for v in img.getpixel((x, y)))


def test_palette_without_transparency(tmp_path):
    img = open_image(images.write_palette_png(tmp_path / "p.png", transparency=False))
    assert rgb_at(img, 5, 5) == (10, 20, 30)
    assert rgb_at(img, 30, 5) == (200, 100, 50)
    assert rgb_at(img, 50, 5) == (0, 255, 0)


def test_palette_with_transparency_is_black_where_transparent(tmp_path):
    img = open_image(images.write_palette_png(tmp_path / "p.png", transparency=True))
    assert rgb_at(img, 5, 5) == (0, 0, 0)  # index 0 is transparent
    assert rgb_at(img, 30, 5) == (200, 100, 50)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_follows_reference(tmp_path, mode):
    img = open_image(images.write_alpha_png(tmp_path / "a.png", mode))
    colour = (200, 120, 40) if mode == "RGBA" else (rgb_at(img, 5, 5)[0],) * 3
    assert rgb_at(img, 5, 5) == colour  # opaque
    assert rgb_at(img, 45, 5) == colour  # half transparent: raw colour, as the reference
    assert rgb_at(img, 80, 5) == (0, 0, 0)  # fully transparent: black, as the reference


def test_alpha_close_to_reference_pipeline(tmp_path):
    # The reference resizes the RGBA picture, crops, *then* converts to RGB.
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (300, 400, 4), dtype=np.uint8)
    a[:, :150, 3] = 255
    a[:, 150:250, 3] = 90
    a[:, 250:, 3] = 0
    rgba = Image.fromarray(a)
    new_size, crop = (298, 224), (37, 0, 261, 224)
    ref_img = rgba.resize(new_size, Image.Resampling.BICUBIC).crop(crop).convert("RGB")
    ref = (np.asarray(ref_img, np.float32) / 255 - MEAN) / STD
    ours = preprocess(open_image(rgba), 224, MEAN, STD)
    assert pixel_mad(ours, ref.transpose(2, 0, 1)) < 1 / 255


def test_pa_mode_in_memory():
    img = Image.new("PA", (4, 4))
    img.putpalette([0, 0, 0, 250, 20, 10] + [0] * 762)
    img.putdata([(1, 255)] * 8 + [(1, 0)] * 8)
    got = open_image(img)
    assert rgb_at(got, 0, 0) == (250, 20, 10)
    assert rgb_at(got, 0, 3) == (0, 0, 0)


def test_cmyk_jpeg(tmp_path):
    img = open_image(images.write_cmyk_jpeg(tmp_path / "c.jpg"))
    r, g, b = rgb_at(img, 5, 5)
    assert r < 20 and g > 235 and b > 235  # cyan
    assert max(rgb_at(img, 40, 5)) < 20  # black


def test_ycbcr(tmp_path):
    from_file = open_image(images.write_ycbcr_jpeg(tmp_path / "y.jpg"))
    assert all(abs(v - 128) <= 2 for v in rgb_at(from_file, 3, 3))
    in_memory = open_image(Image.new("YCbCr", (8, 8), (128, 128, 128)))
    assert all(abs(v - 128) <= 1 for v in rgb_at(in_memory, 3, 3))


def test_16bit_grey_is_scaled_not_clipped(tmp_path):
    path = images.write_grey16_png(tmp_path / "g16.png", value=32768)
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")
    img = open_image(path)
    assert rgb_at(img, 5, 5) == (128, 128, 128)  # the reference's convert() would give 255
    ramp = [rgb_at(img, x, 29)[0] for x in range(40)]
    assert ramp[0] == 0 and ramp[-1] == 255 and ramp == sorted(ramp)


def test_32bit_int_mode_with_16bit_values():
    img = Image.fromarray(np.full((4, 4), 65535, np.int32))
    assert img.mode == "I"
    assert rgb_at(open_image(img), 1, 1) == (255, 255, 255)
    assert rgb_at(open_image(Image.fromarray(np.full((4, 4), 100, np.int32))), 1, 1) == (
        100,
        100,
        100,
    )


def test_float_tiff(tmp_path):
    img = open_image(images.write_float_tiff(tmp_path / "f.tif"))
    assert rgb_at(img, 0, 0) == (0, 0, 0)
    assert rgb_at(img, 49, 0) == (255, 255, 255)
    assert 120 <= rgb_at(img, 25, 0)[0] <= 135


def test_one_bit(tmp_path):
    img = open_image(images.write_1bit_png(tmp_path / "b.png"))
    assert rgb_at(img, 5, 5) == (0, 0, 0)
    assert rgb_at(img, 30, 5) == (255, 255, 255)


def test_grey_jpeg(tmp_path):
    img = open_image(images.write_grey_jpeg(tmp_path / "g.jpg"))
    a = np.asarray(img)
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()


@pytest.mark.parametrize("compression", [None, "tiff_lzw", "tiff_deflate"])
def test_tiff(tmp_path, compression):
    img = open_image(images.write_rgb_tiff(tmp_path / "t.tif", compression))
    np.testing.assert_array_equal(np.asarray(img), np.asarray(images.marker_image()))


@pytest.mark.parametrize("suffix", [".gif", ".png", ".webp"])
def test_animation_gives_first_frame(tmp_path, suffix):
    path = images.write_animated(tmp_path / f"anim{suffix}")
    with Image.open(path) as raw:
        assert raw.n_frames == 3
    img = open_image(path)
    assert img.size == (32, 24)
    assert rgb_at(img, 10, 10) == images.ANIMATION_COLOURS[0]


def test_mpo_gives_first_picture(tmp_path):
    path = images.write_mpo(tmp_path / "m.jpg")
    img = open_image(path)
    r, g, b = rgb_at(img, 2, 2)
    assert r > 230 and g < 30 and b < 30  # the red marker, not the green second picture
    assert load_and_preprocess(path, 32, MEAN, STD).shape == (3, 32, 32)


# --------------------------------------------------------------------------------------------
# Bad input


def bad_files(tmp_path: Path) -> dict[str, Path]:
    unsupported = tmp_path / "photo.heic"
    unsupported.write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(range(256)) * 4)
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    return {
        "missing": tmp_path / "nowhere.jpg",
        "zero-byte": images.write_zero_byte(tmp_path / "empty.jpg"),
        "text": images.write_text_as_jpeg(tmp_path / "list.jpg"),
        "truncated": images.write_truncated_jpeg(tmp_path / "cut.jpg"),
        "unsupported": unsupported,
        "folder": folder,
    }


EXPECTED_REASON = {
    "missing": "not found",
    "zero-byte": "empty",
    "text": "not an image",
    "truncated": "truncated",
    # A HEIC's box header with no image behind it: libheif finds none (damaged, not "not an
    # image": the name and the header both say HEIC).
    "unsupported": "HEIC file is truncated or damaged",
    "folder": "folder",
}


@pytest.mark.parametrize("kind", sorted(EXPECTED_REASON))
@pytest.mark.parametrize("how", ["open_image", "exact", "fast"])
def test_bad_input_raises_image_error_naming_the_file(tmp_path, kind, how):
    path = bad_files(tmp_path)[kind]
    with pytest.raises(ImageError) as info:
        if how == "open_image":
            open_image(path)
        else:
            load_and_preprocess(path, 32, MEAN, STD, fast=how == "fast")
    assert type(info.value) is ImageError
    assert str(path) in str(info.value)
    assert EXPECTED_REASON[kind] in str(info.value)
    assert info.value.path == path


def test_truncated_jpeg_is_an_error_not_grey(tmp_path):
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    for keep in (0.1, 0.5, 0.95):
        path = images.write_truncated_jpeg(tmp_path / f"cut{keep}.jpg", keep=keep)
        with pytest.raises(ImageError, match="truncated"):
            open_image(path)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads unreadable files"
)
def test_unreadable_file(tmp_path):
    path = images.write_grey_jpeg(tmp_path / "secret.jpg")
    path.chmod(0)
    try:
        with pytest.raises(ImageError, match="permission denied") as info:
            open_image(path)
        assert str(path) in str(info.value)
    finally:
        path.chmod(0o600)


# --------------------------------------------------------------------------------------------
# Decompression-bomb guard


def test_200_megapixel_png_is_refused_from_the_header(tmp_path):
    path = images.write_huge_png(tmp_path / "bomb.png")
    assert path.stat().st_size < 1_000_000
    allocated_before = Image.core.get_stats()["new_count"]
    start = time.perf_counter()
    with pytest.raises(ImageTooLarge) as info:
        load_and_preprocess(path, 224, MEAN, STD)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5  # decoding 200 MP would take seconds
    assert Image.core.get_stats()["new_count"] == allocated_before  # no pixel memory at all
    message = str(info.value)
    assert str(path) in message and "20000x10000" in message and "100 megapixels" in message
    assert info.value.path == path


def test_pixel_limit_is_configurable(tmp_path):
    path = images.write_grey_jpeg(tmp_path / "g.jpg")  # 64x48 = 3072 pixels
    with pytest.raises(ImageTooLarge, match="0.003072 megapixels"):
        open_image(path, max_pixels=3000)
    assert open_image(path, max_pixels=3072).size == (64, 48)
    assert open_image(path, max_pixels=None).size == (64, 48)
    with pytest.raises(ImageTooLarge):
        open_image(Image.new("RGB", (100, 100)), max_pixels=9999)
    assert DEFAULT_MAX_PIXELS == 100_000_000


def test_pillow_guard_does_not_speak_first(tmp_path):
    # Importing preprocess silences Pillow's own limits (a warning above ~89 MP, an error
    # above ~179 MP) so that only our guard, with the file name in its message, decides.
    path = images.write_huge_png(tmp_path / "bomb.png")
    with Image.open(path) as img:  # Pillow would raise DecompressionBombError here
        assert img.size == (20_000, 10_000)


# --------------------------------------------------------------------------------------------
# Fast path


@pytest.fixture(scope="module")
def photo_12mp(tmp_path_factory) -> Path:
    return images.write_photo_jpeg(tmp_path_factory.mktemp("photo") / "12mp.jpg", seed=7)


def test_fast_path_close_to_full_decode_on_12mp_jpeg(photo_12mp):
    exact = load_and_preprocess(photo_12mp, 224, MEAN, STD, fast=False)
    fast = load_and_preprocess(photo_12mp, 224, MEAN, STD, fast=True)
    # Measured ~0.55/255 (DCT 1/8 scale, 500x375 decode); the budget is 2/255.
    assert pixel_mad(fast, exact) <= 2 / 255
    assert open_image(photo_12mp, draft_size=(336, 336)).size == (500, 375)


def test_exact_path_is_preprocess_of_open_image(photo_12mp):
    exact = load_and_preprocess(photo_12mp, 224, MEAN, STD, fast=False)
    np.testing.assert_array_equal(exact, preprocess(open_image(photo_12mp), 224, MEAN, STD))


def test_fast_path_for_png_uses_box_reduction(tmp_path):
    path = tmp_path / "p.png"
    Image.fromarray(images.photo_like_array(1601, 1203, seed=4)).save(path, compress_level=1)
    exact = load_and_preprocess(path, 224, MEAN, STD, fast=False)
    fast = load_and_preprocess(path, 224, MEAN, STD, fast=True)
    assert pixel_mad(fast, exact) <= 2 / 255


def test_fast_path_on_small_jpeg_does_not_upsample_from_a_tiny_draft(tmp_path):
    path = images.write_photo_jpeg(tmp_path / "s.jpg", 300, 250, seed=9)
    exact = load_and_preprocess(path, 224, MEAN, STD, fast=False)
    fast = load_and_preprocess(path, 224, MEAN, STD, fast=True)
    assert pixel_mad(fast, exact) < 0.5 / 255  # no draft possible: same pixels, box resize


@pytest.mark.parametrize("size", [(224, 1000), (1000, 224), (2689, 337), (337, 2689), (1801, 1799)])
@pytest.mark.parametrize("orientation", [1, 7])
def test_fast_path_on_edge_sizes(tmp_path, size, orientation):
    # Crops that touch the picture's edges, widths that are not multiples of 8, and a
    # transverse orientation (both axes flipped and swapped) must all stay inside the image.
    path = images.write_photo_jpeg(tmp_path / "e.jpg", *size, seed=11, orientation=orientation)
    exact = load_and_preprocess(path, 224, MEAN, STD, fast=False)
    fast = load_and_preprocess(path, 224, MEAN, STD, fast=True)
    assert pixel_mad(fast, exact) <= 2 / 255
