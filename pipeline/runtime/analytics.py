"""Each source's analytics operators (``operators.analytics.SourceStage``) as the stage host drives them,
and their events in the versioned contract (track, zone, line, window).

Standing-query intervals stay with the stage host (live runs change queries and their
scopes at run time); the tracker, zones, lines and windows run here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from operators.analytics import events as ae
from operators.analytics.config import AnalyticsSpec
from operators.analytics.frames import SourceFrames
from operators.analytics.stage import SourceStage
from pipeline.events import ClassCount, LineEvent, TrackEvent, WindowEvent, ZoneEvent, ZoneWindow, event_id
from pipeline.runtime.chunks import ChunkResult
from pipeline.runtime.stage_host import SourceAnalytics

__all__ = ["StageAnalytics", "analytics_factory", "to_contract"]


def _num(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)


def _box(b: Any) -> tuple[float, float, float, float]:
    return tuple(round(float(v), 2) for v in b)  # type: ignore[return-value]


def to_contract(e: Any, *, run_id: str, uri: str, clock: str) -> Any:
    """An ``operators.analytics`` event as its contract event (ids from the event's deterministic key)."""
    common = dict(event_id=event_id(e.key), run_id=run_id, source_id=e.source_id, source_uri=uri,
                  emitted_at=time.time())
    if isinstance(e, ae.TrackEvent):
        reason = "confirmed" if e.kind == "started" else (e.reason or "lost")
        return TrackEvent(**common, pts=e.pts, capture_time=e.wall_time, kind=e.kind, track_id=e.track_id,
                          label=e.label, first_pts=e.first_pts, last_pts=e.last_pts, frames=e.frames,
                          best_score=_num(e.best_score), best_box=_box(e.best_box), reason=reason)
    if isinstance(e, ae.ZoneEvent):
        return ZoneEvent(**common, pts=e.pts, capture_time=e.wall_time, zone=e.zone, kind=e.kind, track_id=e.track_id,
                         label=e.label, dwell_s=_num(e.dwell_s), occupancy=e.occupancy)
    if isinstance(e, ae.LineEvent):
        labels = sorted(set(e.in_counts) | set(e.out_counts))
        return LineEvent(**common, pts=e.pts, capture_time=e.wall_time, line=e.line, track_id=e.track_id,
                         label=e.label, direction=e.direction, in_count=sum(e.in_counts.values()),
                         out_count=sum(e.out_counts.values()),
                         counts={lb: (int(e.in_counts.get(lb, 0)), int(e.out_counts.get(lb, 0))) for lb in labels})
    if isinstance(e, ae.WindowSummary):
        counts = {lb: ClassCount(max=int(c.get("max", 0)), mean=round(float(c.get("mean", 0.0)), 3),
                                 tracks=int(e.unique_tracks.get(lb, 0))) for lb, c in e.counts.items()}
        for lb, n in e.unique_tracks.items():
            counts.setdefault(lb, ClassCount(max=0, mean=0.0, tracks=int(n)))
        zones = {z: ZoneWindow(max=int(v.get("max", 0)), mean=round(float(v.get("mean", 0.0)), 3),
                               tracks=int(v.get("unique_tracks", 0))) for z, v in e.zones.items()}
        return WindowEvent(**common, start=e.start, end=e.end, clock=clock, frames=e.frames, counts=counts,
                           tracks=int(sum(e.unique_tracks.values())), zones=zones,
                           lines={n: (int(v.get("in", 0)), int(v.get("out", 0))) for n, v in e.lines.items()},
                           queries={q: round(float(v.get("seconds", 0.0)), 3) for q, v in e.queries.items()},
                           caption=e.caption, capture_time=e.wall_time)
    raise TypeError(f"no contract event for {type(e).__name__}")


class StageAnalytics:
    """One source's ``SourceStage``, fed the chunks the host releases (already in order)."""

    def __init__(self, source_id: str, spec: AnalyticsSpec, *, clock: str, frame_rate: float | None,
                 run_id: str, uri_of: Callable[[str], str]) -> None:
        self.source_id, self.spec, self.clock, self.frame_rate = source_id, spec, clock, frame_rate
        self.run_id, self.uri_of = run_id, uri_of
        self.stage = SourceStage(source_id, spec, clock=clock, frame_rate=frame_rate)  # type: ignore[arg-type]

    def _events(self, evs: list[Any]) -> list[Any]:
        uri = self.uri_of(self.source_id)
        return [to_contract(e, run_id=self.run_id, uri=uri, clock=self.clock) for e in evs
                if not isinstance(e, ae.QueryInterval)]

    def update(self, result: ChunkResult) -> tuple[Any, list[Any]]:
        meta, out = result.meta, result.output
        assert meta is not None and out is not None
        n = len(meta)
        frames = SourceFrames.from_output(self.source_id, meta.frame_index, meta.pts, meta.wall_time,
                                          int(meta.orig_width[0]), int(meta.orig_height[0]), out, np.arange(n))
        released = self.stage.push(self.stage.next_seq, frames)
        if not released.chunks:
            return None, []
        chunk = released.chunks[0]
        ids = chunk.track_ids
        if out.detections is not None and len(out.detections):  # SourceFrames grouped boxes by frame (stable)
            order = np.argsort(out.detections.frame, kind="stable")
            ids = np.empty_like(chunk.track_ids)
            ids[order] = chunk.track_ids
        return ids, self._events(chunk.events)

    def end(self, pts: float, capture_time: float) -> list[Any]:
        if self.stage.ended:
            return []
        return self._events(self.stage.end(pts).events)

    def snapshot(self) -> Any:
        return self.stage.snapshot()

    def restore(self, state: Any) -> None:
        self.stage = SourceStage(self.source_id, self.spec, clock=self.clock,  # type: ignore[arg-type]
                                 frame_rate=self.frame_rate)
        self.stage.restore(state)


def analytics_factory(config: dict[str, Any] | None, *, clock: str, run_id: str, topic_prefix: str,
                      frame_rate: float | None = None,
                      uri_of: Callable[[str], str] = lambda s: s) -> Callable[[str], SourceAnalytics | None]:
    """Per-source analytics from the ``analytics`` section (None: none). Query intervals stay with the host."""
    if not config:
        return lambda _sid: None
    spec = AnalyticsSpec.model_validate(config)
    spec = spec.model_copy(update={"queries": spec.queries.model_copy(update={"enabled": False})})
    if not spec.tracker.enabled and not spec.windows.enabled:
        return lambda _sid: None

    def make(sid: str) -> SourceAnalytics:
        return StageAnalytics(sid, spec.for_source(sid, uri_of(sid)), clock=clock, frame_rate=frame_rate,
                              run_id=run_id, uri_of=uri_of)

    return make
