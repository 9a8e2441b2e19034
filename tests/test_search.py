"""SearchEngine on a real library: generated photos, indexed with a real (random-weight) model."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photofind.clip import load_model
from photofind.clip.package import read_manifest, write_manifest
from photofind.library.library import Library
from photofind.query import Query
from photofind.relevance import CutoffPolicy, robust_threshold
from photofind.search import SearchEngine, SearchError, SearchFilter
from photofind.synthetic import encode, generate

QUERY = "a red circle on a white background"
COUNT = 200
FAR = 10  # photos ranked last for QUERY, put in a folder (and a year) of their own


class CountingModel:
    """The real model, with a count of its encoder calls."""

    def __init__(self, model):
        self._model = model
        self.calls: Counter = Counter()

    def __getattr__(self, name):
        attr = getattr(self._model, name)
        if name.startswith("encode"):

            def counted(*args, **kwargs):
                self.calls[name] += 1
                return attr(*args, **kwargs)

            return counted
        return attr


def _stamp(path: Path, year: int) -> None:
    t = datetime(year, 6, 1, 12, 0, 0).timestamp()
    os.utime(path, (t, t))


@pytest.fixture(scope="module")
def world(model, tmp_path_factory):
    """A library of COUNT photos; the FAR worst matches of QUERY sit in photos/far, dated 2001."""
    root = tmp_path_factory.mktemp("search")
    near, far = root / "photos" / "near", root / "photos" / "far"
    near.mkdir(parents=True)
    far.mkdir()
    files = []
    for i in range(COUNT):
        scene, image, _ = generate(7, i)
        path = near / f"p{i:03d}.{scene.format}"
        path.write_bytes(encode(image, scene.format))
        files.append(path)
    scores = model.encode_images(files) @ model.encode_texts(QUERY)[0]
    for i in np.argsort(scores)[:FAR]:
        files[i] = files[i].rename(far / files[i].name)
    for path in files:
        _stamp(path, 2001 if path.parent == far else 2020)
    with Library.open(root / "lib") as library:
        library.add_folder(root / "photos")
        library.scan()
        stats = library.index_pending(model)
        assert stats.indexed == COUNT
    library = Library.open(root / "lib", readonly=True)
    yield {"root": root, "library": library, "near": near, "far": far}
    library.close()


@pytest.fixture
def engine(world, model):
    return SearchEngine(world["library"], CountingModel(model))


def exact(library, vector, allowed=None, k=10):
    """Brute-force ranking over the catalog's stored embeddings."""
    ids, vecs = map(np.concatenate, zip(*library.catalog.embeddings()))
    if allowed is not None:
        mask = np.isin(ids, list(allowed))
        ids, vecs = ids[mask], vecs[mask]
    scores = vecs @ vector
    order = np.argsort(-scores, kind="stable")[:k]
    return ids[order].tolist(), scores[order]


def test_text_search_returns_k_results_best_first(engine, world):
    results = engine.search(QUERY, k=10, cutoff=False)
    assert len(results) == 10
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)
    ids, expected = exact(world["library"], engine.text_vector(QUERY))
    assert [r.photo_id for r in results] == ids
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    for r in results:
        assert Path(r.path).is_file()
        assert world["library"].catalog.photo(r.photo_id).path == r.path


def test_pages_continue_the_ranking(engine):
    whole = engine.search(QUERY, k=12, cutoff=False)
    first = engine.search(QUERY, k=6, cutoff=False)
    second = engine.search(QUERY, k=6, offset=6, cutoff=False)
    assert list(first) + list(second) == list(whole)
    assert second.offset == 6 and not second.exhausted
    last = engine.search(QUERY, k=10, offset=COUNT - 4, cutoff=False)
    assert len(last) == 4 and last.exhausted


def test_text_vectors_are_cached(engine):
    engine.search("a blue square", k=3, cutoff=False)
    engine.search("a blue square", k=5, offset=3, cutoff=False)
    engine.search("a blue square + a green star", k=3, cutoff=False)
    info = engine.cache_info()
    assert (info.hits, info.misses, info.size) == (2, 2, 2)
    assert engine.model.calls["encode_texts"] == 2


def test_text_cache_evicts_the_least_recently_used(world, model):
    engine = SearchEngine(world["library"], CountingModel(model), text_cache_size=2)
    for text in ("one", "two", "one", "three", "one", "two"):
        engine.text_vector(text)
    # "two" was evicted by "three" (after "one" was used again), so it is encoded twice.
    assert engine.model.calls["encode_texts"] == 4
    assert engine.cache_info().size == 2


def test_similar_uses_the_stored_vector_and_finds_itself_first(engine, world):
    photo = world["library"].catalog.photo_by_path(str(world["near"] / "p005.png")) or next(
        world["library"].catalog.photos()
    )
    by_id = engine.similar(photo.id, k=5)
    by_path = engine.similar(photo.path, k=5)
    assert engine.model.calls == Counter()  # neither encoder ran
    assert list(by_id) == list(by_path)
    assert by_id[0].photo_id == photo.id
    assert by_id[0].score == pytest.approx(1.0, abs=1e-5)
    stored = world["library"].catalog.embedding(photo.id)
    assert [r.photo_id for r in by_id] == exact(world["library"], stored, k=5)[0]


def test_similar_to_a_file_outside_the_library_encodes_it(engine, world, tmp_path):
    photo = next(world["library"].catalog.photos())
    copy = tmp_path / ("copy" + Path(photo.path).suffix)
    shutil.copyfile(photo.path, copy)
    results = engine.similar(copy, k=3)
    assert engine.model.calls["encode_images"] == 1
    assert results[0].photo_id == photo.id
    assert results[0].score == pytest.approx(1.0, abs=1e-4)


def test_similar_to_a_missing_file_or_unknown_photo_says_so(engine, tmp_path):
    with pytest.raises(SearchError, match="no such picture"):
        engine.similar(tmp_path / "gone.jpg")
    with pytest.raises(SearchError, match="photo 999999 is not in the library"):
        engine.similar(999999)


def test_folder_filter_returns_k_even_when_the_top_hits_are_elsewhere(engine, world):
    library = world["library"]
    far_ids = {p.id for p in library.catalog.photos() if Path(p.path).parent == world["far"]}
    assert len(far_ids) == FAR
    top = engine.search(QUERY, k=COUNT // 2, cutoff=False)
    assert not far_ids & {r.photo_id for r in top}  # the far photos are all filtered away
    results = engine.search(
        QUERY, k=FAR, filter=SearchFilter(folders=(str(world["far"]),)), cutoff=False
    )
    assert len(results) == FAR
    assert {r.photo_id for r in results} == far_ids
    ids, _ = exact(library, engine.text_vector(QUERY), far_ids, k=FAR)
    assert [r.photo_id for r in results] == ids
    fewer = engine.search(QUERY, k=4, filter=SearchFilter(folders=str(world["far"])), cutoff=False)
    assert [r.photo_id for r in fewer] == ids[:4]


def test_date_filter_is_inclusive_at_the_precision_given(engine, world):
    far = engine.search(QUERY, k=50, filter=SearchFilter(after="2001", before="2001"), cutoff=False)
    assert {Path(r.path).parent for r in far} == {world["far"]}
    assert len(far) == FAR
    june = SearchFilter(after="2001-06-01", before="2001-06")
    assert len(engine.search(QUERY, k=50, filter=june, cutoff=False)) == FAR
    later = engine.search(QUERY, k=50, filter=SearchFilter(after="2001-06-02"), cutoff=False)
    assert len(later) == 50 and all(Path(r.path).parent == world["near"] for r in later)
    with pytest.raises(SearchError, match="date 'last week' not understood"):
        SearchFilter(after="last week")


def test_type_filter(engine, world):
    pngs = [p for p in world["library"].catalog.photos() if p.path.endswith(".png")]
    assert 10 < len(pngs) < COUNT - 10
    results = engine.search(QUERY, k=COUNT, filter=SearchFilter(types=("PNG",)), cutoff=False)
    assert len(results) == len(pngs)
    assert all(r.path.endswith(".png") for r in results)
    jpegs = engine.search(QUERY, k=5, filter=SearchFilter(types="jpeg"), cutoff=False)
    assert len(jpegs) == 5 and all(r.path.endswith(".jpg") for r in jpegs)


def test_filters_combine(engine, world):
    f = SearchFilter(folders=(str(world["near"]),), types=("png",), after="2020")
    results = engine.search(QUERY, k=COUNT, filter=f, cutoff=False)
    assert results and all(
        r.path.endswith(".png") and Path(r.path).parent == world["near"] for r in results
    )


def test_combined_query_is_the_normalised_weighted_sum(engine, world):
    library = world["library"]
    photo = next(library.catalog.photos())
    beach, people = engine.text_vector("beach"), engine.text_vector("people")
    stored = library.catalog.embedding(photo.id)

    def unit(v):
        return v / np.linalg.norm(v)

    np.testing.assert_allclose(
        engine.query_vector("2*beach - people"), unit(2 * beach - people), atol=1e-6
    )
    q = Query.image(photo.path) + Query.text("in winter")
    np.testing.assert_allclose(
        engine.query_vector(q), unit(stored + engine.text_vector("in winter")), atol=1e-6
    )
    np.testing.assert_allclose(
        engine.query_vector(f"photo:{photo.id} + in winter"), engine.query_vector(q), atol=1e-6
    )
    assert engine.model.calls["encode_images"] == 0
    results = engine.search(f'img:"{photo.path}" + 0.1*in winter', k=3, cutoff=False)
    assert results[0].photo_id == photo.id
    with pytest.raises(SearchError, match="cancel out"):
        engine.query_vector("beach + people - people - beach")


def test_relevance_cutoff_keeps_what_stands_out(world, model):
    # z = 1 keeps the upper sixth of a normal background: some photos on either side.
    engine = SearchEngine(world["library"], model, policy=CutoffPolicy(z=1.0))
    results = engine.search(QUERY, k=COUNT)
    assert 0 < len(results) < COUNT
    background = world["library"].index.get_vectors(world["library"].index.ids())
    expected = robust_threshold(background @ engine.text_vector(QUERY), 1.0)
    assert results.threshold == pytest.approx(expected, abs=1e-6)
    assert all(r.score >= results.threshold for r in results)
    assert len(results) + results.cut == COUNT
    assert results.exhausted
    no_cut = engine.search(QUERY, k=COUNT, cutoff=False)
    assert list(no_cut)[: len(results)] == list(results)
    assert no_cut[len(results)].score < results.threshold
    # Pages of a cut list end where the cut is, whatever the page size.
    page = engine.search(QUERY, k=len(results), offset=len(results))
    assert len(page) == 0 and page.exhausted


def test_fixed_floor_applies_to_plain_text_only(world, model):
    engine = SearchEngine(world["library"], model, policy=CutoffPolicy(min_score=0.99, z=None))
    assert len(engine.search(QUERY)) == 0
    photo = next(world["library"].catalog.photos())
    assert len(engine.search(f"photo:{photo.id}")) > 0
    assert engine.search(f"photo:{photo.id}").threshold is None


def test_another_models_vectors_are_refused(world, tmp_path):
    from onnx_package import write_random_package

    other = load_model(write_random_package(tmp_path / "other", seed=1), "cpu")
    engine = SearchEngine(world["library"], other)
    with pytest.raises(SearchError, match="holds vectors of model"):
        engine.search("a red circle")


def test_empty_library_gives_no_results(model, tmp_path):
    with Library.open(tmp_path / "lib") as library:
        assert len(SearchEngine(library, model).search("anything")) == 0


def test_model_json_overrides_the_cutoff_policy(random_package, tmp_path):
    folder = tmp_path / "pkg"
    shutil.copytree(random_package, folder)
    spec = read_manifest(folder)
    extra = {**spec.extra, "search": {"min_score": 0.25, "z": None}}
    write_manifest(folder, type(spec)(**{**spec.__dict__, "extra": extra}))
    with Library.open(tmp_path / "lib") as library:
        engine = SearchEngine(library, load_model(folder, "cpu"))
    assert (engine.policy.min_score, engine.policy.z) == (0.25, None)


# ------------------------------------------------------------------------------ tiny-synthetic
# The "done when" on the trained tiny model. Skipped until the model is shipped in
# resources/models/tiny-synthetic (PHOTOFIND_TEST_TINY_MODEL may name a package folder).

TINY_SEED = 4242
TINY_COUNT = 300


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from photofind.clip import available_models

    where = os.environ.get("PHOTOFIND_TEST_TINY_MODEL") or available_models().get("tiny-synthetic")
    if not where:
        pytest.skip("the tiny-synthetic model is not shipped yet")
    model = load_model(where, provider="cpu")
    root = tmp_path_factory.mktemp("tiny-search")
    photos = root / "photos"
    photos.mkdir()
    attributes = {}
    for i in range(TINY_COUNT):
        scene, image, _ = generate(TINY_SEED, i)
        path = photos / f"t{i:03d}.{scene.format}"
        path.write_bytes(encode(image, scene.format))
        attributes[str(path)] = scene
    # Near-copies of photo 0: recompressed, resized, cropped by 10%.
    original = photos / next(p.name for p in sorted(photos.iterdir()))
    copies = []
    with Image.open(original) as img:
        img = img.convert("RGB")
        w, h = img.size
        variants = {
            "recompressed.jpg": (img, 40),
            "resized.jpg": (img.resize((w * 6 // 10, h * 6 // 10), Image.BICUBIC), 85),
            "cropped.jpg": (img.crop((w // 20, h // 20, w - w // 20, h - h // 20)), 85),
        }
        for name, (variant, quality) in variants.items():
            target = photos / f"copy-{name}"
            variant.save(target, quality=quality)
            copies.append(str(target))
    with Library.open(root / "lib") as library:
        library.add_folder(photos)
        library.scan()
        library.index_pending(model)
    library = Library.open(root / "lib", readonly=True)
    yield {
        "engine": SearchEngine(library, model),
        "attributes": attributes,
        "original": str(original),
        "copies": copies,
    }
    library.close()


def _has(scene, colour, shape) -> bool:
    return any(o.colour == colour and o.shape == shape for o in scene.objects)


def test_tiny_a_red_circle_returns_red_circles(tiny):
    results = tiny["engine"].search("a red circle", k=10)
    scenes = [tiny["attributes"].get(r.path) for r in results]
    relevant = [s is not None and _has(s, "red", "circle") for s in scenes]
    total = sum(_has(s, "red", "circle") for s in tiny["attributes"].values())
    assert total >= 3
    assert sum(relevant) >= min(total, 10) * 0.7, relevant


def test_tiny_subtracting_a_background_ranks_other_backgrounds_first(tiny):
    ranked = tiny["engine"].search("a red circle - blue background", k=TINY_COUNT, cutoff=False)
    red_circles = [
        tiny["attributes"][r.path].background_colour == "blue"
        for r in ranked
        if r.path in tiny["attributes"] and _has(tiny["attributes"][r.path], "red", "circle")
    ]
    on_blue = [i for i, blue in enumerate(red_circles) if blue]
    elsewhere = [i for i, blue in enumerate(red_circles) if not blue]
    if not on_blue or not elsewhere:
        pytest.skip("the generated set lacks red circles on blue and elsewhere")
    pairs = [(a, b) for a in elsewhere for b in on_blue]
    assert sum(a < b for a, b in pairs) / len(pairs) >= 0.9


def test_tiny_similar_ranks_near_copies_first(tiny):
    results = tiny["engine"].similar(tiny["original"], k=4)
    assert results[0].path == tiny["original"]
    assert {r.path for r in results[1:]} == set(tiny["copies"])
