"""Standing queries on live streams: per-frame answers become match-started / match-ended.

A live camera answers every standing query on every sampled frame; subscribers want to
know when a match begins and ends, not a yes/no twice a second. ``QueryTracker`` keeps,
per (source, query), whether a match is open, and flips only after ``on_frames``
consecutive matching frames (start) or ``off_frames`` consecutive non-matching frames
(end), so one noisy frame neither opens nor closes a match (hysteresis).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MatchState", "QueryTracker", "Transition"]


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
