"""Tiny random-weight image-text embedding checkpoints (SigLIP, SigLIP 2 NaFlex, CLIP) for tests.

Each is a real config with 2 layers and 32-wide towers on 32x32 images (8 px patches), a
byte-level BPE tokenizer trained here on a few sentences with the end/start tokens the family
adds, and the family's image processor at that size, all saved with ``save_pretrained`` so
``AutoModel``/``AutoTokenizer``/``AutoImageProcessor`` load them back like a downloaded
checkpoint. Random weights say nothing meaningful: tests check plumbing, never what matches.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["TINY_EMBEDDING_SIZE", "build_tiny_clip", "build_tiny_siglip", "build_tiny_siglip2"]

TINY_EMBEDDING_SIZE = 32  # square vision input: 4x4 patches of 8 px
_PATCH = 8
_CORPUS = [
    "a person riding a bicycle", "a photo of a person riding a bicycle", "a red car", "a photo of a red car",
    "dog", "a photo of a dog", "a photo", "an empty street at night", "someone lying on the floor",
]
# Logit scale and bias written into the checkpoints (SigLIP initialises both to 0, i.e. scale 1):
# with scale 10 and bias -1, random-weight cosines (about +-0.2) spread the scores over (0.05, 0.7).
_LOGIT_SCALE, _LOGIT_BIAS = 10.0, -1.0


def _seed(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _tokenizer(special: list[str], template: str, **roles: Any) -> Any:
    """A byte-level BPE on ``_CORPUS`` with ``special`` tokens first and ``template`` (e.g. ``"$A </s>"``)
    adding the family's start/end tokens, wrapped as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, min_frequency=1, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(s, tok.token_to_id(s)) for s in special if s in template])
    return PreTrainedTokenizerFast(tokenizer_object=tok, **roles)


def _image_processor(family: str, **kwargs: Any) -> Any:
    """The family's image processor; the PIL backend where torchvision (the default backend) is missing."""
    import transformers

    name = {"siglip": "SiglipImageProcessor", "siglip2": "Siglip2ImageProcessor", "clip": "CLIPImageProcessor"}[family]
    if importlib.util.find_spec("torchvision") is None:
        name += "Pil"
    return getattr(transformers, name)(**kwargs)


def _towers(vocab: int, max_text: int, **text: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    text_config = {"vocab_size": vocab, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                   "num_attention_heads": 2, "max_position_embeddings": max_text, **text}
    vision_config = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "patch_size": _PATCH}
    return text_config, vision_config


def _save(model: Any, tok: Any, image_processor: Any, dst: Path) -> Path:
    import torch

    with torch.no_grad():
        model.logit_scale.fill_(math.log(_LOGIT_SCALE))
        if hasattr(model, "logit_bias"):
            model.logit_bias.fill_(_LOGIT_BIAS)
    model.eval().save_pretrained(dst)
    tok.save_pretrained(dst)
    image_processor.save_pretrained(dst)
    return dst


def _vocab(tok: Any) -> int:
    return (len(tok) + 7) // 8 * 8


def build_tiny_siglip(dst_dir: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Save a tiny random-weight SigLIP (``SiglipModel``) to ``dst_dir``; texts end in ``</s>``, padded to 16."""
    from transformers import SiglipConfig, SiglipModel

    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    _seed(seed)
    tok = _tokenizer(["</s>", "<unk>"], "$A </s>", eos_token="</s>", pad_token="</s>", unk_token="<unk>",
                     model_max_length=16)
    text, vision = _towers(_vocab(tok), 16, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                           bos_token_id=None)
    config = SiglipConfig(text_config=text, vision_config={**vision, "image_size": TINY_EMBEDDING_SIZE})
    ip = _image_processor("siglip", size={"height": TINY_EMBEDDING_SIZE, "width": TINY_EMBEDDING_SIZE},
                          resample=3, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    return _save(SiglipModel(config), tok, ip, dst)


def build_tiny_siglip2(dst_dir: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Save a tiny random-weight SigLIP 2 NaFlex (``Siglip2Model``, at most 16 patches of 8 px) to ``dst_dir``."""
    from transformers import Siglip2Config, Siglip2Model

    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    _seed(seed)
    tok = _tokenizer(["<pad>", "<eos>", "<bos>", "<unk>"], "<bos> $A <eos>", bos_token="<bos>", eos_token="<eos>",
                     pad_token="<pad>", unk_token="<unk>", model_max_length=16)
    text, vision = _towers(_vocab(tok), 16, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                           bos_token_id=tok.bos_token_id)
    patches = (TINY_EMBEDDING_SIZE // _PATCH) ** 2
    config = Siglip2Config(text_config=text, vision_config={**vision, "num_patches": patches})
    ip = _image_processor("siglip2", patch_size=_PATCH, max_num_patches=patches,
                          image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    return _save(Siglip2Model(config), tok, ip, dst)


def build_tiny_clip(dst_dir: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Save a tiny random-weight CLIP (``CLIPModel``, 16-d projections) to ``dst_dir``.

    As with openai/clip-*, texts are wrapped in start/end tokens and padded with the end token,
    and images are resized on the short side then centre-cropped to a square.
    """
    from transformers import CLIPConfig, CLIPModel

    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    _seed(seed)
    tok = _tokenizer(["<|startoftext|>", "<|endoftext|>"], "<|startoftext|> $A <|endoftext|>",
                     bos_token="<|startoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                     unk_token="<|endoftext|>", model_max_length=16)
    text, vision = _towers(_vocab(tok), 16, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                           bos_token_id=tok.bos_token_id)
    config = CLIPConfig(text_config=text, vision_config={**vision, "image_size": TINY_EMBEDDING_SIZE},
                        projection_dim=16)
    ip = _image_processor("clip", size={"shortest_edge": TINY_EMBEDDING_SIZE}, do_center_crop=True,
                          crop_size={"height": TINY_EMBEDDING_SIZE, "width": TINY_EMBEDDING_SIZE}, resample=3,
                          image_mean=[0.48145466, 0.4578275, 0.40821073],
                          image_std=[0.26862954, 0.26130258, 0.27577711])
    return _save(CLIPModel(config), tok, ip, dst)
