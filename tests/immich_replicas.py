"""Replicas of Immich's Hugging Face model repositories, served like the hub serves them.

Each replica has Immich's layout (config.json, visual/{model.onnx, preprocess_cfg.json},
textual/{model.onnx, tokenizer.json, tokenizer_config.json}, external-data files, the Arm NN
and RKNN files photofind must not fetch) around tiny ONNX graphs built here with onnx's
helper API, and a real tokenizer.json written by the ``tokenizers`` library of the model's
kind: CLIP's BPE, a SentencePiece-style Unigram (SigLIP, NLLB) or BERT's WordPiece (LaBSE).

The graphs compute something a search can be checked against: the image graph takes the
mean of each colour channel (after the model's normalisation), the text graph sums the
embeddings of the tokens its mask keeps. The colour words (English and Vietnamese) embed
as their colour's normalised value, every other token as zero, except the pad token, which
embeds as a large *blue*: a runtime that feeds the wrong pad or ignores the attention mask
finds blue photos for every query.

:class:`HubReplica` serves repositories on a :class:`tests.local_http.LocalServer` at the
hub's addresses: ``/api/models/{repo}/revision/{rev}``, the paged
``/api/models/{repo}/tree/{commit}?recursive=true`` listing (LFS files with their sha256,
small ones with their git blob id) and ``/{repo}/resolve/{commit}/{path}``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from tests.local_http import Served

DIM = 8
COLOURS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}
VIETNAMESE = {"đỏ": "red", "lục": "green", "lam": "blue"}
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)
UUID_NAME = "0b6f3c1e-58a4-4d2f-9b7e-3c5a1d2e4f60"
# Files above this size are LFS files on the hub (its default threshold is 10 MB; a small
# one keeps the tests small while both kinds of listing entry are served).
LFS_THRESHOLD = 4096


def colour_vector(rgb, mean, std) -> np.ndarray:
    vec = np.zeros(DIM, dtype=np.float32)
    vec[:3] = (np.asarray(rgb) - np.asarray(mean)) / np.asarray(std)
    return vec


# -- graphs -------------------------------------------------------------------------------


def visual_graph(path: Path, size: int, *, fixed_batch: bool) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    batch = 1 if fixed_batch else "batch"
    proj = np.zeros((3, DIM), dtype=np.float32)
    proj[:3, :3] = np.eye(3)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["image"], ["mean"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["mean", "proj"], ["embedding"]),
        ],
        "visual",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, DIM])],
        [numpy_helper.from_array(proj, "proj")],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(_model(graph), str(path))


def text_graph(
    path: Path,
    table: np.ndarray,
    *,
    context: int,
    pad_id: int | None,
    with_mask: bool = False,
    int32: bool = True,
    fixed_batch: bool = True,
    external: bool = False,
) -> None:
    """Sum of the kept tokens' rows of ``table``: kept by the attention mask input
    (``with_mask``), else by ``ids != pad_id`` (every token when ``pad_id`` is None)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    kind = TensorProto.INT32 if int32 else TensorProto.INT64
    batch = 1 if fixed_batch else "batch"
    ids_name = "input_ids" if with_mask else "text"
    inputs = [helper.make_tensor_value_info(ids_name, kind, [batch, context])]
    table_name = "Constant_17_attr__value" if external else "table"
    proj_name = UUID_NAME if external else "proj"
    inits = [
        numpy_helper.from_array(table.astype(np.float32), table_name),
        numpy_helper.from_array(np.eye(DIM, dtype=np.float32) * 2.0, proj_name),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
    ]
    nodes = [
        helper.make_node("Cast", [ids_name], ["ids64"], to=TensorProto.INT64),
        helper.make_node("Gather", [table_name, "ids64"], ["rows"]),
    ]
    if with_mask:
        inputs.append(helper.make_tensor_value_info("attention_mask", kind, [batch, context]))
        nodes.append(helper.make_node("Cast", ["attention_mask"], ["keep"], to=TensorProto.FLOAT))
    elif pad_id is not None:
        inits.append(numpy_helper.from_array(np.array(pad_id, dtype=np.int64), "pad"))
        nodes += [
            helper.make_node("Equal", ["ids64", "pad"], ["is_pad"]),
            helper.make_node("Not", ["is_pad"], ["not_pad"]),
            helper.make_node("Cast", ["not_pad"], ["keep"], to=TensorProto.FLOAT),
        ]
    else:
        nodes.append(helper.make_node("Cast", ["ids64"], ["any"], to=TensorProto.FLOAT))
        nodes.append(helper.make_node("Mul", ["any", "zero"], ["none"]))
        nodes.append(helper.make_node("Add", ["none", "one"], ["keep"]))
        inits += [
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
            numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
        ]
    nodes += [
        helper.make_node("Unsqueeze", ["keep", "axis2"], ["keep3"]),
        helper.make_node("Mul", ["rows", "keep3"], ["kept"]),
        helper.make_node("ReduceSum", ["kept", "axis1"], ["summed"], keepdims=0),
        helper.make_node("MatMul", ["summed", proj_name], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes,
        "textual",
        inputs,
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, DIM])],
        inits,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    if external:
        # One file per tensor, named after it, as old M-CLIP uploads are.
        onnx.save_model(
            _model(graph),
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=False,
            size_threshold=64,
        )
    else:
        onnx.save(_model(graph), str(path))


def _model(graph):
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


# -- tokenizers ---------------------------------------------------------------------------


def clip_tokenizer(vocab_path=None, vocab_size: int = 49408):
    """CLIP's BPE (by default OpenAI's vocabulary) as Hugging Face's CLIP tokenizer.json
    describes it (without ftfy, which tokenizers has no step for)."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    from export.vocab import find_clip_vocab
    from photofind.clip.tokenizer import EOT_TOKEN, SOT_TOKEN, base_vocabulary, read_merges

    merges = read_merges(vocab_path or find_clip_vocab(), vocab_size - 514)
    table = base_vocabulary() + ["".join(m) for m in merges] + [SOT_TOKEN, EOT_TOKEN]
    sot, eot = vocab_size - 2, vocab_size - 1
    tokenizer = Tokenizer(
        models.BPE(
            {token: i for i, token in enumerate(table)},
            merges,
            end_of_word_suffix="</w>",
            continuing_subword_prefix="",
            unk_token=EOT_TOKEN,
        )
    )
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    pattern = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{SOT_TOKEN} $A {EOT_TOKEN}",
        special_tokens=[(SOT_TOKEN, sot), (EOT_TOKEN, eot)],
    )
    tokenizer.add_special_tokens([SOT_TOKEN, EOT_TOKEN])
    return tokenizer


WORDS = ["a", "photo", "of", "the", "red", "green", "blue", "đỏ", "lục", "lam", "ảnh", "màu"]


def unigram_tokenizer(specials: list[str], pad: str, eos: str):
    """A SentencePiece-style Unigram tokenizer (Metaspace, NFKC), written by ``tokenizers``:
    whole words as pieces, every letter as a fallback piece."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    letters = sorted({c for w in WORDS for c in w} | set("abcdefghijklmnopqrstuvwxyz"))
    pieces = [(s, 0.0) for s in specials]
    pieces += [("▁" + w, -2.0) for w in WORDS]
    pieces += [("▁", -3.0)] + [(c, -8.0) for c in letters] + [("▁" + c, -8.5) for c in letters]
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=specials.index("<unk>")))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    eos_id = tokenizer.token_to_id(eos)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {eos}", special_tokens=[(eos, eos_id)]
    )
    tokenizer.add_special_tokens(specials)
    assert tokenizer.token_to_id(pad) is not None
    return tokenizer


def wordpiece_tokenizer():
    """A BERT-style WordPiece tokenizer (LaBSE's kind): lower case, [CLS] ... [SEP]."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    letters = sorted({c for w in WORDS for c in w} | set("abcdefghijklmnopqrstuvwxyz"))
    vocab = specials + WORDS + letters + ["##" + c for c in letters]
    tokenizer = Tokenizer(
        models.WordPiece({t: i for i, t in enumerate(dict.fromkeys(vocab))}, unk_token="[UNK]")
    )
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return tokenizer


def embedding_table(size: int, token_id, mean, std, pad_id: int | None) -> np.ndarray:
    """Rows: colour words (English and Vietnamese) as their colour, the pad as a big blue."""
    table = np.zeros((size, DIM), dtype=np.float32)
    for word, colour in [*((w, w) for w in COLOURS), *VIETNAMESE.items()]:
        index = token_id(word)
        if index is not None:
            table[index] = colour_vector(COLOURS[colour], mean, std)
    if pad_id is not None:
        table[pad_id] = 50 * colour_vector(COLOURS["blue"], mean, std)
    return table


# -- the layouts --------------------------------------------------------------------------


def _common(folder: Path, *, size: int, context: int, mean, std, resize: str, text_cfg=None):
    (folder / "visual").mkdir(parents=True, exist_ok=True)
    (folder / "textual").mkdir(parents=True, exist_ok=True)
    config = {
        "embed_dim": DIM,
        "vision_cfg": {"image_size": size, "patch_size": 16, "width": 64},
        "text_cfg": {"context_length": context, **(text_cfg or {})},
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "visual/preprocess_cfg.json").write_text(
        json.dumps(
            {
                "size": [size, size],
                "mode": "RGB",
                "mean": list(mean),
                "std": list(std),
                "interpolation": "bicubic",
                "resize_mode": resize,
                "fill_color": 0,
            }
        )
    )
    # What photofind must leave on the hub.
    (folder / "visual/armnn").mkdir()
    (folder / "visual/armnn/model.armnn").write_bytes(b"armnn" * 100)
    (folder / "textual/rknpu/rk3588").mkdir(parents=True)
    (folder / "textual/rknpu/rk3588/model.rknn").write_bytes(b"rknn" * 100)
    (folder / "README.md").write_text("# replica\n")
    (folder / ".gitattributes").write_text("*.onnx filter=lfs\n")


def openai_layout(folder: Path) -> Path:
    """ViT-B-32__openai's layout: CLIP BPE, int32 ids, batch fixed at 1, "shortest"."""
    from tokenizers import Tokenizer

    size, context = 32, 77
    _common(folder, size=size, context=context, mean=CLIP_MEAN, std=CLIP_STD, resize="shortest")
    tokenizer = clip_tokenizer()
    tokenizer.save(str(folder / "textual/tokenizer.json"))
    (folder / "textual/tokenizer_config.json").write_text(
        json.dumps({"pad_token": "<|endoftext|>", "model_max_length": 77})
    )
    assert Tokenizer.from_file(str(folder / "textual/tokenizer.json")).get_vocab_size() == 49408
    table = embedding_table(
        49408, lambda w: tokenizer.token_to_id(w + "</w>"), CLIP_MEAN, CLIP_STD, None
    )
    visual_graph(folder / "visual/model.onnx", size, fixed_batch=True)
    text_graph(folder / "textual/model.onnx", table, context=context, pad_id=None)
    return folder


def siglip_layout(folder: Path) -> Path:
    """A SigLIP layout: Unigram, canonicalize, context 64, "squash", int64, any batch."""
    size, context = 32, 64
    _common(
        folder,
        size=size,
        context=context,
        mean=HALF,
        std=HALF,
        resize="squash",
        text_cfg={
            "hf_tokenizer_name": "timm/ViT-B-16-SigLIP",
            "tokenizer_kwargs": {"clean": "canonicalize"},
        },
    )
    tokenizer = unigram_tokenizer(["<pad>", "</s>", "<unk>"], pad="<pad>", eos="</s>")
    tokenizer.save(str(folder / "textual/tokenizer.json"))
    (folder / "textual/tokenizer_config.json").write_text(json.dumps({"pad_token": "<pad>"}))
    pad = tokenizer.token_to_id("<pad>")
    table = embedding_table(
        tokenizer.get_vocab_size(), lambda w: tokenizer.token_to_id("▁" + w), HALF, HALF, pad
    )
    visual_graph(folder / "visual/model.onnx", size, fixed_batch=False)
    text_graph(
        folder / "textual/model.onnx",
        table,
        context=context,
        pad_id=pad,
        int32=False,
        fixed_batch=False,
    )
    return folder


def nllb_layout(folder: Path) -> Path:
    """An NLLB-CLIP layout: Unigram with Flores-200 language tokens, pad "<pad>" (id 1)."""
    size, context = 32, 77
    _common(
        folder,
        size=size,
        context=context,
        mean=HALF,
        std=HALF,
        resize="squash",
        text_cfg={"hf_model_name": "facebook/nllb-200-distilled-600M"},
    )
    specials = ["<s>", "<pad>", "</s>", "<unk>", "eng_Latn", "vie_Latn", "fra_Latn"]
    tokenizer = unigram_tokenizer(specials, pad="<pad>", eos="</s>")
    tokenizer.save(str(folder / "textual/tokenizer.json"))
    (folder / "textual/tokenizer_config.json").write_text(
        json.dumps({"pad_token": {"content": "<pad>", "__type": "AddedToken"}})
    )
    pad = tokenizer.token_to_id("<pad>")
    table = embedding_table(
        tokenizer.get_vocab_size(), lambda w: tokenizer.token_to_id("▁" + w), HALF, HALF, pad
    )
    # French's language token pulls every query to green: a test can see which language
    # token the runtime put first.
    table[tokenizer.token_to_id("fra_Latn")] = 50 * colour_vector(COLOURS["green"], HALF, HALF)
    visual_graph(folder / "visual/model.onnx", size, fixed_batch=True)
    text_graph(folder / "textual/model.onnx", table, context=context, pad_id=pad)
    return folder


def mclip_layout(folder: Path) -> Path:
    """An M-CLIP layout (LaBSE kind): WordPiece, ``input_ids`` + ``attention_mask``, the
    text graph's weights in external files named ``Constant_*`` and by a UUID."""
    size, context = 32, 77
    # M-CLIP's config.json is the image tower's OpenCLIP config: CLIP's text_cfg.
    _common(folder, size=size, context=context, mean=CLIP_MEAN, std=CLIP_STD, resize="shortest")
    tokenizer = wordpiece_tokenizer()
    tokenizer.save(str(folder / "textual/tokenizer.json"))
    (folder / "textual/tokenizer_config.json").write_text(json.dumps({"pad_token": "[PAD]"}))
    pad = tokenizer.token_to_id("[PAD]")
    table = embedding_table(
        tokenizer.get_vocab_size(), tokenizer.token_to_id, CLIP_MEAN, CLIP_STD, pad
    )
    visual_graph(folder / "visual/model.onnx", size, fixed_batch=True)
    text_graph(
        folder / "textual/model.onnx",
        table,
        context=context,
        pad_id=None,
        with_mask=True,
        external=True,
    )
    return folder


# -- the hub ------------------------------------------------------------------------------


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


class HubReplica:
    """Serves model repositories at the hub's addresses on a LocalServer."""

    def __init__(self, server):
        self.server = server

    def add(self, repo: str, folder: Path, *, commit: str, page_size: int = 5) -> None:
        entries = []
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = path.relative_to(folder).as_posix()
            data = path.read_bytes()
            self.server.files[f"/{repo}/resolve/{commit}/{rel}"] = Served(data)
            entry = {"type": "file", "path": rel, "size": len(data), "oid": git_blob_id(data)}
            if len(data) > LFS_THRESHOLD:
                entry["lfs"] = {
                    "oid": hashlib.sha256(data).hexdigest(),
                    "size": len(data),
                    "pointerSize": 134,
                }
            entries.append(entry)
        entries += [{"type": "directory", "path": "visual", "oid": "0" * 40, "size": 0}]
        self.server.files[f"/api/models/{repo}/revision/main"] = Served(
            json.dumps({"id": repo, "sha": commit}).encode()
        )
        pages = [entries[i : i + page_size] for i in range(0, len(entries), page_size)]
        for number, page in enumerate(pages):
            path = f"/api/models/{repo}/tree/{commit}?recursive=true"
            if number:
                path += f"&cursor={number}"
            headers = {}
            if number + 1 < len(pages):
                nxt = self.server.url(
                    f"/api/models/{repo}/tree/{commit}?recursive=true&cursor={number + 1}"
                )
                headers["Link"] = f'<{nxt}>; rel="next"'
            self.server.files[path] = Served(json.dumps(page).encode(), headers=headers)
