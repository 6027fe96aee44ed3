"""Tracker: per-source object tracks over ``SourceFrames`` with ByteTrack (``trackers.ByteTrackTracker``).

One ByteTrack instance per class label (a track never changes label), fed the stage clock as its
timestamp so the lost-track buffer is in seconds. Public track ids are this object's own counter,
1, 2, 3... in order of confirmation, so they are deterministic per source and never shared between
sources. ``snapshot()`` is a JSON-able dict holding every tracklet's Kalman state and covariance
exactly (float64 -> JSON float round-trips), so a restored tracker continues bit-for-bit; the other
Kalman matrices are constants of the tracklet or rebuilt by ByteTrack before each predict.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import supervision as sv
from trackers import ByteTrackTracker
from trackers.core.bytetrack.tracklet import ByteTrackTracklet

from operators.analytics.config import TrackerSpec
from operators.analytics.events import TrackEvent
from operators.analytics.frames import Clock, SourceFrames

__all__ = ["Tracker"]

_STATE_VERSION = 1


@dataclass
class _Track:
    label: str
    first_pts: float
    last_pts: float
    frames: int
    box: tuple[float, float, float, float]
    score: float
    best_box: tuple[float, float, float, float]
    best_score: float


@dataclass(frozen=True)
class _Frame:
    pts: float
    wall_time: float
    frame_index: int
    t: float


def _box(xyxy: npt.NDArray[Any]) -> tuple[float, float, float, float]:
    return (float(xyxy[0]), float(xyxy[1]), float(xyxy[2]), float(xyxy[3]))


class Tracker:
    """Assigns track ids to one source's detections and reports tracks starting and ending.

    ``update(frames)`` returns ``(track_ids, events)``: ``track_ids[m]`` is the track of
    ``frames.detections`` row m, or -1 for a box not (yet) in a confirmed track.
    """

    def __init__(self, source_id: str, spec: TrackerSpec | None = None, clock: Clock = "pts",
                 frame_rate: float | None = None) -> None:
        self.source_id = source_id
        self.spec = spec or TrackerSpec()
        self.clock: Clock = clock
        self.frame_rate = float(self.spec.frame_rate or frame_rate or 30.0)
        self._classes = set(self.spec.classes) if self.spec.classes else None
        self._bt: dict[str, ByteTrackTracker] = {}
        self._ids: dict[str, dict[int, int]] = {}  # label -> ByteTrack id -> public id
        self._tracks: dict[int, _Track] = {}  # open public tracks
        self._next_id = 1
        self._recent: deque[_Frame] = deque(maxlen=self.spec.min_frames + 2)

    # ---- ByteTrack plumbing ----------------------------------------------------------------------
    def _new_bytetrack(self) -> ByteTrackTracker:
        s = self.spec
        bt = ByteTrackTracker(lost_track_buffer=max(0, round(s.lost_track_buffer_s * 30)), frame_rate=self.frame_rate,
                              track_activation_threshold=s.track_activation_threshold,
                              minimum_consecutive_frames=s.min_frames, minimum_iou_threshold=s.minimum_iou_threshold,
                              high_conf_det_threshold=s.high_conf_det_threshold)
        bt.maximum_time_without_update = float(s.lost_track_buffer_s)  # exact seconds, not 30-fps frames
        return bt

    def _event(self, kind: str, pid: int, tr: _Track, fr: _Frame, reason: str | None = None) -> TrackEvent:
        return TrackEvent(self.source_id, kind, pid, tr.label, fr.pts, fr.wall_time, fr.frame_index, fr.t,  # type: ignore[arg-type]
                          tr.first_pts, tr.last_pts, tr.frames, tr.box, tr.score, tr.best_box, tr.best_score,
                          reason)  # type: ignore[arg-type]

    def _step(self, label: str, rows: npt.NDArray[np.int64], frames: SourceFrames, fr: _Frame,
              track_ids: npt.NDArray[np.int64], events: list[TrackEvent]) -> None:
        det = frames.detections
        bt = self._bt.get(label)
        if bt is None:
            bt = self._bt[label] = self._new_bytetrack()
            self._ids[label] = {}
        score = det.score[rows].astype(np.float64)
        score = np.where(np.isnan(score), 1.0, score)  # no confidence (e.g. Florence-2): treat as certain
        d = sv.Detections(xyxy=det.xyxy[rows].astype(np.float64), confidence=score,
                          class_id=np.zeros(len(rows), int), data={"row": rows})
        out = bt.update(d, timestamp=fr.t)
        ids = self._ids[label]
        alive = {tk.tracker_id: tk for tk in bt.tracks if tk.tracker_id != -1}
        pairs = zip(out.data["row"].tolist(), out.tracker_id.tolist(), strict=True) if len(out) else iter(())
        for row, iid in pairs:
            if iid < 0:
                continue
            box, sc = _box(det.xyxy[row]), float(det.score[row])
            pid = ids.get(iid)
            if pid is None:
                pid = ids[iid] = self._next_id
                self._next_id += 1
                n = min(alive[iid].number_of_successful_consecutive_updates, len(self._recent))
                first = self._recent[-n]
                tr = self._tracks[pid] = _Track(label, first.pts, fr.pts, n, box, sc, box, sc)
                events.append(self._event("started", pid, tr, fr))
            else:
                tr = self._tracks[pid]
                tr.last_pts, tr.frames, tr.box, tr.score = fr.pts, tr.frames + 1, box, sc
                if sc > tr.best_score or np.isnan(tr.best_score):
                    tr.best_box, tr.best_score = box, sc
            track_ids[row] = pid
        for iid in [i for i in ids if i not in alive]:
            pid = ids.pop(iid)
            events.append(self._event("ended", pid, self._tracks.pop(pid), fr, "lost"))
        if not bt.tracks:  # nothing left to associate: drop it (its ByteTrack ids restart, ours do not)
            del self._bt[label], self._ids[label]

    # ---- operator API -----------------------------------------------------------------------------
    def update(self, frames: SourceFrames) -> tuple[npt.NDArray[np.int64], list[TrackEvent]]:
        """Associate each frame's boxes with tracks, in order; returns per-box track ids and the events."""
        det = frames.detections
        track_ids = np.full(len(det), -1, np.int64)
        events: list[TrackEvent] = []
        if not self.spec.enabled:
            return track_ids, events
        t = frames.time(self.clock)
        order = np.argsort(det.frame, kind="stable")
        bounds = np.searchsorted(det.frame[order], np.arange(len(frames) + 1))
        for i in range(len(frames)):
            fr = _Frame(float(frames.pts[i]), float(frames.wall_time[i]), int(frames.frame_index[i]), float(t[i]))
            self._recent.append(fr)
            rows = order[bounds[i]:bounds[i + 1]]
            labels = det.label[rows]
            if self._classes is not None:
                keep = np.isin(labels, list(self._classes))
                rows, labels = rows[keep], labels[keep]
            for label in sorted(set(labels.tolist()) | set(self._bt)):
                ended: list[TrackEvent] = []
                self._step(label, rows[labels == label], frames, fr, track_ids, ended)
                events.extend(ended)
        return track_ids, events

    def end(self, pts: float | None = None) -> list[TrackEvent]:
        """End of stream: close every open track (reason ``end_of_stream``), in id order."""
        last = self._recent[-1] if self._recent else _Frame(pts or 0.0, 0.0, -1, pts or 0.0)
        fr = last if pts is None else _Frame(float(pts), last.wall_time, last.frame_index, last.t)
        events = [self._event("ended", pid, self._tracks[pid], fr, "end_of_stream") for pid in sorted(self._tracks)]
        self._tracks.clear()
        self._bt.clear()
        self._ids.clear()
        return events

    @property
    def open_tracks(self) -> dict[int, str]:
        """Open track id -> label."""
        return {pid: tr.label for pid, tr in self._tracks.items()}

    # ---- state ------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """JSON-able state: our counters and tracks, and every ByteTrack tracklet's exact Kalman state."""
        labels = {}
        for label, bt in self._bt.items():
            labels[label] = {
                "last_timestamp": bt._last_timestamp, "next_id": bt._next_track_id,
                "ids": sorted([iid, pid] for iid, pid in self._ids[label].items()),
                "tracklets": [{
                    "tracker_id": tk.tracker_id, "age": tk.age, "time_since_update": tk.time_since_update,
                    "time_since_update_seconds": tk.time_since_update_seconds,
                    "consecutive": tk.number_of_successful_consecutive_updates,
                    "x": tk.state_estimator.kf.state.ravel().tolist(),
                    "P": tk.state_estimator.kf.state_covariance.tolist(),
                } for tk in bt.tracks],
            }
        return {"version": _STATE_VERSION, "frame_rate": self.frame_rate, "next_id": self._next_id,
                "recent": [asdict(f) for f in self._recent],
                "tracks": [[pid, asdict(tr)] for pid, tr in sorted(self._tracks.items())], "labels": labels}

    def restore(self, state: dict[str, Any]) -> None:
        """Load a ``snapshot()`` (e.g. after ``json.loads``) into this tracker, replacing its state."""
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"tracker state version {state.get('version')!r} is not {_STATE_VERSION}; "
                             "it was written by another framewire version, start the source afresh")
        self.frame_rate = float(state["frame_rate"])
        self._next_id = int(state["next_id"])
        self._recent = deque((_Frame(**f) for f in state["recent"]), maxlen=self.spec.min_frames + 2)
        self._tracks = {int(pid): _Track(**{**tr, "box": tuple(tr["box"]), "best_box": tuple(tr["best_box"])})
                        for pid, tr in state["tracks"]}
        self._bt, self._ids = {}, {}
        for label, st in state["labels"].items():
            bt = self._new_bytetrack()
            bt._last_timestamp = st["last_timestamp"]
            bt._next_track_id = int(st["next_id"])
            for t in st["tracklets"]:
                tk = ByteTrackTracklet(np.zeros(4), bt.state_estimator_class)
                kf = tk.state_estimator.kf  # F, Q are rebuilt from the step before every predict; H, R are constants
                kf.state = np.asarray(t["x"], np.float64).reshape(kf.state.shape)
                kf.state_covariance = np.asarray(t["P"], np.float64).reshape(kf.state_covariance.shape)
                tk.state_estimator.motion.reset_cache()
                tk.tracker_id, tk.age = int(t["tracker_id"]), int(t["age"])
                tk.time_since_update = int(t["time_since_update"])
                tk.time_since_update_seconds = float(t["time_since_update_seconds"])
                tk.number_of_successful_consecutive_updates = int(t["consecutive"])
                bt.tracks.append(tk)
            self._bt[label] = bt
            self._ids[label] = {int(i): int(p) for i, p in st["ids"]}

    @classmethod
    def from_snapshot(cls, source_id: str, state: dict[str, Any], spec: TrackerSpec | None = None,
                      clock: Clock = "pts") -> Tracker:
        """A fresh tracker continuing exactly where the one that wrote ``state`` stopped."""
        t = cls(source_id, spec, clock)
        t.restore(state)
        return t
