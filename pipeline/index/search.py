"""Hybrid search over the index that answers with moments: time ranges of one source, best first.

Three signals, each scoring frames (rows merged on (source, pts)): Lance full-text search over
caption + labels + OCR text (BM25, scaled by the best hit), MiniLM cosine similarity to the same
text, and image embeddings scored with the matching family's text tower (used only where that
model loads offline; otherwise the result says the signal was skipped and why). A frame's score is
the weighted mean of the signals used. Gap rule: matching frames of one source form one moment while
each is at most ``gap`` seconds after the previous one; ``gap`` defaults to 1.5 x the source's
sampling step (so one non-matching sampled frame between two matches splits them), 1 s when unknown.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.index.store import IndexStore, sql_str

__all__ = ["Moment", "SearchResult", "search", "WEIGHTS"]

log = logging.getLogger(__name__)
WEIGHTS = {"text": 0.5, "fts": 0.3, "image": 0.2}
_FIELD = {"caption": "caption", "detections": "labels", "ocr": "ocr", "query": "query", "window": "window",
          "query_match": "query_match"}
_COLS = ["event_id", "type", "source_id", "source_uri", "pts", "time", "text", "caption", "labels", "ocr"]


@dataclass
class Moment:
    source_id: str
    source_uri: str
    start_pts: float
    end_pts: float
    best_pts: float
    score: float
    frames: int
    start_time: float | None = None
    end_time: float | None = None
    evidence: list[dict[str, Any]] = field(default_factory=list)
    thumbnail: bytes | None = None

    def to_dict(self, thumbnail_dir: Path | None = None) -> dict[str, Any]:
        """JSON-ready; the thumbnail as base64, or as a file written under ``thumbnail_dir``."""
        d = asdict(self)
        thumb = d.pop("thumbnail")
        d["thumbnail_base64"] = None
        d["thumbnail_path"] = None
        if thumb is not None and thumbnail_dir is not None:
            p = Path(thumbnail_dir) / f"{self.source_id}_{self.best_pts:.3f}.jpg"
            p.write_bytes(thumb)
            d["thumbnail_path"] = str(p)
        elif thumb is not None:
            d["thumbnail_base64"] = base64.b64encode(thumb).decode("ascii")
        return d


@dataclass
class SearchResult:
    query: str | None
    moments: list[Moment]
    signals: dict[str, str]  # signal -> "used" or why it was skipped

    def to_dict(self, thumbnail_dir: Path | None = None) -> dict[str, Any]:
        return {"query": self.query, "signals": self.signals,
                "moments": [m.to_dict(thumbnail_dir) for m in self.moments]}


def _filters(store: IndexStore, source: str | None, since: float | None, until: float | None) -> list[str]:
    parts = []
    if source:
        parts.append(f"source_id = {sql_str(store.resolve_source(source))}")
    if since is not None:
        parts.append(f"time >= {float(since)!r}")
    if until is not None:
        parts.append(f"time <= {float(until)!r}")
    return parts


def _key(sid: str, pts: float) -> tuple[str, float]:
    return sid, round(float(pts), 3)


class _Frames:
    """Per-frame signal scores and evidence, filled in signal by signal."""

    def __init__(self) -> None:
        self.scores: dict[tuple[str, float], dict[str, float]] = {}
        self.evidence: dict[tuple[str, float], list[dict[str, Any]]] = {}
        self.meta: dict[tuple[str, float], dict[str, Any]] = {}

    def add(self, signal: str, row: dict[str, Any], score: float, text: str | None) -> None:
        if row.get("pts") is None or not row.get("source_id"):
            return
        k = _key(row["source_id"], row["pts"])
        s = self.scores.setdefault(k, {})
        s[signal] = max(s.get(signal, 0.0), score)
        meta = self.meta.setdefault(k, {"source_uri": "", "time": row.get("time")})
        meta["source_uri"] = meta["source_uri"] or row.get("source_uri") or ""
        if text:
            self.evidence.setdefault(k, []).append(
                {"signal": signal, "field": _FIELD.get(row.get("type", ""), row.get("type", "")),
                 "text": text, "score": round(float(score), 4)})


def _fts(store: IndexStore, text: str, where: str, k: int, frames: _Frames) -> str:
    try:
        q = store.events.search(text, query_type="fts").select([*_COLS, "_score"]).limit(k)
        rows = (q.where(where) if where else q).to_arrow().to_pylist()
    except Exception as exc:  # noqa: BLE001 - no FTS index yet (nothing indexed): say so, keep the others
        return f"skipped: full-text search failed ({type(exc).__name__}: {exc})"
    best = max((r["_score"] for r in rows), default=0.0) or 1.0
    for r in rows:
        frames.add("fts", r, float(r["_score"]) / best, r["text"])
    return "used"


def _text(store: IndexStore, qvec: np.ndarray, where: str, k: int, frames: _Frames, floor: float) -> str:
    w = " AND ".join([*([where] if where else []), "text_vec IS NOT NULL"])
    rows = (store.events.search(qvec, vector_column_name="text_vec").metric("cosine").where(w, prefilter=True)
            .select([*_COLS, "_distance"]).nprobes(20).refine_factor(5).limit(k).to_arrow().to_pylist())
    for r in rows:
        sim = 1.0 - float(r["_distance"])
        if sim >= floor:
            frames.add("text", r, sim, r["text"])
    return "used"


def _image(store: IndexStore, vectors: dict[str, np.ndarray], where: str, k: int, frames: _Frames) -> None:
    for dim, t in store.image_tables().items():
        for model, vec in vectors.items():
            if len(vec) != dim:
                continue
            w = " AND ".join([*([where] if where else []), f"model = {sql_str(model)}"])
            rows = (t.search(vec, vector_column_name="vector").metric("cosine").where(w, prefilter=True)
                    .select(["event_id", "source_id", "pts", "time", "model", "_distance"]).limit(k)
                    .to_arrow().to_pylist())
            if not rows:
                continue
            sims = np.array([1.0 - float(r["_distance"]) for r in rows])
            lo, hi = float(sims.min()), float(sims.max())
            for r, s in zip(rows, sims, strict=True):
                rel = 1.0 if hi - lo < 1e-9 else (float(s) - lo) / (hi - lo)
                frames.add("image", r, rel, f"image similarity {float(s):.3f} ({model})")


def image_models_in(store: IndexStore) -> list[str]:
    """Ids of the image-embedding models whose vectors are in the index."""
    out: set[str] = set()
    for t in store.image_tables().values():
        out.update(r["model"] for r in t.search().select(["model"]).limit(10_000).to_arrow().to_pylist())
    return sorted(out)


def load_image_family(model_id: str, path: str | None = None) -> Any:
    """The image-text model that produced ``model_id``'s vectors, loaded offline (raises OSError if absent)."""
    from operators.models.embedding import EmbeddingModel

    m = EmbeddingModel(model_id=model_id, path=path, tasks=["embed"], device="cpu")
    m.setup()
    return m


def family_vectors(fam: Any, *, images: np.ndarray | None = None, texts: list[str] | None = None) -> np.ndarray:
    """Unit vectors from an image-text family: of ``images`` (uint8 [N, H, W, 3]) or of ``texts``."""
    import torch

    with torch.inference_mode():
        out = fam.image_embeddings(images) if images is not None else fam.text_embeddings(texts or [])
    return out.float().cpu().numpy()  # type: ignore[no-any-return]


def search(store: IndexStore, text: str | None = None, *, image: np.ndarray | None = None,
           source: str | None = None, since: float | None = None, until: float | None = None,
           label: str | None = None, limit: int = 10, candidates: int = 400, min_text_sim: float = 0.35,
           min_score_ratio: float = 0.4, gap: float | None = None, embedder: Any = None,
           image_model_paths: dict[str, str] | None = None) -> SearchResult:
    """Moments for ``text`` (or an example ``image``, uint8 [H, W, 3]) in ``store``, best first."""
    if not text and image is None:
        raise ValueError("search needs a text or an --image FILE")
    where = " AND ".join(_filters(store, source, since, until))
    frames = _Frames()
    signals: dict[str, str] = {}
    paths = image_model_paths or {}
    models = image_models_in(store)
    if text:
        signals["fts"] = _fts(store, text, where, candidates, frames)
        if embedder is None:
            from operators.models.minilm import TextEmbedder

            embedder = TextEmbedder()
        signals["text"] = _text(store, embedder.embed([text])[0], where, candidates, frames, min_text_sim)
    vectors: dict[str, np.ndarray] = {}
    skipped = []
    for m in models:
        try:
            fam = load_image_family(m, paths.get(m))
        except (OSError, ValueError) as exc:
            skipped.append(f"{m}: {str(exc).splitlines()[0]}")
            continue
        vectors[m] = family_vectors(fam, images=image[None] if image is not None else None,
                                    texts=None if image is not None else [text])[0]
        fam.teardown()
    if image is not None and not vectors:
        why = "; ".join(skipped) if skipped else "the index holds no image embeddings"
        raise ValueError(f"search by example needs image embeddings and their model: {why}. Fix: run the "
                         "pipeline with an image-embedding family (e.g. --config configs/embedding-gpu.yaml, task "
                         "embed), index it, and make the model's weights local (--embedding-model ID=PATH)")
    if vectors:
        _image(store, vectors, where, candidates, frames)
        signals["image"] = "used" + (f" (skipped {'; '.join(skipped)})" if skipped else "")
    else:
        signals["image"] = ("skipped: " + "; ".join(skipped)) if skipped else "skipped: no image embeddings indexed"
    keep = _label_frames(store, label, where) if label else None
    moments = _moments(store, frames, signals, keep, gap, min_text_sim, min_score_ratio)[:limit]
    _thumbnails(store, moments)
    return SearchResult(text, moments, signals)


def _label_frames(store: IndexStore, label: str, where: str) -> set[tuple[str, float]]:
    w = " AND ".join([*([where] if where else []), f"array_has(labels, {sql_str(label)})"])
    return {_key(r["source_id"], r["pts"]) for r in store.rows(w, ["source_id", "pts"]) if r["pts"] is not None}


def _moments(store: IndexStore, frames: _Frames, signals: dict[str, str], keep: set[tuple[str, float]] | None,
             gap: float | None, min_text_sim: float, min_ratio: float) -> list[Moment]:
    active = [s for s in WEIGHTS if signals.get(s, "").startswith("used")]
    total = sum(WEIGHTS[s] for s in active) or 1.0
    scored = {}
    for k, s in frames.scores.items():
        if keep is not None and k not in keep:
            continue
        if not (s.get("fts", 0) > 0 or s.get("text", 0) >= min_text_sim or s.get("image", 0) >= 0.5):
            continue
        scored[k] = sum(WEIGHTS[sig] * s.get(sig, 0.0) for sig in active) / total
    if not scored:
        return []
    floor = min_ratio * max(scored.values())
    by_source: dict[str, list[tuple[float, float]]] = {}
    for (sid, pts), sc in scored.items():
        if sc >= floor:
            by_source.setdefault(sid, []).append((pts, sc))
    steps = {sid: r.get("step") for sid, r in store.sources().items()}
    moments = []
    for sid, items in by_source.items():
        items.sort()
        g = gap if gap is not None else (1.5 * steps[sid] if steps.get(sid) else 1.0)
        run = [items[0]]
        for it in items[1:]:
            if it[0] - run[-1][0] <= g + 1e-6:
                run.append(it)
            else:
                moments.append(_moment(sid, run, frames))
                run = [it]
        moments.append(_moment(sid, run, frames))
    moments.sort(key=lambda m: (-m.score, m.source_id, m.start_pts))
    return moments


def _moment(sid: str, run: list[tuple[float, float]], frames: _Frames) -> Moment:
    best_pts, best = max(run, key=lambda it: it[1])
    ev: dict[tuple[str, str], dict[str, Any]] = {}
    for pts, _ in run:
        for e in frames.evidence.get((sid, pts), []):
            k = (e["signal"], e["text"])
            if k not in ev or e["score"] > ev[k]["score"]:
                ev[k] = {**e, "pts": pts}
    times = [frames.meta[(sid, p)]["time"] for p, _ in run if frames.meta[(sid, p)]["time"] is not None]
    return Moment(source_id=sid, source_uri=frames.meta[(sid, best_pts)]["source_uri"], start_pts=run[0][0],
                  end_pts=run[-1][0], best_pts=best_pts, score=round(best, 4), frames=len(run),
                  start_time=min(times, default=None), end_time=max(times, default=None),
                  evidence=sorted(ev.values(), key=lambda e: -e["score"])[:6])


def _thumbnails(store: IndexStore, moments: list[Moment]) -> None:
    """Each moment's thumbnail: the indexed JPEG nearest its best frame, all fetched in one query."""
    if not moments:
        return
    spans = " OR ".join(f"(source_id = {sql_str(m.source_id)} AND pts >= {m.start_pts - 1e-3!r} AND "
                        f"pts <= {m.end_pts + 1e-3!r})" for m in moments)
    rows = [r for r in store.rows(f"type = 'thumbnail' AND ({spans})", ["source_id", "pts", "thumb_jpeg"])
            if r["thumb_jpeg"]]
    for m in moments:
        mine = [r for r in rows if r["source_id"] == m.source_id and m.start_pts - 1e-3 <= r["pts"] <= m.end_pts + 1e-3]
        if mine:
            m.thumbnail = min(mine, key=lambda r: abs(r["pts"] - m.best_pts))["thumb_jpeg"]
