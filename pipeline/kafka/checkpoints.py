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


def read_checkpoints(bootstrap: str, topic: str, *, timeout: float = 30.0,
                     security: Any = None) -> dict[str, Checkpoint]:
    """The latest committed checkpoint of every key on ``topic`` (empty if the topic is new);
    ``security``: a KafkaSecuritySpec (TLS/SASL)."""
    from kafka import KafkaConsumer, TopicPartition

    from pipeline.kafka.client import check_connection, client_config

    check_connection(bootstrap, security)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             isolation_level="read_committed", auto_offset_reset="earliest",
                             **client_config(security))
    out: dict[str, Checkpoint] = {}
    known = set(Checkpoint.__dataclass_fields__)
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
                raise TimeoutError(f"reading checkpoints from {topic} did not reach its end in {timeout:.0f}s; "
                                   "an open transaction may hold it: retry, or check the broker")
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    if r.value is None:
                        continue
                    try:
                        data = json.loads(r.value)
                        cp = Checkpoint(**{k: v for k, v in data.items() if k in known})
                    except (ValueError, TypeError, AttributeError) as exc:  # not ours: never block a run on it
                        log.warning("%s[%d]@%d is not a framewire checkpoint (%s); ignored", topic, r.partition,
                                    r.offset, exc)
                        continue
                    out[cp.key] = cp
    finally:
        consumer.close()
    return out
