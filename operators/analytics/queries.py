"""Standing queries: per-frame answers become match-started / match-ended intervals.

A source answers every standing query on every sampled frame; subscribers want to know when a
match begins and ends, not a yes/no twice a second. ``QueryTracker`` keeps, per (source, query),
whether a match is open, and flips only after ``on_frames`` consecutive matching frames (start) or
``off_frames`` consecutive non-matching frames (end), so one noisy frame neither opens nor closes a
match (hysteresis). ``QueryIntervals`` is the per-source operator over ``SourceFrames`` built on it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from operators.analytics.events import QueryInterval
from operators.analytics.frames import SourceFrames

__all__ = ["MatchState", "QueryIntervals", "QueryTracker", "Transition"]


@dataclass
class MatchState:
    active: bool = False
    streak: int = 0  # consecutive frames disagreeing with ``active``
    started_pts: float | None = None  # pts of the first frame of the streak that opened the match
    started_capture: float | None = None
    frames: int = 0  # matching frames while active (streak that opened it included)
    max_score: float | None = None
    pending_first_pts: float | None = None  # first frame of the current streak
    pending_first_capture: float | None = None
    pending_score: float | None = None  # best score seen in the current streak


@dataclass(frozen=True)
class Transition:
    """A match opened (``started``) or closed (``ended``) on ``source_id`` for ``query``."""

    source_id: str
    query: str
    state: str  # "started" | "ended"
    pts: float  # the frame that completed the streak
    capture_time: float  # when that frame was captured
    started_pts: float  # first matching frame of the match
    started_capture: float
    frames: int  # matching frames in the match so far
    max_score: float | None


def _best(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


class QueryTracker:
    """Hysteresis over per-frame query answers, fed in pts order per source.

    >>> t = QueryTracker(on_frames=2, off_frames=2)
    >>> out = [t.update("cam", "q", float(i), m, None, float(i)) for i, m in enumerate([1, 0, 1, 1, 0, 1, 0, 0])]
    >>> [(i, tr.state, tr.started_pts) for i, tr in enumerate(out) if tr]
    [(3, 'started', 2.0), (7, 'ended', 2.0)]
    """

    def __init__(self, on_frames: int = 3, off_frames: int = 3) -> None:
        if on_frames < 1 or off_frames < 1:
            raise ValueError(f"on_frames and off_frames must be >= 1, got {on_frames}, {off_frames}")
        self.on_frames = on_frames
        self.off_frames = off_frames
        self.states: dict[tuple[str, str], MatchState] = {}

    def update(self, source_id: str, query: str, pts: float, matched: bool, score: float | None,
               capture_time: float) -> Transition | None:
        st = self.states.setdefault((source_id, query), MatchState())
        disagrees = bool(matched) != st.active
        if not disagrees:
            st.streak, st.pending_first_pts, st.pending_score = 0, None, None
            if st.active:
                st.frames += 1
                st.max_score = _best(st.max_score, score)
            return None
        if st.streak == 0:
            st.pending_first_pts, st.pending_first_capture = pts, capture_time
        st.streak += 1
        if matched:
            st.pending_score = _best(st.pending_score, score)
        need = self.off_frames if st.active else self.on_frames
        if st.streak < need:
            return None
        if not st.active:
            st.active = True
            st.started_pts, st.started_capture = st.pending_first_pts, st.pending_first_capture
            st.frames, st.max_score = st.streak, st.pending_score
            st.streak, st.pending_first_pts, st.pending_score = 0, None, None
            return Transition(source_id, query, "started", pts, capture_time,
                              st.started_pts if st.started_pts is not None else pts,
                              st.started_capture or capture_time, st.frames, st.max_score)
        tr = Transition(source_id, query, "ended", pts, capture_time,
                        st.started_pts if st.started_pts is not None else pts,
                        st.started_capture or capture_time, st.frames, st.max_score)
        self.states[(source_id, query)] = MatchState()
        return tr

    def close(self, source_id: str | None = None, query: str | None = None, *, pts: float | None = None,
              capture_time: float = 0.0) -> list[Transition]:
        """End open matches of a source that stopped or a query that was removed."""
        out = []
        for (sid, q), st in list(self.states.items()):
            if (source_id is not None and sid != source_id) or (query is not None and q != query):
                continue
            if st.active:
                end = pts if pts is not None else (st.started_pts or 0.0)
                out.append(Transition(sid, q, "ended", end, capture_time, st.started_pts or 0.0,
                                      st.started_capture or 0.0,
                                      st.frames, st.max_score))
            del self.states[(sid, q)]
        return out

    def active(self) -> list[tuple[str, str]]:
        return [k for k, st in self.states.items() if st.active]

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state: every (source, query)'s hysteresis state."""
        return {"on_frames": self.on_frames, "off_frames": self.off_frames,
                "states": [[sid, q, asdict(st)] for (sid, q), st in sorted(self.states.items())]}

    def restore(self, state: dict[str, Any]) -> None:
        """Load a ``snapshot()`` into this tracker (its own on/off frames are kept)."""
        self.states = {(sid, q): MatchState(**st) for sid, q, st in state["states"]}


def _interval(tr: Transition, frame_index: int, reason: str | None) -> QueryInterval:
    return QueryInterval(tr.source_id, tr.state, tr.query, tr.started_pts, tr.started_capture,  # type: ignore[arg-type]
                         tr.pts, tr.capture_time, frame_index, tr.frames, tr.max_score, reason)  # type: ignore[arg-type]


class QueryIntervals:
    """Per-source operator: ``frames.queries`` (matched/score per query and frame) -> QueryInterval events.

    A query that stops appearing in ``frames.queries`` is ended (reason ``removed``) on the first chunk
    without it, so removing a standing query closes its open match.
    """

    def __init__(self, source_id: str, on_frames: int = 3, off_frames: int = 3) -> None:
        self.source_id = source_id
        self.tracker = QueryTracker(on_frames, off_frames)
        self._last = (0.0, 0.0, -1)  # pts, wall time, frame index of the last frame seen

    def update(self, frames: SourceFrames) -> list[QueryInterval]:
        """Intervals opened or closed by this chunk, in frame order (queries in their given order)."""
        events: list[QueryInterval] = []
        qa = frames.queries
        present = list(qa.queries) if qa is not None else []
        for sid, q in self.tracker.active():
            if q not in present and len(frames):
                events += [_interval(tr, int(frames.frame_index[0]), "removed") for tr in self.tracker.close(
                    sid, q, pts=float(frames.pts[0]), capture_time=float(frames.wall_time[0]))]
        if qa is not None:
            matched, score = np.asarray(qa.matched, bool), np.asarray(qa.score, np.float64)
            for i in range(len(frames)):
                pts, wall = float(frames.pts[i]), float(frames.wall_time[i])
                for j, q in enumerate(present):
                    s = None if np.isnan(score[j, i]) else float(score[j, i])
                    tr = self.tracker.update(self.source_id, q, pts, bool(matched[j, i]), s, wall)
                    if tr is not None:
                        reason = "unmatched" if tr.state == "ended" else None
                        events.append(_interval(tr, int(frames.frame_index[i]), reason))
        if len(frames):
            self._last = (float(frames.pts[-1]), float(frames.wall_time[-1]), int(frames.frame_index[-1]))
        return events

    def active(self) -> list[str]:
        """Queries with an open match."""
        return [q for _, q in self.tracker.active()]

    def end(self, pts: float | None = None) -> list[QueryInterval]:
        """End of stream: close every open match (reason ``end_of_stream``)."""
        end_pts = self._last[0] if pts is None else float(pts)
        return [_interval(tr, self._last[2], "end_of_stream") for tr in self.tracker.close(
            self.source_id, pts=end_pts, capture_time=self._last[1])]

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state: the hysteresis per query and the last frame seen."""
        return {"last": list(self._last), "tracker": self.tracker.snapshot()}

    def restore(self, state: dict[str, Any]) -> None:
        """Load a ``snapshot()``."""
        self._last = (float(state["last"][0]), float(state["last"][1]), int(state["last"][2]))
        self.tracker.restore(state["tracker"])
