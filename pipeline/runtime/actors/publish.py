"""PublisherActor: owns the Kafka producer. acks=all, idempotent, delivery callbacks, flush on close.

With a ``transactional_id`` (archive runs) every call is one Kafka transaction holding the
batch's events and the checkpoint of each source in it, so a crash never leaves events
without their checkpoint or the other way round; ``init_transactions`` at start aborts
whatever a crashed predecessor with the same id left open and fences it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import ray

from pipeline.events import Record, Topics, build_match_event, to_record
from pipeline.kafka.checkpoints import Checkpoint, checkpoint_record
from pipeline.query_tracker import QueryTracker
from pipeline.runtime.actors.model import ModelResult

__all__ = ["DeliveryReport", "PublisherActor", "producer_config"]

_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 5,
    "retries": 2147483647,
    "max_in_flight_requests_per_connection": 5,
    "request_timeout_ms": 30000,
}


def producer_config(bootstrap: str, overrides: dict[str, Any], transactional_id: str | None = None) -> dict[str, Any]:
    """Our delivery defaults; user settings pass through to KafkaProducer unchanged."""
    conf = dict(_DEFAULTS)
    conf.update(overrides)
    conf["bootstrap_servers"] = bootstrap
    if transactional_id:
        conf["transactional_id"] = transactional_id
    return conf


@dataclass
class DeliveryReport:
    sent: int = 0
    acked: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    per_topic: dict[str, int] = field(default_factory=dict)
    transactions: int = 0


@ray.remote
class PublisherActor:
    """Sends records in call order. Ray runs one caller's calls in submission order, so
    events of one source reach Kafka in pts order."""

    def __init__(self, bootstrap: str, overrides: dict[str, Any], *, transactional_id: str | None = None,
                 checkpoint_topic: str | None = None, run_id: str = "", commit_timeout: float = 60.0,
                 topic_prefix: str = "framewire", hysteresis: tuple[int, int] = (3, 3),
                 per_frame_queries: bool = False) -> None:
        from kafka import KafkaProducer

        self.txn = bool(transactional_id)
        self.producer = KafkaProducer(**producer_config(bootstrap, overrides, transactional_id))
        if self.txn:
            self.producer.init_transactions()  # aborts and fences a crashed run with the same id
        self.checkpoint_topic = checkpoint_topic
        self.run_id = run_id
        self.last_pts: dict[str, float] = {}
        self.frames: dict[str, int] = {}
        self.commit_timeout = commit_timeout
        self.report = DeliveryReport()
        self._lock = threading.Lock()
        # live standing queries: per-frame answers -> match started/ended (hysteresis)
        self.topics = Topics(topic_prefix)
        self.tracker = QueryTracker(*hysteresis)
        self.per_frame_queries = per_frame_queries
        self.scopes: dict[str, set[str] | None] = {}  # query -> sources it applies to (None: all)
        self.uris: dict[str, str] = {}
        self.last_seen: dict[str, tuple[float, float, str]] = {}  # source -> (pts, capture time, model)

    def ready(self) -> bool:
        return True

    def set_resume(self, last_pts: dict[str, float]) -> None:
        """Last published pts per source from the checkpoints (kept for a source that adds nothing)."""
        self.last_pts.update(last_pts)

    def _on_ok(self, topic: str) -> Any:
        def cb(_meta: Any) -> None:
            with self._lock:
                self.report.acked += 1
                self.report.per_topic[topic] = self.report.per_topic.get(topic, 0) + 1
        return cb

    def _on_err(self, exc: BaseException) -> None:
        with self._lock:
            self.report.failed += 1
            if len(self.report.errors) < 20:
                self.report.errors.append(f"{type(exc).__name__}: {exc}")

    def _send(self, records: list[Record]) -> None:
        for topic, key, value, headers in records:
            fut = self.producer.send(topic, key=key, value=value, headers=headers)
            fut.add_callback(self._on_ok(topic))
            fut.add_errback(self._on_err)
        self.report.sent += len(records)

    def _commit(self) -> None:
        """kafka-python's commit waits without a limit; bound it so a lost broker fails the run."""
        errors: list[BaseException] = []
        done = threading.Event()

        def go() -> None:
            try:
                self.producer.commit_transaction()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                errors.append(exc)
            finally:
                done.set()

        threading.Thread(target=go, daemon=True, name="kafka-commit").start()
        if not done.wait(self.commit_timeout):
            raise TimeoutError(f"Kafka transaction commit did not finish in {self.commit_timeout:.0f}s; "
                               "the run stops here and resumes from its checkpoints when started again")
        if errors:
            raise errors[0]
        self.report.transactions += 1

    def _deliver(self, records: list[Record], checkpoints: list[Checkpoint]) -> None:
        if not self.txn:
            self._send(records)
            return
        self.producer.begin_transaction()
        try:
            self._send(records)
            if self.checkpoint_topic:
                self._send([checkpoint_record(cp, self.checkpoint_topic) for cp in checkpoints])
        except BaseException:
            self.producer.abort_transaction()
            raise
        self._commit()

    def send(self, records: list[Record]) -> int:
        """Send records outside the model path (status, errors)."""
        self._deliver(records, [])
        return len(records)

    def set_query_scopes(self, scopes: dict[str, list[str] | None]) -> list[Record]:
        """Standing queries and the sources each applies to; removed queries end their open matches."""
        new = {q: (None if srcs is None else set(srcs)) for q, srcs in scopes.items()}
        closing = [q for q in self.scopes if q not in new]
        self.scopes = new
        records = []
        for q in closing:
            for tr in self.tracker.close(query=q):
                records.append(self._match_record(tr))
        self._deliver(records, [])
        return records

    def close_source(self, source_id: str) -> int:
        """A source stopped: end its open matches."""
        pts, cap, _ = self.last_seen.get(source_id, (None, 0.0, ""))
        records = [self._match_record(tr) for tr in self.tracker.close(source_id=source_id, pts=pts,
                                                                        capture_time=cap)]
        self._deliver(records, [])
        return len(records)

    def _match_record(self, tr: Any) -> Record:
        model = self.last_seen.get(tr.source_id, (0.0, 0.0, ""))[2]
        ev = build_match_event(tr, run_id=self.run_id, uri=self.uris.get(tr.source_id, tr.source_id), model=model)
        return to_record(ev, self.topics)

    def _track(self, query_events: list[Any]) -> list[Record]:
        out: list[Record] = []
        for qe in query_events:
            if self.scopes and qe.query not in self.scopes:
                continue  # answered by a model that had not yet seen the query's removal
            scope = self.scopes.get(qe.query)
            if scope is not None and qe.source_id not in scope:
                continue
            self.uris[qe.source_id] = qe.source_uri
            self.last_seen[qe.source_id] = (qe.pts, qe.capture_time, qe.model)
            tr = self.tracker.update(qe.source_id, qe.query, qe.pts, qe.matched, qe.score, qe.capture_time)
            if tr is not None:
                out.append(self._match_record(tr))
            if self.per_frame_queries:
                out.append(to_record(qe, self.topics))
        return out

    def publish(self, result: ModelResult) -> ModelResult:
        """Send a model batch's records with the new checkpoint of each source in it."""
        if result.query_events:
            result.records = result.records + self._track(result.query_events)
            result.events = len(result.records)
        cps = []
        for sid, pts in result.last_pts.items():
            self.last_pts[sid] = pts
            self.frames[sid] = self.frames.get(sid, 0) + result.frames.get(sid, 0)
            cps.append(Checkpoint(sid, pts, False, self.run_id, self.frames[sid]))
        self._deliver(result.records, cps)
        now = time.time()
        lat = [(sid, round((now - t) * 1000, 2)) for sid, t in result.capture]
        return ModelResult([], result.frames, result.last_pts, result.events, result.model_s, result.failed,
                           latency_ms=lat, dropped=result.dropped)

    def finish(self, source_id: str, records: list[Record], done: bool) -> None:
        """A source's closing status; ``done`` marks it complete so a rerun skips it."""
        cp = Checkpoint(source_id, self.last_pts.get(source_id), done, self.run_id, self.frames.get(source_id, 0))
        self._deliver(records, [cp] if done else [])

    def flush(self, timeout: float | None = 60.0) -> DeliveryReport:
        self.producer.flush(timeout=timeout)
        with self._lock:
            return DeliveryReport(self.report.sent, self.report.acked, self.report.failed,
                                  list(self.report.errors), dict(self.report.per_topic), self.report.transactions)

    def close(self) -> DeliveryReport:
        rep = self.flush()
        self.producer.close(timeout=10)
        return rep
