"""Hand-built framewire events for index tests: real event models (pipeline.events) plus dict events
of the newer types (ocr, track, window, zone) the runtime is adding, serialised as on the topics."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.events import (
    Box,
    CaptionEvent,
    DetectionsEvent,
    QueryEvent,
    ThumbnailEvent,
    Topics,
    event_id,
    to_record,
)

T0 = 1_800_000_000.0  # capture time of pts 0


@dataclass(frozen=True)
class Rec:
    """A Kafka record as the indexer reads it (kafka-python's ConsumerRecord has these fields)."""

    topic: str
    partition: int
    offset: int
    value: bytes


def _jpeg(shade: int) -> str:
    import base64

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((24, 32, 3), shade, np.uint8)).save(buf, "JPEG")
    return base64.b64encode(buf.getvalue()).decode()


def frame_common(sid: str, pts: float, i: int) -> dict[str, Any]:
    return dict(run_id="r1", source_id=sid, source_uri=f"/videos/{sid}.mp4", emitted_at=T0 + pts + 0.1,
                frame_index=i, pts=pts, capture_time=T0 + pts, latency_ms=5.0, frame_width=64, frame_height=48)


def scene(sid: str, frames: int = 20, step: float = 0.5, bicycle: range | tuple[int, ...] = range(8, 12),
          thumbnails: bool = True) -> list[tuple[str, dict[str, Any]]]:
    """(topic short name, event dict) for a source: a car throughout, a person and a bicycle in ``bicycle``."""
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(frames):
        pts = round(i * step, 3)
        c = frame_common(sid, pts, i)
        boxes = [Box(label="car", score=0.9, box=(1, 1, 20, 20))]
        if i in bicycle:
            boxes += [Box(label="person", score=0.8, box=(30, 5, 40, 40)),
                      Box(label="bicycle", score=0.7, box=(28, 20, 44, 44))]
        labels = [b.label for b in boxes]
        cap = "a car" if len(labels) == 1 else "a car, a person and a bicycle"
        m = "centernet"
        out.append(("detections", DetectionsEvent(event_id=event_id(sid, pts, "detect", m), model=m,
                                                  detections=boxes, **c).model_dump(mode="json")))
        out.append(("captions", CaptionEvent(event_id=event_id(sid, pts, "caption", m), model=m, text=cap,
                                             kind="composed", **c).model_dump(mode="json")))
        q = "a person riding a bicycle"
        out.append(("queries", QueryEvent(event_id=event_id(sid, pts, "query", m, q), model=m, query=q,
                                          matched=i in bicycle, score=0.6 if i in bicycle else 0.1,
                                          **c).model_dump(mode="json")))
        if thumbnails:
            jpeg = _jpeg((40 + 10 * i) % 256)
            out.append(("thumbnails", ThumbnailEvent(
                event_id=event_id(sid, pts, "thumbnail", 160), width=32, height=24, size_bytes=len(jpeg) * 3 // 4,
                jpeg_base64=jpeg, **{**c, "model": "jpeg"}).model_dump(mode="json")))
    return out


def ocr_event(sid: str, pts: float, lines: list[str], i: int = 0) -> dict[str, Any]:
    """An ``ocr`` event as the OCR helper's branch shapes it (lines of text, box, confidence)."""
    return {"schema_version": 1, "type": "ocr", "event_id": event_id(sid, pts, "ocr", "ppocr"), "model": "ppocr",
            **frame_common(sid, pts, i),
            "lines": [{"text": t, "box": [2, 2 + 10 * k, 60, 10 + 10 * k], "confidence": 0.95}
                      for k, t in enumerate(lines)]}


def track_event(sid: str, kind: str, track_id: int, label: str, first: float, last: float) -> dict[str, Any]:
    return {"schema_version": 1, "type": "track", "kind": kind, "track_id": track_id, "label": label,
            "first_pts": first, "last_pts": last, "pts": last if kind == "ended" else first,
            "event_id": event_id(sid, first, "track", track_id, kind), "run_id": "r1", "source_id": sid,
            "source_uri": f"/videos/{sid}.mp4", "emitted_at": T0 + last}


def as_records(events: list[tuple[str, dict[str, Any]]], prefix: str = "framewire",
               partitions: int = 1) -> list[Rec]:
    """Records with dense offsets per (topic, partition), partitioned by source id like the producer."""
    import json
    import zlib

    offsets: dict[tuple[str, int], int] = {}
    out = []
    for short, ev in events:
        topic = f"{prefix}.{short}"
        part = zlib.crc32(ev["source_id"].encode()) % partitions
        off = offsets.get((topic, part), 0)
        offsets[(topic, part)] = off + 1
        out.append(Rec(topic, part, off, json.dumps(ev).encode()))
    return out


def produce(bootstrap: str, events: list[tuple[str, dict[str, Any]]], prefix: str) -> int:
    """Publish ``events`` (keyed by source id, with CloudEvents headers for typed events) to ``prefix``'s topics."""
    import json

    from kafka import KafkaProducer

    from pipeline.events import parse_event

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    topics = Topics(prefix)
    for short, ev in events:
        try:
            topic, key, value, headers = to_record(parse_event(json.dumps(ev)), topics)
        except ValueError:  # a type this branch's contract does not know yet: plain JSON, same key
            topic, key, value, headers = f"{prefix}.{short}", ev["source_id"].encode(), json.dumps(ev).encode(), []
        producer.send(topic, value=value, key=key, headers=headers)
    producer.flush()
    producer.close()
    return len(events)
