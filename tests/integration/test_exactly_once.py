"""Exactly-once archive runs: kill the run (the whole process, or one actor) at random points,
restart until it completes, then count events per source and pts on the topics, and compare the
stateful events (tracks, zones, lines, windows, query intervals) with an uninterrupted run's:
the same event ids with the same content, no duplicate, no gap."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import ray

from pipeline.kafka.consumer import subscribe
from pipeline.runtime.driver import Driver
from pipeline.sources import expand_sources
from pipeline.spec import load_spec
from tests.support.videos import make_video

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FRAMES, SOURCES = 60, 3
CONFIG = Path(__file__).parent / "exactly_once.yaml"
STATEFUL = {"track", "zone", "line", "window", "query_match"}
VOLATILE = {"run_id", "emitted_at", "capture_time", "started_capture_time", "source_uri"}  # differ by design


def stateful_events(bootstrap: str, prefix: str) -> dict[str, dict[str, Any]]:
    """event id -> the event's stable content; fails on a duplicate id."""
    out: dict[str, dict[str, Any]] = {}
    for rec in subscribe(bootstrap, prefix=prefix, from_beginning=True, idle_timeout=4.0, types=STATEFUL):
        ev: Any = rec.event
        assert ev.event_id not in out, f"duplicate {ev.type} event {ev.event_id}"
        out[ev.event_id] = {k: v for k, v in ev.model_dump().items() if k not in VOLATILE}
    return out


def reference_run(bootstrap: str, videos: list[Path], config: Path = CONFIG) -> dict[str, dict[str, Any]]:
    """The same analysis run once without interruption (own topics), in a process of its own."""
    prefix = f"ref{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "FRAMEWIRE_KAFKA_BOOTSTRAP": bootstrap, "FRAMEWIRE__KAFKA__TOPIC_PREFIX": prefix,
           "FRAMEWIRE__RAY__NUM_CPUS": "4"}
    cmd = [sys.executable, "-m", "pipeline.cli", "run", *map(str, videos), "--config", str(config), "-q",
           "--show", "0"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    events = stateful_events(bootstrap, prefix)
    kinds = Counter(e["type"] for e in events.values())
    assert {"track", "zone", "line", "window"} <= set(kinds), kinds  # the scene exercises every operator
    return events


def assert_same_stateful_events(got: dict[str, dict[str, Any]], want: dict[str, dict[str, Any]]) -> None:
    missing, extra = set(want) - set(got), set(got) - set(want)
    assert not missing and not extra, (f"{len(missing)} missing, e.g. {[want[k] for k in list(missing)[:2]]}; "
                                       f"{len(extra)} extra, e.g. {[got[k] for k in list(extra)[:2]]}")
    diff = [k for k in want if got[k] != want[k]]
    assert not diff, f"{len(diff)} differ, e.g. {got[diff[0]]} != {want[diff[0]]}"


@pytest.fixture(scope="module")
def reference(kafka_bootstrap: str, videos: list[Path]) -> dict[str, dict[str, Any]]:
    return reference_run(kafka_bootstrap, videos)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("eo")
    return [make_video(d / f"cam{i}.mp4", frames=FRAMES, fps=30, size=(48, 64)) for i in range(SOURCES)]


def assert_exactly_once(bootstrap: str, prefix: str, videos: list[Path]) -> Counter[tuple[str, str, int]]:
    seen: Counter[tuple[str, str, int]] = Counter()
    for rec in subscribe(bootstrap, prefix=prefix, from_beginning=True, idle_timeout=4.0,
                         types={"caption", "detections", "query"}):
        ev: Any = rec.event
        seen[(ev.source_id, ev.type, ev.frame_index)] += 1
    dupes = {k: n for k, n in seen.items() if n > 1}
    assert not dupes, f"duplicates: {list(dupes.items())[:5]}"
    ids = [s.id for s in expand_sources([str(v) for v in videos])]
    expected = {(sid, t, i) for sid in ids for t in ("caption", "detections", "query") for i in range(FRAMES)}
    missing = expected - set(seen)
    assert not missing, f"gaps: {sorted(missing)[:5]} ({len(missing)} missing)"
    assert set(seen) == expected
    return seen


def test_kill_the_process_at_random_points_then_resume(kafka_bootstrap: str, videos: list[Path],
                                                       reference: dict[str, dict[str, Any]]) -> None:
    prefix = f"eo{uuid.uuid4().hex[:8]}"
    cfg = CONFIG
    env = {**os.environ, "FRAMEWIRE_KAFKA_BOOTSTRAP": kafka_bootstrap, "FRAMEWIRE__KAFKA__TOPIC_PREFIX": prefix,
           "FRAMEWIRE__RAY__NUM_CPUS": "4"}
    cmd = [sys.executable, "-m", "pipeline.cli", "run", *map(str, videos), "--config", str(cfg), "-q", "--show", "0"]
    rng = random.Random()
    kills = 0
    for _attempt in range(8):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        if kills < 3:
            try:
                proc.wait(timeout=rng.uniform(9.0, 16.0))  # startup ~7 s, then batches every ~0.3 s
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the driver and its Ray processes, as in a machine crash
                proc.wait()
                kills += 1
                continue
        out, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, out[-3000:]
        break
    else:
        pytest.fail("the run never completed")
    assert kills >= 1
    assert_exactly_once(kafka_bootstrap, prefix, videos)
    assert_same_stateful_events(stateful_events(kafka_bootstrap, prefix), reference)


def test_kill_one_actor_then_resume(ray_local: None, kafka_bootstrap: str, videos: list[Path],
                                    reference: dict[str, dict[str, Any]]) -> None:
    prefix = f"eo{uuid.uuid4().hex[:8]}"
    spec = load_spec([CONFIG], environ={}).with_overrides(**{
        "model.options": {"size": [48, 64], "delay_s": 0.15, "movers": 3}, "kafka.topic_prefix": prefix})
    sources = expand_sources([str(v) for v in videos])
    for victim in ("model", "publisher"):
        pipe = Driver(spec, sources, bootstrap=kafka_bootstrap)
        result: dict[str, Any] = {}

        def go(p: Driver = pipe, result: dict[str, Any] = result) -> None:
            try:
                result["summary"] = p.run()
            except Exception as exc:  # noqa: BLE001 - the killed actor surfaces here
                result["error"] = exc

        t = threading.Thread(target=go)
        t.start()
        deadline = time.monotonic() + 60
        while pipe.publisher is None and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(random.uniform(2.0, 4.0))
        ray.kill(pipe.models[0] if victim == "model" else pipe.publisher, no_restart=True)
        t.join(timeout=120)
        assert "error" in result, f"killing the {victim} actor should fail the run"
        pipe.shutdown()
    summary = Driver(spec, sources, bootstrap=kafka_bootstrap).run()
    assert summary.delivery.failed == 0
    assert_exactly_once(kafka_bootstrap, prefix, videos)
    assert_same_stateful_events(stateful_events(kafka_bootstrap, prefix), reference)
