"""Tiny random-weight LLaVA 1.5 / LLaVA-NeXT / LLaVA-OneVision checkpoints for tests.

Real ``LlavaConfig`` / ``LlavaNextConfig`` / ``LlavaOnevisionConfig`` (CLIP or SigLIP vision tower
on 32x32 inputs, a 2-layer Llama/Qwen2 text model), the PIL image processors (no torchvision), a
byte-level BPE tokenizer trained here and the checkpoints' chat templates cut to one user turn,
saved with ``save_pretrained`` so ``AutoProcessor`` / ``AutoModelForImageTextToText`` load them back.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.support.tiny_vlm import _INIT_STD, _padded_vocab, _seed, _tokenizer

__all__ = ["LLAVA_KINDS", "TINY_LLAVA_SIZE", "build_tiny_llava"]

TINY_LLAVA_SIZE = 32  # vision input: 4x4 patches of 8 px -> 16 image tokens a tile
LLAVA_KINDS = ("llava", "llava_next", "llava_onevision")

# llava-1.5-hf's template ("USER: <image>\n... ASSISTANT:") and OneVision's Qwen2 one, one user turn.
_LLAVA_TEMPLATE = (
    "{% for message in messages %}{{ message['role'].upper() }}: "
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %} {% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
_ONEVISION_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _text_config(kind: str, tok: Any) -> Any:
    from transformers import LlamaConfig, Qwen2Config

    common = dict(vocab_size=_padded_vocab(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                  initializer_range=_INIT_STD, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                  tie_word_embeddings=False)
    return Qwen2Config(**common) if kind == "llava_onevision" else LlamaConfig(bos_token_id=tok.bos_token_id,
                                                                               **common)


def build_tiny_llava(dst_dir: str | os.PathLike[str], kind: str = "llava", *, seed: int = 0) -> Path:
    """Save a tiny random-weight ``kind`` (one of LLAVA_KINDS) checkpoint to ``dst_dir``."""
    from transformers import (
        CLIPVisionConfig,
        GenerationConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaImageProcessorPil,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessorPil,
        LlavaNextProcessor,
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessorPil,
        LlavaOnevisionProcessor,
        LlavaProcessor,
        SiglipVisionConfig,
    )

    if kind not in LLAVA_KINDS:
        raise ValueError(f"kind {kind!r}; use one of {LLAVA_KINDS}")
    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    _seed(seed)
    size, patch = TINY_LLAVA_SIZE, 8
    onevision = kind == "llava_onevision"
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
    tok = _tokenizer(special, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>",
                     unk_token="<|endoftext|>", extra_special_tokens={"image_token": "<image>"})
    image_token_id = tok.convert_tokens_to_ids("<image>")
    norm = dict(do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5, 0.5, 0.5],
                image_std=[0.5, 0.5, 0.5], do_convert_rgb=True)
    vision_kw = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                     image_size=size, patch_size=patch, initializer_range=_INIT_STD)
    vision = SiglipVisionConfig(**vision_kw) if onevision else CLIPVisionConfig(projection_dim=32, **vision_kw)
    pinpoints = [[size, size]]
    strategy = "full" if onevision else "default"
    text = _text_config(kind, tok)
    ckw = dict(vision_config=vision, text_config=text, image_token_id=image_token_id,
               vision_feature_select_strategy=strategy, vision_feature_layer=-1)
    if kind == "llava":
        ip: Any = LlavaImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                         do_center_crop=True, do_pad=False, **norm)
        processor: Any = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=patch,
                                        vision_feature_select_strategy=strategy, chat_template=_LLAVA_TEMPLATE,
                                        num_additional_image_tokens=1)
        model: Any = LlavaForConditionalGeneration(LlavaConfig(**ckw))
    elif kind == "llava_next":
        ip = LlavaNextImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                        image_grid_pinpoints=pinpoints, do_pad=True, **norm)
        processor = LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=patch,
                                       vision_feature_select_strategy=strategy, chat_template=_LLAVA_TEMPLATE,
                                       num_additional_image_tokens=1)
        model = LlavaNextForConditionalGeneration(LlavaNextConfig(image_grid_pinpoints=pinpoints, **ckw))
    else:
        ip = LlavaOnevisionImageProcessorPil(size={"height": size, "width": size}, image_grid_pinpoints=pinpoints,
                                             do_pad=True, **norm)
        processor = LlavaOnevisionProcessor(image_processor=ip, tokenizer=tok, video_processor=None,
                                            num_image_tokens=(size // patch) ** 2,
                                            vision_feature_select_strategy=strategy,
                                            chat_template=_ONEVISION_TEMPLATE)
        model = LlavaOnevisionForConditionalGeneration(LlavaOnevisionConfig(image_grid_pinpoints=pinpoints, **ckw))
    model.config.pad_token_id = tok.pad_token_id
    model.eval()
    model.generation_config = GenerationConfig(eos_token_id=[tok.eos_token_id], pad_token_id=tok.pad_token_id)
    model.save_pretrained(dst)
    processor.save_pretrained(dst)
    return dst
