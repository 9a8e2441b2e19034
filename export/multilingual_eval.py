"""How well a model finds generated shapes by captions and queries in several languages.

``python -m export eval-multilingual --model DIR [--work DIR]`` prints one JSON object:

- ``precision_at_10``: per language, the mean precision@10 of "a photo of a {colour}
  {shape}" in that language (Vietnamese "ảnh một hình tròn màu đỏ") over a held-out library,
  with the first name of each colour and shape, and (``all_synonyms``) over every synonym;
- ``recall``: per language, Recall@K both ways with that language's captions of a held-out
  caption set (photofind.evaluate's arithmetic).

The held-out images come from export.synth's public stream (seeds the training, which draws
from its own stream, never sees). Images and texts are encoded by :func:`open_encoder`:
``photofind.clip.load_model(folder, provider="cpu")``, the app's own runtime (its tokenizer,
preprocessing and ONNX sessions), so the figures are what a user of the package gets.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from export import captions_i18n as i18n
from export import synth
from photofind.evaluate import read_captions, recall_at_k

RECALL_SEED = 1000  # the Recall@K caption set (the seed tiny-synthetic's test uses)
LIBRARY_SEED = 2000  # the attribute-search library
TOP = 10
_LANG_STREAM = {"en": 0, "vi": 1, "fr": 2}


def open_encoder(folder: Path):
    """The model at ``folder`` as the app runs it: photofind's runtime on the CPU (its
    tokenizer, preprocessing and sessions), so the figures are the ones a user gets."""
    from photofind.clip.model import load_model

    return load_model(Path(folder), provider="cpu")


# ---- held-out sets ---------------------------------------------------------------------------


def write_caption_sets(out: Path, count: int, seed: int, languages=i18n.LANGUAGES) -> dict:
    """The images of ``synth.write_dataset(out, count, seed)`` and, per language, a COCO
    captions file ``captions_{lang}.json`` with three captions per image in it."""
    english = synth.write_dataset(out, count, seed)
    data = json.loads(english.read_text(encoding="utf-8"))
    files = {}
    for lang in languages:
        if lang == "en":
            files[lang] = english
            continue
        annotations = []
        for image in data["images"]:
            index = image["id"] - 1
            # The same scene write_dataset drew (make_scene is the rng's first use).
            scene = synth.make_scene(synth.scene_rng(seed, index))
            rng = np.random.default_rng([seed, index, _LANG_STREAM[lang]])
            for text in i18n.captions(scene, rng, lang, 3):
                annotations.append(
                    {"id": len(annotations) + 1, "image_id": image["id"], "caption": text}
                )
        target = Path(out) / f"captions_{lang}.json"
        target.write_text(
            json.dumps({**data, "annotations": annotations}, ensure_ascii=False, indent=1),
            encoding="utf-8",
        )
        files[lang] = target
    return files


# ---- the measures ----------------------------------------------------------------------------


def attribute_precision(encoder, image_vectors, held, lang: str, all_synonyms=False) -> dict:
    """query -> precision@10; an image is relevant when it holds an object of the query's
    colour and shape. With fewer than ten relevant images the denominator is their number;
    a pair no image holds is left out."""
    result = {}
    for colour in synth.COLOURS:
        for shape in synth.SHAPES:
            relevant = np.array([(colour, shape) in h for h in held])
            if not relevant.any():
                continue
            variants = (
                i18n.query_variants(colour, shape, lang)
                if all_synonyms
                else [i18n.photo_query(colour, shape, lang)]
            )
            for text, vector in zip(variants, encoder.encode_texts(variants)):
                top = np.argsort(-(image_vectors @ vector), kind="stable")[:TOP]
                result[text] = float(relevant[top].sum() / min(TOP, relevant.sum()))
    return result


def library_precision(encoder, folder: Path, languages=i18n.LANGUAGES) -> dict:
    data = json.loads((Path(folder) / "captions.json").read_text(encoding="utf-8"))
    images = data["images"]
    vectors = encoder.encode_images([Path(folder) / img["file_name"] for img in images])
    held = [{(o["colour"], o["shape"]) for o in img["synth"]["objects"]} for img in images]
    out = {}
    for lang in languages:
        first = attribute_precision(encoder, vectors, held, lang)
        every = attribute_precision(encoder, vectors, held, lang, all_synonyms=True)
        out[lang] = {
            "mean": round(float(np.mean(list(first.values()))), 4),
            "queries": len(first),
            "all_synonyms": round(float(np.mean(list(every.values()))), 4),
            "worst": sorted(first.items(), key=lambda kv: kv[1])[:3],
        }
    return out


def recall_by_language(encoder, folder: Path, files: dict) -> dict:
    out = {}
    vectors = None
    for lang, captions_file in files.items():
        caption_set = read_captions(captions_file, folder)
        if vectors is None:
            vectors = encoder.encode_images(caption_set.image_paths)
        texts = encoder.encode_texts(caption_set.captions)
        figures = recall_at_k(vectors, texts, caption_set.caption_image)
        out[lang] = {
            way: {k: round(v, 4) for k, v in values.items()} for way, values in figures.items()
        }
    return out


def evaluate_multilingual(
    model_folder: Path,
    work: Path,
    *,
    library_images: int = 300,
    recall_images: int = 500,
    languages=i18n.LANGUAGES,
) -> dict:
    encoder = open_encoder(model_folder)
    library = Path(work) / "library"
    synth.write_dataset(library, library_images, LIBRARY_SEED)
    held_out = Path(work) / "captions"
    files = write_caption_sets(held_out, recall_images, RECALL_SEED, languages)
    return {
        "model": encoder.spec.name,
        "library_images": library_images,
        "recall_images": recall_images,
        "precision_at_10": library_precision(encoder, library, languages),
        "recall": recall_by_language(encoder, held_out, files),
    }


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, help="package folder")
    parser.add_argument("--work", type=Path, help="folder for the generated sets (a temporary one)")
    parser.add_argument("--library-images", type=int, default=300)
    parser.add_argument("--recall-images", type=int, default=500)


def run(args) -> int:
    with tempfile.TemporaryDirectory(prefix="photofind-ml-eval-") as tmp:
        figures = evaluate_multilingual(
            args.model,
            args.work or Path(tmp),
            library_images=args.library_images,
            recall_images=args.recall_images,
        )
    print(json.dumps(figures, ensure_ascii=False))
    return 0
