"""Typed config of the per-source analytics stage: tracker, zones, lines, windows, query intervals.

Pure pydantic data (``extra="forbid"``, frozen); the runtime puts an ``AnalyticsSpec`` under
``PipelineSpec.analytics`` and hands each source's stage ``spec.for_source(source_id, uri)``.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["ANCHORS", "AnalyticsSpec", "LineSpec", "QueryIntervalSpec", "TrackerSpec", "WindowSpec", "ZoneSpec"]

Anchor = Literal["center", "bottom_center", "top_center", "center_left", "center_right",
                 "top_left", "top_right", "bottom_left", "bottom_right"]
#: (fx, fy): anchor = (x1 + fx * w, y1 + fy * h), the same points as supervision's ``Position``.
ANCHORS: dict[str, tuple[float, float]] = {
    "center": (0.5, 0.5), "bottom_center": (0.5, 1.0), "top_center": (0.5, 0.0),
    "center_left": (0.0, 0.5), "center_right": (1.0, 0.5), "top_left": (0.0, 0.0),
    "top_right": (1.0, 0.0), "bottom_left": (0.0, 1.0), "bottom_right": (1.0, 1.0),
}
Coords = Literal["pixels", "normalized", "auto"]
Point = tuple[float, float]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrackerSpec(_Spec):
    """ByteTrack association (``trackers.ByteTrackTracker``), one tracker per class label."""

    enabled: bool = Field(True, description="Track objects; zones and lines need it.")
    track_activation_threshold: float = Field(0.4, ge=0, le=1, description="Min detection score that may start a "
                                              "new track.")
    high_conf_det_threshold: float = Field(0.5, ge=0, le=1, description="Score splitting ByteTrack's first "
                                           "(high) and second (low, recovery) association stage.")
    minimum_iou_threshold: float = Field(0.1, ge=0, le=1, description="Min IoU of a detection with a track's "
                                         "predicted box to associate them.")
    lost_track_buffer_s: float = Field(1.5, ge=0, description="Seconds (stage clock) a track survives unmatched "
                                       "before it ends as 'lost'.")
    min_frames: int = Field(2, ge=1, description="Consecutive matched frames before a track gets an id and a "
                            "'started' event (ByteTrack's minimum_consecutive_frames).")
    frame_rate: float | None = Field(None, gt=0, description="Nominal sampled fps, the Kalman step unit; null = "
                                     "1 / the first clock gap between frames.")
    classes: list[str] | None = Field(None, description="Track only these labels; null = every label.")

    @field_validator("classes")
    @classmethod
    def _classes(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("classes: give at least one label, or null to track every label")
        return v


def _check_points(points: list[Point], coords: Coords, what: str) -> None:
    if coords == "normalized":
        bad = [p for p in points if not (0 <= p[0] <= 1 and 0 <= p[1] <= 1)]
        if bad:
            raise ValueError(f"{what}: coords are 'normalized' but {bad} lie outside [0, 1]; use fractions of the "
                             "frame's width/height, or set coords: pixels")
    elif any(p[0] < 0 or p[1] < 0 for p in points):
        raise ValueError(f"{what}: pixel coordinates must be >= 0, got {points}")


def _segments_cross(a: Point, b: Point, c: Point, d: Point) -> bool:
    def orient(p: Point, q: Point, r: Point) -> float:
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])
    o1, o2, o3, o4 = orient(a, b, c), orient(a, b, d), orient(c, d, a), orient(c, d, b)
    return o1 * o2 < 0 and o3 * o4 < 0


def resolve_coords(points: list[Point], coords: Coords, width: int, height: int) -> list[Point]:
    """Points in source pixels: normalized ones (or 'auto' ones all within [0, 1]) are scaled by the frame size."""
    normalized = coords == "normalized" or (coords == "auto" and all(0 <= x <= 1 and 0 <= y <= 1 for x, y in points))
    return [(x * width, y * height) for x, y in points] if normalized else [(float(x), float(y)) for x, y in points]


class ZoneSpec(_Spec):
    """A polygon on one source's frames; a track is inside while its box's ``anchor`` point is."""

    name: str = Field(min_length=1, description="Zone name, unique per source; named in every zone event.")
    source: str = Field("*", min_length=1, description="Source id, or a glob over source ids/URIs ('*' = all).")
    polygon: list[Point] = Field(description="Vertices [[x, y], ...] in order, at least 3, not self-intersecting.")
    coords: Coords = Field("auto", description="'pixels' (source pixels), 'normalized' (fractions of width/height) "
                           "or 'auto' (normalized when every value is within [0, 1]).")
    classes: list[str] | None = Field(None, description="Count only these labels; null = every tracked label.")
    anchor: Anchor = Field("bottom_center", description="Point of the box tested against the zone (supervision's "
                           "PolygonZone default: bottom_center, an object's feet).")

    @model_validator(mode="after")
    def _polygon(self) -> ZoneSpec:
        what = f"zones[{self.name}].polygon"
        if len(self.polygon) < 3:
            raise ValueError(f"{what}: needs at least 3 [x, y] points to enclose an area, got {len(self.polygon)}")
        _check_points(self.polygon, self.coords, what)
        pts = self.polygon
        n = len(pts)
        for i in range(n):
            for j in range(i + 2, n):
                if i == 0 and j == n - 1:
                    continue  # adjacent through the closing edge
                if _segments_cross(pts[i], pts[(i + 1) % n], pts[j], pts[(j + 1) % n]):
                    raise ValueError(f"{what}: edges {i}-{i + 1} and {j}-{(j + 1) % n} cross (self-intersecting); "
                                     "list the vertices in order around the zone")
        area2 = sum(pts[i][0] * pts[(i + 1) % n][1] - pts[(i + 1) % n][0] * pts[i][1] for i in range(n))
        if area2 == 0:
            raise ValueError(f"{what}: the points are collinear (zero area); give the corners of a real area")
        return self


class LineSpec(_Spec):
    """A counting line segment ``start -> end``; a crossing of a track's ``anchor`` point counts in or out."""

    name: str = Field(min_length=1, description="Line name, unique per source; named in every line event.")
    source: str = Field("*", min_length=1, description="Source id, or a glob over source ids/URIs ('*' = all).")
    start: Point = Field(description="[x, y] of the segment's start.")
    end: Point = Field(description="[x, y] of the segment's end.")
    coords: Coords = Field("auto", description="'pixels', 'normalized' or 'auto' (as for zones).")
    classes: list[str] | None = Field(None, description="Count only these labels; null = every tracked label.")
    anchor: Anchor = Field("bottom_center", description="Point of the box whose side of the line is tracked.")
    in_side: Literal["left", "right"] = Field("left", description="Side of the arrow start->end, as drawn on the "
                                              "image, that a crossing INTO counts as 'in' (supervision: left).")
    min_crossing_frames: int = Field(1, ge=1, description="Frames the anchor must stay on the new side before the "
                                     "crossing counts (supervision's minimum_crossing_threshold).")

    @model_validator(mode="after")
    def _segment(self) -> LineSpec:
        what = f"lines[{self.name}]"
        _check_points([self.start, self.end], self.coords, what)
        if tuple(self.start) == tuple(self.end):
            raise ValueError(f"{what}: start and end are the same point {list(self.start)} (zero-length line); "
                             "give two different points")
        return self


class WindowSpec(_Spec):
    """Tumbling windows of the stage's clock, each summarised once when it closes."""

    enabled: bool = Field(True, description="Emit one WindowSummary per window.")
    window_s: float = Field(60.0, description="Window length in seconds of the stage's clock (pts or wall time).")

    @field_validator("window_s")
    @classmethod
    def _positive(cls, v: float) -> float:
        if not v > 0:
            raise ValueError(f"window_s must be > 0 seconds, got {v}; e.g. window_s: 60")
        return v


class QueryIntervalSpec(_Spec):
    """Standing-query answers per frame become started/ended intervals with N-frame hysteresis."""

    enabled: bool = Field(True, description="Emit QueryInterval events from per-frame query answers.")
    on_frames: int = Field(3, ge=1, description="Consecutive matching frames that open a match.")
    off_frames: int = Field(3, ge=1, description="Consecutive non-matching frames that close it.")


class AnalyticsSpec(_Spec):
    """Everything the per-source stage runs; zones and lines apply to the sources their ``source`` names."""

    tracker: TrackerSpec = Field(default_factory=TrackerSpec, description="Object tracking.")
    zones: list[ZoneSpec] = Field(default_factory=list, description="Polygons with enter/exit/dwell events.")
    lines: list[LineSpec] = Field(default_factory=list, description="Counting lines with in/out events.")
    windows: WindowSpec = Field(default_factory=WindowSpec, description="Periodic per-source summaries.")
    queries: QueryIntervalSpec = Field(default_factory=QueryIntervalSpec, description="Query match intervals.")

    @model_validator(mode="after")
    def _names(self) -> AnalyticsSpec:
        for kind, items in (("zones", self.zones), ("lines", self.lines)):
            seen: set[tuple[str, str]] = set()
            for it in items:
                if (it.source, it.name) in seen:
                    raise ValueError(f"{kind}: name {it.name!r} is used twice for source {it.source!r}; "
                                     "give each a unique name")
                seen.add((it.source, it.name))
        if (self.zones or self.lines) and not self.tracker.enabled:
            raise ValueError("tracker.enabled is false but zones/lines are configured; they count tracks, so set "
                             "tracker.enabled: true or remove them")
        return self

    def for_source(self, source_id: str, uri: str | None = None) -> AnalyticsSpec:
        """This spec with only the zones and lines whose ``source`` names ``source_id`` (or glob-matches it/``uri``)."""
        def hit(pattern: str) -> bool:
            return pattern == source_id or fnmatchcase(source_id, pattern) or (uri is not None and (
                pattern == uri or fnmatchcase(uri, pattern)))
        zones = [z for z in self.zones if hit(z.source)]
        lines = [ln for ln in self.lines if hit(ln.source)]
        for kind, items in (("zones", zones), ("lines", lines)):
            names = [it.name for it in items]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{kind}: {dup} apply to source {source_id!r} more than once (several 'source' "
                                 "patterns match it); give them unique names")
        return self.model_copy(update={"zones": zones, "lines": lines})
