"""Tiny random-weight open-vocabulary detectors (OWLv2, Grounding DINO) saved like hub checkpoints.

``Owlv2Config`` (2-layer 32-wide CLIP towers, 8 px patches on 64x64: 64 boxes) with a byte-level
BPE whose pad token ``!`` has id 0 as in CLIP's vocabulary (OWL masks a query whose first id is
0), and ``GroundingDinoConfig`` (a 4-stage Swin of width 8, a 1-layer BERT, 30 queries) with a
WordPiece vocabulary laid out like BERT's where it matters: ``[CLS]``=101, ``[SEP]``=102,
``.``=1012, ``?``=1029 (Grounding DINO finds phrase boundaries by those ids). Processors use the
PIL backend (no torchvision). Random weights: tests check plumbing, never what is found.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.tiny_detectors import image_processor
from tests.support.tiny_embedding import _tokenizer

__all__ = ["TINY_ZERO_SHOT_SIZE", "build_tiny_grounding_dino", "build_tiny_owlv2"]

TINY_ZERO_SHOT_SIZE = 64
_WORDS = "a an the of on in person people riding bicycle red car dog cat photo street sign bus".split()


def _save(model, processor, dst_dir: str | os.PathLike[str]) -> Path:  # type: ignore[no-untyped-def]
    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(dst)
    processor.save_pretrained(dst)
    return dst


def build_tiny_owlv2(dst_dir: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """OWLv2 (``Owlv2ForObjectDetection``) on 64x64 inputs: an 8x8 grid of boxes, texts padded to 16 tokens."""
    import torch
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2Processor

    torch.manual_seed(seed)
    tok = _tokenizer(["!", "<|startoftext|>", "<|endoftext|>"], "<|startoftext|> $A <|endoftext|>",
                     bos_token="<|startoftext|>", eos_token="<|endoftext|>", pad_token="!",
                     unk_token="<|endoftext|>", model_max_length=16)
    vocab = (len(tok) + 7) // 8 * 8
    text = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=16, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=8,
                  image_size=TINY_ZERO_SHOT_SIZE)
    config = Owlv2Config(text_config=text, vision_config=vision, projection_dim=32)  # class head: text width
    ip = image_processor("Owlv2ImageProcessor", size={"height": TINY_ZERO_SHOT_SIZE, "width": TINY_ZERO_SHOT_SIZE})
    model = Owlv2ForObjectDetection(config)
    with torch.no_grad():  # logit shift ~0 and scale ~1: probabilities sigmoid(cosine) spread over (0.27, 0.73)
        for lin in (model.class_head.logit_shift, model.class_head.logit_scale):
            lin.weight.mul_(0.05)
            lin.bias.zero_()
    return _save(model, Owlv2Processor(image_processor=ip, tokenizer=tok), dst_dir)


def build_tiny_grounding_dino(dst_dir: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Grounding DINO (``GroundingDinoForObjectDetection``) with a Swin backbone and BERT text encoder."""
    import torch
    from transformers import (
        BertConfig,
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoProcessor,
        SwinConfig,
    )

    torch.manual_seed(seed)
    vocab = [f"[unused{i}]" for i in range(1040)]
    for i, t in ((0, "[PAD]"), (100, "[UNK]"), (101, "[CLS]"), (102, "[SEP]"), (103, "[MASK]"), (1012, "."),
                 (1029, "?")):
        vocab[i] = t
    vocab += _WORDS
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True, model_max_length=256)
    swin = SwinConfig(image_size=TINY_ZERO_SHOT_SIZE, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                      window_size=2, out_features=["stage2", "stage3", "stage4"])
    bert = BertConfig(vocab_size=(len(vocab) + 7) // 8 * 8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=256)
    # decoder_layers >= 2: the head ties bbox_embed.0 to the later layers
    config = GroundingDinoConfig(backbone_config=swin, text_config=bert, d_model=32, encoder_layers=1,
                                 decoder_layers=2, encoder_ffn_dim=64, decoder_ffn_dim=64, encoder_attention_heads=2,
                                 decoder_attention_heads=2, num_queries=30, encoder_n_points=2, decoder_n_points=2,
                                 num_feature_levels=3, max_text_len=256)
    ip = image_processor("GroundingDinoImageProcessor",
                         size={"shortest_edge": TINY_ZERO_SHOT_SIZE, "longest_edge": 2 * TINY_ZERO_SHOT_SIZE})
    return _save(GroundingDinoForObjectDetection(config), GroundingDinoProcessor(image_processor=ip, tokenizer=tok),
                 dst_dir)
