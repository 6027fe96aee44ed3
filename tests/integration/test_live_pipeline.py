"""The live pipeline on real Ray, real Kafka and a real RTSP server: cameras that drop and
come back, cameras and queries added and removed while it runs."""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from pipeline.kafka.consumer import subscribe
from pipeline.kafka.control import send_command
from pipeline.runtime.driver import Driver
from pipeline.sources import expand_sources
from pipeline.spec import load_spec
from tests.support.fake_model import FAKE
from tests.support.live_servers import RtspCameras, available

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))


def wait_for(cond: Any, timeout: float, what: str) -> None:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_cameras_drop_and_return_and_change_at_run_time(kafka_bootstrap: str, ray_local: None, bikes: Path,
                                                        samples_dir: Path) -> None:
    prefix = f"live{uuid.uuid4().hex[:8]}"
    spec = load_spec([], environ={}).with_overrides(**{
        "mode": "live", "model.name": FAKE, "model.id": "fake", "model.options": {"size": [48, 64]},
        "model.tasks": ["caption", "query"], "queries": [], "decode.fps": 4, "decode.chunk": 4, "model.cpus": 0.5,
        "decode.cpus": 0.25, "kafka.topic_prefix": prefix, "live.read_timeout_s": 2,
        "live.reconnect.initial_backoff_s": 0.2, "live.reconnect.max_backoff_s": 1.0,
        "live.query_on_frames": 2, "live.query_off_frames": 2})
    # cam1 and cam3 on one server, cam2 on another: the first server's outage must not touch cam2
    with RtspCameras({"cam1": bikes, "cam3": bikes}) as cams, \
            RtspCameras({"cam2": samples_dir / "carphone_pristine.mp4"}) as other:
        srcs = expand_sources([cams.url("cam1", "viewer:hunter2"), other.url("cam2")])
        stop = threading.Event()
        pipe = Driver(spec, srcs, bootstrap=kafka_bootstrap, stop=stop)
        result: dict[str, Any] = {}
        runner = threading.Thread(target=lambda: result.setdefault("summary", pipe.run()), daemon=True)
        runner.start()
        cam1, cam2 = (s.id for s in srcs)
        try:
            wait_for(lambda: all(pipe.progress[s.id].published >= 4 for s in srcs), 60, "both cameras publishing")
            # a query added at run time starts matching (the fake model matches bright frames)
            (rep,) = send_command(kafka_bootstrap, prefix, "add_query", {"text": "a bright scene"}, timeout_s=20)
            assert rep.ok and rep.run_id == pipe.run_id
            # cam1's server goes away for a few seconds and comes back; cam2 never notices
            before = {s.id: pipe.progress[s.id].published for s in srcs}
            cams.kill()
            wait_for(lambda: pipe.progress[cam1].state == "reconnecting", 20, "cam1 reconnecting")
            during = pipe.progress[cam2].published
            time.sleep(3)
            assert pipe.progress[cam2].state == "live" and pipe.progress[cam2].published >= during + 3
            cams.start()
            wait_for(lambda: all(pipe.progress[s.id].published >= before[s.id] + 4 for s in srcs), 60,
                     "frames again after the restart")
            # a camera added and one removed at run time
            (rep,) = send_command(kafka_bootstrap, prefix, "add_source", {"uri": cams.url("cam3")}, timeout_s=20)
            assert rep.ok, rep.error
            cam3 = rep.result["source_id"]
            wait_for(lambda: cam3 in pipe.progress and pipe.progress[cam3].published >= 4, 60, "cam3 publishing")
            (rep,) = send_command(kafka_bootstrap, prefix, "remove_source", {"source": cam1}, timeout_s=20)
            assert rep.ok, rep.error
            (rep,) = send_command(kafka_bootstrap, prefix, "list_sources", timeout_s=20)
            listed = {s["source_id"]: s for s in rep.result}
            assert listed[cam1]["state"] == "removed" and listed[cam3]["state"] == "live"
            assert listed[cam2]["latency_p95_ms"] is not None and listed[cam2]["fps"] > 0
            (bad,) = send_command(kafka_bootstrap, prefix, "add_source", {"uri": str(bikes)}, timeout_s=20)
            assert not bad.ok and "not a live source" in (bad.error or "")
            removed_at = time.time()
            time.sleep(2)
        finally:
            stop.set()
            runner.join(timeout=60)
    summary = result["summary"]
    assert summary.delivery.failed == 0 and summary.delivery.acked == summary.delivery.sent

    events = [r.event for r in subscribe(kafka_bootstrap, prefix=prefix, from_beginning=True, run_id=pipe.run_id,
                                         idle_timeout=3.0)]
    status: dict[str, list[str]] = defaultdict(list)
    for ev in events:
        if ev.type == "status":
            status[ev.source_id].append(ev.state)
    # one status event per change, the outage visible, and a final state per camera
    states = status[cam1]
    assert states[:2] == ["connecting", "live"], states
    assert "reconnecting" in states and "live" in states[states.index("reconnecting"):], states
    assert all(a != b or a == "reconnecting" for a, b in zip(states, states[1:], strict=False)), states
    assert status[cam2] == ["connecting", "live", "ended"]  # the other server's outage never reached it
    assert status[cam1][-1] == "removed" and status[cam2][-1] == "ended" and status[cam3][-1] == "ended"
    # nothing from cam1 after it was removed (a batch already at the model may still land)
    late = [ev for ev in events if ev.source_id == cam1 and ev.type == "caption" and ev.capture_time > removed_at + 1]
    assert late == []
    # the run-time query: match started (and ended when the cameras stopped), not one event per frame
    matches = [ev for ev in events if ev.type == "query_match" and ev.query == "a bright scene"]
    started = [ev for ev in matches if ev.state == "started"]
    assert started, "the added query never started matching"
    assert {ev.source_id for ev in started} <= {cam1, cam2, cam3}
    for ev in started:
        # stream pts restart when a camera reconnects; capture times do not
        assert ev.frames >= 2 and ev.started_capture_time <= ev.capture_time
    assert not [ev for ev in events if ev.type == "query"]  # per-frame answers stay internal by default
    captions = [ev for ev in events if ev.type == "caption"]
    assert all(ev.latency_ms >= 0 for ev in captions)
    # credentials never reach events
    assert not any("hunter2" in ev.model_dump_json() for ev in events)


def test_overloaded_cameras_count_every_published_frame(kafka_bootstrap: str, ray_local: None, bikes: Path) -> None:
    """Under overload the live policy drops chunks; a dropped chunk releases the later chunks of its camera
    that waited behind it. Those frames are published too, and the run's counts must say so: per camera,
    frames counted published == caption events on the topic, and every sampled frame is published or dropped."""
    prefix = f"over{uuid.uuid4().hex[:8]}"
    spec = load_spec([], environ={}).with_overrides(**{
        "mode": "live", "model.name": FAKE, "model.id": "fake", "model.options": {"size": [48, 64], "delay_s": 0.25},
        "model.tasks": ["caption"], "queries": [], "decode.fps": 8, "decode.chunk": 1, "model.cpus": 0.5,
        "model.replicas": 1, "batching.max_batch": 2, "decode.cpus": 0.25, "kafka.topic_prefix": prefix,
        "live.latency_budget_ms": 1200, "live.control": False})
    with RtspCameras({"a": bikes, "b": bikes, "c": bikes}) as cams:
        srcs = expand_sources([cams.url(c) for c in "abc"])
        stop = threading.Event()
        pipe = Driver(spec, srcs, bootstrap=kafka_bootstrap, stop=stop)
        result: dict[str, Any] = {}
        runner = threading.Thread(target=lambda: result.setdefault("summary", pipe.run()), daemon=True)
        runner.start()
        try:
            wait_for(lambda: all(pipe.progress[s.id].published >= 6 for s in srcs), 90, "every camera publishing")
            time.sleep(6)
        finally:
            stop.set()
            runner.join(timeout=60)
    summary = result["summary"]
    assert summary.delivery.failed == 0
    captions: dict[str, int] = defaultdict(int)
    for r in subscribe(kafka_bootstrap, prefix=prefix, from_beginning=True, run_id=pipe.run_id, idle_timeout=3.0):
        if r.event.type == "caption":
            captions[r.event.source_id] += 1
    assert sum(p.dropped for p in pipe.progress.values()) > 0, "the cameras were meant to overload the model"
    for s in srcs:
        p = pipe.progress[s.id]
        assert p.published == captions[s.id], (s.id, p.published, captions[s.id])


@pytest.mark.parametrize("per_reader", [1, 8])
def test_a_dead_camera_reader_or_model_process_never_stops_the_others(kafka_bootstrap: str, ray_local: None,
                                                                      bikes: Path, per_reader: int) -> None:
    """SIGKILL one camera's reader process, then the model's (as an OOM kill or a lost node would): Ray
    restarts them, the killed camera reconnects and publishes again, the run goes on. With a reader process
    per camera the other camera is untouched; with both in one process (``cameras_per_reader: 8``, the
    default) both reopen in the restarted process, no operator needed."""
    import os
    import signal

    import ray

    prefix = f"dead{uuid.uuid4().hex[:8]}"
    spec = load_spec([], environ={}).with_overrides(**{
        "mode": "live", "model.name": FAKE, "model.id": "fake", "model.options": {"size": [48, 64]},
        "model.tasks": ["caption"], "queries": [], "decode.fps": 4, "decode.chunk": 2, "model.cpus": 0.5,
        "model.replicas": 1, "decode.cpus": 0.25, "kafka.topic_prefix": prefix, "live.control": False,
        "live.cameras_per_reader": per_reader})
    with RtspCameras({"a": bikes, "b": bikes}) as cams:
        srcs = expand_sources([cams.url("a"), cams.url("b")])
        a, b = (s.id for s in srcs)
        stop = threading.Event()
        pipe = Driver(spec, srcs, bootstrap=kafka_bootstrap, stop=stop)
        result: dict[str, Any] = {}

        def go() -> None:
            try:
                result["summary"] = pipe.run()
            except Exception as exc:  # noqa: BLE001 - asserted below
                result["error"] = exc

        runner = threading.Thread(target=go, daemon=True)
        runner.start()
        try:
            wait_for(lambda: all(pipe.progress[s.id].published >= 4 for s in srcs), 90, "both cameras publishing")
            for victim in ("reader", "model"):
                handle = pipe.feed.actors[a] if victim == "reader" else pipe.models[0]
                if victim == "reader":  # one process per camera, or both cameras in one
                    assert len(pipe.feed.hosts) == (2 if per_reader == 1 else 1), pipe.feed.hosts
                pid = ray.get(handle.__ray_call__.remote(lambda self: os.getpid()))
                before = {s.id: pipe.progress[s.id].published for s in srcs}
                os.kill(pid, signal.SIGKILL)
                wait_for(lambda before=before: all(pipe.progress[s.id].published >= before[s.id] + 6 for s in srcs),
                         90, f"both cameras publishing again after the {victim} process was killed")
                assert "error" not in result, result.get("error")
        finally:
            stop.set()
            runner.join(timeout=90)
    assert "error" not in result, result.get("error")
    assert pipe.progress[a].state != "failed" and pipe.progress[b].state != "failed"
