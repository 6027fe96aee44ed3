"""Broker outages ridden through: SIGKILL the (genuine, local) Kafka broker in the middle of a run and
start it again a few seconds later. An archive run pauses, keeps its place and finishes exactly once
with no rerun; a live run keeps decoding, drops by its latency budget while the broker is away, and
says so in status events once it is back."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.broker import LocalBroker
from pipeline.kafka.consumer import subscribe
from pipeline.runtime.driver import Driver
from pipeline.sources import expand_sources
from pipeline.spec import load_spec
from tests.integration.test_exactly_once import (
    assert_exactly_once,
    assert_same_stateful_events,
    reference_run,
    stateful_events,
)
from tests.support.cli_runs import run_cli, slow_config
from tests.support.fake_model import FAKE
from tests.support.kafka_fixtures import _free_port
from tests.support.live_servers import RtspCameras, available
from tests.support.videos import make_video

pytestmark = [pytest.mark.integration, pytest.mark.slow]
OUTAGE_S = float(os.environ.get("FRAMEWIRE_TEST_OUTAGE_S", "5"))  # seconds the broker stays down


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A broker of this test's own: killing it touches no other test."""
    port = _free_port()
    ctl = _free_port()
    while ctl == port:
        ctl = _free_port()
    broker = LocalBroker(port=port, controller_port=ctl, run_dir=tmp_path / "kafka", exit_with_parent=True)
    broker.start(timeout=90.0)
    try:
        yield broker
    finally:
        broker.stop()


def kill_broker(broker: LocalBroker) -> None:
    """SIGKILL, as a crashed broker host: no clean shutdown, no controlled leader moves."""
    pid = int(broker.pid_file.read_text().strip())
    os.kill(pid, signal.SIGKILL)
    t_end = time.monotonic() + 20
    while broker.status().running and time.monotonic() < t_end:
        time.sleep(0.1)
    assert not broker.status().running


def test_archive_run_rides_through_a_broker_kill(own_broker: LocalBroker, tmp_path: Path) -> None:
    videos = [make_video(tmp_path / f"cam{i}.mp4", frames=60, fps=30, size=(48, 64)) for i in range(3)]
    bootstrap = own_broker.bootstrap
    config = slow_config(tmp_path)
    reference = reference_run(bootstrap, videos, config)
    prefix = f"out{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "FRAMEWIRE_KAFKA_BOOTSTRAP": bootstrap, "FRAMEWIRE__KAFKA__TOPIC_PREFIX": prefix,
           "FRAMEWIRE__RAY__NUM_CPUS": "4"}

    def outage() -> None:
        kill_broker(own_broker)
        time.sleep(OUTAGE_S)
        own_broker.start(timeout=90.0)

    rc, out = run_cli(videos, config, env, fault=outage)
    assert rc == 0, out[-4000:]
    assert_exactly_once(bootstrap, prefix, videos)
    assert_same_stateful_events(stateful_events(bootstrap, prefix), reference)
    assert "broker is back" in out, out[-3000:]  # the outage was told, not silent


@pytest.mark.skipif(available() is not None, reason=str(available()))
def test_live_run_keeps_decoding_through_a_broker_kill(own_broker: LocalBroker, ray_local: None,
                                                       bikes: Path) -> None:
    bootstrap = own_broker.bootstrap
    prefix = f"outl{uuid.uuid4().hex[:8]}"
    spec = load_spec([], environ={}).with_overrides(**{
        "mode": "live", "model.name": FAKE, "model.id": "fake", "model.options": {"size": [48, 64]},
        "model.tasks": ["caption"], "queries": [], "decode.fps": 4, "decode.chunk": 2, "model.cpus": 0.5,
        "model.replicas": 1, "decode.cpus": 0.25, "kafka.topic_prefix": prefix, "live.latency_budget_ms": 1500,
        "live.control": False})
    with RtspCameras({"a": bikes, "b": bikes}) as cams:
        srcs = expand_sources([cams.url("a"), cams.url("b")])
        stop = threading.Event()
        pipe = Driver(spec, srcs, bootstrap=bootstrap, stop=stop)
        result: dict[str, Any] = {}

        def go() -> None:
            try:
                result["summary"] = pipe.run()
            except Exception as exc:  # noqa: BLE001 - the assertion below shows it
                result["error"] = exc

        runner = threading.Thread(target=go, daemon=True)
        runner.start()
        try:
            t_end = time.monotonic() + 90
            while not all(pipe.progress[s.id].published >= 4 for s in srcs) and time.monotonic() < t_end:
                time.sleep(0.2)
            decoded = {s.id: pipe.progress[s.id].decoded for s in srcs}
            kill_broker(own_broker)
            killed_at = time.time()
            time.sleep(OUTAGE_S)
            during = {s.id: pipe.progress[s.id].decoded for s in srcs}
            own_broker.start(timeout=90.0)
            back_at = time.time()
            t_end = time.monotonic() + 60
            after = {s.id: pipe.progress[s.id].published for s in srcs}
            while not all(pipe.progress[s.id].published >= after[s.id] + 4 for s in srcs) \
                    and time.monotonic() < t_end:
                time.sleep(0.2)
        finally:
            stop.set()
            runner.join(timeout=90)
    assert "error" not in result, result.get("error")
    for s in srcs:
        assert during[s.id] > decoded[s.id] + 4, "decoding stopped while the broker was away"
        assert pipe.progress[s.id].published >= after[s.id] + 4, "publishing never resumed"
        assert pipe.progress[s.id].dropped > 0  # the budget dropped what could not be delivered in time
    status: dict[str, list[Any]] = defaultdict(list)
    captions = []
    for rec in subscribe(bootstrap, prefix=prefix, from_beginning=True, run_id=pipe.run_id, idle_timeout=3.0):
        if rec.event.type == "status":
            status[rec.event.source_id].append(rec.event)
        elif rec.event.type == "caption":
            captions.append(rec.event)
    for s in srcs:
        told = [ev for ev in status[s.id] if "broker" in (ev.detail or "").lower()]
        assert told, ([(ev.state, ev.detail) for ev in status[s.id]], result["summary"].delivery,
                      {k: (p.decoded, p.published, p.dropped) for k, p in pipe.progress.items()})
        assert told[0].emitted_at >= back_at - 1  # said once it was back
    # nothing captured while the broker was away was published past its budget
    late = [ev for ev in captions if killed_at + 1 < ev.capture_time < back_at and ev.latency_ms > 1500 * 1.2]
    assert not late, [(ev.capture_time, ev.latency_ms) for ev in late[:5]]


def test_live_publisher_does_not_block_on_a_topic_it_first_writes_while_the_broker_is_away(
        own_broker: LocalBroker, ray_local: None) -> None:
    """kafka-python's send() waits up to max_block_ms (60 s) for the metadata of a topic it has not written
    yet. A live run's first window summary (or track, zone) going out during an outage stalled the publisher
    that long, so nothing was dropped by the budget and every frame arrived late (a CI failure)."""
    import ray

    from pipeline.events import Topics
    from pipeline.kafka.topics import ensure_for_run
    from pipeline.runtime.actors.publish import PublisherActor

    bootstrap = own_broker.bootstrap
    prefix = f"outm{uuid.uuid4().hex[:8]}"
    ensure_for_run(load_spec([], environ={}).with_overrides(**{"kafka.topic_prefix": prefix}), bootstrap)
    pub = PublisherActor.remote(bootstrap, {}, run_id="r", topic_prefix=prefix, clock="wall", stall_s=1.0)
    ray.get(pub.ready.remote())
    kill_broker(own_broker)
    t0 = time.monotonic()
    ray.get(pub.send.remote([(Topics(prefix).windows, b"cam", b"{}", [])]), timeout=30)
    took = time.monotonic() - t0
    own_broker.start(timeout=90.0)
    report = ray.get(pub.flush.remote(60.0), timeout=90)
    ray.kill(pub)
    assert took < 2.0, f"send blocked {took:.1f}s on the topic's metadata while the broker was away"
    assert report.acked == 1, report  # and the record waited in the producer for the broker's return
