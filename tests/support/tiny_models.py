"""Tiny models built from real configs with random weights, saved like a hub checkpoint.

Tests load them back through the same code path users hit (``setup()`` ->
``resolve_weights`` -> ``from_pretrained``), so they check plumbing (shapes, batching,
parsing, dtypes) without network access. Never assert on what random weights say.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["TINY_FLORENCE2_SIZE", "build_tiny_florence2"]

TINY_FLORENCE2_SIZE = 64  # square model input; DaViT strides 4*2*2*2 = 32 -> 2x2 grid -> 4 + 1 image tokens

# Text the tiny byte-level BPE is trained on: the Florence-2 task prompts plus a few captions,
# so prompts tokenize into a handful of merged tokens rather than single bytes.
_CORPUS = [
    "What does the image describe?",
    "Describe in detail what is shown in the image.",
    "Describe with a paragraph what is shown in the image.",
    "Locate the objects with category name in the image.",
    "Locate the phrases in the caption: a person riding a bicycle",
    "Locate a car in the image.",
    "What is the text in the image?",
    "a person riding a bicycle on a street",
    "a red car parked next to a building",
    "two dogs playing in the grass",
]
# Tokens the Florence-2 tokenizer adds on top of BART's vocabulary (the processor's
# post-processing and the task outputs use them); <loc_0>..<loc_999> are the box bins.
_FLORENCE_TOKENS = (
    ["<od>", "</od>", "<ocr>", "</ocr>"]
    + [f"<loc_{i}>" for i in range(1000)]
    + ["<cap>", "</cap>", "<ncap>", "</ncap>", "<dcap>", "</dcap>", "<grounding>", "</grounding>",
       "<seg>", "</seg>", "<sep>", "<region_cap>", "</region_cap>", "<region_to_desciption>",
       "</region_to_desciption>", "<proposal>", "</proposal>", "<poly>", "</poly>", "<and>"]
)


# Weights ten times wider than the usual 0.02 init: outputs then depend on the frame, so tests
# that compare a batch with its frames one by one compare different texts, not one constant.
_INIT_STD = 0.2


def _seed(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _tokenizer():  # type: ignore[no-untyped-def]
    """A BART-style byte-level BPE (special ids <s>=0 <pad>=1 </s>=2 <unk>=3) with Florence's extra tokens."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import BartTokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_CORPUS, vocab_size=320, min_frequency=1, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    merges = json.loads(bpe._tokenizer.to_str())["model"]["merges"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]
    tok = BartTokenizer(vocab=bpe.get_vocab(), merges=merges, extra_special_tokens={"image_token": "<image>"})
    tok.add_tokens(_FLORENCE_TOKENS, special_tokens=True)
    return tok


def build_tiny_florence2(dst_dir: str | os.PathLike[str], *, image_size: int = TINY_FLORENCE2_SIZE,
                         seed: int = 0) -> Path:
    """Save a tiny random-weight Florence-2 (model, tokenizer, processor) to ``dst_dir``.

    Real ``Florence2Config`` (DaViT vision tower + BART text model) with few layers and
    small dims; loads back with ``from_pretrained`` like a downloaded checkpoint.
    """
    from transformers import (
        BartConfig,
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
        Florence2VisionConfig,
        GenerationConfig,
    )

    if image_size % 32:
        raise ValueError(f"image_size must be a multiple of 32 (DaViT strides), got {image_size}")
    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    _seed(seed)

    tok = _tokenizer()
    grid = image_size // 32
    image_seq_length = grid * grid + 1  # spatial tokens + one pooled token (Florence2MultiModalProjector)
    image_processor = CLIPImageProcessor(
        do_resize=True, size={"height": image_size, "width": image_size}, resample=3,
        do_center_crop=False, crop_size={"height": image_size, "width": image_size},
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
        image_seq_length=image_seq_length,
    )
    # parse rules as in released checkpoints, so the processor's own post_process_generation works too
    post = {"ocr": {"PATTERN": r"(.+?)" + r"<loc_(\d+)>" * 8, "AREA_THRESHOLD": 0.0},
            "phrase_grounding": {"FILTER_BY_BANNED_TOKENS": True, "banned_grounding_tokens": ["it", "image"]},
            "pure_text": {}, "description_with_bboxes": {}, "description_with_polygons": {}, "polygons": {},
            "bboxes": {}, "description_with_bboxes_or_polygons": {}}
    processor = Florence2Processor(image_processor=image_processor, tokenizer=tok, post_processor_config=post)

    d_model = 32
    vocab_size = (len(tok) + 7) // 8 * 8
    text_config = BartConfig(
        vocab_size=vocab_size, d_model=d_model, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_position_embeddings=1024, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.eos_token_id, scale_embedding=False,
        init_std=_INIT_STD,
    )
    vision_config = Florence2VisionConfig(
        depths=(1, 1, 1, 1), embed_dim=(8, 16, 24, 32), num_heads=(1, 2, 2, 4), num_groups=(1, 2, 2, 4),
        window_size=4, drop_path_rate=0.0, projection_dim=d_model,
        max_position_embeddings=max(8, grid), max_temporal_embeddings=4, initializer_range=_INIT_STD,
    )
    config = Florence2Config(text_config=text_config, vision_config=vision_config,
                             image_token_id=tok.image_token_id)
    model = Florence2ForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, forced_bos_token_id=tok.bos_token_id, forced_eos_token_id=tok.eos_token_id,
        num_beams=3, no_repeat_ngram_size=3,  # what Florence-2 checkpoints ship; the operator overrides beams
    )
    model.save_pretrained(dst)
    processor.save_pretrained(dst)
    return dst

