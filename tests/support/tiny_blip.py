"""Tiny random-weight BLIP checkpoints (captioning and VQA) for tests.

Real ``BlipConfig`` (1-layer ViT on 32x32 inputs, 1-layer BERT text encoder/decoder), a WordPiece
tokenizer over a few words with BLIP's ``[DEC]`` start token, and the PIL ``BlipImageProcessorPil``,
saved with ``save_pretrained`` so ``AutoProcessor`` and the BLIP classes load them back.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.tiny_vlm import _INIT_STD, _seed

__all__ = ["TINY_BLIP_SIZE", "build_tiny_blip"]

TINY_BLIP_SIZE = 32  # 4x4 patches of 8 px + CLS -> 17 image tokens
_WORDS = ("a an the is are there of in on picture photo person people car dog red two how many what weather "
          "yes no it sunny raining waiting riding bicycle street").split()
_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]


def build_tiny_blip(dst_dir: str | os.PathLike[str], kind: str = "caption", *, seed: int = 0) -> Path:
    """Save a tiny ``BlipForConditionalGeneration`` (kind ``caption``) or ``BlipForQuestionAnswering`` (``vqa``)."""
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipForQuestionAnswering,
        BlipImageProcessorPil,
        BlipProcessor,
        BlipTextConfig,
        BlipVisionConfig,
    )

    if kind not in ("caption", "vqa"):
        raise ValueError(f"kind {kind!r}; use caption or vqa")
    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    _seed(seed)
    words = _SPECIAL + list(_WORDS) + ["?", ".", ","]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True, bos_token="[DEC]")
    ids = tok.convert_tokens_to_ids
    text = BlipTextConfig(vocab_size=(len(tok) + 7) // 8 * 8, hidden_size=32, encoder_hidden_size=32,
                          intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                          max_position_embeddings=64, initializer_range=_INIT_STD, bos_token_id=ids("[DEC]"),
                          sep_token_id=ids("[SEP]"), pad_token_id=ids("[PAD]"), eos_token_id=ids("[SEP]"))
    vision = BlipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=TINY_BLIP_SIZE, patch_size=8, initializer_range=_INIT_STD)
    config = BlipConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=32,
                        initializer_range=_INIT_STD)
    cls = BlipForConditionalGeneration if kind == "caption" else BlipForQuestionAnswering
    model = cls(config).eval()
    ip = BlipImageProcessorPil(size={"height": TINY_BLIP_SIZE, "width": TINY_BLIP_SIZE}, do_rescale=True,
                               rescale_factor=1 / 255, do_normalize=True, image_mean=[0.481, 0.458, 0.408],
                               image_std=[0.269, 0.261, 0.276], do_convert_rgb=True)
    model.save_pretrained(dst)
    BlipProcessor(image_processor=ip, tokenizer=tok).save_pretrained(dst)
    return dst
