"""A tiny random-weight PaliGemma checkpoint, and a random VQ-VAE mask decoder file, for tests.

Real ``PaliGemmaConfig`` (1-layer SigLIP on 32x32 inputs: 16 image tokens; 2-layer Gemma), a
byte-level BPE with PaliGemma's ``<image>``, ``<locYYYY>`` and ``<segNNN>`` tokens, and the PIL
``SiglipImageProcessorPil``, saved with ``save_pretrained``; ``build_random_mask_decoder`` writes an
npz with the names and shapes of big_vision's ``vae-oid.npz`` (random values).
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.tiny_vlm import _INIT_STD, _padded_vocab, _seed, _tokenizer

__all__ = ["TINY_PALIGEMMA_SIZE", "build_random_mask_decoder", "build_tiny_paligemma"]

TINY_PALIGEMMA_SIZE = 32


def build_tiny_paligemma(dst_dir: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Save a tiny random-weight ``PaliGemmaForConditionalGeneration`` with its processor to ``dst_dir``."""
    from tokenizers import AddedToken
    from transformers import (
        GemmaConfig,
        GenerationConfig,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessorPil,
        SiglipVisionConfig,
    )

    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    _seed(seed)
    size, patch = TINY_PALIGEMMA_SIZE, 8
    tok = _tokenizer(["<pad>", "<eos>", "<bos>", "<unk>", "<image>"], bos_token="<bos>", eos_token="<eos>",
                     pad_token="<pad>", unk_token="<unk>", extra_special_tokens={"image_token": "<image>"})
    # as in PaliGemma's tokenizer: location and mask tokens are ordinary (non-special) added tokens
    tok.add_tokens([AddedToken(f"<loc{i:04d}>", normalized=False) for i in range(1024)]
                   + [AddedToken(f"<seg{i:03d}>", normalized=False) for i in range(128)])
    ip = SiglipImageProcessorPil(size={"height": size, "width": size}, do_rescale=True, rescale_factor=1 / 255,
                                 do_normalize=True, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    ip.image_seq_length = (size // patch) ** 2
    processor = PaliGemmaProcessor(image_processor=ip, tokenizer=tok)
    text = GemmaConfig(vocab_size=_padded_vocab(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=512,
                       initializer_range=_INIT_STD, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                       pad_token_id=tok.pad_token_id)
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                image_size=size, patch_size=patch, projection_dim=32, initializer_range=_INIT_STD)
    config = PaliGemmaConfig(vision_config=vision, text_config=text, projection_dim=32,
                             image_token_id=tok.convert_tokens_to_ids("<image>"))
    model = PaliGemmaForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id)
    model.save_pretrained(dst)
    processor.save_pretrained(dst)
    return dst


def build_random_mask_decoder(dst: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write random VQ-VAE decoder weights with ``vae-oid.npz``'s names and shapes (PyTorch layout) to ``dst``."""
    import numpy as np
    import torch

    from operators.models.paligemma_masks import VQMaskDecoder

    torch.manual_seed(seed)
    dec = VQMaskDecoder()
    with torch.no_grad():
        dec._vq_vae._embedding.normal_()
    out = Path(dst)
    np.savez(out, **{k: v.numpy() for k, v in dec.state_dict().items()})
    return out
