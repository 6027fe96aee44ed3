"""Driver-side Prometheus metrics: what only the driver knows (per-source progress, drops, latencies, the
policy's queue), fed from its ``on_progress`` callback and ``on_publish`` hook, served at ``/metrics``.

Counters are kept from the driver's cumulative totals (each update adds the difference), so they stay
monotonic and exact however often the driver reports. The actors export their own series through
``ray.util.metrics`` (``pipeline/web/ray_metrics.py``) for a Ray cluster's metrics endpoint.
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["DriverMetrics", "LATENCY_BUCKETS_MS", "STATES"]

LATENCY_BUCKETS_MS = (10, 25, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 30000, 60000)
STATES = ("waiting", "decoding", "started", "connecting", "live", "stalled", "reconnecting", "ended", "failed",
          "removed")


class DriverMetrics:
    """Prometheus series of one driver; ``observe_progress`` and ``observe_publish`` are the driver's hooks."""

    def __init__(self, registry: CollectorRegistry | None = None, run_id: str = "") -> None:
        self.registry = registry or CollectorRegistry()
        self.run_id = run_id
        r = self.registry
        src = ["source"]
        self.decoded = Counter("framewire_frames_decoded", "Sampled frames handed to the model stage", src, registry=r)
        self.published = Counter("framewire_frames_published", "Frames whose events were sent to Kafka", src,
                                 registry=r)
        self.dropped = Counter("framewire_frames_dropped", "Frames dropped to keep latency bounded, by reason "
                               "(reader: the camera reader fell behind; driver: past the latency budget or queue)",
                               ["source", "reason"], registry=r)
        self.events = Counter("framewire_events", "Events published", src, registry=r)
        self.reconnects = Counter("framewire_source_reconnects", "Times a live source went to reconnecting", src,
                                  registry=r)
        self.state = Gauge("framewire_source_state", "1 for the source's current state, 0 for the others",
                           ["source", "state"], registry=r)
        self.fps = Gauge("framewire_source_fps", "Frames published per second over the last 10 s", src, registry=r)
        self.latency = Histogram("framewire_capture_to_publish_ms", "Capture (or decode) to handed to Kafka, ms",
                                 src, buckets=LATENCY_BUCKETS_MS, registry=r)
        self.queue = Gauge("framewire_policy_buffered_frames", "Frames decoded and waiting for a model", registry=r)
        self.batch = Histogram("framewire_model_batch_frames", "Frames per model call (driver view)",
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.model_s = Histogram("framewire_model_batch_seconds", "Seconds per model call (driver view)",
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r)
        self.batches = Counter("framewire_model_batches", "Model calls whose results were published", registry=r)
        self.publish_failed = Counter("framewire_publish_failed", "Records the model stage failed on", registry=r)
        self.info = Gauge("framewire_run_info", "1, labelled with the run id and mode", ["run_id", "mode"],
                          registry=r)
        self._seen: dict[tuple[str, str], float] = {}
        self._states: dict[str, str] = {}
        self._lock = threading.Lock()
        self.driver: Any = None

    def attach(self, driver: Any) -> DriverMetrics:
        """Read the driver's policy queue and run id on each progress update."""
        self.driver = driver
        self.run_id = driver.run_id
        self.info.labels(driver.run_id, driver.spec.mode).set(1)
        return self

    def _add(self, counter: Any, key: tuple[str, str], total: float, *labels: str) -> None:
        delta = total - self._seen.get(key, 0.0)
        if delta > 0:
            counter.labels(*labels).inc(delta)
            self._seen[key] = total

    def observe_progress(self, progress: dict[str, Any]) -> None:
        """The driver's ``on_progress(progress)``: cumulative per-source totals, states and live fps."""
        with self._lock:
            for sid, p in list(progress.items()):
                self._add(self.decoded, (sid, "decoded"), p.decoded, sid)
                self._add(self.published, (sid, "published"), p.published, sid)
                self._add(self.events, (sid, "events"), p.events, sid)
                self._add(self.dropped, (sid, "reader"), p.reader_dropped, sid, "reader")
                self._add(self.dropped, (sid, "driver"), p.driver_dropped, sid, "driver")
                state = p.live_state or p.state
                if state != self._states.get(sid):
                    if state == "reconnecting":
                        self.reconnects.labels(sid).inc()
                    for s in STATES if state in STATES else (*STATES, state):
                        self.state.labels(sid, s).set(1 if s == state else 0)
                    self._states[sid] = state
                self.fps.labels(sid).set(round(p.live_fps if p.live_state else p.fps, 3))
            policy = getattr(self.driver, "policy", None)
            if policy is not None:
                self.queue.set(policy.buffered())

    def observe_publish(self, res: Any) -> None:
        """The driver's ``on_publish(PublishResult)``: each frame's capture-to-publish latency, the model call."""
        with self._lock:
            for sid, ms in res.latency_ms:
                self.latency.labels(sid).observe(ms)
            if res.model_frames:
                self.batch.observe(res.model_frames)
                self.model_s.observe(res.model_s)
                self.batches.inc()
            if res.failed:
                self.publish_failed.inc(res.failed)
