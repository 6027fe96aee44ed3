"""LineCounter: tracks crossing counting lines, counted per direction and class.

Semantics follow supervision's ``LineZone`` (the side of the segment ``start -> end`` an anchor lies
on, counted only while the anchor is within the segment's extent; the first side seen is the
reference; a crossing counts once the anchor stayed ``min_crossing_frames`` observations on the
other side), but with one anchor point, a configurable 'in' side and string labels. ``LineZone``
itself is not used: its per-track state lives in private fields and a ``defaultdict`` of lambdas
that can be neither snapshotted nor restored, and exactly-once resume needs both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from operators.analytics.config import LineSpec, resolve_coords
from operators.analytics.events import LineEvent, TrackEvent
from operators.analytics.frames import Clock, SourceFrames
from operators.analytics.geometry import anchor_points

__all__ = ["LineCounter"]


def sides(points: npt.NDArray[np.float64], start: tuple[float, float],
          end: tuple[float, float]) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(``left``, ``valid``) per point: left of the arrow start->end as drawn on the image (y down), and
    whether the point is within the segment's extent and not exactly on the line.

    >>> left, ok = sides(np.array([[5.0, -1.0], [5.0, 1.0], [20.0, 1.0]]), (0.0, 0.0), (10.0, 0.0))
    >>> left.tolist(), ok.tolist()
    ([True, False, False], [True, True, False])
    """
    sx, sy = start
    vx, vy = end[0] - sx, end[1] - sy
    px, py = points[:, 0] - sx, points[:, 1] - sy
    cross = vx * py - vy * px
    proj = (px * vx + py * vy) / (vx * vx + vy * vy)
    return cross < 0, (proj >= 0) & (proj <= 1) & (cross != 0)


class LineCounter:
    """In/out crossing events for every counting line of one source, with running per-class totals."""

    def __init__(self, source_id: str, lines: Sequence[LineSpec], clock: Clock = "pts") -> None:
        self.source_id = source_id
        self.lines = list(lines)
        self.clock: Clock = clock
        # per line: track id -> [confirmed side (True = left), recent sides (newest last)]
        self._state: dict[str, dict[int, list[Any]]] = {ln.name: {} for ln in self.lines}
        self._in: dict[str, dict[str, int]] = {ln.name: {} for ln in self.lines}
        self._out: dict[str, dict[str, int]] = {ln.name: {} for ln in self.lines}

    def counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """Running totals: line -> {"in": {label: n}, "out": {label: n}}."""
        return {n: {"in": dict(self._in[n]), "out": dict(self._out[n])} for n in self._state}

    def update(self, frames: SourceFrames, track_ids: npt.NDArray[np.int64],
               ended: Sequence[TrackEvent] = ()) -> list[LineEvent]:
        """Crossings of this chunk in frame order; ``ended`` tracks forget their side after their frame."""
        det = frames.detections
        track_ids = np.asarray(track_ids, np.int64)
        t = frames.time(self.clock)
        ended_at: dict[int, list[int]] = {}
        for e in ended:
            ended_at.setdefault(e.frame_index, []).append(e.track_id)
        events: list[LineEvent] = []
        for ln in self.lines:
            start, end = resolve_coords([ln.start, ln.end], ln.coords, frames.width, frames.height)
            use = (track_ids >= 0) & (np.isin(det.label, ln.classes) if ln.classes else True)
            left, valid = sides(anchor_points(det.xyxy, ln.anchor), start, end)
            state = self._state[ln.name]
            need = ln.min_crossing_frames
            for i in range(len(frames)):
                rows = np.flatnonzero((det.frame == i) & use & valid)
                for row in rows[np.argsort(track_ids[rows], kind="stable")]:
                    tid, side = int(track_ids[row]), bool(left[row])
                    st = state.setdefault(tid, [side, []])
                    st[1] = (st[1] + [side])[-need:]
                    if side == st[0] or len(st[1]) < need or any(s != side for s in st[1]):
                        continue
                    st[0] = side
                    label = str(det.label[row])
                    direction = "in" if side == (ln.in_side == "left") else "out"
                    totals = self._in[ln.name] if direction == "in" else self._out[ln.name]
                    totals[label] = totals.get(label, 0) + 1
                    events.append(LineEvent(self.source_id, ln.name, tid, label, direction,  # type: ignore[arg-type]
                                            float(frames.pts[i]), float(frames.wall_time[i]),
                                            int(frames.frame_index[i]), float(t[i]),
                                            dict(sorted(self._in[ln.name].items())),
                                            dict(sorted(self._out[ln.name].items()))))
                for tid in ended_at.get(int(frames.frame_index[i]), []):
                    state.pop(tid, None)
        events.sort(key=lambda e: e.frame_index)  # stable: per frame, lines keep their config order
        return events

    def end(self, pts: float | None = None) -> list[LineEvent]:
        """End of stream: nothing is pending (a crossing counts when it happens); forget the tracks."""
        for st in self._state.values():
            st.clear()
        return []

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state: each track's side per line, and the running totals."""
        return {"state": {n: [[tid, st[0], st[1]] for tid, st in sorted(v.items())] for n, v in self._state.items()},
                "in": self._in, "out": self._out}

    def restore(self, state: dict[str, Any]) -> None:
        """Load a ``snapshot()``; lines missing from it start at zero."""
        names = [ln.name for ln in self.lines]
        self._state = {n: {int(t): [bool(c), [bool(s) for s in h]] for t, c, h in state["state"].get(n, [])}
                       for n in names}
        self._in = {n: {k: int(v) for k, v in state["in"].get(n, {}).items()} for n in names}
        self._out = {n: {k: int(v) for k, v in state["out"].get(n, {}).items()} for n in names}
