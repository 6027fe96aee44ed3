"""A tiny random-weight GPT-2 causal LM with a byte-level BPE trained here, saved like a hub checkpoint,
for the summary paragraph's plumbing (never for what it writes)."""

from __future__ import annotations

import os
from pathlib import Path

_CORPUS = ["Timeline of a source", "window up to 2 car in a frame", "bicycle seen", "Summary: a person rode a bike",
           "track appeared left after", "matched query", "reads text"]


def build_tiny_gpt2(dst: str | os.PathLike[str], seed: int = 0) -> Path:
    """Save a 2-layer, 32-wide GPT-2 (real GPT2Config) and its tokenizer under ``dst``; returns the path."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_CORPUS, trainer=trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    cfg = GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=512, n_embd=32, n_layer=2, n_head=2,
                     bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(cfg).eval()
    out = Path(dst)
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out
