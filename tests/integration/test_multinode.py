"""framewire on a real multi-node Ray cluster (a head and two workers from ``ray start`` on this machine,
custom resources so decoders and models land on different nodes): an archive run whose model node is
SIGKILLed mid-run fails, and a rerun on the replacement node resumes it with every event exactly once
and the stateful events identical to an uninterrupted run's."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_exactly_once import (
    assert_exactly_once,
    assert_same_stateful_events,
    reference_run,
    stateful_events,
)
from tests.support.cli_runs import run_cli, slow_config
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
    return run_cli(videos, config, env, fault=(lambda: cluster.kill_node(kill)) if kill else None)


def test_archive_on_three_nodes_survives_losing_the_model_node(cluster: RayCluster, kafka_bootstrap: str,
                                                               tmp_path: Path) -> None:
    videos = [make_video(tmp_path / f"cam{i}.mp4", frames=60, fps=30, size=(48, 64)) for i in range(3)]
    config = slow_config(tmp_path)
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
