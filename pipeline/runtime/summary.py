"""What the driver reports while it runs and when it ends: per-source progress and the run summary."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pipeline.runtime.actors.publish import DeliveryReport
from pipeline.sources import Source

__all__ = ["RunSummary", "SourceProgress", "percentile"]


def percentile(sorted_values: list[float], f: float) -> float | None:
    """Nearest-rank percentile of an ascending list; None when empty.

    >>> percentile([10.0, 20.0, 30.0, 40.0], 0.5), percentile([], 0.95)
    (30.0, None)
    """
    if not sorted_values:
        return None
    return round(sorted_values[min(len(sorted_values) - 1, int(f * len(sorted_values)))], 1)


@dataclass
class SourceProgress:
    source: Source
    state: str = "waiting"  # waiting, decoding, ended, failed
    decoded: int = 0  # sampled frames handed to the model stage
    published: int = 0  # frames whose events were sent to the producer
    events: int = 0
    error: str | None = None
    detail: str = ""
    started: float | None = None
    ended: float | None = None
    # live sources
    live_state: str = ""
    dropped: int = 0  # reader_dropped + driver_dropped
    reader_dropped: int = 0  # the camera reader dropped its oldest frames (consumer slower than the camera)
    driver_dropped: int = 0  # older than the latency budget, or past the queue, when a model was free
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=2000))  # capture -> handed to Kafka
    recent: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=256))  # (monotonic, frames)

    @property
    def live_fps(self) -> float:
        """Frames published per second over the last 10 s."""
        now = time.monotonic()
        window = [(t, n) for t, n in self.recent if now - t <= 10.0]
        if len(window) < 2:
            return 0.0
        span = max(1e-3, now - window[0][0])
        return sum(n for _, n in window[1:]) / span

    @property
    def fps(self) -> float:
        if not self.started or not self.published:
            return 0.0
        return self.published / max(1e-6, (self.ended or time.time()) - self.started)


@dataclass
class RunSummary:
    run_id: str
    sources: list[SourceProgress]
    delivery: DeliveryReport
    seconds: float
    frames: int
    model_seconds: float
    batches: int
    errors: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.delivery.failed == 0
