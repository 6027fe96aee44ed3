"""The live view's fold of events: thumbnails joined with detections on (source_id, pts), other runs ignored,
matches and track counts kept, the frame drawn (no Kafka: events handed in directly)."""

from __future__ import annotations

import base64

import numpy as np

from pipeline.events import Box
from pipeline.events.contract import DetectionsEvent, QueryMatchEvent, ThumbnailEvent
from pipeline.events.thumbnails import encode_thumbnail
from pipeline.web.view import LiveView


def _frame(pts: float, run: str = "r1") -> dict[str, object]:
    return dict(event_id=f"e{pts}", run_id=run, source_id="cam", source_uri="rtsp://***@cam/s", emitted_at=pts,
                frame_index=int(pts), pts=pts, capture_time=pts, latency_ms=1.0, frame_width=64, frame_height=48)


def _thumb(pts: float, run: str = "r1") -> ThumbnailEvent:
    jpeg, w, h = encode_thumbnail(np.full((48, 64, 3), 90, np.uint8), 64, 48)  # type: ignore[misc]
    return ThumbnailEvent(**_frame(pts, run), width=w, height=h, size_bytes=len(jpeg),  # type: ignore[arg-type]
                          jpeg_base64=base64.b64encode(jpeg).decode())


def test_fold_joins_by_pts_and_ignores_other_runs() -> None:
    view = LiveView("127.0.0.1:1", "fw", run_id="r1", stats=lambda: [], queries=lambda: [])
    view.handle_event(_thumb(1.0))
    view.handle_event(DetectionsEvent(**_frame(1.0), model="m", detections=[  # type: ignore[arg-type]
        Box(label="car", score=0.8, box=(0, 0, 32, 24), track_id=5)]))
    view.handle_event(_thumb(2.0, run="other"))  # another run's frame never shows
    view.handle_event(QueryMatchEvent(event_id="q", run_id="r1", source_id="cam", source_uri="rtsp://***@cam/s",
                                      emitted_at=1.0, query="a car", state="started", pts=1.0, started_pts=0.5,
                                      capture_time=1.0, started_capture_time=0.5, frames=2, model="m"))
    snap = view.snapshot()
    (row,) = snap["sources"]
    assert row["frame_pts"] == 1.0 and row["boxes"] == [{"label": "car", "track_id": 5, "score": 0.8}]
    assert row["tracks"] == 1 and row["uri"] == "rtsp://***@cam/s"
    assert snap["matches"] == [{"source_id": "cam", "query": "a car", "since": 0.5, "frames": 2, "max_score": None}]
    assert view.frame("cam")[:2] == b"\xff\xd8"  # type: ignore[index]
    assert view.frame("nope") is None


def test_a_source_with_no_events_yet_has_every_field() -> None:
    # the driver's stats know a camera before the view has seen any of its events
    stats = [{"source_id": "new", "uri": "rtsp://***@new/s", "state": "connecting"}]
    view = LiveView("127.0.0.1:1", "fw", run_id="r1", stats=lambda: stats, queries=lambda: [])
    view.handle_event(_thumb(1.0))
    rows = {r["source_id"]: r for r in view.snapshot()["sources"]}
    assert set(rows["new"]) == set(rows["cam"])
    assert rows["new"]["frame_pts"] is None and rows["new"]["boxes"] == [] and rows["new"]["state"] == "connecting"
