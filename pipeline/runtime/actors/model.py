"""ModelActor: hosts one VisionModel; a batch of chunks in, one ChunkResult per chunk out."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray

from operators.frames import FrameBatch
from operators.models.registry import create
from pipeline.events import ErrorEvent, Topics, build_frame_events, build_thumbnail_events, event_id, to_record
from pipeline.runtime.actors.metrics import ModelMetrics
from pipeline.runtime.chunks import ChunkResult, FrameMeta, select_output

__all__ = ["ModelActor", "ModelBatch"]


@dataclass
class ModelBatch:
    """One model call: a result per chunk (in the order given), and how long the call took."""

    chunks: list[ChunkResult] = field(default_factory=list)
    frames: int = 0  # frames the model ran on
    model_s: float = 0.0
    failed: bool = False


@ray.remote
class ModelActor:
    """Loads the model once, then runs whole batches (chunks from several sources joined)."""

    def __init__(self, family: str, kwargs: dict[str, Any], run_id: str, uris: dict[str, str],
                 topic_prefix: str, live: bool = False, thumbnails: dict[str, Any] | None = None,
                 per_frame_queries: bool = True) -> None:
        self.live = live
        self.thumbnails = thumbnails  # None: off; else max_side, quality, max_bytes
        self.per_frame_queries = per_frame_queries and not live  # live: the stage publishes match intervals
        self.batch_s = 0.0  # moving average of one model call, to judge which frames can still make it
        self.model = create(family, **kwargs)
        self.model.setup()
        if thumbnails:  # load the JPEG encoder with the model, not inside the first batch's time
            from pipeline.events.thumbnails import encode_thumbnail

            encode_thumbnail(np.zeros((16, 16, 3), np.uint8), 16, 16)
        self.run_id = run_id
        self.uris = uris
        self.topics = Topics(topic_prefix)
        self.metrics = ModelMetrics({"model": str(kwargs.get("model_id") or family), "run_id": run_id})

    def info(self) -> dict[str, Any]:
        import torch

        return {"input_size": self.model.input_size(), "batch_size": self.model.batch_size,
                "torch_threads": torch.get_num_threads(),
                "resize_mode": getattr(self.model, "resize_mode", "stretch")}

    def set_queries(self, queries: list[str]) -> None:
        self.model.set_queries(queries)

    def add_uris(self, uris: dict[str, str]) -> None:
        self.uris.update(uris)

    def process(self, *chunks: FrameBatch, ids: list[tuple[str, int]],
                budgets_ms: dict[str, float] | None = None) -> ModelBatch:
        """``ids[i]`` = (source id, seq) of ``chunks[i]``; ``budgets_ms`` (live, optional) drops frames that
        would be published after their source's budget."""
        sizes = [len(c) for c in chunks]
        batch = chunks[0] if len(chunks) == 1 else FrameBatch.concat(list(chunks))
        owner = np.repeat(np.arange(len(chunks)), sizes)  # batch row -> chunk index
        keep = np.ones(len(batch), bool)
        if budgets_ms:
            now = time.time()
            limit = np.array([budgets_ms.get(s, np.inf) / 1000 for s in batch.source_id.tolist()])
            keep = (now - batch.wall_time) + self.batch_s <= limit
        results = [ChunkResult(sid, seq, None, None, decoded=n, dropped=int((~keep[owner == i]).sum()),
                               last_pts=float(chunks[i].pts[-1]) if n else None)
                   for i, ((sid, seq), n) in enumerate(zip(ids, sizes, strict=True))]
        if not keep.any():
            return ModelBatch(results)
        run = batch if keep.all() else batch[keep]
        run_owner = owner[keep]
        t0 = time.perf_counter()
        try:
            out = self.model(run)
            tasks = ("caption", "embed", "ocr", "ask") + (("query",) if self.per_frame_queries else ())
            events = build_frame_events(run, out, run_id=self.run_id, uris=self.uris, tasks=tasks)
            if self.thumbnails:
                events += build_thumbnail_events(run, run_id=self.run_id, uris=self.uris, **self.thumbnails)
        except Exception as exc:  # noqa: BLE001 - a poison batch yields error events, the run goes on
            self._failed(run, run_owner, results, exc)
            self.metrics.batch(len(run), 0.0, failed=True)
            return ModelBatch(results, len(run), time.perf_counter() - t0, failed=True)
        took = time.perf_counter() - t0
        self.metrics.batch(len(run), took)
        self.batch_s = took if self.batch_s == 0.0 else 0.8 * self.batch_s + 0.2 * took
        row_of = {(str(run.source_id[r]), float(run.pts[r])): r for r in range(len(run))}
        for ev in events:  # each frame's records go with its chunk
            results[int(run_owner[row_of[(ev.source_id, ev.pts)]])].records.append(to_record(ev, self.topics))
        for i, res in enumerate(results):
            rows = np.flatnonzero(run_owner == i)
            if len(rows):
                res.meta = FrameMeta.of(run, rows)
                res.output = select_output(out, rows)
        return ModelBatch(results, len(run), took)

    def _failed(self, run: FrameBatch, owner: np.ndarray, results: list[ChunkResult], exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        if last:
            reason += f" (at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})"
        for row in range(len(run)):
            sid, pts = str(run.source_id[row]), float(run.pts[row])
            ev = ErrorEvent(event_id=event_id(sid, pts, "error", "model"), run_id=self.run_id, source_id=sid,
                            source_uri=self.uris.get(sid, sid), emitted_at=time.time(), stage="model",
                            reason=reason, error_type=type(exc).__name__, frame_index=int(run.frame_index[row]),
                            pts=pts)
            res = results[int(owner[row])]
            res.records.append(to_record(ev, self.topics))
            res.failed = True

    def teardown(self) -> None:
        self.model.teardown()
