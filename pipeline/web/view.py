"""What the live view shows, gathered from Kafka: each source's latest thumbnail joined with its
detections on (source_id, pts), its state, fps, latency and drops, the latest events, standing queries
and current matches. One consumer thread; the page reads ``snapshot()`` and ``frame()``."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.cli.progress import describe_event
from pipeline.events import Topics, parse_event
from pipeline.web.frames import overlays_for, render_frame
from pipeline.web.priority import yield_to_pipeline

__all__ = ["LiveView", "SourceView"]

log = logging.getLogger(__name__)
Stats = Callable[[], list[dict[str, Any]]]


@dataclass
class SourceView:
    source_id: str
    uri: str = ""
    state: str = ""
    thumbs: dict[float, Any] = field(default_factory=dict)  # pts -> ThumbnailEvent (the last few)
    dets: dict[float, Any] = field(default_factory=dict)  # pts -> DetectionsEvent
    frame_pts: float | None = None  # newest pts with a thumbnail
    frames_seen: int = 0
    tracks: dict[int, str] = field(default_factory=dict)  # live track id -> label
    zones: dict[str, int] = field(default_factory=dict)  # zone -> occupancy
    lines: dict[str, tuple[int, int]] = field(default_factory=dict)  # line -> (in, out)


class LiveView:
    """Follows the run's topics (from their end) and keeps what the page needs, small and bounded."""

    KEEP = 16  # frames kept per source for the thumbnail/detections join

    def __init__(self, bootstrap: str, prefix: str, *, run_id: str | None = None, analytics: Any = None,
                 stats: Stats | None = None, queries: Stats | None = None, spec: Any = None,
                 command_timeout_s: float = 15.0) -> None:
        self.bootstrap, self.prefix, self.run_id = bootstrap, prefix, run_id
        self.analytics, self.spec = analytics, spec
        self.topics = Topics(prefix)
        self.stats, self.queries = stats, queries
        self.command_timeout_s = command_timeout_s
        self.sources: dict[str, SourceView] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=60)
        self.matches: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = 0
        self._remote: dict[str, Any] = {"sources": [], "queries": []}  # standalone: from list_sources/queries
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._rendered: dict[str, tuple[float, bytes]] = {}
        self.connected = False

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self) -> LiveView:
        self._threads.append(threading.Thread(target=self._consume, daemon=True, name="ui-consumer"))
        if self.stats is None:  # no driver in this process: ask the running pipeline through the control topic
            self._threads.append(threading.Thread(target=self._poll_control, daemon=True, name="ui-control"))
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)

    def _consume(self) -> None:
        from kafka import KafkaConsumer

        yield_to_pipeline()  # kafka-python's own threads, started from here, inherit it
        t = self.topics
        names = [t.status, t.detections, t.thumbnails, t.tracks, t.zones, t.queries, t.errors, t.captions]
        while not self._stop.is_set():
            try:
                consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=f"framewire-ui-{uuid.uuid4().hex}",
                                         auto_offset_reset="latest", enable_auto_commit=False,
                                         metadata_max_age_ms=2000, isolation_level="read_committed",
                                         allow_auto_create_topics=False,  # the run creates them, with its settings
                                         fetch_max_bytes=16 * 1024 * 1024,
                                         # the page refreshes twice a second: fetch in fewer, larger batches
                                         # (kafka-python's per-fetch work otherwise costs the run frames/s)
                                         fetch_min_bytes=256 * 1024, fetch_max_wait_ms=250)
                subscribed: set[str] = set()
                next_check = 0.0
                while not self._stop.is_set():
                    if len(subscribed) < len(names) and time.monotonic() >= next_check:
                        # Only topics that exist (a subscription would create missing ones with the broker's
                        # defaults). Listing every topic of a shared cluster is costly: once all of ours are
                        # there (a run creates them at its start) the list is not asked for again.
                        next_check = time.monotonic() + 2.0
                        have = set(names) & consumer.topics()
                        if have != subscribed:
                            consumer.subscribe(sorted(have))
                            subscribed = have
                        self.connected = True
                    if not subscribed:
                        self._stop.wait(0.5)
                        continue
                    for recs in consumer.poll(timeout_ms=300).values():
                        for rec in recs:
                            self._handle(rec.value)
                consumer.close()
            except Exception as exc:  # noqa: BLE001 - a lost broker: retry, the page says so meanwhile
                self.connected = False
                log.warning("live view: Kafka consumer failed (%s: %s); retrying", type(exc).__name__, exc)
                self._stop.wait(2.0)

    def _poll_control(self) -> None:
        yield_to_pipeline()
        while not self._stop.is_set():
            for op, key in (("list_sources", "sources"), ("list_queries", "queries")):
                try:
                    reps = self.command(op, {}, timeout_s=3.0)
                except Exception:  # noqa: BLE001
                    reps = []
                if reps and reps[0].ok:
                    with self._lock:
                        self._remote[key] = reps[0].result
                        self.version += 1
            self._stop.wait(2.0)

    # ---- events --------------------------------------------------------------------------
    def handle_event(self, ev: Any) -> None:
        """Fold one parsed event into the view (the consumer's per-record step; public for tests)."""
        if self.run_id and ev.run_id != self.run_id:
            return
        with self._lock:
            sv = self.sources.get(ev.source_id)
            if sv is None:
                sv = self.sources[ev.source_id] = SourceView(ev.source_id)
            sv.uri = getattr(ev, "source_uri", sv.uri) or sv.uri
            if ev.type == "thumbnail":
                sv.thumbs[ev.pts] = ev
                sv.frames_seen += 1
                if sv.frame_pts is None or ev.pts >= sv.frame_pts or ev.pts < sv.frame_pts - 60:
                    sv.frame_pts = ev.pts  # newest (a reconnected stream restarts its pts)
                _trim(sv.thumbs, self.KEEP)
            elif ev.type == "detections":
                sv.dets[ev.pts] = ev
                _trim(sv.dets, self.KEEP)
                for b in ev.detections:
                    if b.track_id is not None:
                        sv.tracks[b.track_id] = b.label
            elif ev.type == "status":
                sv.state = ev.state
            elif ev.type == "track" and ev.kind == "ended":
                sv.tracks.pop(ev.track_id, None)
            elif ev.type == "zone":
                sv.zones[ev.zone] = ev.occupancy
            elif ev.type == "line":
                sv.lines[ev.line] = (ev.in_count, ev.out_count)
            elif ev.type == "query_match":
                key = (ev.source_id, ev.query)
                if ev.state == "started":
                    self.matches[key] = {"source_id": ev.source_id, "query": ev.query, "since": ev.started_capture_time,
                                         "frames": ev.frames, "max_score": ev.max_score}
                else:
                    self.matches.pop(key, None)
            if ev.type not in ("thumbnail", "detections") or (ev.type == "detections" and ev.detections):
                self.events.appendleft({"type": ev.type, "source_id": ev.source_id, "at": ev.emitted_at,
                                        "text": describe_event(ev)[:300]})
            self.version += 1

    def _handle(self, raw: bytes) -> None:
        try:
            ev = parse_event(raw)
        except Exception:  # noqa: BLE001 - not ours, or a newer schema: skip it
            return
        self.handle_event(ev)

    # ---- what the page reads -------------------------------------------------------------
    def frame(self, source_id: str) -> bytes | None:
        """The source's newest thumbnail with that frame's detections, zones and lines drawn (JPEG)."""
        with self._lock:
            sv = self.sources.get(source_id)
            if sv is None or sv.frame_pts is None:
                return None
            pts = sv.frame_pts
            cached = self._rendered.get(source_id)
            if cached and cached[0] == pts:
                return cached[1]
            thumb, dets = sv.thumbs[pts], sv.dets.get(pts)
            overlays = overlays_for(self.analytics, source_id, sv.uri)
        jpeg = render_frame(thumb, dets, overlays)
        with self._lock:
            self._rendered[source_id] = (pts, jpeg)
        return jpeg

    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, as JSON-ready data (no pixels: the page fetches ``/frame/<id>.jpg``)."""
        stats = self.stats() if self.stats else list(self._remote["sources"])
        queries = self.queries() if self.queries else list(self._remote["queries"])
        with self._lock:
            by_id = {s["source_id"]: dict(s) for s in stats}
            for sid, sv in self.sources.items():
                row = by_id.setdefault(sid, {"source_id": sid, "uri": sv.uri, "state": sv.state})
                if not row.get("state"):
                    row["state"] = sv.state
                row["frame_pts"] = sv.frame_pts
                row["frames_seen"] = sv.frames_seen
                dets = sv.dets.get(sv.frame_pts) if sv.frame_pts is not None else None
                row["boxes"] = [{"label": b.label, "track_id": b.track_id, "score": b.score}
                                for b in (dets.detections if dets else [])]
                row["tracks"] = len(sv.tracks)
                row["zones"] = dict(sv.zones)
                row["lines"] = {k: list(v) for k, v in sv.lines.items()}
            for row in by_id.values():  # a source the view has no event of yet has the same fields, empty
                for key, empty in (("frame_pts", None), ("frames_seen", 0), ("boxes", []), ("tracks", 0),
                                   ("zones", {}), ("lines", {})):
                    row.setdefault(key, empty)
            return {"version": self.version, "run_id": self.run_id, "connected": self.connected,
                    "sources": sorted(by_id.values(), key=lambda r: r["source_id"]),
                    "events": list(self.events)[:40], "queries": queries, "matches": list(self.matches.values()),
                    "time": time.time()}

    def command(self, op: str, args: dict[str, Any], timeout_s: float | None = None) -> list[Any]:
        """One control command to the running pipeline (``pipeline/kafka/control.py``); its replies."""
        from pipeline.kafka.control import send_command

        return send_command(self.bootstrap, self.prefix, op, args, run_id=self.run_id,
                            timeout_s=timeout_s or self.command_timeout_s, spec=self.spec)


def _trim(d: dict[float, Any], keep: int) -> None:
    while len(d) > keep:
        d.pop(next(iter(d)))
