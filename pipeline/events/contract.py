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
from operators.results import Detections, ModelOutput, Segment, TextLines

__all__ = [
    "SCHEMA_VERSION", "Box", "CaptionEvent", "DetectionsEvent", "QueryEvent", "QueryMatchEvent", "StatusEvent",
    "ErrorEvent", "EmbeddingEvent", "ThumbnailEvent", "build_thumbnail_events", "TrackEvent", "ZoneEvent",
    "LineEvent", "WindowEvent", "ClassCount", "ZoneWindow", "OcrEvent", "TextLine", "AnswerEvent", "Mask",
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
        self.tracks = f"{prefix}.tracks"  # object tracks started / ended
        self.zones = f"{prefix}.zones"  # zone entered / exited, line crossed
        self.windows = f"{prefix}.windows"  # per-source window summaries
        self.ocr = f"{prefix}.ocr"
        self.checkpoints = f"{prefix}.checkpoints"  # compacted; per-source resume points, not events
        self.control = f"{prefix}.control"  # run-time commands (pipeline/kafka/control.py), one partition
        self.control_replies = f"{prefix}.control.replies"

    def all(self) -> list[str]:
        return [self.captions, self.detections, self.queries, self.status, self.errors, self.embeddings,
                self.thumbnails, self.ocr, self.tracks, self.zones, self.windows]

    def for_type(self, event_type: str) -> str:
        return {"caption": self.captions, "detections": self.detections, "query": self.queries,
                "query_match": self.queries, "status": self.status, "error": self.errors,
                "embedding": self.embeddings, "thumbnail": self.thumbnails, "track": self.tracks,
                "zone": self.zones, "line": self.zones, "window": self.windows, "ocr": self.ocr,
                "answer": self.queries}[event_type]


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
    track_id: int | None = Field(None, description="the object's id across frames of this source (framewire.tracks); "
                                                   "null when the box is not tracked")


class CaptionEvent(_FrameEvent):
    type: Literal["caption"] = "caption"
    text: str
    kind: Literal["model", "composed"] = Field(
        description="model: written by a captioning model; composed: assembled from detections")


class Mask(BaseModel):
    """The instance mask of ``detections[box]``, COCO RLE over the source frame (column-major, starting with
    zeros; ``counts`` in COCO's compressed string form: ``pycocotools.mask.decode`` reads it as it is)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    box: int = Field(description="index of the box in detections this mask belongs to")
    size: tuple[int, int] = Field(description="height, width of the mask: the source frame")
    counts: str = Field(description="COCO compressed RLE counts")
    source: Literal["decoder", "polygon", "box"] = Field(
        description="decoder: a mask decoder drew it; polygon: from the model's polygons; box: no mask "
                    "model ran, the box itself stands in (not a segmentation)")
    polygons: list[list[float]] = Field(default_factory=list,
                                        description="source 'polygon': the polygons, flat x1,y1,x2,y2,... pixels")


class DetectionsEvent(_FrameEvent):
    type: Literal["detections"] = "detections"
    detections: list[Box]
    masks: list[Mask] = Field(default_factory=list,
                              description="instance masks of some boxes (segmentation models only; else empty)")


class QueryEvent(_FrameEvent):
    type: Literal["query"] = "query"
    query: str
    matched: bool
    score: float | None
    boxes: list[Box] = Field(default_factory=list)


class AnswerEvent(_FrameEvent):
    """A standing question answered in free text on one frame (task ``ask``), on the queries topic."""

    type: Literal["answer"] = "answer"
    question: str
    answer: str = Field(description="the model's answer, plain text (special tokens removed)")


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


class TextLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(description="the text read on the line")
    score: float = Field(description="the recogniser's confidence in text, in [0,1]")
    box: tuple[float, float, float, float] = Field(description="x1, y1, x2, y2 in source-frame pixels: the "
                                                               "polygon's bounding box")
    polygon: list[tuple[float, float]] = Field(description="the line's corners [x, y] in source-frame pixels, "
                                                           "clockwise from top-left (4 for PP-OCR)")


class OcrEvent(_FrameEvent):
    """The text read in one frame (task ``ocr``), line by line in reading order; ``lines`` is empty
    when the frame has no readable text."""

    type: Literal["ocr"] = "ocr"
    lines: list[TextLine]


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


class _SourceTimeEvent(_Event):
    source_uri: str
    pts: float = Field(description="video time of the frame the event happened on, seconds")
    capture_time: float = Field(description="UNIX seconds that frame was captured (live) or decoded (archive)")


class TrackEvent(_SourceTimeEvent):
    """An object's track started (first confirmed frame) or ended (lost for longer than the tracker's
    buffer, or the source ended). ``track_id`` is the ``track_id`` on that object's detections."""

    type: Literal["track"] = "track"
    kind: Literal["started", "ended"]
    track_id: int
    label: str
    first_pts: float
    last_pts: float = Field(description="last frame the object was seen on")
    frames: int = Field(description="frames the object was detected on")
    best_score: float | None = None
    best_box: tuple[float, float, float, float] = Field(description="box of the best-scored detection, source pixels")
    reason: Literal["confirmed", "lost", "end_of_stream"] = Field(
        description="started: confirmed; ended: lost (not seen for the lost-track buffer) or end_of_stream")


class ZoneEvent(_SourceTimeEvent):
    """A tracked object entered or left a zone (``analytics.zones``) of its source."""

    type: Literal["zone"] = "zone"
    zone: str
    kind: Literal["entered", "exited"]
    track_id: int
    label: str
    dwell_s: float | None = Field(None, description="exited: seconds the object was inside")
    occupancy: int = Field(description="tracked objects in the zone after this event")


class LineEvent(_SourceTimeEvent):
    """A tracked object crossed a counting line (``analytics.lines``); ``direction`` in or out."""

    type: Literal["line"] = "line"
    line: str
    track_id: int
    label: str
    direction: Literal["in", "out"]
    in_count: int = Field(description="crossings in on this line so far (all classes)")
    out_count: int
    counts: dict[str, tuple[int, int]] = Field(default_factory=dict, description="per class: (in, out) so far")


class ClassCount(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max: int = Field(description="most boxes of the class on one frame of the window")
    mean: float = Field(description="mean boxes of the class per frame")
    tracks: int = Field(0, description="distinct tracks of the class seen in the window")


class ZoneWindow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max: int
    mean: float
    tracks: int = Field(description="distinct tracks inside at some point of the window")


class WindowEvent(_Event):
    """What happened on one source in one window of ``analytics.windows.window_s`` seconds (video time in
    archive runs, wall time in live runs)."""

    type: Literal["window"] = "window"
    source_uri: str
    start: float = Field(description="window start, seconds (pts in archive runs, UNIX time in live runs)")
    end: float
    clock: Literal["pts", "wall"]
    frames: int = Field(description="frames analysed in the window")
    counts: dict[str, ClassCount] = Field(default_factory=dict, description="per class")
    tracks: int = Field(0, description="distinct tracks seen in the window")
    zones: dict[str, ZoneWindow] = Field(default_factory=dict)
    lines: dict[str, tuple[int, int]] = Field(default_factory=dict, description="per line: (in, out) in the window")
    queries: dict[str, float] = Field(default_factory=dict, description="per standing query: seconds matched")
    caption: str | None = Field(None, description="the window's most informative caption")
    capture_time: float = Field(description="UNIX seconds of the window's last frame")


class ErrorEvent(_Event):
    type: Literal["error"] = "error"
    source_uri: str
    stage: Literal["open", "decode", "model", "publish", "pipeline"]
    reason: str
    error_type: str
    frame_index: int | None = None
    pts: float | None = None


Event = Annotated[CaptionEvent | DetectionsEvent | QueryEvent | QueryMatchEvent | StatusEvent | ErrorEvent
                  | EmbeddingEvent | ThumbnailEvent | OcrEvent | AnswerEvent | TrackEvent | ZoneEvent | LineEvent
                  | WindowEvent,
                  Field(discriminator="type")]
_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(Event)
EVENT_TYPES = {"caption": CaptionEvent, "detections": DetectionsEvent, "query": QueryEvent,
               "query_match": QueryMatchEvent, "status": StatusEvent, "error": ErrorEvent,
               "embedding": EmbeddingEvent, "thumbnail": ThumbnailEvent, "track": TrackEvent, "zone": ZoneEvent,
               "line": LineEvent, "window": WindowEvent, "ocr": OcrEvent, "answer": AnswerEvent}

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


def _boxes(d: Detections, track_ids: Any = None) -> list[Box]:
    tids = [None] * len(d) if track_ids is None else [None if int(t) < 0 else int(t) for t in track_ids]
    return [Box(label=str(lbl), score=_score(s), box=tuple(round(float(v), 2) for v in xy),  # type: ignore[arg-type]
                track_id=t)
            for xy, s, lbl, t in zip(d.xyxy, d.score, d.label, tids, strict=True)]


def _lines(t: TextLines) -> list[TextLine]:
    return [TextLine(text=str(txt), score=round(float(s), 4), box=tuple(round(float(v), 2) for v in xy),  # type: ignore[arg-type]
                     polygon=[(round(float(x), 2), round(float(y), 2)) for x, y in poly])
            for poly, xy, txt, s in zip(t.polygon, t.xyxy, t.text, t.score, strict=True)]


def _masks(d: Detections) -> list[Mask]:
    if d.masks is None:
        return []
    return [Mask(box=i, size=m.size, counts=m.counts, source=m.source,
                 polygons=[[round(float(v), 2) for v in p] for p in m.polygons])
            for i, m in enumerate(d.masks) if isinstance(m, Segment)]


def build_frame_events(
    batch: Any, out: ModelOutput, *, run_id: str, uris: dict[str, str], now: float | None = None,
    track_ids: Any = None, tasks: tuple[str, ...] | None = None,
) -> list[_FrameEvent]:
    """One event per frame per task (per query for the query task), in batch row order.

    ``batch`` is a FrameBatch or anything with its metadata arrays (``pipeline.runtime.chunks.FrameMeta``);
    ``track_ids`` (aligned with ``out.detections``) puts the tracker's ids on the boxes; ``tasks`` limits the
    events to those tasks (caption, detect, query, embed)."""
    if out.n_frames != len(batch):
        raise ValueError(f"model output covers {out.n_frames} frames but the batch has {len(batch)}")
    if out.answers is not None and any(len(r) != out.n_frames for r in out.answers.text):
        raise ValueError(f"model output answers do not cover its {out.n_frames} frames")
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
        if out.captions is not None and (tasks is None or "caption" in tasks):
            m = out.models.get("caption", "")
            events.append(CaptionEvent(event_id=event_id(sid, pts, "caption", m), model=m,
                                       text=out.captions.text[row], kind=out.captions.kind, **common))
        if out.detections is not None and (tasks is None or "detect" in tasks):
            m = out.models.get("detect", "")
            rows_t = None if track_ids is None else np.asarray(track_ids)[out.detections.frame == row]
            dets = out.detections.for_frame(row)
            events.append(DetectionsEvent(event_id=event_id(sid, pts, "detect", m), model=m,
                                          detections=_boxes(dets, rows_t), masks=_masks(dets), **common))
        if out.queries is not None and (tasks is None or "query" in tasks):
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
        if out.answers is not None and (tasks is None or "ask" in tasks):
            m = out.models.get("ask", "")
            for qi, q in enumerate(out.answers.questions):
                events.append(AnswerEvent(event_id=event_id(sid, pts, "ask", m, q), model=m, question=q,
                                          answer=out.answers.text[qi][row], **common))
        if out.embeddings is not None and (tasks is None or "embed" in tasks):
            m = out.models.get("embed", "")
            vec = np.round(out.embeddings.vectors[row].astype(np.float64), 6).tolist()
            events.append(EmbeddingEvent(event_id=event_id(sid, pts, "embed", m), model=m, dim=len(vec),
                                         normalized=out.embeddings.normalized, vector=vec, **common))
        if out.text is not None and (tasks is None or "ocr" in tasks):
            m = out.models.get("ocr", "")
            events.append(OcrEvent(event_id=event_id(sid, pts, "ocr", m), model=m,
                                   lines=_lines(out.text.for_frame(row)), **common))
    return events


def build_thumbnail_events(batch: FrameBatch, *, run_id: str, uris: dict[str, str], max_side: int = 160,
                           quality: int = 70, max_bytes: int = 16384, every_s: float = 0.0,
                           step_s: float | None = None, now: float | None = None) -> list[ThumbnailEvent]:
    """One ThumbnailEvent per frame of ``batch``, or per ``every_s`` seconds of each source
    (``thumbnails.wanted_rows``); a frame whose JPEG cannot fit ``max_bytes`` has none."""
    from operators.geometry import content_pixels
    from pipeline.events.thumbnails import encode_thumbnail, wanted_rows

    now = time.time() if now is None else now
    events = []
    for row in wanted_rows(np.asarray(batch.source_id), np.asarray(batch.pts), every_s, step_s):
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
