"""framewire on a real multi-node Ray cluster (a head and two workers from ``ray start`` on this machine,
custom resources so decoders and models land on different nodes): an archive run whose model node is
SIGKILLed mid-run fails, and a rerun on the replacement node resumes it with every event exactly once
and the stateful events identical to an uninterrupted run's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_exactly_once import (
    CONFIG,
    assert_exactly_once,
    assert_same_stateful_events,
    reference_run,
    stateful_events,
)
from tests.support.ray_cluster import RayCluster
from tests.support.videos import make_video

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def cluster() -> Iterator[RayCluster]:
    c = RayCluster().start_head(cpus=1)
    try:
        c.add_node("decode", cpus=2, resources={"decode_node": 4})
        c.add_node("model", cpus=2, resources={"model_node": 4})
        yield c
    finally:
        c.close()


def run_on(cluster: RayCluster, bootstrap: str, prefix: str, videos: list[Path], config: Path,
           kill: str | None = None) -> tuple[int, str]:
    """``framewire run`` against the cluster; ``kill``: SIGKILL that node once frames are being published."""
    env = {**cluster.env, "FRAMEWIRE_KAFKA_BOOTSTRAP": bootstrap, "FRAMEWIRE__KAFKA__TOPIC_PREFIX": prefix,
           "FRAMEWIRE__RAY__ADDRESS": cluster.address, "FRAMEWIRE__DECODE__RESOURCES": "{decode_node: 1}",
           "FRAMEWIRE__MODEL__RESOURCES": "{model_node: 1}"}
    cmd = [sys.executable, "-m", "pipeline.cli", "run", *map(str, videos), "--config", str(config), "--show", "0"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    publishing = threading.Event()

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            m = re.search(r"progress: (\d+) frames published", line)
            if m and int(m.group(1)) > 0:
                publishing.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if kill:
            assert publishing.wait(180), "".join(lines)[-3000:]
            cluster.kill_node(kill)
        proc.wait(timeout=300)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, "".join(lines)


def test_archive_on_three_nodes_survives_losing_the_model_node(cluster: RayCluster, kafka_bootstrap: str,
                                                               tmp_path: Path) -> None:
    videos = [make_video(tmp_path / f"cam{i}.mp4", frames=60, fps=30, size=(48, 64)) for i in range(3)]
    config = tmp_path / "slow.yaml"  # the crash test's scene with a slower model: the kill lands mid-run
    config.write_text(CONFIG.read_text().replace("delay_s: 0.1", "delay_s: 0.35"))
    reference = reference_run(kafka_bootstrap, videos, config)  # local Ray, uninterrupted
    prefix = f"mn{uuid.uuid4().hex[:8]}"
    rc, out = run_on(cluster, kafka_bootstrap, prefix, videos, config, kill="model")
    assert rc != 0, out[-3000:]  # the model actor went with its node: the run stops, its place kept
    cluster.wait_nodes(2, timeout=120)  # the head notices the lost node (health checks)
    cluster.add_node("model2", cpus=2, resources={"model_node": 4})  # the replacement node
    rc, out = run_on(cluster, kafka_bootstrap, prefix, videos, config)
    assert rc == 0, out[-3000:]
    assert re.search(r"resum", out), out[-2000:]  # it continued the run, it did not start over
    assert_exactly_once(kafka_bootstrap, prefix, videos)
    assert_same_stateful_events(stateful_events(kafka_bootstrap, prefix), reference)
    assert os.path.isdir(cluster.root)
