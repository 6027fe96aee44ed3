"""WindowSummarizer: one ``WindowSummary`` per tumbling window of the stage's clock and source.

Window k covers ``[k * window_s, (k + 1) * window_s)`` of the clock (video pts in archive mode, so
window 0 starts at the start of the video; wall time in live mode, so windows align to the epoch).
A window is emitted when the first frame of a later window arrives, or by ``end()`` (then
``complete`` is False). Windows with no frames emit nothing. The accumulators are plain numbers,
sets and strings, so ``snapshot()`` is JSON-able.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from operators.analytics.events import LineEvent, WindowSummary
from operators.analytics.frames import Clock, SourceFrames

__all__ = ["WindowSummarizer"]


def _new(index: int) -> dict[str, Any]:
    return {"index": index, "frames": 0, "first_pts": 0.0, "last": [0.0, 0.0, -1, 0.0],
            "boxes_sum": {}, "boxes_max": {}, "tracks": {}, "zone_sum": {}, "zone_max": {}, "zone_tracks": {},
            "lines": {}, "query_frames": {}, "caption": None}


class WindowSummarizer:
    """Accumulates per-frame counts, tracks, zone occupancy, line crossings, query matches and captions."""

    def __init__(self, source_id: str, window_s: float = 60.0, clock: Clock = "pts",
                 zones: Sequence[str] = (), lines: Sequence[str] = ()) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0 seconds, got {window_s}")
        self.source_id = source_id
        self.window_s = float(window_s)
        self.clock: Clock = clock
        self.zone_names, self.line_names = list(zones), list(lines)
        self._w: dict[str, Any] | None = None

    def _summary(self, w: dict[str, Any], complete: bool) -> WindowSummary:
        n = w["frames"]
        start = w["index"] * self.window_s
        end = start + self.window_s
        pts, wall, fi, last_t = w["last"]
        covered = self.window_s if complete else max(0.0, last_t - start)
        counts = {lab: {"max": float(w["boxes_max"][lab]), "mean": w["boxes_sum"][lab] / n}
                  for lab in sorted(w["boxes_sum"])}
        zones = {z: {"max": float(w["zone_max"].get(z, 0)), "mean": w["zone_sum"].get(z, 0) / n,
                     "unique_tracks": float(len(w["zone_tracks"].get(z, [])))} for z in self.zone_names}
        lines = {ln: dict(w["lines"].get(ln, {"in": 0, "out": 0})) for ln in self.line_names}
        queries = {q: {"frames": float(k), "seconds": k / n * covered} for q, k in sorted(w["query_frames"].items())}
        cap = w["caption"]
        return WindowSummary(self.source_id, w["index"], start, end, pts, wall, fi, w["first_pts"], pts, n, complete,
                             counts, {lab: len(v) for lab, v in sorted(w["tracks"].items())}, zones, lines, queries,
                             cap[3] if cap else None, cap[4] if cap else None)

    def update(self, frames: SourceFrames, track_ids: npt.NDArray[np.int64] | None = None,
               inside_per_frame: Mapping[str, Sequence[Sequence[int]]] | None = None,
               line_events: Sequence[LineEvent] = ()) -> list[WindowSummary]:
        """Windows closed by this chunk. ``inside_per_frame`` is ``ZoneCounter.inside_per_frame`` of the same
        chunk; ``line_events`` the ``LineCounter`` events of the same chunk."""
        det = frames.detections
        tids = np.full(len(det), -1, np.int64) if track_ids is None else np.asarray(track_ids, np.int64)
        t = frames.time(self.clock)
        crossings: dict[int, list[LineEvent]] = {}
        for e in line_events:
            crossings.setdefault(e.frame_index, []).append(e)
        qa = frames.queries
        out: list[WindowSummary] = []
        for i in range(len(frames)):
            idx = math.floor(float(t[i]) / self.window_s)
            if self._w is not None and self._w["index"] != idx:
                out.append(self._summary(self._w, True))
                self._w = None
            if self._w is None:
                self._w = _new(idx)
                self._w["first_pts"] = float(frames.pts[i])
            w = self._w
            fi = int(frames.frame_index[i])
            w["frames"] += 1
            w["last"] = [float(frames.pts[i]), float(frames.wall_time[i]), fi, float(t[i])]
            rows = det.frame == i
            labels, counts = np.unique(det.label[rows], return_counts=True)
            for lab, c in zip(labels.tolist(), counts.tolist(), strict=True):
                w["boxes_sum"][lab] = w["boxes_sum"].get(lab, 0) + c
                w["boxes_max"][lab] = max(w["boxes_max"].get(lab, 0), c)
            for lab in w["boxes_sum"]:
                w["boxes_max"].setdefault(lab, 0)
            for lab, tid in zip(det.label[rows].tolist(), tids[rows].tolist(), strict=True):
                if tid >= 0:
                    w["tracks"].setdefault(lab, [])
                    if tid not in w["tracks"][lab]:
                        w["tracks"][lab].append(tid)
            for z, per_frame in (inside_per_frame or {}).items():
                inside = per_frame[i]
                w["zone_sum"][z] = w["zone_sum"].get(z, 0) + len(inside)
                w["zone_max"][z] = max(w["zone_max"].get(z, 0), len(inside))
                zt = w["zone_tracks"].setdefault(z, [])
                zt.extend(tid for tid in inside if tid not in zt)
            for e in crossings.get(fi, []):
                c = w["lines"].setdefault(e.line, {"in": 0, "out": 0})
                c[e.direction] += 1
            if qa is not None:
                for j, q in enumerate(qa.queries):
                    if bool(qa.matched[j, i]):
                        w["query_frames"][q] = w["query_frames"].get(q, 0) + 1
            if frames.captions is not None:
                score = [len(labels), int(rows.sum())]
                cap = w["caption"]
                if cap is None or score > cap[:2]:
                    w["caption"] = [*score, fi, frames.captions[i], float(frames.pts[i])]
        return out

    def end(self, pts: float | None = None) -> list[WindowSummary]:
        """End of stream: flush the open window (``complete=False``)."""
        if self._w is None:
            return []
        summary = self._summary(self._w, False)
        self._w = None
        return [summary]

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state: the open window's accumulators."""
        return {"window": copy.deepcopy(self._w)}

    def restore(self, state: dict[str, Any]) -> None:
        """Load a ``snapshot()``."""
        self._w = copy.deepcopy(state["window"])
