"""PublisherActor: owns the Kafka producer. acks=all, idempotent, delivery callbacks, flush on close."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import ray

from pipeline.actors.model import ModelResult
from pipeline.events import Record

__all__ = ["DeliveryReport", "PublisherActor", "producer_config"]

_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 5,
    "retries": 2147483647,
    "max_in_flight_requests_per_connection": 5,
    "compression_type": None,
    "request_timeout_ms": 30000,
}


def producer_config(bootstrap: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Our delivery defaults; user settings pass through to KafkaProducer unchanged."""
    conf = dict(_DEFAULTS)
    conf.update(overrides)
    conf["bootstrap_servers"] = bootstrap
    return conf


@dataclass
class DeliveryReport:
    sent: int = 0
    acked: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    per_topic: dict[str, int] = field(default_factory=dict)


@ray.remote
class PublisherActor:
    """Sends records in call order. Ray runs one caller's calls in submission order, so
    events of one source reach Kafka in pts order."""

    def __init__(self, bootstrap: str, overrides: dict[str, Any]) -> None:
        from kafka import KafkaProducer

        self.producer = KafkaProducer(**producer_config(bootstrap, overrides))
        self.report = DeliveryReport()
        self._lock = threading.Lock()

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

    def send(self, records: list[Record]) -> int:
        for topic, key, value, headers in records:
            fut = self.producer.send(topic, key=key, value=value, headers=headers)
            fut.add_callback(self._on_ok(topic))
            fut.add_errback(self._on_err)
        self.report.sent += len(records)
        return len(records)

    def publish(self, result: ModelResult) -> ModelResult:
        """Send a model batch's records; returns the result minus its payload (for progress)."""
        self.send(result.records)
        return ModelResult([], result.frames, result.events, result.model_s, result.failed)

    def flush(self, timeout: float | None = 60.0) -> DeliveryReport:
        self.producer.flush(timeout=timeout)
        with self._lock:
            return DeliveryReport(self.report.sent, self.report.acked, self.report.failed,
                                  list(self.report.errors), dict(self.report.per_topic))

    def close(self) -> DeliveryReport:
        rep = self.flush()
        self.producer.close(timeout=10)
        return rep
