"""Index benchmark: write throughput and search latency at 10^5 (``--quick``, default) or also 10^6 (``--full``)
indexed frames, beside a brute-force numpy scan of the same vectors measured in the same run.

Rows are synthetic frames (one detections row each: labels, a composed caption, a random unit
384-d text vector standing in for MiniLM, whose CPU cost is measured apart on the real model with
the indexer's own path over a realistic caption vocabulary). Printed per size: events/s through
``IndexStore.write`` (merge_insert on event_id with offsets), Lance vector search p50/p95 (flat
scan, or IVF-PQ with ``--ann``), full-text p50/p95, the whole moment search p50/p95, and numpy's
exact top-k p50/p95 with the recall@10 of Lance against it.

    python -m tests.bench.bench_index [--full] [--ann] [--queries 40]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import numpy as np

from pipeline.index.store import TEXT_DIM, IndexStore

LABELS = ["person", "car", "bicycle", "dog", "truck", "bus", "traffic light", "bench", "backpack", "umbrella"]


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def synthetic_rows(start: int, n: int, rng: np.random.Generator, vecs: np.ndarray) -> list[dict[str, Any]]:
    out = []
    for i in range(start, start + n):
        sid = f"cam{i % 50:02d}-{i % 50:08x}"
        pts = (i // 50) * 0.5
        labels = [LABELS[j] for j in sorted(set(rng.integers(0, len(LABELS), 2).tolist()))]
        cap = "a " + " and a ".join(labels)
        out.append({"event_id": f"e{i:09d}", "type": "detections", "source_id": sid, "source_uri": f"/v/{sid}.mp4",
                    "pts": pts, "end_pts": None, "time": 1.8e9 + pts, "run_id": "bench", "model": "centernet",
                    "labels": labels, "track_ids": None, "caption": cap, "ocr": None, "query": None,
                    "matched": None, "score": None, "text": f"{cap} {' '.join(labels)}", "text_vec": vecs[i - start],
                    "thumb_jpeg": None, "raw": "{}", "topic": "fw.detections", "partition": i % 3, "offset": i // 3})
    return out


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, TEXT_DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def bench_size(n: int, queries: int, ann: bool = False, batch: int = 10_000) -> None:
    rng = np.random.default_rng(0)
    store = IndexStore(tempfile.mkdtemp(prefix=f"fw-bench-{n}-"))
    all_vecs = np.empty((n, TEXT_DIM), np.float32)
    t0 = time.perf_counter()
    write_s = 0.0
    for s in range(0, n, batch):
        k = min(batch, n - s)
        vecs = unit(rng, k)
        all_vecs[s:s + k] = vecs
        rows = synthetic_rows(s, k, rng, vecs)
        w0 = time.perf_counter()
        store.write(rows)
        write_s += time.perf_counter() - w0
        if s == 0:
            store.ensure_indexes()
    t_idx = time.perf_counter()
    store.ensure_indexes(vector_index=ann)
    store.optimize()
    index_s = time.perf_counter() - t_idx
    print(f"\n== {n:,} frames: write {n / write_s:,.0f} events/s (merge_insert on event_id, batches of {batch:,}); "
          f"indexes (FTS, BTREE{', IVF-PQ' if ann else '; vectors: exact scan'}) + optimize {index_s:.1f}s; "
          f"total build {time.perf_counter() - t0:.1f}s")
    t = store.events
    qs = unit(rng, queries)
    lance_ms, numpy_ms, recall = [], [], []
    for q in qs:
        a = time.perf_counter()
        res = (t.search(q, vector_column_name="text_vec").metric("cosine").nprobes(20).refine_factor(5)
               .select(["event_id", "_distance"]).limit(10).to_arrow())
        lance_ms.append((time.perf_counter() - a) * 1000)
        a = time.perf_counter()
        top = np.argpartition(-(all_vecs @ q), 10)[:10]
        numpy_ms.append((time.perf_counter() - a) * 1000)
        exact = {f"e{i:09d}" for i in top}
        recall.append(len(exact & set(res.column("event_id").to_pylist())) / 10)
    fts_ms, moment_ms = [], []
    from pipeline.index.search import search

    class _Fixed:  # query vectors for the moment search; MiniLM's cost is measured in bench_embed
        def embed(self, texts: list[str]) -> np.ndarray:
            return unit(rng, len(texts))

    for i in range(queries):
        word = LABELS[i % len(LABELS)]
        a = time.perf_counter()
        t.search(word, query_type="fts").select(["event_id", "_score"]).limit(50).to_arrow()
        fts_ms.append((time.perf_counter() - a) * 1000)
        a = time.perf_counter()
        search(store, word, embedder=_Fixed(), candidates=200)
        moment_ms.append((time.perf_counter() - a) * 1000)
    print(f"  vector top-10   lance p50 {percentile(lance_ms, 50):7.1f} ms  p95 {percentile(lance_ms, 95):7.1f} ms"
          f"   | numpy brute force p50 {percentile(numpy_ms, 50):7.1f} ms  p95 {percentile(numpy_ms, 95):7.1f} ms"
          f"   | lance recall@10 vs exact {np.mean(recall):.2f}")
    print(f"  full-text top-50     p50 {percentile(fts_ms, 50):7.1f} ms  p95 {percentile(fts_ms, 95):7.1f} ms")
    print(f"  moment search (fts + vector + merge + thumbnails) p50 {percentile(moment_ms, 50):7.1f} ms  "
          f"p95 {percentile(moment_ms, 95):7.1f} ms")


def bench_embed(events: int = 2000) -> None:
    """The indexer's own path (JSON -> rows -> MiniLM -> write) on hand-built events with repeating captions."""
    import torch

    from pipeline.index.indexer import Indexer
    from tests.support.index_events import as_records, scene

    torch.set_num_threads(1)
    recs = as_records([e for k in range(max(1, events // 80)) for e in scene(f"c{k}-{k:08x}", thumbnails=False)])
    store = IndexStore(tempfile.mkdtemp(prefix="fw-bench-embed-"))
    ix = Indexer(store, "unused:9092")
    ix.write(recs[:10])  # loads MiniLM
    a = time.perf_counter()
    for s in range(10, len(recs), 500):
        ix.write(recs[s:s + 500])
    dt = time.perf_counter() - a
    b = time.perf_counter()
    ix._embedder._cache.clear()
    ix._embedder.embed([f"a unique caption number {i}" for i in range(200)])
    per_text = (time.perf_counter() - b) / 200 * 1000
    print(f"\n== indexer path, {len(recs) - 10:,} real-shaped events (captions repeat, cached): "
          f"{(len(recs) - 10) / dt:,.0f} events/s; MiniLM on a new text {per_text:.1f} ms each (1 thread)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="also 10^6 frames (a few minutes)")
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--ann", action="store_true", help="train IVF-PQ on the text vectors (minutes on 2 cores)")
    args = ap.parse_args()
    bench_embed()
    for n in [100_000, *([1_000_000] if args.full else [])]:
        bench_size(n, args.queries, args.ann)


if __name__ == "__main__":
    main()
