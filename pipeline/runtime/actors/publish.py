"""PublisherActor: hosts the stateful per-source stage and owns the Kafka producer.

acks=all, idempotent, delivery callbacks, flush on close. With a ``transactional_id``
(archive runs) every call is one Kafka transaction holding the batch's events, the
stage's events and the checkpoint of each source in it (last pts and the stage's state),
so a crash never leaves events without their checkpoint or the other way round, and a
resumed run continues the same tracks; ``init_transactions`` at start aborts whatever a
crashed predecessor with the same id left open and fences it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import ray

from pipeline.events import Record, Topics
from pipeline.kafka.checkpoints import Checkpoint, checkpoint_record, txn_marker_record
from pipeline.runtime.actors.metrics import PublisherMetrics
from pipeline.runtime.actors.model import ModelBatch
from pipeline.runtime.stage_host import Released, StageHost

__all__ = ["DeliveryReport", "PublishResult", "PublisherActor", "producer_config"]

log = logging.getLogger(__name__)

_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 5,
    "retries": 2147483647,
    "max_in_flight_requests_per_connection": 5,
    "request_timeout_ms": 30000,
}


def producer_config(bootstrap: str, overrides: dict[str, Any], transactional_id: str | None = None,
                    security: Any = None, outage_s: float | None = None) -> dict[str, Any]:
    """Our delivery defaults, then TLS/SASL from ``security`` (a KafkaSecuritySpec, read here so secrets
    never travel through Ray); user settings pass through to KafkaProducer unchanged. ``outage_s``: records
    and transactions wait that long for a broker that went away (retried, not failed) before giving up."""
    from pipeline.kafka.client import client_config

    conf = dict(_DEFAULTS)
    if outage_s:
        conf["delivery_timeout_ms"] = int((outage_s + conf["request_timeout_ms"] / 1000) * 1000)
        conf["reconnect_backoff_max_ms"] = 2000  # back within ~2 s of the broker, not kafka-python's 30 s
    conf.update(client_config(security))
    if transactional_id:
        # right after a commit the broker answers the next transaction's first write "concurrent transactions"
        # until its markers are written (a few ms); kafka-python's default 100 ms backoff made every other
        # transaction 100 ms slower (measured: ~105 ms vs ~4 ms per commit on the local broker)
        conf["retry_backoff_ms"] = 10
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


@dataclass
class PublishResult:
    """What the driver learns from one publish call (small: counts, never records)."""

    frames: dict[str, int] = field(default_factory=dict)
    decoded: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    events: int = 0
    failed: int = 0
    model_frames: int = 0
    model_s: float = 0.0
    latency_ms: list[tuple[str, float]] = field(default_factory=list)
    outage: tuple[float, dict[str, int]] | None = None  # live: the broker is back after (seconds, frames dropped)


@ray.remote
class PublisherActor:
    """Sends records in order: one source's events reach Kafka in pts order (the stage re-orders)."""

    def __init__(self, bootstrap: str, overrides: dict[str, Any], *, transactional_id: str | None = None,
                 checkpoint_topic: str | None = None, run_id: str = "", outage_s: float = 120.0,
                 topic_prefix: str = "framewire", hysteresis: tuple[int, int] = (3, 3),
                 per_frame_queries: bool = False, analytics: dict[str, Any] | None = None,
                 clock: str = "pts", analysis: str = "", epoch: int = 0,
                 describe: dict[str, Any] | None = None, frame_rate: float | None = None,
                 security: Any = None, stall_s: float = 2.0) -> None:
        from pipeline.runtime.analytics import analytics_factory

        self.txn = bool(transactional_id)
        self.transactional_id = transactional_id or ""
        self.bootstrap, self.security = bootstrap, security
        self.outage_s = outage_s
        self._conf = producer_config(bootstrap, overrides, transactional_id, security, outage_s)
        if transactional_id:
            self._conf.setdefault("max_block_ms", int(min(outage_s, 60) * 1000))
        self._txn_seq = 0
        t = Topics(topic_prefix)
        self._topics = t.all() + ([checkpoint_topic] if checkpoint_topic else [])
        self._told = False  # the current transaction's wait has been logged
        self.producer: Any = self._new_producer()  # transactional: aborts and fences a crashed run with the same id
        self.checkpoint_topic = checkpoint_topic
        self.run_id = run_id
        self.analysis, self.epoch, self.describe = analysis, epoch, describe or {}
        self.last_pts: dict[str, float] = {}
        self.frames: dict[str, int] = {}
        self.report = DeliveryReport()
        self.metrics = PublisherMetrics({"run_id": run_id})
        self._lock = threading.Lock()
        # live (no transactions): a broker that has acknowledged nothing for stall_s while records wait is away;
        # meanwhile per-frame events are dropped (they would arrive past their budget) and what the stateful
        # stage says (tracks, zones, windows, matches, status) waits in the producer for the broker's return
        self.stall_s = stall_s
        self._unacked, self._progress_at, self._failing = 0, time.monotonic(), False
        self._away_since: float | None = None
        self._away_dropped: dict[str, int] = {}
        self._per_frame = {t.captions, t.detections, t.embeddings, t.thumbnails, t.ocr}
        if not self.txn:  # notices an outage even while no batch comes to publish
            threading.Thread(target=self._watch_broker, daemon=True, name="kafka-watch").start()
        self.stage = StageHost(run_id=run_id, topic_prefix=topic_prefix,
                               make_analytics=analytics_factory(
                                   analytics, clock=clock, run_id=run_id, topic_prefix=topic_prefix,
                                   frame_rate=frame_rate, uri_of=lambda sid: self.stage.uris.get(sid, sid)),
                               per_frame_queries=per_frame_queries, hysteresis=hysteresis)

    def ready(self) -> bool:
        return True

    def set_resume(self, checkpoints: dict[str, Checkpoint]) -> None:
        """Continue each source from its checkpoint: last pts, frames so far and the stage's state."""
        for sid, cp in checkpoints.items():
            if cp.last_pts is not None:
                self.last_pts[sid] = cp.last_pts
            self.frames[sid] = cp.frames
            self.stage.restore(sid, cp.state)

    def held(self) -> dict[str, tuple[int, list[int]]]:
        """Per source: the next chunk the stage waits for and the later ones it holds (for diagnosing a stall)."""
        return {sid: (src.next_seq, sorted(src.held)) for sid, src in self.stage.sources.items()}

    def next_seq(self, source_id: str) -> int:
        return int(self.stage.snapshot(source_id)["next_seq"])

    def set_uris(self, uris: dict[str, str]) -> None:
        self.stage.uris.update(uris)

    def _on_ok(self, topic: str) -> Any:
        def cb(_meta: Any) -> None:
            with self._lock:
                self._unacked -= 1
                self._progress_at = time.monotonic()
                self._failing = False
                self.report.acked += 1
                self.report.per_topic[topic] = self.report.per_topic.get(topic, 0) + 1
            self.metrics.count("acked", 1, topic)
        return cb

    def _on_err(self, exc: BaseException) -> None:
        with self._lock:
            self._unacked -= 1
            self._failing = True  # no progress: a broker that fails every record fast is away too
            self.report.failed += 1
            if len(self.report.errors) < 20:
                self.report.errors.append(f"{type(exc).__name__}: {exc}")
        self.metrics.count("failed")

    def _send(self, records: list[Record]) -> None:
        with self._lock:
            if self._unacked == 0 and not self._failing:
                self._progress_at = time.monotonic()
            self._unacked += len(records)
        for topic, key, value, headers in records:
            fut = self.producer.send(topic, key=key, value=value, headers=headers)
            fut.add_callback(self._on_ok(topic))
            fut.add_errback(self._on_err)
            self.metrics.count("sent", 1, topic)
        self.report.sent += len(records)

    def _send_txn(self, records: list[Record]) -> None:
        """Into the open transaction; counted only once it commits (then every record of it was acked)."""
        for topic, key, value, headers in records:
            self.producer.send(topic, key=key, value=value, headers=headers)

    def _delivered(self, records: list[Record]) -> None:
        with self._lock:
            self.report.sent += len(records)
            self.report.acked += len(records)
            for topic, *_ in records:
                self.report.per_topic[topic] = self.report.per_topic.get(topic, 0) + 1
                self.metrics.count("sent", 1, topic)
                self.metrics.count("acked", 1, topic)

    def _new_producer(self) -> Any:
        from kafka import KafkaProducer

        producer = KafkaProducer(**self._conf)
        if self.txn:
            producer.init_transactions()
        _learn_topics(producer, self._topics)
        return producer

    def _commit(self, limit_s: float) -> None:
        """Commit the open transaction, waiting at most ``limit_s`` (kafka-python's own wait has no limit);
        a commit slower than 5 s is told (once per outage)."""
        errors: list[BaseException] = []
        done = threading.Event()
        producer = self.producer

        def go() -> None:
            try:
                producer.commit_transaction()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                errors.append(exc)
            finally:
                done.set()

        threading.Thread(target=go, daemon=True, name="kafka-commit").start()
        if not done.wait(min(5.0, limit_s)):
            self._tell_outage("no confirmation for 5s")
            if not done.wait(max(0.0, limit_s - 5.0)):
                raise TimeoutError(f"Kafka did not confirm the transaction in {limit_s:.0f}s")
        if errors:
            raise errors[0]

    def _tell_outage(self, why: str) -> None:
        if self._told:
            return
        self._told = True
        log.warning("Kafka has not confirmed a transaction (%s; broker unreachable?); the run keeps its place and "
                    "waits up to kafka.outage_s=%.0fs", why, self.outage_s)
        self.metrics.count("outages")

    def _committed(self, seq: int) -> bool:
        """After a lost commit reply: did transaction ``seq`` of this run land? (its marker says)"""
        from pipeline.kafka.checkpoints import TXN_MARKER, latest_values

        if not self.checkpoint_topic:
            return False
        key = f"{TXN_MARKER}{self.transactional_id}"
        value = latest_values(self.bootstrap, self.checkpoint_topic, timeout=30, security=self.security,
                              keys=lambda k: k == key).get(key)
        if value is None:
            return False
        import json

        mark = json.loads(value)
        return mark.get("run_id") == self.run_id and mark.get("txn_seq") == seq

    def _abandon(self) -> None:
        """Drop a producer stuck on a broker that went away (its threads are closed in the background)."""
        old, self.producer = self.producer, None
        if old is not None:
            threading.Thread(target=lambda: _quiet(old.close, timeout=1), daemon=True, name="kafka-close").start()

    def _transact(self, batch: list[Record]) -> None:
        """Send ``batch`` as one transaction, exactly once, riding through a broker outage of up to
        ``outage_s``: a transaction that cannot finish is abandoned with its producer; a new producer
        (same transactional id: fences the old one, so its transaction commits or aborts) checks the
        transaction's marker and sends it again only if it did not land."""
        from kafka.errors import AuthorizationError, ProducerFencedError, TransactionalIdAuthorizationFailedError

        fatal = (ProducerFencedError, AuthorizationError, TransactionalIdAuthorizationFailedError)
        seq = self._txn_seq
        t0 = time.monotonic()
        self._told = False
        while True:
            try:
                if self.producer is None:
                    self.producer = self._new_producer()
                    if self._committed(seq):
                        break
                self.producer.begin_transaction()
                self._send_txn(batch)
                self._commit(15.0)
                break
            except fatal:
                raise
            except Exception as exc:  # noqa: BLE001 - a broker away: wait, then start the transaction again
                waited = time.monotonic() - t0
                if waited > self.outage_s:
                    raise TimeoutError(f"Kafka was unreachable for more than kafka.outage_s={self.outage_s:.0f}s "
                                       f"({type(exc).__name__}: {exc}); the run stops here and resumes from its "
                                       "checkpoints when started again (or raise kafka.outage_s)") from exc
                self._tell_outage(f"{type(exc).__name__}: {exc}")
                self._abandon()
                time.sleep(1.0)
        if self._told:
            log.warning("Kafka broker is back after %.0fs; the run goes on where it was", time.monotonic() - t0)
        self._delivered(batch)
        self.report.transactions += 1
        self.metrics.count("commits")

    def _checkpoint(self, sid: str, done: bool = False) -> Checkpoint:
        return Checkpoint(sid, self.last_pts.get(sid), done, self.run_id, self.frames.get(sid, 0),
                          self.analysis, self.epoch, self.stage.snapshot(sid), self.describe)

    def _deliver(self, records: list[Record], checkpoint_sources: list[str], done: bool = False) -> None:
        if not self.txn:
            self._send(records)
            return
        if not records and not checkpoint_sources:
            return
        self._txn_seq += 1
        batch = list(records)
        if self.checkpoint_topic:
            batch += [checkpoint_record(self._checkpoint(s, done), self.checkpoint_topic) for s in checkpoint_sources]
            batch.append(txn_marker_record(self.transactional_id, self.run_id, self._txn_seq, self.checkpoint_topic))
        self._transact(batch)

    def send(self, records: list[Record]) -> int:
        """Send records outside the model path (status, errors)."""
        self._deliver(records, [])
        return len(records)

    def begin_sources(self, source_ids: list[str], records: list[Record]) -> None:
        """A fresh start (new analysis, --restart): empty checkpoints of the sources with their started status,
        so a crash right after resumes this epoch, not an older one."""
        self._deliver(records, list(source_ids))

    def set_query_scopes(self, scopes: dict[str, list[str] | None]) -> int:
        """Standing queries and the sources each applies to; removed queries end their open matches."""
        records = self.stage.set_scopes(scopes)
        self._deliver(records, [])
        return len(records)

    def skip(self, seqs_by_source: dict[str, list[int]]) -> PublishResult:
        """Chunks the driver gave up before the model (live), every camera's in one call: later chunks need
        not wait for them."""
        rel = Released()
        for source_id, seqs in seqs_by_source.items():
            for seq in seqs:
                StageHost._merge(rel, self.stage.skip(source_id, seq))
        return self._publish(rel)

    def close_source(self, source_id: str) -> int:
        """A live source stopped: close its tracks, zone visits, last window and open matches."""
        records = self.stage.end(source_id)
        self.stage.forget(source_id)
        self._deliver(records, [])
        return len(records)

    def publish(self, batch: ModelBatch) -> PublishResult:
        """The model batch's chunks through the stage; what they release goes out with the new checkpoints."""
        res = self._publish(self.stage.accept(batch.chunks))
        res.model_frames, res.model_s = batch.frames, batch.model_s
        return res

    def broker_away(self) -> bool:
        """Live: records wait (or fail) and the broker has acknowledged nothing for ``stall_s``."""
        with self._lock:
            return (self._unacked > 0 or self._failing) and time.monotonic() - self._progress_at > self.stall_s

    def _watch_broker(self) -> None:
        while True:
            time.sleep(0.25)
            if self._away_since is None and self.broker_away():
                self._mark_away()

    def _mark_away(self) -> None:
        with self._lock:
            if self._away_since is not None:
                return
            self._away_since = time.time()
        self.metrics.count("outages")
        log.warning("Kafka broker unreachable (nothing acknowledged for %.0fs): per-frame events are dropped "
                    "until it is back; tracks, zones, windows and status wait for it", self.stall_s)

    def _while_away(self, rel: Released) -> tuple[float, dict[str, int]] | None:
        """Live: drop the per-frame events of ``rel`` while the broker is away (counted as dropped frames);
        once it is back, how long it was away and what was dropped meanwhile."""
        if self.txn:
            return None
        if self.broker_away():
            self._mark_away()
            rel.records = [r for r in rel.records if r[0] not in self._per_frame]
            for sid, n in rel.frames.items():
                rel.dropped[sid] = rel.dropped.get(sid, 0) + n
                self._away_dropped[sid] = self._away_dropped.get(sid, 0) + n
            rel.frames, rel.capture = {}, []
            return None
        if self._away_since is None:
            return None
        away = (time.time() - self._away_since, self._away_dropped)
        self._away_since, self._away_dropped = None, {}
        log.warning("Kafka broker is back after %.0fs; %d frames were dropped meanwhile", away[0],
                    sum(away[1].values()))
        return away

    def _publish(self, rel: Released) -> PublishResult:
        outage = self._while_away(rel)
        for sid, pts in rel.last_pts.items():
            self.last_pts[sid] = pts
        for sid, n in rel.frames.items():
            self.frames[sid] = self.frames.get(sid, 0) + n
        touched = sorted(set(rel.last_pts) | set(rel.frames) | set(rel.decoded))
        self._deliver(rel.records, touched)
        now = time.time()
        return PublishResult(rel.frames, rel.decoded, rel.dropped, len(rel.records), rel.failed,
                             latency_ms=[(sid, round((now - t) * 1000, 2)) for sid, t in rel.capture], outage=outage)

    def finish(self, source_id: str, records: list[Record], done: bool) -> int:
        """A source's end: the stage's closing events and its status; ``done`` marks it complete so a rerun
        of the same analysis skips it."""
        closing = self.stage.end(source_id)
        self._deliver(closing + records, [source_id] if done else [], done=done)
        return len(closing) + len(records)

    def flush(self, timeout: float | None = 60.0) -> DeliveryReport:
        self.producer.flush(timeout=timeout)
        self.metrics.push()
        with self._lock:
            return DeliveryReport(self.report.sent, self.report.acked, self.report.failed,
                                  list(self.report.errors), dict(self.report.per_topic), self.report.transactions)

    def close(self) -> DeliveryReport:
        rep = self.flush()
        self.producer.close(timeout=10)
        return rep


def _learn_topics(producer: Any, topics: list[str], limit_s: float = 10.0) -> None:
    """Fetch the partitions of every topic the run writes now, while the broker is there. kafka-python's
    ``send`` waits up to ``max_block_ms`` (60 s) for the metadata of a topic it has not written yet, so the
    first window summary, track or zone event going out during an outage stalled the whole publisher.
    All topics at once (their requests share metadata updates: ~0.1 s, one after another ~1.2 s); one
    that does not answer within ``limit_s`` is left to its first send."""
    pending = set(topics)
    lock, all_done = threading.Lock(), threading.Event()

    def fetch(topic: str) -> None:
        try:
            producer.partitions_for(topic)
        except Exception as exc:  # noqa: BLE001 - its first send meets the same error and reports it
            log.debug("metadata of %s: %s", topic, exc)
        finally:
            with lock:
                pending.discard(topic)
                if not pending:
                    all_done.set()

    if not topics:
        return
    for topic in topics:
        threading.Thread(target=fetch, args=(topic,), daemon=True, name="kafka-metadata").start()
    if not all_done.wait(limit_s):
        with lock:
            late = sorted(pending)
        log.warning("Kafka gave no metadata for %s in %.0fs; their first sends will wait for it",
                    ", ".join(late), limit_s)


def _quiet(fn: Any, **kwargs: Any) -> None:
    try:
        fn(**kwargs)
    except Exception:  # noqa: BLE001 - closing a producer abandoned on a broker that went away
        pass
