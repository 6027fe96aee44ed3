"""Event dict -> index row: one table, keyed by event type, that says which fields feed which column.

The indexer reads event JSON as plain dicts (not the typed models), so event types this
module has never seen (new ones from a newer pipeline) still index: they get the generic
mapping and their JSON in ``raw``. Adjusting a field name of a known type touches ``FIELDS``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

__all__ = ["FIELDS", "TEXT_TYPES", "event_row", "searchable_text"]

Getter = Callable[[dict[str, Any]], Any]


def _get(*names: str) -> Getter:
    """The first of ``names`` present (not None) in the event."""
    def get(ev: dict[str, Any]) -> Any:
        for n in names:
            if ev.get(n) is not None:
                return ev[n]
        return None
    return get


def _labels_of(key: str) -> Getter:
    """Distinct labels of a list of boxes under ``key``, in first-seen order."""
    def get(ev: dict[str, Any]) -> list[str]:
        return list(dict.fromkeys(str(b["label"]) for b in ev.get(key) or [] if b.get("label") is not None))
    return get


def _tracks_of(key: str) -> Getter:
    def get(ev: dict[str, Any]) -> list[int] | None:
        ids = [int(b["track_id"]) for b in ev.get(key) or [] if b.get("track_id") is not None]
        return list(dict.fromkeys(ids)) or None
    return get


def _one_track(ev: dict[str, Any]) -> list[int] | None:
    tid = ev.get("track_id")
    return None if tid is None else [int(tid)]


def _one_label(*names: str) -> Getter:
    def get(ev: dict[str, Any]) -> list[str]:
        return [str(ev[n]) for n in names if ev.get(n) not in (None, "")]
    return get


def _ocr_text(ev: dict[str, Any]) -> str | None:
    lines = [str(line.get("text", "")).strip() for line in ev.get("lines") or []]
    return " ".join(t for t in lines if t) or None


def _window_labels(ev: dict[str, Any]) -> list[str]:
    return [str(k) for k, v in (ev.get("counts") or {}).items() if v]


def _matched_query(ev: dict[str, Any]) -> str | None:
    return str(ev["query"]) if ev.get("matched") and ev.get("query") else None


# Per event type: column -> getter. Columns not named get the generic getter in GENERIC.
FIELDS: dict[str, dict[str, Getter]] = {
    "caption": {"caption": _get("text")},
    "detections": {"labels": _labels_of("detections"), "track_ids": _tracks_of("detections")},
    "query": {"query": _get("query"), "matched": _get("matched"), "score": _get("score"),
              "labels": lambda ev: [], "query_text": _matched_query},
    "query_match": {"query": _get("query"), "pts": _get("started_pts", "pts"), "end_pts": _get("pts"),
                    "score": _get("max_score"), "matched": lambda ev: ev.get("state") == "started",
                    "query_text": _get("query")},
    "ocr": {"ocr": _ocr_text},
    "thumbnail": {"thumb_jpeg": lambda ev: base64.b64decode(ev["jpeg_base64"]) if ev.get("jpeg_base64") else None},
    "embedding": {},
    "track": {"labels": _one_label("label"), "track_ids": _one_track, "pts": _get("first_pts", "pts"),
              "end_pts": _get("last_pts")},
    "zone": {"labels": _one_label("label"), "track_ids": _one_track},
    "line": {"labels": _one_label("label"), "track_ids": _one_track},
    "window": {"labels": _window_labels, "caption": _get("caption"), "pts": _get("start", "start_pts", "pts"),
               "end_pts": _get("end", "end_pts")},
    "status": {"pts": lambda ev: None},
    "error": {},
}

GENERIC: dict[str, Getter] = {
    "source_id": lambda ev: str(ev.get("source_id") or ""),
    "source_uri": lambda ev: str(ev.get("source_uri") or ev.get("source_id") or ""),
    "pts": _get("pts", "start_pts", "started_pts", "first_pts"),
    "end_pts": _get("end_pts", "last_pts"),
    "time": _get("capture_time", "started_capture_time", "emitted_at"),
    "run_id": lambda ev: str(ev.get("run_id") or ""),
    "model": lambda ev: str(ev.get("model") or ""),
    "labels": lambda ev: [str(x) for x in ev["labels"]] if isinstance(ev.get("labels"), list) else
    _one_label("label")(ev),
    "track_ids": _one_track,
    "caption": _get("caption"),
    "ocr": lambda ev: None,
    "query": _get("query"),
    "query_text": lambda ev: None,
    "matched": lambda ev: None,
    "score": _get("score"),
    "thumb_jpeg": lambda ev: None,
}

# Event types whose rows stand for one sampled frame (search merges their rows by (source, pts)).
TEXT_TYPES = ("caption", "detections", "ocr", "query", "window")
_RAW_DROP = ("jpeg_base64", "vector")  # kept elsewhere (thumb_jpeg, the images table), not twice


def searchable_text(row: dict[str, Any]) -> str:
    """What full-text and MiniLM search see for a row: caption, labels, OCR text, a matched query."""
    parts = [row.get("caption") or "", " ".join(row.get("labels") or []), row.get("ocr") or "",
             row.get("query_text") or ""]
    return " ".join(p for p in (s.strip() for s in parts) if p)


def _num(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def event_row(ev: dict[str, Any]) -> dict[str, Any]:
    """The index row of one event dict (without Kafka coordinates or vectors); unknown types map generically."""
    etype = str(ev.get("type") or "unknown")
    spec = FIELDS.get(etype, {})
    row: dict[str, Any] = {"event_id": str(ev.get("event_id") or ""), "type": etype}
    for col, generic in GENERIC.items():
        row[col] = (spec.get(col) or generic)(ev)
    for col in ("pts", "end_pts", "time", "score"):
        row[col] = _num(row[col])
    row["labels"] = list(row["labels"] or [])
    row["matched"] = None if row["matched"] is None else bool(row["matched"])
    row["text"] = searchable_text(row)
    row.pop("query_text")
    row["raw"] = json.dumps({k: v for k, v in ev.items() if k not in _RAW_DROP}, separators=(",", ":"))
    return row
