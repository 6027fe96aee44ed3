"""Per-source checkpoints for exactly-once archive runs, scoped to the analysis.

The publisher writes a checkpoint record (key = analysis id + source id; value = last
published pts, the stateful stage's state, whether the source finished) in the same Kafka
transaction as the events of that batch, on a compacted topic. A restarted run of the
same analysis reads the committed checkpoints, restores the stage and resumes each source
after its last published pts, so consumers reading ``read_committed`` see every event
exactly once and tracks continue. A changed analysis (other model, fps, queries, zones...)
has another id and starts fresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["Checkpoint", "checkpoint_record", "read_checkpoints", "transactional_id_for"]


@dataclass(frozen=True)
class Checkpoint:
    source_id: str
    last_pts: float | None  # None: nothing published yet
    done: bool
    run_id: str
    frames: int = 0  # frames published so far in this analysis
    analysis: str = ""  # id of the analysis (pipeline.runtime.analysis); "" for checkpoints of older versions
    epoch: int = 0  # --restart starts a new epoch; a resume reads the newest
    state: dict[str, Any] | None = None  # the stateful stage of this source (tracks, zones, windows, queries)
    describe: dict[str, Any] = field(default_factory=dict)  # what the analysis is, to say what changed

    @property
    def key(self) -> str:
        return f"{self.analysis}/{self.source_id}" if self.analysis else self.source_id


def checkpoint_record(cp: Checkpoint, topic: str) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    return (topic, cp.key.encode(), json.dumps(asdict(cp), sort_keys=True).encode(),
            [("content-type", b"application/json")])


def transactional_id_for(prefix: str, source_ids: list[str], analysis: str = "") -> str:
    """Stable for the same inputs, so a restart fences the crashed run's producer.

    >>> transactional_id_for("framewire", ["b", "a"]) == transactional_id_for("framewire", ["a", "b"])
    True
    """
    digest = hashlib.sha256("\n".join([analysis, *sorted(source_ids)]).encode()).hexdigest()[:16]
    return f"{prefix}-archive-{digest}"


TXN_MARKER = "__txn__/"  # key prefix of the per-transaction markers the archive publisher writes


def txn_marker_record(transactional_id: str, run_id: str, seq: int,
                      topic: str) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    """The last record of every archive transaction: after a lost commit reply, reading it back tells
    whether that transaction committed (so it is neither lost nor sent twice); one key per transactional id
    (compaction keeps the latest), the run id keeps a crashed predecessor's marker from counting."""
    return (topic, f"{TXN_MARKER}{transactional_id}".encode(),
            json.dumps({"run_id": run_id, "txn_seq": seq}).encode(), [("content-type", b"application/json")])


def latest_values(bootstrap: str, topic: str, *, timeout: float = 30.0, security: Any = None,
                  keys: Any = None) -> dict[str, bytes]:
    """The latest committed value of every key on ``topic`` (``keys``: a predicate on the key to keep)."""
    from kafka import KafkaConsumer, TopicPartition

    from pipeline.kafka.client import check_connection, client_config

    check_connection(bootstrap, security)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             isolation_level="read_committed", auto_offset_reset="earliest",
                             **client_config(security))
    out: dict[str, bytes] = {}
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            return out
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} did not reach its end in {timeout:.0f}s; "
                                   "an open transaction may hold it: retry, or check the broker")
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    key = r.key.decode(errors="replace") if r.key else ""
                    if keys is not None and not keys(key):
                        continue
                    if r.value is not None:
                        out[key] = r.value
    finally:
        consumer.close()
    return out


def read_checkpoints(bootstrap: str, topic: str, *, timeout: float = 30.0,
                     security: Any = None) -> dict[str, Checkpoint]:
    """The latest committed checkpoint of every key on ``topic`` (empty if the topic is new);
    ``security``: a KafkaSecuritySpec (TLS/SASL)."""
    out: dict[str, Checkpoint] = {}
    known = set(Checkpoint.__dataclass_fields__)
    values = latest_values(bootstrap, topic, timeout=timeout, security=security,
                           keys=lambda k: not k.startswith(TXN_MARKER))
    for key, value in values.items():
        try:
            data = json.loads(value)
            cp = Checkpoint(**{k: v for k, v in data.items() if k in known})
        except (ValueError, TypeError, AttributeError) as exc:  # not ours: never block a run on it
            log.warning("%s key %r is not a framewire checkpoint (%s); ignored", topic, key, exc)
            continue
        out[cp.key] = cp
    return out
