"""The stateful per-source stage, hosted: chunks in, one source's frames in order, events out.

Model replicas may finish out of order; ``StageHost`` holds each source's chunks until the
one before has come (by the decoder's ``seq``), then runs that source's analytics
operators (tracker, zones, lines, windows, standing-query intervals) on them and builds
the events: detections with their track ids, the operators' events and the chunk's own
records. Its state per source is small and serialisable (``snapshot``), so the
publisher commits it with the events and a resumed run continues the same tracks. Plain
Python: no Ray, no Kafka.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from pipeline.events import Record, Topics, build_frame_events, build_match_event, to_record
from pipeline.query_tracker import MatchState, QueryTracker
from pipeline.runtime.chunks import ChunkResult

__all__ = ["Released", "SourceAnalytics", "StageHost"]


class SourceAnalytics(Protocol):
    """One source's analytics operators (``operators.analytics``), as the host drives them."""

    def update(self, result: ChunkResult) -> tuple[Any, list[Any]]:
        """(track ids aligned with the chunk's detections or None, contract events)."""

    def end(self, pts: float, capture_time: float) -> list[Any]:
        """Close what is open at end of stream: tracks, zone visits, the last window."""

    def snapshot(self) -> Any: ...

    def restore(self, state: Any) -> None: ...


@dataclass
class Released:
    """What one call freed for publishing: records and the progress they carry per source."""

    records: list[Record] = field(default_factory=list)
    last_pts: dict[str, float] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)
    decoded: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    capture: list[tuple[str, float]] = field(default_factory=list)
    failed: int = 0


@dataclass
class _Source:
    next_seq: int = 0
    held: dict[int, ChunkResult | None] = field(default_factory=dict)  # None: skipped before the model
    analytics: SourceAnalytics | None = None
    last: tuple[float, float, str] = (0.0, 0.0, "")  # pts, capture time, query model of the latest frame


class StageHost:
    def __init__(self, *, run_id: str, topic_prefix: str, make_analytics: Callable[[str], SourceAnalytics | None],
                 per_frame_queries: bool, hysteresis: tuple[int, int] = (3, 3)) -> None:
        self.run_id = run_id
        self.topics = Topics(topic_prefix)
        self.make_analytics = make_analytics
        self.per_frame_queries = per_frame_queries  # live: per-frame answers too, not just match intervals
        self.queries = QueryTracker(*hysteresis)
        self.scopes: dict[str, set[str] | None] = {}  # live: query -> sources it applies to (None: all)
        self.uris: dict[str, str] = {}
        self.sources: dict[str, _Source] = {}

    # ---- state ---------------------------------------------------------------------------
    def _src(self, sid: str) -> _Source:
        s = self.sources.get(sid)
        if s is None:
            s = self.sources[sid] = _Source(analytics=self.make_analytics(sid))
        return s

    def snapshot(self, sid: str) -> dict[str, Any]:
        """JSON-able state of one source: next expected chunk, operators, open query matches."""
        s = self._src(sid)
        return {"next_seq": s.next_seq, "analytics": s.analytics.snapshot() if s.analytics else None,
                "queries": _snapshot_queries(self.queries, sid), "last": list(s.last)}

    def restore(self, sid: str, state: dict[str, Any] | None) -> None:
        s = self._src(sid)
        if not state:
            return
        s.next_seq = int(state.get("next_seq", 0))
        if s.analytics is not None and state.get("analytics") is not None:
            s.analytics.restore(state["analytics"])
        _restore_queries(self.queries, sid, state.get("queries") or {})
        last = state.get("last") or (0.0, 0.0, "")
        s.last = (float(last[0]), float(last[1]), str(last[2]))

    def set_scopes(self, scopes: dict[str, list[str] | None]) -> list[Record]:
        """Standing queries and the sources each applies to; a removed query ends its open matches."""
        new = {q: (None if srcs is None else set(srcs)) for q, srcs in scopes.items()}
        closing = [q for q in self.scopes if q not in new]
        self.scopes = new
        return [self._match(tr) for q in closing for tr in self.queries.close(query=q)]

    # ---- chunks --------------------------------------------------------------------------
    def skip(self, sid: str, seq: int) -> Released:
        """A chunk given up before the model (live drops): later chunks need not wait for it."""
        s = self._src(sid)
        if seq >= s.next_seq:
            s.held[seq] = None
        return self._release(sid)

    def accept(self, results: list[ChunkResult]) -> Released:
        out = Released()
        touched = []
        for r in results:
            s = self._src(r.source_id)
            if r.seq < s.next_seq:
                continue  # a replay of a chunk already published (resume overlap)
            s.held[r.seq] = r
            touched.append(r.source_id)
        for sid in dict.fromkeys(touched):
            self._merge(out, self._release(sid))
        return out

    def _release(self, sid: str) -> Released:
        s = self.sources[sid]
        out = Released()
        while s.next_seq in s.held:
            r = s.held.pop(s.next_seq)
            s.next_seq += 1
            if r is not None:
                self._run(s, r, out)
        return out

    def _run(self, s: _Source, r: ChunkResult, out: Released) -> None:
        sid = r.source_id
        out.records.extend(r.records)
        out.decoded[sid] = out.decoded.get(sid, 0) + r.decoded
        out.dropped[sid] = out.dropped.get(sid, 0) + r.dropped
        if r.failed:
            out.failed += len(r.records)
        if r.last_pts is not None:
            out.last_pts[sid] = r.last_pts
        if r.meta is None or r.output is None or len(r.meta) == 0:
            return
        n = len(r.meta)
        out.frames[sid] = out.frames.get(sid, 0) + n
        out.capture.extend((sid, float(t)) for t in r.meta.wall_time)
        uri = self.uris.get(sid, sid)
        track_ids, events = (None, [])
        if s.analytics is not None:
            track_ids, events = s.analytics.update(r)
        if r.output.detections is not None:
            out.records.extend(to_record(e, self.topics) for e in build_frame_events(
                r.meta, r.output, run_id=self.run_id, uris={sid: uri}, track_ids=track_ids, tasks=("detect",)))
        if r.output.queries is not None:
            out.records.extend(self._query_records(sid, r))
        out.records.extend(to_record(e, self.topics) for e in events)
        s.last = (float(r.meta.pts[-1]), float(r.meta.wall_time[-1]), r.output.models.get("query", s.last[2]))

    def _query_records(self, sid: str, r: ChunkResult) -> list[Record]:
        assert r.meta is not None and r.output is not None and r.output.queries is not None
        qa = r.output.queries
        model = r.output.models.get("query", "")
        recs: list[Record] = []
        for qi, q in enumerate(qa.queries):
            scope = self.scopes.get(q)
            if self.scopes and q not in self.scopes:
                continue  # answered by a model that had not yet seen the query's removal
            if scope is not None and sid not in scope:
                continue
            for row in range(len(r.meta)):
                score = float(qa.score[qi, row])
                tr = self.queries.update(sid, q, float(r.meta.pts[row]), bool(qa.matched[qi, row]),
                                         None if np.isnan(score) else score, float(r.meta.wall_time[row]))
                if tr is not None:
                    recs.append(self._match(tr, model))
        if self.per_frame_queries:
            recs.extend(to_record(e, self.topics) for e in build_frame_events(
                r.meta, r.output, run_id=self.run_id, uris={sid: self.uris.get(sid, sid)}, tasks=("query",)))
        return recs

    def _match(self, tr: Any, model: str | None = None) -> Record:
        src = self.sources.get(tr.source_id)
        m = model if model is not None else (src.last[2] if src else "")
        ev = build_match_event(tr, run_id=self.run_id, uri=self.uris.get(tr.source_id, tr.source_id), model=m)
        return to_record(ev, self.topics)

    def end(self, sid: str) -> list[Record]:
        """The source ended (or was removed): close its tracks, zone visits, window, query matches."""
        s = self._src(sid)
        pts, cap, _ = s.last
        recs = [self._match(tr) for tr in self.queries.close(source_id=sid, pts=pts, capture_time=cap)]
        if s.analytics is not None:
            recs += [to_record(e, self.topics) for e in s.analytics.end(pts, cap or time.time())]
        return recs

    def forget(self, sid: str) -> None:
        self.sources.pop(sid, None)

    @staticmethod
    def _merge(into: Released, more: Released) -> None:
        into.records += more.records
        into.last_pts.update(more.last_pts)
        for a, b in ((into.frames, more.frames), (into.decoded, more.decoded), (into.dropped, more.dropped)):
            for k, v in b.items():
                a[k] = a.get(k, 0) + v
        into.capture += more.capture
        into.failed += more.failed


def _snapshot_queries(tracker: QueryTracker, sid: str) -> dict[str, dict[str, Any]]:
    """One source's hysteresis state per query, JSON-able."""
    from dataclasses import asdict

    return {q: asdict(st) for (s, q), st in tracker.states.items() if s == sid}


def _restore_queries(tracker: QueryTracker, sid: str, state: dict[str, dict[str, Any]]) -> None:
    for q, st in state.items():
        tracker.states[(sid, q)] = MatchState(**st)
