"""Drawing a frame for the live view: the thumbnail JPEG with its detections (boxes, labels, track ids)
and the source's zones and lines, with OpenCV; plain code on bytes and events (no Kafka, no web)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import cv2
import numpy as np

__all__ = ["Overlay", "overlays_for", "render_frame"]

_PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


@dataclass(frozen=True)
class Overlay:
    """A zone (closed polygon) or line (two points) to draw; ``normalized`` points are fractions of the frame."""

    name: str
    kind: str  # zone | line
    points: tuple[tuple[float, float], ...]
    normalized: bool


def _is_normalized(points: list[Any], coords: str) -> bool:
    if coords == "auto":
        return all(0.0 <= float(v) <= 1.0 for p in points for v in p)
    return coords == "normalized"


def overlays_for(analytics: Any, source_id: str, uri: str = "") -> list[Overlay]:
    """The zones and lines of ``analytics`` (``spec.analytics``) that apply to this source."""
    if analytics is None:
        return []
    out: list[Overlay] = []

    def mine(pattern: str) -> bool:
        return pattern in (source_id, uri) or fnmatchcase(source_id, pattern) or bool(uri and fnmatchcase(uri, pattern))

    for z in getattr(analytics, "zones", []) or []:
        if mine(z.source):
            pts = [tuple(map(float, p)) for p in z.polygon]
            out.append(Overlay(z.name, "zone", tuple(pts), _is_normalized(pts, z.coords)))  # type: ignore[arg-type]
    for ln in getattr(analytics, "lines", []) or []:
        if mine(ln.source):
            pts = [tuple(map(float, ln.start)), tuple(map(float, ln.end))]
            out.append(Overlay(ln.name, "line", tuple(pts), _is_normalized(pts, ln.coords)))  # type: ignore[arg-type]
    return out


def _color(track_id: int | None, label: str) -> tuple[int, int, int]:
    key = track_id if track_id is not None else sum(map(ord, label))
    r, g, b = _PALETTE[key % len(_PALETTE)]
    return b, g, r  # OpenCV draws BGR


def render_frame(thumb: Any, detections: Any = None, overlays: list[Overlay] | None = None,
                 quality: int = 80) -> bytes:
    """JPEG of a ``ThumbnailEvent`` with the boxes of the same frame's ``DetectionsEvent`` (source pixels,
    scaled to the thumbnail) and the overlays drawn on it."""
    raw = np.frombuffer(base64.b64decode(thumb.jpeg_base64), np.uint8)
    img = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"thumbnail of {thumb.source_id} at pts {thumb.pts} is not a readable JPEG")
    h, w = img.shape[:2]
    sx, sy = w / max(1, thumb.frame_width), h / max(1, thumb.frame_height)
    thick = max(1, round(max(w, h) / 320))
    font = 0.35 * max(1.0, max(w, h) / 480)
    for ov in overlays or []:
        fx, fy = (w, h) if ov.normalized else (sx, sy)
        pts = np.array([[x * fx, y * fy] for x, y in ov.points], np.int32)
        color = (0, 200, 255) if ov.kind == "zone" else (255, 0, 255)
        cv2.polylines(img, [pts], ov.kind == "zone", color, thick + 1, cv2.LINE_AA)
        cv2.putText(img, ov.name, tuple(int(v) for v in pts[0]), cv2.FONT_HERSHEY_SIMPLEX, font, color, thick,
                    cv2.LINE_AA)
    for b in getattr(detections, "detections", None) or []:
        x1, y1, x2, y2 = (int(round(v)) for v in (b.box[0] * sx, b.box[1] * sy, b.box[2] * sx, b.box[3] * sy))
        color = _color(b.track_id, b.label)
        cv2.rectangle(img, (x1, y1), (x2, y2), color, thick, cv2.LINE_AA)
        text = b.label + (f" #{b.track_id}" if b.track_id is not None else "") + (
            f" {b.score:.2f}" if b.score is not None else "")
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, thick)
        ty = max(th + base, y1)
        cv2.rectangle(img, (x1, ty - th - base), (x1 + tw, ty), color, -1)
        cv2.putText(img, text, (x1, ty - base), cv2.FONT_HERSHEY_SIMPLEX, font, (255, 255, 255), thick, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode the annotated frame")
    return buf.tobytes()
