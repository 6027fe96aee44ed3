"""The live view's frame: boxes scaled from source pixels onto the thumbnail, zones and lines drawn."""

from __future__ import annotations

import numpy as np

from operators.analytics.config import LineSpec, ZoneSpec
from pipeline.events import Box
from pipeline.events.contract import DetectionsEvent, ThumbnailEvent
from pipeline.events.thumbnails import encode_thumbnail
from pipeline.web.frames import overlays_for, render_frame


def _events() -> tuple[ThumbnailEvent, DetectionsEvent]:
    import base64

    jpeg, w, h = encode_thumbnail(np.full((240, 320, 3), 40, np.uint8), 640, 480, max_side=320)  # type: ignore[misc]
    common = dict(event_id="e", run_id="r", source_id="cam", source_uri="rtsp://cam", emitted_at=0.0,
                  frame_index=0, pts=1.0, capture_time=0.0, latency_ms=0.0, frame_width=640, frame_height=480)
    thumb = ThumbnailEvent(**common, width=w, height=h, size_bytes=len(jpeg),  # type: ignore[arg-type]
                           jpeg_base64=base64.b64encode(jpeg).decode())
    dets = DetectionsEvent(**common, model="m", detections=[  # type: ignore[arg-type]
        Box(label="car", score=0.9, box=(320, 240, 640, 480), track_id=3)])
    return thumb, dets


def test_boxes_land_on_the_scaled_thumbnail() -> None:
    import cv2

    thumb, dets = _events()
    plain = cv2.imdecode(np.frombuffer(render_frame(thumb), np.uint8), cv2.IMREAD_COLOR)
    drawn = cv2.imdecode(np.frombuffer(render_frame(thumb, dets), np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape == plain.shape == (240, 320, 3)
    diff = np.abs(drawn.astype(int) - plain.astype(int)).sum(2) > 60
    ys, xs = np.nonzero(diff)
    # the box is the bottom-right quarter of the source: on the thumbnail it starts at (160, 120)
    assert xs.min() >= 150 and ys.min() >= 105  # the label sits just above the box's top edge
    assert diff[200, 160] and not diff[60, 60]  # the left edge drawn, the top-left quarter untouched


def test_zones_and_lines_of_this_source_only() -> None:
    analytics = type("A", (), {})()
    analytics.zones = [ZoneSpec(name="door", source="cam*", polygon=[[0.1, 0.1], [0.4, 0.1], [0.4, 0.4]]),
                       ZoneSpec(name="other", source="lobby", polygon=[[0, 0], [10, 0], [10, 10]])]
    analytics.lines = [LineSpec(name="gate", source="*", start=[0, 240], end=[640, 240])]
    ovs = overlays_for(analytics, "cam", "rtsp://cam")
    assert [(o.name, o.kind, o.normalized) for o in ovs] == [("door", "zone", True), ("gate", "line", False)]
    thumb, _ = _events()
    img = cv2_decode(render_frame(thumb, None, ovs))
    assert img[120, 300].max() > 150  # the gate line across the middle (source y 240 -> thumbnail y 120)


def cv2_decode(jpeg: bytes) -> np.ndarray:
    import cv2

    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
