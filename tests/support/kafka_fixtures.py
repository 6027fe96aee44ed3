"""The real Kafka broker for integration and e2e tests: `FRAMEWIRE_KAFKA_BOOTSTRAP` if set, else a fresh local one.

The local broker gets free ports and empty storage in a temp dir, so concurrent test
sessions never share or collide with a developer's `framewire broker up` on 9092.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Callable, Iterator

import pytest

from pipeline.broker import ENV_BOOTSTRAP, LocalBroker


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def local_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker | None]:
    """The session's own local broker, started once and stopped at the end; None with an external cluster."""
    if os.environ.get(ENV_BOOTSTRAP, "").strip():
        yield None
        return
    port = _free_port()
    ctl = _free_port()
    while ctl == port:
        ctl = _free_port()
    broker = LocalBroker(port=port, controller_port=ctl, run_dir=tmp_path_factory.mktemp("kafka"),
                         exit_with_parent=True)
    broker.start(timeout=90.0)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(local_broker: LocalBroker | None) -> str:
    """Bootstrap servers of the cluster under test."""
    return local_broker.bootstrap if local_broker else os.environ[ENV_BOOTSTRAP].strip()


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> str:
    """A prefix no other test (or earlier run against the same cluster) uses, e.g. 'fwt.test_x.3fa2c1d0.'."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", request.node.name)[:60]
    return f"fwt.{name}.{uuid.uuid4().hex[:8]}."


@pytest.fixture
def new_topic(kafka_bootstrap: str, topic_prefix: str) -> Iterator[Callable[..., str]]:
    """Create uniquely named topics: `new_topic()` or `new_topic("events", partitions=3)` returns the name."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="framewire-tests")
    made: list[str] = []

    def make(suffix: str = "t", partitions: int = 1) -> str:
        name = f"{topic_prefix}{suffix}"
        admin.create_topics({name: {"num_partitions": partitions, "replication_factor": 1}},
                            wait_for_metadata=True)
        made.append(name)
        return name

    try:
        yield make
    finally:
        admin.close()
