"""export.synth: generated shapes with COCO-format captions, deterministic by seed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from export import synth
from export.__main__ import main as export_main
from photofind.evaluate import read_captions

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synth.write_dataset(out, count=60, seed=5)
    return out


def _load(folder: Path) -> dict:
    return json.loads((folder / "captions.json").read_text(encoding="utf-8"))


def test_enough_distinct_attributes():
    assert len(synth.SHAPES) >= 5
    assert len(synth.COLOURS) >= 6
    assert set(synth.SIZES) == {"small", "large"}
    assert {"top left", "centre", "bottom right"} <= set(synth.POSITIONS)
    assert {"plain", "gradient", "noisy"} <= set(synth.BACKGROUND_KINDS)


def test_captions_file_is_coco_format(dataset):
    data = _load(dataset)
    images, annotations = data["images"], data["annotations"]
    assert len(images) == 60
    assert len({img["id"] for img in images}) == 60
    assert len({ann["id"] for ann in annotations}) == len(annotations)
    by_image = {img["id"]: [] for img in images}
    for ann in annotations:
        assert set(ann) == {"id", "image_id", "caption"}
        by_image[ann["image_id"]].append(ann["caption"])
    assert all(len(texts) == 3 for texts in by_image.values())
    for img in images:
        with Image.open(dataset / img["file_name"]) as opened:
            assert opened.size == (img["width"], img["height"])
            assert opened.format == {"jpg": "JPEG", "png": "PNG"}[img["file_name"][-3:]]
    # Our own reader accepts it, which is what `photofind eval` will do.
    assert len(read_captions(dataset / "captions.json", dataset)) == 60


def test_mix_of_formats_sizes_and_object_counts(dataset):
    images = _load(dataset)["images"]
    assert {img["file_name"][-3:] for img in images} == {"jpg", "png"}
    assert len({(img["width"], img["height"]) for img in images}) >= 4
    assert any(img["width"] != img["height"] for img in images)
    counts = {len(img["synth"]["objects"]) for img in images}
    assert counts == {1, 2, 3}
    kinds = {img["synth"]["background"]["kind"] for img in images}
    assert len(kinds) >= 4


def test_every_caption_names_every_object_and_the_background(dataset):
    data = _load(dataset)
    captions = {}
    for ann in data["annotations"]:
        captions.setdefault(ann["image_id"], []).append(ann["caption"])
    for img in data["images"]:
        attributes = img["synth"]
        for text in captions[img["id"]]:
            words = text.replace(",", "").split()
            for obj in attributes["objects"]:
                assert obj["colour"] in words, text
                assert obj["shape"] in text, text  # "circle" or "circles"
                assert ("small" in words) == (obj["size"] == "small") or len(
                    attributes["objects"]
                ) > 1, text
            assert attributes["background"]["colour"] in words, text
            assert "background" in words, text
        assert len(set(captions[img["id"]])) > 1, "captions should vary in phrasing"


def test_object_colours_stand_out_from_the_background(dataset):
    for img in _load(dataset)["images"]:
        background = img["synth"]["background"]["colour"]
        for obj in img["synth"]["objects"]:
            assert obj["colour"] != background


def test_same_seed_same_bytes_and_prefix_stability(tmp_path):
    first = synth.write_dataset(tmp_path / "a", count=8, seed=11)
    second = synth.write_dataset(tmp_path / "b", count=12, seed=11)
    a, b = json.loads(first.read_text()), json.loads(second.read_text())
    assert a["images"] == b["images"][:8]
    assert a["annotations"] == b["annotations"][: len(a["annotations"])]
    for img in a["images"]:
        name = img["file_name"]
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_other_seed_and_training_stream_differ():
    public = [synth.make_scene(synth.scene_rng(0, i)) for i in range(20)]
    other = [synth.make_scene(synth.scene_rng(1, i)) for i in range(20)]
    train = [synth.make_scene(synth.scene_rng(0, i, synth.STREAM_TRAIN)) for i in range(20)]
    assert public != other
    assert public != train


def test_rendered_object_has_its_colour_where_it_should_be():
    scene = synth.Scene(
        objects=(synth.SynthObject("square", "red", "large", "top left"),),
        background="plain",
        background_colour="blue",
        width=300,
        height=300,
        format="png",
        render_seed=1,
    )
    pixels = np.asarray(synth.render(scene), dtype=int)
    red = synth.COLOURS["red"]
    top_left = pixels[50, 50]
    assert np.abs(top_left - red).max() <= 15
    assert np.abs(pixels[250, 250] - synth.BACKGROUND_COLOURS["blue"]).max() <= 15


def test_describe_can_leave_attributes_out():
    rng = np.random.default_rng(0)
    scene = synth.make_scene(synth.scene_rng(3, 0))
    obj = scene.objects[0]
    bare = synth.describe(scene, rng, only=obj, size=False, position=False, background=False)
    assert bare.endswith(f"{obj.colour} {obj.shape}")
    assert "background" not in bare


def test_cli_writes_the_set(tmp_path, capsys):
    out = tmp_path / "cli"
    assert export_main(["synth", "--out", str(out), "--count", "3", "--seed", "2"]) == 0
    assert len(_load(out)["images"]) == 3
    assert "wrote 3 images" in capsys.readouterr().out


def test_importable_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from export import synth\n"
        "synth.render(synth.make_scene(synth.scene_rng(0, 0)))\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
