"""Every still kind photofind reads decodes upright, in sRGB, through one function, and
indexes, thumbnails and previews; test files come from real encoders (tests/still_files.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import still_files as sf
from PIL import Image

from photofind.clip.preprocess import open_image
from photofind.errors import ImageError, ImageTooLarge
from photofind.formats import raw
from photofind.formats.decode import stored_size
from photofind.formats.frames import frames, is_animated
from photofind.formats.kinds import (
    PHOTO,
    RAW,
    RAW_EXTENSIONS,
    SUPPORTED_EXTENSIONS,
    kind_of,
    type_extensions,
)
from photofind.library.exif import capture_date

RED, BLUE = (200, 40, 40), (40, 60, 200)


def halves(size=(120, 80)) -> Image.Image:
    """Red on the left half, blue on the right: orientation and colour in one picture."""
    w, h = size
    img = Image.new("RGB", size, RED)
    img.paste(BLUE, (w // 2, 0, w, h))
    return img


def at(img: Image.Image, fx: float, fy: float) -> np.ndarray:
    a = np.asarray(img, dtype=np.int32)
    return a[int(fy * (a.shape[0] - 1)), int(fx * (a.shape[1] - 1))]


def close(got, want, tol) -> bool:
    return bool(np.abs(np.asarray(got, np.int32) - np.asarray(want, np.int32)).max() <= tol)


def reddish(px) -> bool:
    return px[0] > 150 and px[0] > 2 * px[1] and px[0] > 2 * px[2]


def bluish(px) -> bool:
    return px[2] > 150 and px[2] > 2 * px[0] and px[2] > 1.5 * px[1]


# --------------------------------------------------------------------------- the list of kinds


def test_the_one_list_holds_every_kind_of_the_issue():
    for ext in (".heic", ".heif", ".avif", ".jxl", ".psd", ".apng", ".tif", ".webp"):
        assert kind_of("x" + ext.upper()) == PHOTO
    raws = "dng cr2 cr3 nef nrw arw srf sr2 raf orf rw2 pef srw 3fr iiq erf mef mos x3f"
    assert {"." + e for e in raws.split()} == RAW_EXTENSIONS
    assert kind_of("IMG_0001.CR3") == RAW and RAW_EXTENSIONS <= SUPPORTED_EXTENSIONS
    assert set(type_extensions("RAW")) == {e[1:] for e in RAW_EXTENSIONS}
    assert type_extensions("jpg") == ("jpg", "jpeg", "jpe")
    assert set(type_extensions("heif")) == {"heic", "heif", "hif"}
    assert type_extensions("xyz") == ("xyz",)


# --------------------------------------------------------------------------- HEIC / HEIF


def test_heic_decodes_with_its_exif_date(tmp_path):
    path = sf.write_heic(tmp_path / "a.heic", halves(), taken="2021:05:06 07:08:09")
    img = open_image(path)
    assert img.size == (120, 80) and img.mode == "RGB"
    assert close(at(img, 0.1, 0.5), RED, 8) and close(at(img, 0.9, 0.5), BLUE, 8)
    assert capture_date(path) == "2021-05-06T07:08:09"
    assert stored_size(path) == (120, 80)


@pytest.mark.parametrize(
    ("orientation", "size", "red_at"),
    [(6, (80, 120), (0.5, 0.1)), (3, (120, 80), (0.9, 0.5)), (8, (80, 120), (0.5, 0.9))],
)
def test_heic_transforms_turn_it_upright_once(tmp_path, orientation, size, red_at):
    # pillow-heif writes the orientation as irot/imir, as an iPhone does; libheif applies
    # them and the EXIF orientation handed on is 1, so nothing is turned twice.
    path = sf.write_heic(tmp_path / "r.heic", halves(), orientation=orientation)
    img = open_image(path)
    assert img.size == size
    assert reddish(at(img, *red_at))


def test_a_heic_thumbnail_stands_in_when_it_is_large_enough(tmp_path):
    big = halves((1200, 900))
    path = sf.write_heic(tmp_path / "t.heic", big, orientation=6, thumbnails=[320])
    small = open_image(path, draft_size=(200, 200))
    assert small.size == (240, 320)  # the stored copy, upright like the image
    assert reddish(at(small, 0.5, 0.1)) and bluish(at(small, 0.5, 0.9))
    assert open_image(path, draft_size=(400, 400)).size == (900, 1200)  # too small: the image
    assert open_image(path).size == (900, 1200)
    # The analysers' fast path maps its crop onto the copy: the same picture comes out.
    from photofind.clip.preprocess import load_and_preprocess

    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    fast = load_and_preprocess(path, 64, mean, std)  # 1.5 x 64 = 96 <= 240: the copy
    exact = load_and_preprocess(path, 64, mean, std, fast=False)
    assert np.abs(fast - exact).mean() * 0.25 < 0.02


def test_a_10_bit_heic_maps_to_8_bits_by_its_range(tmp_path):
    path = sf.write_heic_10bit(tmp_path / "t.heic", halves())
    import pillow_heif

    assert pillow_heif.open_heif(path, convert_hdr_to_8bit=False).info["bit_depth"] == 10
    img = open_image(path)
    assert img.mode == "RGB"
    # Not clipped to white nor shifted to black: the same colours as the 8-bit source.
    assert close(at(img, 0.1, 0.5), RED, 8) and close(at(img, 0.9, 0.5), BLUE, 8)


def test_a_heic_burst_is_read_by_its_primary_image(tmp_path):
    shots = [Image.new("RGB", (64, 48), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    path = sf.write_heic_burst(tmp_path / "b.heic", shots, primary=1)
    assert close(at(open_image(path), 0.5, 0.5), (0, 255, 0), 8)


# --------------------------------------------------------------------------- AVIF, JPEG XL, TIFF, ...


def test_avif_through_pillows_own_plugin(tmp_path):
    from PIL import features

    assert features.check("avif")  # Pillow 11.2+: no pillow-avif-plugin needed
    path = sf.write_avif(tmp_path / "a.avif", halves(), taken="2022:01:02 03:04:05")
    img = open_image(path)
    assert close(at(img, 0.1, 0.5), RED, 10) and close(at(img, 0.9, 0.5), BLUE, 10)
    assert capture_date(path) == "2022-01-02T03:04:05"


def test_jpeg_xl_through_pillow_jxl_plugin(tmp_path):
    img = open_image(sf.write_jxl(tmp_path / "a.jxl", halves()))
    assert close(at(img, 0.1, 0.5), RED, 8) and close(at(img, 0.9, 0.5), BLUE, 8)


def test_a_multi_page_tiff_gives_its_first_page(tmp_path):
    path = sf.write_multipage_tiff(
        tmp_path / "m.tif", [halves(), Image.new("RGB", (30, 30), (0, 255, 0))]
    )
    img = open_image(path)
    assert img.size == (120, 80) and close(at(img, 0.1, 0.5), RED, 0)


def test_a_psd_gives_its_composite(tmp_path):
    img = open_image(sf.write_psd(tmp_path / "a.psd", halves()))
    assert img.size == (120, 80)
    assert close(at(img, 0.1, 0.5), RED, 0) and close(at(img, 0.9, 0.5), BLUE, 0)


@pytest.mark.parametrize("space", ["display-p3", "adobe-rgb"])
def test_an_icc_profile_is_converted_to_srgb(tmp_path, space):
    path = sf.write_profiled_jpeg(tmp_path / f"{space}.jpg", halves(), space)
    with Image.open(path) as stored:
        as_stored = at(stored.convert("RGB"), 0.1, 0.5)
    assert not close(as_stored, RED, 10)  # the file's numbers are another space's
    img = open_image(path)
    assert close(at(img, 0.1, 0.5), RED, 6) and close(at(img, 0.9, 0.5), BLUE, 6)


def test_a_cmyk_jpeg_looks_right(tmp_path):
    a = np.zeros((32, 48, 4), np.uint8)
    a[:, :24, 1:3] = 255  # magenta + yellow: red
    cmyk = Image.frombytes("CMYK", (48, 32), a.tobytes())
    cmyk.save(tmp_path / "c.jpg", quality=95)
    img = open_image(tmp_path / "c.jpg")
    assert reddish(at(img, 0.2, 0.5)) and close(at(img, 0.8, 0.5), (255, 255, 255), 6)


@pytest.mark.parametrize("name", ["a.gif", "a.webp", "a.png"])
def test_an_animation_gives_its_frames_with_their_times(tmp_path, name):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    shots = [Image.new("RGB", (24, 16), c) for c in colours]
    path = sf.write_animation(tmp_path / name, shots, [1000, 500, 500, 250])
    assert is_animated(path)
    got = list(frames(path))
    assert [f.time_s for f in got] == [0.0, 1.0, 1.5, 2.0]
    assert all(close(at(f.image, 0.5, 0.5), c, 6) for f, c in zip(got, colours))
    # Sampled evenly over time: the long first frame counts for its 1 s of 2.25 s.
    assert [f.time_s for f in frames(path, max_frames=2)] == [0.0, 1.0]
    assert close(at(open_image(path), 0.5, 0.5), colours[0], 6)  # indexed by its first
    still = sf.write_heic(tmp_path / "still.heic", halves())
    assert [f.time_s for f in frames(still)] == [0.0] and not is_animated(still)


# --------------------------------------------------------------------------- RAW


def test_a_dng_without_preview_is_demosaiced_at_half_size(tmp_path):
    path = sf.write_dng(tmp_path / "a.dng", halves(), taken="2020:03:04 05:06:07")
    got = raw.decode_raw(path, None, (32, 32))
    assert got.source == raw.DEMOSAIC and got.image.size == (60, 40)
    img = open_image(path)
    assert reddish(at(img, 0.1, 0.5)) and bluish(at(img, 0.9, 0.5))
    assert capture_date(path) == "2020-03-04T05:06:07"
    assert stored_size(path) == (120, 80)


@pytest.mark.parametrize(
    ("orientation", "red_at"), [(6, (0.5, 0.1)), (8, (0.5, 0.9)), (3, (0.9, 0.5))]
)
def test_a_raw_is_turned_upright_by_its_own_orientation(tmp_path, orientation, red_at):
    path = sf.write_dng(tmp_path / "r.dng", halves(), orientation=orientation)
    demosaiced = open_image(path)
    with_preview = sf.write_dng(
        tmp_path / "p.dng", halves(), orientation=orientation, preview=halves((1200, 800))
    )
    previewed = open_image(with_preview, draft_size=(100, 100))
    for img in (demosaiced, previewed):
        assert (img.width > img.height) == (orientation == 3)
        assert reddish(at(img, *red_at))


def test_the_embedded_preview_is_used_when_large_enough_else_the_demosaic(tmp_path):
    path = sf.write_dng(tmp_path / "p.dng", halves(), preview=halves((1200, 800)))
    small = raw.decode_raw(path, None, (300, 300))
    assert small.source == raw.PREVIEW
    # libjpeg decoded the preview reduced, and it still covers what was asked.
    assert small.scale == 2 and small.image.size == (600, 400)
    assert raw.decode_raw(path, None, (900, 900)).source == raw.DEMOSAIC
    # A thumbnail-sized preview (160 x 120) never stands in for an analyser's picture.
    tiny = sf.write_dng(tmp_path / "t.dng", halves(), preview=halves((160, 106)))
    assert raw.decode_raw(tiny, None, (224, 224)).source == raw.DEMOSAIC
    assert raw.decode_raw(tiny, None, (100, 100)).source == raw.PREVIEW


def test_a_raw_over_the_pixel_limit_is_refused_before_decoding(tmp_path):
    path = sf.write_dng(tmp_path / "a.dng", halves())
    with pytest.raises(ImageTooLarge, match="120x80 pixels"):
        open_image(path, max_pixels=9000)


# --------------------------------------------------------------------------- bad input


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    heic = sf.write_heic(tmp_path / "good.heic", halves()).read_bytes()
    (tmp_path / "cut.heic").write_bytes(heic[: len(heic) // 2])
    (tmp_path / "empty.dng").write_bytes(b"")
    dng = sf.write_dng(tmp_path / "good.dng", halves()).read_bytes()
    (tmp_path / "cut.dng").write_bytes(dng[: len(dng) // 2])
    (tmp_path / "text.nef").write_bytes(b"not a raw file at all " * 20)
    return {
        "cut.heic": "the HEIC file is truncated or damaged",
        "empty.dng": "the file is empty (0 bytes)",
        "cut.dng": "the RAW file is truncated or damaged",
        "text.nef": "not a camera RAW file LibRaw can read",
    }


def test_bad_files_raise_an_image_error_with_the_reason(tmp_path):
    for name, why in bad_files(tmp_path).items():
        with pytest.raises(ImageError) as info:
            open_image(tmp_path / name)
        assert why in str(info.value) and str(tmp_path / name) in str(info.value)


def test_a_jpeg_named_heic_is_read_as_the_jpeg_it_is(tmp_path):
    # Phones' exports and chat apps leave such files; the content decides, so the photo
    # is not lost for its name.
    halves().save(tmp_path / "really-a-jpeg.heic", "JPEG", quality=95)
    assert close(at(open_image(tmp_path / "really-a-jpeg.heic"), 0.1, 0.5), RED, 8)


@pytest.mark.parametrize("kind", ["heic", "dng"])
def test_faces_are_found_in_a_sideways_heic_and_raw(tmp_path, kind):
    """The face pass decodes through photofind.formats too: a phone's HEIC held sideways
    and a RAW, each turned upright by its own metadata, show dlib upright faces."""
    pytest.importorskip("dlib", reason="dlib (the dlib-bin wheel) is not installed")
    import faces_data

    photo = faces_data.FACES / "knn_examples" / "test" / "obama_and_biden.jpg"
    if not photo.is_file():
        pytest.skip(f"{photo}: the shared face photos are not there")
    from photofind.faces import FaceModel

    with Image.open(photo) as upright:
        # Stored turned a quarter to the left, as a camera held sideways stores it;
        # orientation 6 says "turn right to view".
        stored = upright.convert("RGB").transpose(Image.Transpose.ROTATE_90)
    if kind == "heic":
        path = sf.write_heic(tmp_path / "sideways.heic", stored, orientation=6)
    else:
        # With its full-size preview, as cameras write (a half-size demosaic of this
        # 1 MP photo would leave faces below the detector's smallest).
        path = sf.write_dng(tmp_path / "sideways.dng", stored, orientation=6, preview=stored)
    picture = open_image(path)
    assert picture.size[0] > picture.size[1]  # upright: the photo is landscape
    assert len(FaceModel().find(picture)) == 3
