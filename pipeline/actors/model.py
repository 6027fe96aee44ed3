"""ModelActor: hosts one VisionModel and turns each batch into ready-to-send records."""

from __future__ import annotations

import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray

from operators.frames import FrameBatch
from operators.models.registry import create
from pipeline.events import (
    ErrorEvent,
    Record,
    Topics,
    build_frame_events,
    build_thumbnail_events,
    event_id,
    to_record,
)

__all__ = ["ModelActor", "ModelResult"]


@dataclass
class ModelResult:
    records: list[Record]
    frames: dict[str, int] = field(default_factory=dict)  # frames per source in this batch
    last_pts: dict[str, float] = field(default_factory=dict)  # highest pts per source in this batch
    events: int = 0
    model_s: float = 0.0
    failed: bool = False
    # live runs: per-frame query answers go to the publisher's QueryTracker, not to Kafka
    query_events: list[Any] = field(default_factory=list)
    capture: list[tuple[str, float]] = field(default_factory=list)  # (source, capture time) per frame
    latency_ms: list[tuple[str, float]] = field(default_factory=list)  # live: capture -> handed to Kafka
    dropped: dict[str, int] = field(default_factory=dict)  # live: frames too old to be worth running


@ray.remote
class ModelActor:
    """Loads the model once, then runs whole batches (chunks from several sources joined)."""

    def __init__(self, family: str, kwargs: dict[str, Any], run_id: str, uris: dict[str, str],
                 topic_prefix: str, live: bool = False, thumbnails: dict[str, Any] | None = None) -> None:
        self.live = live
        self.thumbnails = thumbnails  # None: off; else max_side, quality, max_bytes
        self.batch_s = 0.0  # moving average of one model call, to judge which frames can still make it
        self.model = create(family, **kwargs)
        self.model.setup()
        self.run_id = run_id
        self.uris = uris
        self.topics = Topics(topic_prefix)

    def info(self) -> dict[str, Any]:
        import torch

        return {"input_size": self.model.input_size(), "batch_size": self.model.batch_size,
                "torch_threads": torch.get_num_threads(),
                "resize_mode": getattr(self.model, "resize_mode", "stretch")}

    def set_queries(self, queries: list[str]) -> None:
        self.model.set_queries(queries)

    def add_uris(self, uris: dict[str, str]) -> None:
        self.uris.update(uris)

    def process(self, *chunks: FrameBatch, budgets_ms: dict[str, float] | None = None) -> ModelResult:
        batch = chunks[0] if len(chunks) == 1 else FrameBatch.concat(list(chunks))
        dropped: dict[str, int] = {}
        if budgets_ms:  # live: a frame that would come out later than its budget is dropped now
            now = time.time()
            limit = np.array([budgets_ms.get(s, np.inf) / 1000 for s in batch.source_id.tolist()])
            keep = (now - batch.wall_time) + self.batch_s <= limit
            if not keep.all():
                dropped = dict(Counter(batch.source_id[~keep].tolist()))
                if not keep.any():
                    return ModelResult([], {}, {}, 0, 0.0, dropped=dropped)
                batch = batch[keep]
        frames = dict(Counter(batch.source_id.tolist()))
        last_pts = {s: float(batch.pts[batch.source_id == s].max()) for s in frames}
        t0 = time.perf_counter()
        try:
            out = self.model(batch)
            events = build_frame_events(batch, out, run_id=self.run_id, uris=self.uris)
            if self.thumbnails:
                events += build_thumbnail_events(batch, run_id=self.run_id, uris=self.uris, **self.thumbnails)
        except Exception as exc:  # noqa: BLE001 - a poison batch yields error events, the run goes on
            reason = f"{type(exc).__name__}: {exc}"
            last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
            if last:
                reason += f" (at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})"
            errs = []
            for row in range(len(batch)):
                sid = str(batch.source_id[row])
                pts = float(batch.pts[row])
                errs.append(ErrorEvent(
                    event_id=event_id(sid, pts, "error", "model"), run_id=self.run_id, source_id=sid,
                    source_uri=self.uris.get(sid, sid), emitted_at=time.time(), stage="model", reason=reason,
                    error_type=type(exc).__name__, frame_index=int(batch.frame_index[row]), pts=pts))
            return ModelResult([to_record(e, self.topics) for e in errs], frames, last_pts, len(errs),
                               time.perf_counter() - t0, failed=True)
        capture = list(zip(batch.source_id.tolist(), batch.wall_time.tolist(), strict=True))
        took = time.perf_counter() - t0
        self.batch_s = took if self.batch_s == 0.0 else 0.8 * self.batch_s + 0.2 * took
        if self.live:
            qevs = [e for e in events if e.type == "query"]  # type: ignore[attr-defined]
            records = [to_record(e, self.topics) for e in events if e.type != "query"]  # type: ignore[attr-defined]
            return ModelResult(records, frames, last_pts, len(records), time.perf_counter() - t0,
                               query_events=qevs, capture=capture, dropped=dropped)
        records = [to_record(e, self.topics) for e in events]
        return ModelResult(records, frames, last_pts, len(records), time.perf_counter() - t0, capture=capture)

    def teardown(self) -> None:
        self.model.teardown()
