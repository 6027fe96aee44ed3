"""Tiny random-weight image-text-to-text checkpoints (Idefics3/SmolVLM and Qwen2-VL) for tests.

Each is a real config with few layers and small dims, a byte-level BPE tokenizer trained here
on a few sentences (with the special tokens the family's processor needs), a chat template
and a tiny image processor, all saved with ``save_pretrained`` so that ``AutoProcessor`` and
``AutoModelForImageTextToText`` load them back like a downloaded checkpoint. Random weights
say nothing meaningful: tests check plumbing, never words.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["TINY_IDEFICS3_SIZE", "TINY_QWEN2VL_SIZE", "build_tiny_idefics3", "build_tiny_qwen2vl"]

TINY_IDEFICS3_SIZE = 32  # square vision input: 4x4 patches of 8 px, pixel-shuffled by 2 -> 4 image tokens
TINY_QWEN2VL_SIZE = 56  # 4x4 patches of 14 px, merged 2x2 -> 4 image tokens

# Text the tiny BPE is trained on: the operator's prompts, yes/no answers and chat-template words,
# so prompts tokenize into a few merged tokens and "yes"/"no" are single tokens.
_CORPUS = [
    "Describe this image in one sentence.",
    "Is anyone lying on the floor? Answer yes or no.",
    "Is there a person riding a bicycle? Answer yes or no.",
    "a red car. Answer yes or no.",
    "dog Answer yes or no.",
    "a person riding a bicycle on a street",
    "a red car parked next to a building",
    "two dogs playing in the grass",
    "You are a helpful assistant.",
    "User: Assistant: system user assistant",
] + ["Yes. yes Yes, No. no No, yes no", "yes", "no"] * 20

# Weights ten times wider than the usual 0.02 init: outputs then depend on the frame, so tests that
# compare a batch with its frames one by one compare different texts, not one constant.
_INIT_STD = 0.2

# What SmolVLM-Instruct and Qwen2-VL-Instruct ship, cut to what the operator sends (one user turn:
# an image then a text) and plain string content.
_IDEFICS3_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
_QWEN2VL_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _seed(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _tokenizer(special: list[str], **roles: Any) -> Any:
    """A byte-level BPE trained on ``_CORPUS`` with ``special`` tokens first, as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, min_frequency=1, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **roles)


def _padded_vocab(tok: Any) -> int:
    return (len(tok) + 7) // 8 * 8


def build_tiny_idefics3(dst_dir: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Save a tiny random-weight Idefics3 (the SmolVLM architecture) to ``dst_dir``.

    SigLIP-style vision tower on 32x32 inputs (4x4 patches, pixel shuffle 2 -> 4 image
    tokens) and a 2-layer Llama text model; the processor does no image splitting.
    """
    from transformers import (
        GenerationConfig,
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
        Idefics3VisionConfig,
        LlamaConfig,
    )

    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    _seed(seed)
    size, patch, scale = TINY_IDEFICS3_SIZE, 8, 2
    image_seq_len = (size // patch) ** 2 // scale**2
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<end_of_utterance>", "<image>",
               "<fake_token_around_image>", "<global-img>"] + [f"<row_{i}_col_{j}>" for i in range(1, 7)
                                                                for j in range(1, 7)]
    tok = _tokenizer(special, bos_token="<|im_start|>", eos_token="<end_of_utterance>", pad_token="<|im_end|>",
                     unk_token="<|endoftext|>",
                     extra_special_tokens=["<fake_token_around_image>", "<image>", "<end_of_utterance>"])
    image_processor = Idefics3ImageProcessor(
        do_resize=True, size={"longest_edge": size}, max_image_size={"longest_edge": size},
        do_image_splitting=False, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], do_pad=True,
    )
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tok, image_seq_len=image_seq_len,
                                  chat_template=_IDEFICS3_TEMPLATE)
    text_config = LlamaConfig(
        vocab_size=_padded_vocab(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512, rms_norm_eps=1e-5,
        initializer_range=_INIT_STD, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
    )
    vision_config = Idefics3VisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=size,
        patch_size=patch, initializer_range=_INIT_STD,
    )
    config = Idefics3Config(text_config=text_config, vision_config=vision_config, scale_factor=scale,
                            image_token_id=tok.convert_tokens_to_ids("<image>"))
    config.pad_token_id = tok.pad_token_id  # the class default (128002) is outside this vocabulary
    model = Idefics3ForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=[tok.eos_token_id, tok.pad_token_id],
        pad_token_id=tok.pad_token_id,
    )
    model.save_pretrained(dst)
    processor.save_pretrained(dst)
    return dst


def build_tiny_qwen2vl(dst_dir: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Save a tiny random-weight Qwen2-VL to ``dst_dir``.

    1-block ViT (14 px patches, 2x2 merge: a 56x56 frame is 4 image tokens) and a 2-layer
    Qwen2 text model with multimodal RoPE; pixels are capped at 56*56 in the image processor.
    """
    from transformers import (
        GenerationConfig,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    _seed(seed)
    size = TINY_QWEN2VL_SIZE
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
               "<|image_pad|>", "<|video_pad|>"]
    tok = _tokenizer(special, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    image_processor = Qwen2VLImageProcessor(
        size={"shortest_edge": size * size, "longest_edge": size * size}, patch_size=14, temporal_patch_size=2,
        merge_size=2, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    # the processor will not be built without a video processor, which needs torchvision
    video_processor = Qwen2VLVideoProcessor(size={"shortest_edge": size * size, "longest_edge": size * size},
                                            patch_size=14, temporal_patch_size=2, merge_size=2)
    processor = Qwen2VLProcessor(image_processor=image_processor, tokenizer=tok, video_processor=video_processor,
                                 chat_template=_QWEN2VL_TEMPLATE)
    ids = tok.convert_tokens_to_ids
    hidden, heads = 32, 2
    text_config = {
        "vocab_size": _padded_vocab(tok), "hidden_size": hidden, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": heads, "num_key_value_heads": 1, "max_position_embeddings": 512,
        "initializer_range": _INIT_STD, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id,
        "bos_token_id": None,
        # head_dim 16 -> 8 rotary frequencies split over (time, height, width)
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
    }
    vision_config = {"depth": 1, "embed_dim": 32, "hidden_size": hidden, "num_heads": 2, "mlp_ratio": 2,
                     "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                     "initializer_range": _INIT_STD}
    config = Qwen2VLConfig(text_config=text_config, vision_config=vision_config,
                           image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                           vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(eos_token_id=[tok.eos_token_id, tok.pad_token_id],
                                               pad_token_id=tok.pad_token_id)
    model.save_pretrained(dst)
    processor.save_pretrained(dst)
    return dst
