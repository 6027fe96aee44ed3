"""The image-embedding signal with a tiny random SigLIP: text through its text tower, search by example,
and a clear skip / error when the model that made the vectors cannot be loaded here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.events import EmbeddingEvent, event_id
from pipeline.index.indexer import Indexer
from pipeline.index.search import family_vectors, load_image_family, search
from pipeline.index.store import IndexStore
from tests.support.index_events import as_records, frame_common, scene


@pytest.fixture(scope="module")
def embedder():  # type: ignore[no-untyped-def]
    import torch

    from operators.models.minilm import TextEmbedder

    torch.set_num_threads(1)
    return TextEmbedder()


def _frames() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)


def _embedding_events(sid: str, model: str, vecs: np.ndarray) -> list[tuple[str, dict]]:
    out = []
    for i, v in enumerate(vecs):
        pts = i * 0.5
        out.append(("embeddings", EmbeddingEvent(
            event_id=event_id(sid, pts, "embed", model), model=model, dim=len(v), normalized=True,
            vector=np.round(v.astype(np.float64), 6).tolist(), **frame_common(sid, pts, i)).model_dump(mode="json")))
    return out


def test_image_signal_and_search_by_example(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    from tests.support.tiny_embedding import build_tiny_siglip

    path = str(build_tiny_siglip(tmp_path / "siglip"))
    fam = load_image_family(path)
    pixels = _frames()
    vecs = family_vectors(fam, images=pixels)
    store = IndexStore(tmp_path / "db")
    ix = Indexer(store, "unused:9092")
    ix._embedder = embedder
    ix.write(as_records(scene("cam-1", frames=6) + _embedding_events("cam-1", path, vecs)))
    assert store.image_tables().keys() == {vecs.shape[1]}

    res = search(store, "a red car", embedder=embedder)
    assert res.signals["image"] == "used"
    assert any(e["signal"] == "image" for m in res.moments for e in m.evidence)

    by_example = search(store, image=pixels[3], gap=0.01)
    assert by_example.signals == {"image": "used"}
    assert by_example.moments[0].best_pts == 1.5  # the frame itself is its own nearest neighbour


def test_unloadable_image_model_is_skipped_and_named(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    store = IndexStore(tmp_path / "db")
    ix = Indexer(store, "unused:9092")
    ix._embedder = embedder
    vecs = np.eye(16, dtype=np.float32)[:4]
    ix.write(as_records(scene("cam-1", frames=4) + _embedding_events("cam-1", "google/siglip-not-here", vecs)))
    res = search(store, "car", embedder=embedder)
    assert res.signals["image"].startswith("skipped: google/siglip-not-here") and res.moments
    with pytest.raises(ValueError, match="search by example needs image embeddings.*--embedding-model"):
        search(store, image=_frames()[0])
