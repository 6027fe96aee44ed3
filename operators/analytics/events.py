"""What the per-source analytics operators emit: plain frozen dataclasses, JSON-able through ``to_dict``.

Every event carries ``source_id``, the ``pts``/``wall_time``/``frame_index`` of the frame that caused
it, and a deterministic ``key`` (same input, same key, across runs and across snapshot/restore) that
the runtime turns into the event id. ``t`` is the time on the stage's clock (pts or wall time).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["AnalyticsEvent", "LineEvent", "QueryInterval", "TrackEvent", "WindowSummary", "ZoneEvent"]

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class _Event:
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of the fields plus ``type`` and ``key``."""
        d = asdict(self)
        d["type"] = type(self).TYPE  # type: ignore[attr-defined]
        d["key"] = self.key
        return d

    @property
    def key(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class TrackEvent(_Event):
    """A track was confirmed (``started``) or closed (``ended``: reason ``lost`` or ``end_of_stream``).

    ``box``/``score`` are the detection at the event's frame (for ``ended``: the last matched one);
    ``best_*`` the highest-scoring detection so far. ``frames`` counts frames the track was matched in,
    the tentative frames before confirmation included.
    """

    TYPE = "track"
    source_id: str
    kind: Literal["started", "ended"]
    track_id: int
    label: str
    pts: float
    wall_time: float
    frame_index: int
    t: float
    first_pts: float
    last_pts: float
    frames: int
    box: Box
    score: float
    best_box: Box
    best_score: float
    reason: Literal["lost", "end_of_stream"] | None = None

    @property
    def key(self) -> str:
        return f"track/{self.source_id}/{self.track_id}/{self.kind}"


@dataclass(frozen=True)
class ZoneEvent(_Event):
    """A track's anchor point ``entered`` or ``exited`` zone ``zone``; ``occupancy`` is the count after it.

    ``dwell_s`` (exit only) is stage-clock seconds from the first frame inside to the last frame inside.
    ``reason`` on exit: ``left`` (seen outside), ``lost`` (its track ended) or ``end_of_stream``.
    """

    TYPE = "zone"
    source_id: str
    kind: Literal["entered", "exited"]
    zone: str
    track_id: int
    label: str
    pts: float
    wall_time: float
    frame_index: int
    t: float
    occupancy: int
    dwell_s: float | None = None
    reason: Literal["left", "lost", "end_of_stream"] | None = None

    @property
    def key(self) -> str:
        return f"zone/{self.source_id}/{self.zone}/{self.track_id}/{self.kind}/{self.frame_index}"


@dataclass(frozen=True)
class LineEvent(_Event):
    """A track crossed line ``line`` in ``direction``; ``in_counts``/``out_counts`` are the line's running
    totals per class label after this crossing."""

    TYPE = "line"
    source_id: str
    line: str
    track_id: int
    label: str
    direction: Literal["in", "out"]
    pts: float
    wall_time: float
    frame_index: int
    t: float
    in_counts: dict[str, int] = field(default_factory=dict)
    out_counts: dict[str, int] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"line/{self.source_id}/{self.line}/{self.track_id}/{self.direction}/{self.frame_index}"


@dataclass(frozen=True)
class QueryInterval(_Event):
    """A standing query's match opened (``started``) or closed (``ended``) after N-frame hysteresis."""

    TYPE = "query"
    source_id: str
    kind: Literal["started", "ended"]
    query: str
    started_pts: float
    started_wall_time: float
    pts: float
    wall_time: float
    frame_index: int
    frames: int
    max_score: float | None
    reason: Literal["unmatched", "removed", "end_of_stream"] | None = None

    @property
    def key(self) -> str:
        return f"query/{self.source_id}/{self.query}/{self.started_pts!r}/{self.kind}"


@dataclass(frozen=True)
class WindowSummary(_Event):
    """What happened on one source in one tumbling window ``[start, end)`` of the stage's clock.

    - ``counts[label] = {"max": boxes in the busiest frame, "mean": boxes per frame}``
    - ``unique_tracks[label]``: distinct track ids seen in the window
    - ``zones[name] = {"max", "mean", "unique_tracks"}``: occupancy per frame and distinct tracks inside
    - ``lines[name] = {"in": n, "out": n}``: crossings in this window (all classes)
    - ``queries[q] = {"frames": matched frames, "seconds": frames / window frames * covered seconds}``
    - ``caption``: the most informative caption of the window: that of the frame whose detections name the
      most distinct labels (ties: most boxes, then earliest frame); None when no captions came.
    ``complete`` is False for the last window flushed by ``end()`` before its end time was reached.
    """

    TYPE = "window"
    source_id: str
    index: int
    start: float
    end: float
    pts: float
    wall_time: float
    frame_index: int
    first_pts: float
    last_pts: float
    frames: int
    complete: bool
    counts: dict[str, dict[str, float]] = field(default_factory=dict)
    unique_tracks: dict[str, int] = field(default_factory=dict)
    zones: dict[str, dict[str, float]] = field(default_factory=dict)
    lines: dict[str, dict[str, int]] = field(default_factory=dict)
    queries: dict[str, dict[str, float]] = field(default_factory=dict)
    caption: str | None = None
    caption_pts: float | None = None

    @property
    def key(self) -> str:
        return f"window/{self.source_id}/{self.index}"


AnalyticsEvent = TrackEvent | ZoneEvent | LineEvent | QueryInterval | WindowSummary
