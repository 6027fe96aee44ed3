"""Driver metrics: counters follow the driver's cumulative totals exactly, states and latencies land in
the right series."""

from __future__ import annotations

from types import SimpleNamespace

from pipeline.runtime.actors.publish import PublishResult
from pipeline.runtime.summary import SourceProgress
from pipeline.sources import expand_sources
from pipeline.web.metrics import DriverMetrics


def _value(m: DriverMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_counters_follow_cumulative_progress_and_states_switch() -> None:
    (src,) = expand_sources(["rtsp://user:pw@10.0.0.1/cam"])
    p = SourceProgress(src)
    m = DriverMetrics()
    m.driver = SimpleNamespace(policy=SimpleNamespace(buffered=lambda: 7))
    p.live_state, p.decoded, p.published, p.reader_dropped, p.driver_dropped = "live", 10, 8, 1, 2
    m.observe_progress({src.id: p})
    m.observe_progress({src.id: p})  # the same totals again add nothing
    assert _value(m, "framewire_frames_decoded_total", source=src.id) == 10
    assert _value(m, "framewire_frames_published_total", source=src.id) == 8
    assert _value(m, "framewire_frames_dropped_total", source=src.id, reason="reader") == 1
    assert _value(m, "framewire_frames_dropped_total", source=src.id, reason="driver") == 2
    assert _value(m, "framewire_source_state", source=src.id, state="live") == 1
    assert _value(m, "framewire_policy_buffered_frames") == 7
    p.live_state, p.decoded = "reconnecting", 15
    m.observe_progress({src.id: p})
    assert _value(m, "framewire_frames_decoded_total", source=src.id) == 15
    assert _value(m, "framewire_source_state", source=src.id, state="live") == 0
    assert _value(m, "framewire_source_state", source=src.id, state="reconnecting") == 1
    assert _value(m, "framewire_source_reconnects_total", source=src.id) == 1


def test_publish_results_feed_latency_and_batch_histograms() -> None:
    m = DriverMetrics()
    m.observe_publish(PublishResult(latency_ms=[("a", 40.0), ("a", 300.0), ("b", 20.0)], model_frames=4,
                                    model_s=0.2))
    assert _value(m, "framewire_capture_to_publish_ms_count", source="a") == 2
    assert _value(m, "framewire_capture_to_publish_ms_sum", source="a") == 340.0
    assert _value(m, "framewire_capture_to_publish_ms_bucket", source="a", le="50.0") == 1
    assert _value(m, "framewire_model_batch_frames_sum") == 4
    assert _value(m, "framewire_model_batches_total") == 1
