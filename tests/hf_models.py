"""Small, randomly initialised transformers checkpoints of CLIP, SigLIP and ALIGN, built here.

Each family gets a tokenizer of its own kind trained on a few sentences by ``tokenizers``
(CLIP: byte-level BPE; SigLIP: Unigram with SentencePiece's Metaspace; ALIGN: BERT's
WordPiece), wrapped in PreTrainedTokenizerFast, its own image processor with the family's
preprocessing, and a model config a few layers deep. ``save_pretrained`` writes the same
folder layout a download from the hub has; nothing is fetched.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import BpeTrainer, UnigramTrainer, WordPieceTrainer

CORPUS = [
    "a photo of a cat",
    "a photo of a dog on the grass",
    "two dogs playing in the snow at night",
    "a diagram of a neural network",
    "a red circle and a blue square",
    "ảnh một hình tròn màu đỏ",
    "người đàn ông đeo kính",
    "une photo d'un chat",
] * 20


def _clip_tokenizer():
    tok = Tokenizer(models.BPE(unk_token="<|endoftext|>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=400,
        special_tokens=["<|startoftext|>", "<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", 0), ("<|endoftext|>", 1)],
    )
    # OpenAI's CLIP pads with its end-of-text token.
    specials = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
    }
    return tok, specials, 77


def _siglip_tokenizer():
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = UnigramTrainer(
        vocab_size=200,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    specials = {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    return tok, specials, 16


def _bert_tokenizer():
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = WordPieceTrainer(
        vocab_size=300,
        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    specials = {
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "unk_token": "[UNK]",
        "mask_token": "[MASK]",
    }
    return tok, specials, 32


def _wrap(tok, specials, max_length):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_length, **specials)


def _tower(layers: int = 2) -> dict:
    return {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": layers,
        "num_attention_heads": 2,
    }


def build(family: str, folder: Path, seed: int = 0) -> Path:
    """Write a random ``family`` checkpoint ("clip", "siglip", "align") into ``folder``."""
    import torch
    from transformers import (
        AlignConfig,
        AlignModel,
        CLIPConfig,
        CLIPModel,
        SiglipConfig,
        SiglipModel,
    )
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.efficientnet.image_processing_pil_efficientnet import (
        EfficientNetImageProcessorPil,
    )
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    folder = Path(folder)
    torch.manual_seed(seed)
    if family == "clip":
        tok, specials, length = _clip_tokenizer()
        tokenizer = _wrap(tok, specials, length)
        config = CLIPConfig(
            text_config={
                **_tower(),
                "vocab_size": tok.get_vocab_size(),
                "max_position_embeddings": length,
                "bos_token_id": tokenizer.bos_token_id,
                "eos_token_id": tokenizer.eos_token_id,
                "pad_token_id": tokenizer.pad_token_id,
            },
            vision_config={**_tower(), "image_size": 32, "patch_size": 8},
            projection_dim=24,
        )
        model = CLIPModel(config)
        processor = CLIPImageProcessorPil(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        )
    elif family == "siglip":
        tok, specials, length = _siglip_tokenizer()
        tokenizer = _wrap(tok, specials, length)
        config = SiglipConfig(
            text_config={
                **_tower(),
                "vocab_size": tok.get_vocab_size(),
                "max_position_embeddings": length,
                "pad_token_id": tokenizer.pad_token_id,
                "bos_token_id": tokenizer.eos_token_id,
                "eos_token_id": tokenizer.eos_token_id,
            },
            vision_config={**_tower(), "image_size": 32, "patch_size": 8},
        )
        model = SiglipModel(config)
        processor = SiglipImageProcessorPil(
            size={"height": 32, "width": 32},
            resample=2,
            image_mean=[0.5, 0.5, 0.5],
            image_std=[0.5, 0.5, 0.5],
        )
    elif family == "align":
        tok, specials, length = _bert_tokenizer()
        tokenizer = _wrap(tok, specials, length)
        config = AlignConfig(
            text_config={
                **_tower(),
                "vocab_size": tok.get_vocab_size(),
                "max_position_embeddings": length,
                "pad_token_id": tokenizer.pad_token_id,
            },
            # EfficientNet, a quarter wide and a fifth deep: its pooled output has
            # round_filters(320 × 0.25) = 80 channels, which the text projection matches.
            vision_config={"image_size": 32, "width_coefficient": 0.25, "depth_coefficient": 0.2},
            projection_dim=80,
        )
        model = AlignModel(config)
        # ALIGN's own processor: squash to a larger side, centre crop, pixels to [-1, 1].
        processor = EfficientNetImageProcessorPil(
            size={"height": 40, "width": 40},
            crop_size={"height": 32, "width": 32},
            do_center_crop=True,
            include_top=False,
            rescale_offset=True,
            rescale_factor=1 / 127.5,
            do_normalize=False,
        )
    else:
        raise ValueError(family)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
