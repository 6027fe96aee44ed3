"""The actors' own Prometheus series through ``ray.util.metrics`` (tagged Counter/Gauge/Histogram), scraped
from each Ray node's metrics endpoint (``ray start --metrics-export-port``, KubeRay's PodMonitor).

Created lazily and only inside an actor: metrics never make a batch fail (a failure to record is logged once).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

__all__ = ["ModelMetrics", "PublisherMetrics"]

log = logging.getLogger(__name__)


class _Lazy:
    def __init__(self, tags: dict[str, str]) -> None:
        self.tags = tags
        self._m: dict[str, Any] | None = None
        self._broken = False

    def _make(self) -> dict[str, Any]:
        raise NotImplementedError

    def _get(self) -> dict[str, Any] | None:
        if self._m is None and not self._broken:
            try:
                self._m = self._make()
            except Exception as exc:  # noqa: BLE001 - metrics are best effort
                self._broken = True
                log.warning("ray metrics unavailable: %s", exc)
        return self._m


class ModelMetrics(_Lazy):
    """Per ModelActor: batch size and model latency, frames run, failed batches (tag ``model``)."""

    def _make(self) -> dict[str, Any]:
        from ray.util.metrics import Counter, Histogram

        keys = tuple(self.tags)
        return {
            "batch": Histogram("framewire_actor_model_batch_frames", "Frames per model call",
                               boundaries=[1, 2, 4, 8, 16, 32, 64, 128], tag_keys=keys),
            "latency": Histogram("framewire_actor_model_latency_s", "Seconds per model call",
                                 boundaries=[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], tag_keys=keys),
            "frames": Counter("framewire_actor_model_frames", "Frames the model ran on", tag_keys=keys),
            "failed": Counter("framewire_actor_model_failed_batches", "Model calls that raised", tag_keys=keys),
        }

    def batch(self, frames: int, seconds: float, failed: bool = False) -> None:
        m = self._get()
        if m is None:
            return
        try:
            if failed:
                m["failed"].inc(1, tags=self.tags)
                return
            m["batch"].observe(frames, tags=self.tags)
            m["latency"].observe(seconds, tags=self.tags)
            m["frames"].inc(frames, tags=self.tags)
        except Exception as exc:  # noqa: BLE001
            self._broken, self._m = True, None
            log.warning("ray metrics failed: %s", exc)


class PublisherMetrics(_Lazy):
    """The Kafka producer: records sent, acknowledged, failed (tag ``topic``), transactions committed."""

    def _make(self) -> dict[str, Any]:
        from ray.util.metrics import Counter

        keys = (*self.tags, "topic")
        return {
            "sent": Counter("framewire_kafka_sent", "Records handed to the Kafka producer", tag_keys=keys),
            "acked": Counter("framewire_kafka_acked", "Records the broker acknowledged", tag_keys=keys),
            "failed": Counter("framewire_kafka_failed", "Records the producer failed to deliver",
                              tag_keys=tuple(self.tags)),
            "commits": Counter("framewire_kafka_transactions", "Kafka transactions committed",
                               tag_keys=tuple(self.tags)),
            "outages": Counter("framewire_kafka_outages", "Times the broker stopped answering and was waited for",
                               tag_keys=tuple(self.tags)),
        }

    def __init__(self, tags: dict[str, str], every_s: float = 1.0) -> None:
        super().__init__(tags)
        self.every_s = every_s
        self._pending: dict[tuple[str, str | None], int] = {}
        self._lock = threading.Lock()
        self._last = 0.0

    def count(self, name: str, n: int = 1, topic: str | None = None) -> None:
        """Add ``n`` (cheap: summed here, handed to Ray at most once a second and on ``push``)."""
        with self._lock:
            self._pending[(name, topic)] = self._pending.get((name, topic), 0) + n
        if time.monotonic() - self._last >= self.every_s:
            self.push()

    def push(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._last = time.monotonic()
        m = self._get()
        if m is None:
            return
        try:
            for (name, topic), n in pending.items():
                if n > 0:
                    m[name].inc(n, tags={**self.tags, "topic": topic} if topic is not None else self.tags)
        except Exception as exc:  # noqa: BLE001
            self._broken, self._m = True, None
            log.warning("ray metrics failed: %s", exc)
