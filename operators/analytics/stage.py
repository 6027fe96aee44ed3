"""SourceStage: one source's analytics (tracker, zones, lines, query intervals, windows) behind a reorder buffer.

Chunks of one source leave the decoder numbered 0, 1, 2... but model replicas may finish them out
of order; ``push(seq, frames)`` holds a chunk until every earlier one has been released, then runs
the operators on the released chunks in order. ``snapshot()`` covers every operator plus the next
expected seq; chunks still waiting in the buffer are NOT in it: after a restore the runtime sends
again every chunk from ``next_seq`` on (the ones whose events it never committed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from operators.analytics.config import AnalyticsSpec
from operators.analytics.events import AnalyticsEvent, LineEvent, QueryInterval, TrackEvent, WindowSummary, ZoneEvent
from operators.analytics.frames import Clock, SourceFrames
from operators.analytics.lines import LineCounter
from operators.analytics.queries import QueryIntervals
from operators.analytics.tracker import Tracker
from operators.analytics.windows import WindowSummarizer
from operators.analytics.zones import ZoneCounter

__all__ = ["ReleasedChunk", "SourceStage", "StageOutput"]

_STATE_VERSION = 1
_RANK = {TrackEvent: 0, ZoneEvent: 1, LineEvent: 2, QueryInterval: 3, WindowSummary: 4}


@dataclass(frozen=True)
class ReleasedChunk:
    """One chunk the stage ran: its frames, ``track_ids`` aligned with ``frames.detections`` rows (-1 = none)
    and the events it produced, ordered by frame then tracker, zones, lines, queries, windows."""

    seq: int
    frames: SourceFrames
    track_ids: npt.NDArray[np.int64]
    events: list[AnalyticsEvent]


@dataclass(frozen=True)
class StageOutput:
    """What one ``push``/``end`` released: chunks in seq order; ``end_events`` only from ``end()``.

    ``waiting`` lists seqs still held for a gap; ``duplicates`` seqs dropped as already seen.
    """

    chunks: list[ReleasedChunk] = field(default_factory=list)
    end_events: list[AnalyticsEvent] = field(default_factory=list)
    next_seq: int = 0
    waiting: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)

    @property
    def events(self) -> list[AnalyticsEvent]:
        """Every event released, in order."""
        return [e for c in self.chunks for e in c.events] + list(self.end_events)


class SourceStage:
    """Per-source analytics with a reorder buffer; ``clock`` is ``pts`` (archive) or ``wall`` (live).

    ``frame_rate`` is the sampled fps (the tracker's Kalman step unit) unless ``spec.tracker.frame_rate``
    sets it.
    """

    def __init__(self, source_id: str, spec: AnalyticsSpec | None = None, clock: Clock = "pts",
                 frame_rate: float | None = None) -> None:
        if clock not in ("pts", "wall"):
            raise ValueError(f"clock must be 'pts' (archive) or 'wall' (live), got {clock!r}")
        self.source_id = source_id
        self.spec = spec or AnalyticsSpec()
        self.clock: Clock = clock
        s = self.spec
        self.tracker = Tracker(source_id, s.tracker, clock, frame_rate)
        self.zones = ZoneCounter(source_id, s.zones, clock)
        self.lines = LineCounter(source_id, s.lines, clock)
        self.queries = QueryIntervals(source_id, s.queries.on_frames, s.queries.off_frames)
        self.windows = WindowSummarizer(source_id, s.windows.window_s, clock,
                                        [z.name for z in s.zones], [ln.name for ln in s.lines])
        self.next_seq = 0
        self._pending: dict[int, SourceFrames] = {}
        self.ended = False

    def _run(self, frames: SourceFrames) -> tuple[npt.NDArray[np.int64], list[AnalyticsEvent]]:
        if frames.source_id != self.source_id:
            raise ValueError(f"stage of source {self.source_id!r} got frames of {frames.source_id!r}")
        track_ids, tev = self.tracker.update(frames)
        ended = [e for e in tev if e.kind == "ended"]
        zev = self.zones.update(frames, track_ids, ended) if self.spec.zones else []
        lev = self.lines.update(frames, track_ids, ended) if self.spec.lines else []
        qev = self.queries.update(frames) if self.spec.queries.enabled else []
        wev = (self.windows.update(frames, track_ids, self.zones.inside_per_frame if self.spec.zones else None, lev)
               if self.spec.windows.enabled else [])
        events: list[AnalyticsEvent] = [*tev, *zev, *lev, *qev, *wev]
        events.sort(key=lambda e: (e.frame_index, _RANK[type(e)]))  # stable within an operator
        return track_ids, events

    def push(self, seq: int, frames: SourceFrames) -> StageOutput:
        """Hand in chunk ``seq``; returns the chunks this releases (none while an earlier seq is missing)."""
        if self.ended:
            raise ValueError(f"source {self.source_id!r} already ended; start a new SourceStage for a new stream")
        if seq < 0:
            raise ValueError(f"seq must be >= 0 (the decoder's chunk number), got {seq}")
        if seq < self.next_seq or seq in self._pending:
            return StageOutput(next_seq=self.next_seq, waiting=sorted(self._pending), duplicates=[seq])
        self._pending[seq] = frames
        chunks = []
        while self.next_seq in self._pending:
            f = self._pending.pop(self.next_seq)
            ids, events = self._run(f)
            chunks.append(ReleasedChunk(self.next_seq, f, ids, events))
            self.next_seq += 1
        return StageOutput(chunks, [], self.next_seq, sorted(self._pending))

    def end(self, pts: float | None = None, *, force: bool = False) -> StageOutput:
        """End of stream: close tracks, zone stays and query matches, flush the last window.

        Chunks still waiting for a missing seq make this raise, unless ``force`` (then they run in seq order).
        """
        chunks = []
        if self._pending:
            if not force:
                raise ValueError(f"source {self.source_id!r}: chunks {sorted(self._pending)} still wait for seq "
                                 f"{self.next_seq}; push it first, or end(force=True) to run them without it")
            for seq in sorted(self._pending):
                f = self._pending.pop(seq)
                ids, events = self._run(f)
                chunks.append(ReleasedChunk(seq, f, ids, events))
                self.next_seq = seq + 1
        events: list[AnalyticsEvent] = [*self.queries.end(pts), *self.zones.end(pts), *self.lines.end(pts),
                                        *self.tracker.end(pts)]
        if self.spec.windows.enabled:
            events += self.windows.end(pts)
        self.ended = True
        return StageOutput(chunks, events, self.next_seq, [])

    @property
    def waiting(self) -> list[int]:
        """Seqs held in the reorder buffer."""
        return sorted(self._pending)

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state of every operator and the next expected seq (waiting chunks excluded: resend them)."""
        return {"version": _STATE_VERSION, "source_id": self.source_id, "clock": self.clock,
                "next_seq": self.next_seq, "ended": self.ended, "tracker": self.tracker.snapshot(),
                "zones": self.zones.snapshot(), "lines": self.lines.snapshot(),
                "queries": self.queries.snapshot(), "windows": self.windows.snapshot()}

    def restore(self, state: dict[str, Any]) -> None:
        """Load a ``snapshot()`` into this (fresh) stage; the buffer is emptied."""
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"stage state version {state.get('version')!r} is not {_STATE_VERSION}; "
                             "it was written by another framewire version, start the source afresh")
        if state["source_id"] != self.source_id or state["clock"] != self.clock:
            raise ValueError(f"state of source {state['source_id']!r} (clock {state['clock']}) does not fit the "
                             f"stage of {self.source_id!r} (clock {self.clock})")
        self.next_seq, self.ended = int(state["next_seq"]), bool(state["ended"])
        self._pending = {}
        self.tracker.restore(state["tracker"])
        self.zones.restore(state["zones"])
        self.lines.restore(state["lines"])
        self.queries.restore(state["queries"])
        self.windows.restore(state["windows"])

    def to_bytes(self) -> bytes:
        """``snapshot()`` as compact UTF-8 JSON, e.g. for a Kafka record."""
        return json.dumps(self.snapshot(), separators=(",", ":"), allow_nan=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes, spec: AnalyticsSpec | None = None, frame_rate: float | None = None) -> SourceStage:
        """A fresh stage restored from ``to_bytes()``."""
        state = json.loads(data)
        stage = cls(state["source_id"], spec, state["clock"], frame_rate)
        stage.restore(state)
        return stage
