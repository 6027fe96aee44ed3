"""The event contract: topics, keys, headers and the schema of every event (schema_version 1).

Downstream services depend on this module's shapes. Every event has a deterministic
``event_id`` derived from (source, pts, task, model[, query]) so a consumer can
deduplicate replays. Records are keyed by source id so one source's events stay in
one partition, in pts order.
"""

from __future__ import annotations

import base64
import hashlib
import math
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from operators.frames import FrameBatch
from operators.results import Detections, ModelOutput

__all__ = [
    "SCHEMA_VERSION", "CaptionEvent", "DetectionsEvent", "QueryEvent", "QueryMatchEvent", "StatusEvent",
    "ErrorEvent", "EmbeddingEvent", "ThumbnailEvent", "build_thumbnail_events",
    "Event", "Record", "Topics", "event_id", "build_frame_events", "build_match_event", "to_record", "parse_event",
]

SCHEMA_VERSION = 1
CONTENT_TYPE = "application/json"


class Topics:
    """Topic names under a prefix (default ``framewire``)."""

    def __init__(self, prefix: str = "framewire") -> None:
        self.prefix = prefix
        self.captions = f"{prefix}.captions"
        self.detections = f"{prefix}.detections"
        self.queries = f"{prefix}.queries"
        self.status = f"{prefix}.status"
        self.errors = f"{prefix}.errors"
        self.embeddings = f"{prefix}.embeddings"
        self.thumbnails = f"{prefix}.thumbnails"
        self.checkpoints = f"{prefix}.checkpoints"  # compacted; per-source resume points, not events

    def all(self) -> list[str]:
        return [self.captions, self.detections, self.queries, self.status, self.errors, self.embeddings,
                self.thumbnails]

    def for_type(self, event_type: str) -> str:
        return {"caption": self.captions, "detections": self.detections, "query": self.queries,
                "query_match": self.queries, "status": self.status, "error": self.errors,
                "embedding": self.embeddings, "thumbnail": self.thumbnails}[event_type]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str = Field(description="deterministic id: same source, pts, task, model -> same id")
    run_id: str = Field(description="id of the framewire run that emitted the event")
    source_id: str = Field(description="stable id of the source; also the Kafka key")
    emitted_at: float = Field(description="UNIX seconds when the event was built")


class _FrameEvent(_Event):
    source_uri: str = Field(description="the source as given, credentials removed")
    frame_index: int = Field(description="index of the frame in decode order (0-based)")
    pts: float = Field(description="presentation time of the frame, seconds from the start of the source")
    capture_time: float = Field(description="UNIX seconds when the frame was captured (live) or decoded (archive)")
    latency_ms: float = Field(description="capture_time to event build, milliseconds")
    frame_width: int = Field(description="width of the source frame in pixels (boxes are in this space)")
    frame_height: int
    model: str = Field(description="id of the model that produced the event")


class Box(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str
    score: float | None = Field(description="confidence in [0,1], null when the model gives none")
    box: tuple[float, float, float, float] = Field(description="x1, y1, x2, y2 in source-frame pixels")


class CaptionEvent(_FrameEvent):
    type: Literal["caption"] = "caption"
    text: str
    kind: Literal["model", "composed"] = Field(
        description="model: written by a captioning model; composed: assembled from detections")


class DetectionsEvent(_FrameEvent):
    type: Literal["detections"] = "detections"
    detections: list[Box]


class QueryEvent(_FrameEvent):
    type: Literal["query"] = "query"
    query: str
    matched: bool
    score: float | None
    boxes: list[Box] = Field(default_factory=list)


class ThumbnailEvent(_FrameEvent):
    """A small JPEG of the frame (optional, ``thumbnails.enabled``), on its own topic so the events
    topics stay small; join it to the frame's other events on (source_id, pts)."""

    type: Literal["thumbnail"] = "thumbnail"
    model: str = Field("jpeg", description="the encoder: always jpeg")
    content_type: Literal["image/jpeg"] = "image/jpeg"
    width: int = Field(description="thumbnail width in pixels (the source's aspect ratio)")
    height: int
    size_bytes: int = Field(description="length of the JPEG; never above thumbnails.max_bytes")
    jpeg_base64: str = Field(description="the JPEG, base64 (RFC 4648, with padding)")


class EmbeddingEvent(_FrameEvent):
    """One frame's image embedding (task ``embed``), for similarity search and clustering downstream."""

    type: Literal["embedding"] = "embedding"
    dim: int = Field(description="length of vector")
    normalized: bool = Field(description="true when vector has unit L2 norm (cosine similarity is a dot product)")
    vector: list[float] = Field(description="the image embedding, float32 values rounded to 6 decimals")

    @model_validator(mode="after")
    def _dim_matches(self) -> EmbeddingEvent:
        if len(self.vector) != self.dim:
            raise ValueError(f"vector has {len(self.vector)} values but dim is {self.dim}")
        return self


STATUS_STATES = ("started", "connecting", "live", "stalled", "reconnecting", "ended", "failed", "removed")


class StatusEvent(_Event):
    """One event per change of a source's state; the status topic is compacted and keyed by
    source id, so a new subscriber reads the current state of every source."""

    type: Literal["status"] = "status"
    source_uri: str
    state: Literal["started", "connecting", "live", "stalled", "reconnecting", "ended", "failed", "removed"] = Field(
        description="archive: started, ended, failed; live: connecting, live, stalled, reconnecting, "
                    "ended, failed, removed")
    frames: int = Field(0, description="frames sampled so far")
    detail: str = Field("", description="why the state changed (credentials removed)")
    dropped: int = Field(0, description="live: frames dropped so far to keep latency bounded")
    attempt: int = Field(0, description="live: reconnect attempt number while reconnecting")


class QueryMatchEvent(_Event):
    """Live standing query: a match started (N consecutive matching frames) or ended
    (M consecutive non-matching frames, the source stopped or the query was removed)."""

    type: Literal["query_match"] = "query_match"
    source_uri: str
    query: str
    state: Literal["started", "ended"]
    pts: float = Field(description="the frame that completed the start or end streak")
    started_pts: float = Field(description="first matching frame of this match")
    capture_time: float = Field(description="UNIX seconds the frame at pts was captured")
    started_capture_time: float
    frames: int = Field(description="matching frames in the match so far")
    max_score: float | None = Field(None, description="best score in the match; null when the model gives none")
    model: str


class ErrorEvent(_Event):
    type: Literal["error"] = "error"
    source_uri: str
    stage: Literal["open", "decode", "model", "publish", "pipeline"]
    reason: str
    error_type: str
    frame_index: int | None = None
    pts: float | None = None


Event = Annotated[CaptionEvent | DetectionsEvent | QueryEvent | QueryMatchEvent | StatusEvent | ErrorEvent
                  | EmbeddingEvent | ThumbnailEvent, Field(discriminator="type")]
_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(Event)
EVENT_TYPES = {"caption": CaptionEvent, "detections": DetectionsEvent, "query": QueryEvent,
               "query_match": QueryMatchEvent, "status": StatusEvent, "error": ErrorEvent,
               "embedding": EmbeddingEvent, "thumbnail": ThumbnailEvent}

# A record ready for the producer: (topic, key, value, headers)
Record = tuple[str, bytes, bytes, list[tuple[str, bytes]]]


def event_id(*parts: object) -> str:
    """Deterministic id from the identifying parts of an event.

    >>> event_id("cam1", 1.5, "caption", "m") == event_id("cam1", 1.5, "caption", "m")
    True
    """
    norm = [f"{p:.6f}" if isinstance(p, float) else str(p) for p in parts]
    return hashlib.sha256("\x1f".join(norm).encode()).hexdigest()[:32]


def parse_event(value: bytes | str) -> Any:
    """Parse a record value back into its typed event."""
    return _EVENT_ADAPTER.validate_json(value)  # type: ignore[no-any-return]


def to_record(event: _Event, topics: Topics) -> Record:
    """Serialise an event with its key and CloudEvents binary-mode headers."""
    etype = event.type  # type: ignore[attr-defined]
    t = getattr(event, "capture_time", event.emitted_at)
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", event.event_id.encode()),
        ("ce_source", f"framewire/{event.source_id}".encode()),
        ("ce_type", f"io.framewire.{etype}.v{SCHEMA_VERSION}".encode()),
        ("ce_time", datetime.fromtimestamp(t, UTC).isoformat().encode()),
        ("content-type", CONTENT_TYPE.encode()),
        ("schema_version", str(SCHEMA_VERSION).encode()),
    ]
    return (topics.for_type(etype), event.source_id.encode(), event.model_dump_json().encode(), headers)


def _score(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 4)


def _boxes(d: Detections) -> list[Box]:
    return [Box(label=str(lbl), score=_score(s), box=tuple(round(float(v), 2) for v in xy))  # type: ignore[arg-type]
            for xy, s, lbl in zip(d.xyxy, d.score, d.label, strict=True)]


def build_frame_events(
    batch: FrameBatch, out: ModelOutput, *, run_id: str, uris: dict[str, str], now: float | None = None
) -> list[_FrameEvent]:
    """One event per frame per task (per query for the query task), in batch row order."""
    if out.n_frames != len(batch):
        raise ValueError(f"model output covers {out.n_frames} frames but the batch has {len(batch)}")
    if out.embeddings is not None and len(out.embeddings) != out.n_frames:
        raise ValueError(f"model output has {len(out.embeddings)} embeddings for {out.n_frames} frames")
    now = time.time() if now is None else now
    events: list[_FrameEvent] = []
    for row in range(len(batch)):
        sid = str(batch.source_id[row])
        pts = float(batch.pts[row])
        common: dict[str, Any] = dict(
            run_id=run_id, source_id=sid, source_uri=uris.get(sid, sid), emitted_at=now,
            frame_index=int(batch.frame_index[row]), pts=pts, capture_time=float(batch.wall_time[row]),
            latency_ms=round(max(0.0, now - float(batch.wall_time[row])) * 1000, 2),
            frame_width=int(batch.orig_width[row]), frame_height=int(batch.orig_height[row]),
        )
        if out.captions is not None:
            m = out.models.get("caption", "")
            events.append(CaptionEvent(event_id=event_id(sid, pts, "caption", m), model=m,
                                       text=out.captions.text[row], kind=out.captions.kind, **common))
        if out.detections is not None:
            m = out.models.get("detect", "")
            events.append(DetectionsEvent(event_id=event_id(sid, pts, "detect", m), model=m,
                                          detections=_boxes(out.detections.for_frame(row)), **common))
        if out.queries is not None:
            m = out.models.get("query", "")
            qa = out.queries
            for qi, q in enumerate(qa.queries):
                boxes = qa.boxes.for_frame(row) if qa.boxes is not None else Detections.empty()
                if len(boxes):
                    boxes = Detections(boxes.frame[boxes.label == q], boxes.xyxy[boxes.label == q],
                                       boxes.score[boxes.label == q], boxes.label[boxes.label == q])
                events.append(QueryEvent(
                    event_id=event_id(sid, pts, "query", m, q), model=m, query=q,
                    matched=bool(qa.matched[qi, row]), score=_score(float(np.float32(qa.score[qi, row]))),
                    boxes=_boxes(boxes), **common))
        if out.embeddings is not None:
            m = out.models.get("embed", "")
            vec = np.round(out.embeddings.vectors[row].astype(np.float64), 6).tolist()
            events.append(EmbeddingEvent(event_id=event_id(sid, pts, "embed", m), model=m, dim=len(vec),
                                         normalized=out.embeddings.normalized, vector=vec, **common))
    return events


def build_thumbnail_events(batch: FrameBatch, *, run_id: str, uris: dict[str, str], max_side: int = 160,
                           quality: int = 70, max_bytes: int = 16384, now: float | None = None) -> list[ThumbnailEvent]:
    """One ThumbnailEvent per frame of ``batch`` (a frame whose JPEG cannot fit ``max_bytes`` has none)."""
    from operators.geometry import content_pixels
    from pipeline.thumbnails import encode_thumbnail

    now = time.time() if now is None else now
    events = []
    for row in range(len(batch)):
        ow, oh = int(batch.orig_width[row]), int(batch.orig_height[row])
        enc = encode_thumbnail(content_pixels(batch, row), ow, oh, max_side=max_side, quality=quality,
                               max_bytes=max_bytes)  # letterbox bars are not part of the picture
        if enc is None:
            continue
        jpeg, w, h = enc
        sid, pts, wall = str(batch.source_id[row]), float(batch.pts[row]), float(batch.wall_time[row])
        events.append(ThumbnailEvent(
            event_id=event_id(sid, pts, "thumbnail", max_side), run_id=run_id, source_id=sid,
            source_uri=uris.get(sid, sid), emitted_at=now, frame_index=int(batch.frame_index[row]), pts=pts,
            capture_time=wall, latency_ms=round(max(0.0, now - wall) * 1000, 2), frame_width=ow, frame_height=oh,
            width=w, height=h, size_bytes=len(jpeg), jpeg_base64=base64.b64encode(jpeg).decode("ascii")))
    return events


def build_match_event(tr: Any, *, run_id: str, uri: str, model: str, now: float | None = None) -> QueryMatchEvent:
    """A QueryMatchEvent from a ``pipeline.query_tracker.Transition``; the id names the match
    (source, query, first frame) and its edge, so a replay yields the same ids."""
    return QueryMatchEvent(
        event_id=event_id(tr.source_id, tr.started_pts, "query_match", tr.query, tr.state), run_id=run_id,
        source_id=tr.source_id, source_uri=uri, emitted_at=time.time() if now is None else now, query=tr.query,
        state=tr.state, pts=tr.pts, started_pts=tr.started_pts, capture_time=tr.capture_time,
        started_capture_time=tr.started_capture, frames=tr.frames,
        max_score=None if tr.max_score is None else round(float(tr.max_score), 4), model=model)
