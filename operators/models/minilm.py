"""Sentence embeddings with all-MiniLM-L6-v2 (plain ``transformers``: BERT + mean pooling + L2 norm).

Used to match free-text queries against detector labels. Embeddings are cached by text,
so a label or a standing query is embedded once per process.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["TextEmbedder"]

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


class TextEmbedder:
    """``embed(texts)`` -> float32 ``[n, 384]`` unit vectors (cosine similarity is a dot product)."""

    dim = 384

    def __init__(self, path: str | Path | None = None, *, device: str = "cpu", max_length: int = 256) -> None:
        from transformers import AutoModel, AutoTokenizer

        if path is None:
            from operators.models.assets import ensure_minilm

            path = ensure_minilm()
        self.path = Path(path)
        self.device = torch.device(device)
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        self.model = AutoModel.from_pretrained(str(self.path)).to(self.device).eval()
        self._cache: dict[str, np.ndarray] = {}

    @torch.inference_mode()
    def _encode(self, texts: list[str]) -> np.ndarray:
        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        tok = {k: v.to(self.device) for k, v in tok.items()}
        hidden = self.model(**tok).last_hidden_state
        mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy()

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Unit-norm embeddings of ``texts`` (cached per text), shape ``[len(texts), 384]``."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        for i in range(0, len(todo), batch_size):
            chunk = todo[i:i + batch_size]
            for text, vec in zip(chunk, self._encode(chunk), strict=True):
                self._cache[text] = vec
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._cache[t] for t in texts]).astype(np.float32, copy=False)
