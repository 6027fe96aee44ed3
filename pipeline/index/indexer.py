"""The indexer: a Kafka consumer group (read_committed) that writes every framewire event into the store.

Offsets live in the store, in the rows of the batch they came with (see ``store``): on every
partition assignment the consumer seeks to ``max(offset) + 1`` of what is stored, so a process
killed at any point resumes with nothing indexed twice and nothing skipped. Offsets are also
committed to Kafka after each batch, for lag monitoring only. Values are read as plain JSON
dicts, so event types newer than this module (track, zone, ocr, ...) index too.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.index.mapping import event_row
from pipeline.index.store import IndexStore

__all__ = ["Indexer", "IndexerHandle", "IndexStats", "start_indexer_in_background", "topic_pattern"]

log = logging.getLogger(__name__)
DEFAULT_GROUP = "framewire-index"


def topic_pattern(prefix: str) -> str:
    """Every event topic under ``prefix`` (new ones too), not checkpoints or control.

    >>> bool(re.match(topic_pattern("fw"), "fw.tracks")), bool(re.match(topic_pattern("fw"), "fw.checkpoints"))
    (True, False)
    """
    return rf"^{re.escape(prefix)}\.(?!checkpoints$)(?!control(\.replies)?$)[^.]+$"


@dataclass
class IndexStats:
    events: int = 0  # records read and stored (or found already stored)
    batches: int = 0
    skipped: int = 0  # records that are not JSON objects (still stored, as type "invalid")
    started: float = field(default_factory=time.monotonic)

    def rate(self) -> float:
        return self.events / max(1e-9, time.monotonic() - self.started)


class Indexer:
    """Consume ``prefix``'s event topics (or ``topics``) into ``store``; ``run()`` until stopped or idle."""

    def __init__(self, store: IndexStore, bootstrap: str, *, prefix: str = "framewire",
                 topics: list[str] | None = None, group_id: str = DEFAULT_GROUP, batch_size: int = 500,
                 batch_wait_ms: int = 500, text_vectors: bool = True, minilm_path: str | None = None,
                 consumer: dict[str, Any] | None = None, optimize_every: int = 50_000,
                 security: Any = None) -> None:
        self.store, self.bootstrap, self.prefix, self.topics = store, bootstrap, prefix, topics
        self.group_id, self.batch_size, self.batch_wait_ms = group_id, batch_size, batch_wait_ms
        self.text_vectors, self.minilm_path = text_vectors, minilm_path
        self.consumer_config = dict(consumer or {})
        self.security = security  # a KafkaSecuritySpec: TLS/SASL, secrets read when the consumer connects
        self.optimize_every = optimize_every
        self.stats = IndexStats()
        self.caught_up = threading.Event()
        self.caught_up_since = -1.0  # monotonic time of the end-offsets request that found it caught up
        self._embedder: Any = None
        self._steps: dict[str, dict[str, Any]] = {}
        self._last_pts: dict[tuple[str, str], float] = {}
        self._since_optimize = 0

    # ---- rows ---------------------------------------------------------------------------
    def _embed(self, texts: list[str]) -> np.ndarray:
        if self._embedder is None:
            from operators.models.minilm import TextEmbedder

            self._embedder = TextEmbedder(self.minilm_path)
        cache = getattr(self._embedder, "_cache", None)
        if isinstance(cache, dict) and len(cache) > 50_000:  # OCR text rarely repeats: keep a live indexer bounded
            cache.clear()
        return self._embedder.embed(texts)

    def rows_for(self, records: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """(events rows, image rows, changed source rows) for Kafka records (``topic``, ``partition``,
        ``offset``, ``value``) in the order read."""
        rows, images = [], []
        for rec in records:
            try:
                ev = json.loads(rec.value)
                if not isinstance(ev, dict):
                    raise ValueError("not an object")
            except (ValueError, TypeError):
                self.stats.skipped += 1
                ev = {"type": "invalid", "event_id": f"invalid:{rec.topic}:{rec.partition}:{rec.offset}"}
            if not ev.get("event_id"):
                ev = {**ev, "event_id": f"noid:{rec.topic}:{rec.partition}:{rec.offset}"}
            row = event_row(ev)
            row.update(topic=rec.topic, partition=int(rec.partition), offset=int(rec.offset), text_vec=None)
            rows.append(row)
            if row["type"] == "embedding" and isinstance(ev.get("vector"), list) and ev["vector"]:
                images.append({"event_id": row["event_id"], "source_id": row["source_id"], "pts": row["pts"],
                               "time": row["time"], "model": row["model"],
                               "vector": np.asarray(ev["vector"], np.float32)})
            self._track_step(row)
        if self.text_vectors:
            todo = [r for r in rows if r["text"]]
            if todo:
                for r, v in zip(todo, self._embed([r["text"] for r in todo]), strict=True):
                    r["text_vec"] = v
        return rows, images, self._changed_sources(rows)

    def _track_step(self, row: dict[str, Any]) -> None:
        """The smallest pts step between a source's frames seen so far (its sampling interval)."""
        sid, pts = row["source_id"], row["pts"]
        if not sid or pts is None or row["type"] not in ("caption", "detections", "thumbnail", "embedding", "ocr"):
            return
        src = self._steps.setdefault(sid, {"source_id": sid, "source_uri": row["source_uri"], "step": None,
                                           "_dirty": True})
        prev = self._last_pts.get((sid, row["type"]))
        self._last_pts[(sid, row["type"])] = pts
        if prev is not None and pts > prev + 1e-6:
            step = round(pts - prev, 6)
            if src["step"] is None or step < src["step"] - 1e-9:
                src["step"], src["_dirty"] = step, True

    def _changed_sources(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for src in self._steps.values():
            if src["_dirty"]:
                src["_dirty"] = False
                out.append({k: v for k, v in src.items() if not k.startswith("_")})
        return out

    def write(self, records: list[Any]) -> int:
        """Map and store one batch of records; returns how many were read."""
        rows, images, sources = self.rows_for(records)
        self.store.write(rows, images, sources)
        self.stats.events += len(records)
        self.stats.batches += 1
        self._since_optimize += len(records)
        if self.stats.batches == 1 or self._since_optimize >= self.optimize_every:
            self._maintain()
        return len(records)

    def _maintain(self) -> None:
        try:
            self.store.ensure_indexes()
            if self.stats.batches > 1:
                self.store.optimize()
        except Exception as exc:  # noqa: BLE001 - an index build failure never stops indexing; searches scan
            log.warning("index maintenance on %s failed: %s: %s", self.store.uri, type(exc).__name__, exc)
        self._since_optimize = 0

    # ---- consuming ----------------------------------------------------------------------
    def _load_steps(self) -> None:
        for sid, r in self.store.sources().items():
            self._steps[sid] = {**r, "_dirty": False}

    def _consumer(self) -> Any:
        from kafka import ConsumerRebalanceListener, KafkaConsumer

        from pipeline.kafka.client import check_connection, client_config

        check_connection(self.bootstrap, self.security)
        cfg = {**client_config(self.security), "bootstrap_servers": self.bootstrap, "group_id": self.group_id,
               "enable_auto_commit": False,
               "auto_offset_reset": "earliest", "isolation_level": "read_committed",
               "metadata_max_age_ms": 5000, "max_poll_records": self.batch_size, **self.consumer_config}
        consumer = KafkaConsumer(**cfg)
        store = self.store

        class _SeekToStored(ConsumerRebalanceListener):  # the store, not the group, says where to resume
            def on_partitions_revoked(self, revoked: Any) -> None:
                pass

            def on_partitions_assigned(self, assigned: Any) -> None:
                stored = store.next_offsets()
                for tp in assigned:
                    off = stored.get((tp.topic, tp.partition))
                    if off is None:
                        consumer.seek_to_beginning(tp)
                    else:
                        consumer.seek(tp, off)

        if self.topics:
            consumer.subscribe(self.topics, listener=_SeekToStored())
        else:
            consumer.subscribe(pattern=topic_pattern(self.prefix), listener=_SeekToStored())
        return consumer

    def _check_caught_up(self, consumer: Any) -> None:
        tps = consumer.assignment()
        if not tps:
            self.caught_up.clear()
            return
        asked = time.monotonic()
        ends = consumer.end_offsets(list(tps))  # read_committed: the last stable offsets
        if all(consumer.position(tp) >= ends.get(tp, 0) for tp in tps):
            self.caught_up_since = asked
            self.caught_up.set()
        else:
            self.caught_up.clear()

    def run(self, stop: threading.Event | None = None, *, idle_timeout: float | None = None,
            max_events: int | None = None) -> IndexStats:
        """Index until ``stop`` is set, ``max_events`` are read, or ``idle_timeout`` seconds pass caught up
        (every assigned partition indexed to its end) with nothing new."""
        from kafka.structs import OffsetAndMetadata

        self._load_steps()
        consumer = self._consumer()
        last = time.monotonic()
        try:
            while not (stop is not None and stop.is_set()):
                polled = consumer.poll(timeout_ms=self.batch_wait_ms, max_records=self.batch_size)
                records = [r for part in polled.values() for r in part]
                if not records:
                    self._check_caught_up(consumer)
                    if not self.caught_up.is_set():
                        last = time.monotonic()  # e.g. waiting for a rebalance after a crash: not idle
                    elif idle_timeout is not None and time.monotonic() - last > idle_timeout:
                        break
                    continue
                self.caught_up.clear()
                last = time.monotonic()
                self.write(records)
                consumer.commit({tp: OffsetAndMetadata(rs[-1].offset + 1, "", -1) for tp, rs in polled.items()})
                if max_events is not None and self.stats.events >= max_events:
                    break
        finally:
            consumer.close()
        if self._since_optimize:
            self._maintain()
        return self.stats


class IndexerHandle:
    """An indexer running in a thread of this process (``start_indexer_in_background``)."""

    def __init__(self, indexer: Indexer) -> None:
        self.indexer = indexer
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="framewire-indexer", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self.indexer.run(self._stop)
        except BaseException as exc:  # noqa: BLE001 - surfaced by wait_caught_up/stop
            self.error = exc
            log.error("indexer stopped: %s: %s", type(exc).__name__, exc)

    def _raise(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"the indexer failed: {type(self.error).__name__}: {self.error}") from self.error

    def wait_caught_up(self, timeout: float) -> bool:
        """True once every assigned partition is indexed up to the last record committed before this call."""
        called = time.monotonic()
        deadline = called + timeout
        while time.monotonic() < deadline:
            self._raise()
            if self.indexer.caught_up.wait(0.2) and self.indexer.caught_up_since >= called:
                return True
        self._raise()
        return False

    @property
    def stats(self) -> IndexStats:
        return self.indexer.stats

    def stop(self, timeout: float = 30.0) -> IndexStats:
        self._stop.set()
        self._thread.join(timeout)
        self._raise()
        return self.indexer.stats


def start_indexer_in_background(spec: Any, bootstrap: str, db: str | None = None, **kwargs: Any) -> IndexerHandle:
    """Index ``spec``'s topics (``spec.kafka.topic_prefix``) into ``db`` from a thread; ``handle.stop()`` ends it."""
    store = IndexStore(db)
    kwargs.setdefault("security", spec.kafka.security)
    return IndexerHandle(Indexer(store, bootstrap, prefix=spec.kafka.topic_prefix, **kwargs))
