"""ZoneCounter: tracks entering and leaving polygons, with dwell time and occupancy.

Inside-ness per frame is supervision's ``PolygonZone.trigger`` (its rasterised polygon and anchor
rounding; it keeps no state we need). Who is inside and since when is this class's own small,
JSON-able state, so it snapshots and restores exactly. A track is inside from the first frame its
anchor is seen inside until it is seen outside (``left``) or its track ends (``lost``); frames in
which the tracker coasts it without a detection do not move it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import supervision as sv

from operators.analytics.config import ZoneSpec, resolve_coords
from operators.analytics.events import TrackEvent, ZoneEvent
from operators.analytics.frames import Clock, SourceFrames

__all__ = ["ZoneCounter"]


@dataclass
class _Inside:
    label: str
    enter_t: float
    last_t: float


class ZoneCounter:
    """Enter/exit events for every zone of one source; ``inside_per_frame`` after ``update`` holds, per zone,
    the sorted track ids inside after each frame of the last chunk (windows use it for occupancy)."""

    def __init__(self, source_id: str, zones: Sequence[ZoneSpec], clock: Clock = "pts") -> None:
        self.source_id = source_id
        self.zones = list(zones)
        self.clock: Clock = clock
        self._inside: dict[str, dict[int, _Inside]] = {z.name: {} for z in self.zones}
        self._polys: dict[tuple[str, int, int], sv.PolygonZone] = {}
        self._last: tuple[float, float, int, float] = (0.0, 0.0, -1, 0.0)
        self.inside_per_frame: dict[str, list[tuple[int, ...]]] = {}

    def _poly(self, z: ZoneSpec, width: int, height: int) -> sv.PolygonZone:
        key = (z.name, width, height)
        if key not in self._polys:
            pts = np.asarray(resolve_coords(z.polygon, z.coords, width, height), np.float64)
            self._polys[key] = sv.PolygonZone(np.rint(pts).astype(np.int64),
                                              triggering_anchors=(sv.Position[z.anchor.upper()],))
        return self._polys[key]

    def _exit(self, z: str, tid: int, fr: tuple[float, float, int, float], reason: str) -> ZoneEvent:
        st = self._inside[z].pop(tid)
        return ZoneEvent(self.source_id, "exited", z, tid, st.label, fr[0], fr[1], fr[2], fr[3],
                         len(self._inside[z]), st.last_t - st.enter_t, reason)  # type: ignore[arg-type]

    def update(self, frames: SourceFrames, track_ids: npt.NDArray[np.int64],
               ended: Sequence[TrackEvent] = ()) -> list[ZoneEvent]:
        """Events of this chunk in frame order; ``ended`` are the tracker's ended events of the same chunk."""
        det = frames.detections
        track_ids = np.asarray(track_ids, np.int64)
        t = frames.time(self.clock)
        ended_at: dict[int, list[int]] = {}
        for e in ended:
            ended_at.setdefault(e.frame_index, []).append(e.track_id)
        self.inside_per_frame = {z.name: [] for z in self.zones}
        masks = {z.name: (np.isin(det.label, z.classes) if z.classes else np.ones(len(det), bool)) & (track_ids >= 0)
                 for z in self.zones}
        events: list[ZoneEvent] = []
        for i in range(len(frames)):
            fr = (float(frames.pts[i]), float(frames.wall_time[i]), int(frames.frame_index[i]), float(t[i]))
            for z in self.zones:
                rows = np.flatnonzero((det.frame == i) & masks[z.name])
                inside = self._inside[z.name]
                if len(rows):
                    hit = self._poly(z, frames.width, frames.height).trigger(sv.Detections(
                        xyxy=det.xyxy[rows].astype(np.float64)))
                    for row in rows[np.argsort(track_ids[rows], kind="stable")]:
                        tid, now_in = int(track_ids[row]), bool(hit[np.searchsorted(rows, row)])
                        if now_in and tid not in inside:
                            inside[tid] = _Inside(str(det.label[row]), fr[3], fr[3])
                            events.append(ZoneEvent(self.source_id, "entered", z.name, tid, str(det.label[row]),
                                                    fr[0], fr[1], fr[2], fr[3], len(inside)))
                        elif now_in:
                            inside[tid].last_t = fr[3]
                        elif tid in inside:
                            events.append(self._exit(z.name, tid, fr, "left"))
                for tid in sorted(ended_at.get(fr[2], [])):
                    if tid in inside:
                        events.append(self._exit(z.name, tid, fr, "lost"))
                self.inside_per_frame[z.name].append(tuple(sorted(inside)))
            self._last = fr
        return events

    def end(self, pts: float | None = None) -> list[ZoneEvent]:
        """End of stream: every track still inside exits with reason ``end_of_stream``."""
        fr = self._last if pts is None else (float(pts), *self._last[1:])
        return [self._exit(z.name, tid, fr, "end_of_stream")  # type: ignore[arg-type]
                for z in self.zones for tid in sorted(self._inside[z.name])]

    def occupancy(self) -> dict[str, int]:
        """Tracks inside each zone now."""
        return {z: len(v) for z, v in self._inside.items()}

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state: who is inside each zone since when."""
        return {"last": list(self._last),
                "inside": {z: [[tid, asdict(s)] for tid, s in sorted(v.items())] for z, v in self._inside.items()}}

    def restore(self, state: dict[str, Any]) -> None:
        """Load a ``snapshot()``; zones missing from it start empty, zones no longer configured are dropped."""
        last = state["last"]
        self._last = (float(last[0]), float(last[1]), int(last[2]), float(last[3]))
        saved = state["inside"]
        self._inside = {z.name: {int(tid): _Inside(**s) for tid, s in saved.get(z.name, [])} for z in self.zones}
