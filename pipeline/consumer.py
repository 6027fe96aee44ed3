"""Reading framewire events back from Kafka: typed events, filtered by source, type and run."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from pipeline.events import Topics, parse_event

__all__ = ["Received", "subscribe"]


@dataclass(frozen=True)
class Received:
    topic: str
    partition: int
    offset: int
    key: str
    headers: dict[str, str]
    event: object  # one of the pipeline.events event models


def subscribe(
    bootstrap: str,
    topics: list[str] | None = None,
    *,
    prefix: str = "framewire",
    from_beginning: bool = False,
    source: str | None = None,
    types: set[str] | None = None,
    run_id: str | None = None,
    idle_timeout: float | None = None,
    group_id: str | None = None,
    read_committed: bool = True,
) -> Iterator[Received]:
    """Yield events as they arrive; stop after ``idle_timeout`` seconds without one (None: never).

    Values that do not parse as a framewire event are skipped (counted nowhere): the
    topics belong to framewire, so they mean a foreign producer wrote there.
    """
    from kafka import KafkaConsumer

    names = topics or Topics(prefix).all()
    consumer = KafkaConsumer(
        *names,
        bootstrap_servers=bootstrap,
        group_id=group_id or f"framewire-tail-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=group_id is not None,
        isolation_level="read_committed" if read_committed else "read_uncommitted",
        consumer_timeout_ms=200,
    )
    last = time.monotonic()
    try:
        while True:
            got = False
            for msg in consumer:
                got = True
                last = time.monotonic()
                try:
                    ev = parse_event(msg.value)
                except ValueError:
                    continue
                if source and ev.source_id != source and not ev.source_id.startswith(source + "-"):
                    continue
                if types and ev.type not in types:
                    continue
                if run_id and ev.run_id != run_id:
                    continue
                hdrs = {k: v.decode(errors="replace") for k, v in (msg.headers or [])}
                yield Received(msg.topic, msg.partition, msg.offset, (msg.key or b"").decode(), hdrs, ev)
            if not got and idle_timeout is not None and time.monotonic() - last > idle_timeout:
                return
    finally:
        consumer.close()
