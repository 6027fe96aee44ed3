"""The real broker: idempotent produce/consume order, Kafka transactions through kafka-python, start/stop/reuse.

Transactions are what archive runs rely on for exactly-once output (events and the source
checkpoint commit together), so each property used later is pinned here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import InvalidProducerEpochError, KafkaError, ProducerFencedError
from kafka.structs import OffsetAndMetadata

from pipeline.broker import LocalBroker

pytestmark = [pytest.mark.integration]


def producer(bootstrap: str, **extra: Any) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                         max_block_ms=20_000, request_timeout_ms=20_000, **extra)


def read_all(bootstrap: str, topic: str, *, isolation: str = "read_committed",
             partitions: int = 1) -> list[tuple[int, bytes | None, bytes | None]]:
    """Every record from the start of `topic` up to its current end (for that isolation level)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation, enable_auto_commit=False,
                             group_id=None, consumer_timeout_ms=5_000)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)  # the LSO under read_committed, the high watermark otherwise
        out: list[tuple[int, bytes | None, bytes | None]] = []
        deadline = time.monotonic() + 20
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, f"did not reach the end offsets {end} of {topic}"
            for tp, records in consumer.poll(timeout_ms=1_000).items():
                out.extend((tp.partition, r.key, r.value) for r in records)
        return out
    finally:
        consumer.close()


def test_idempotent_produce_keeps_count_order_and_keys(kafka_bootstrap: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic()
    p = producer(kafka_bootstrap, linger_ms=5)
    n = 500
    futures = [p.send(topic, key=f"cam-{i % 3}".encode(), value=str(i).encode()) for i in range(n)]
    p.flush(timeout=20)
    offsets = [f.get(timeout=10).offset for f in futures]
    p.close(timeout=5)
    assert offsets == list(range(n))  # no duplicates, no gaps, in send order
    got = read_all(kafka_bootstrap, topic)
    assert [v for _, _, v in got] == [str(i).encode() for i in range(n)]
    assert [k for _, k, _ in got] == [f"cam-{i % 3}".encode() for i in range(n)]


def test_keys_pin_partitions(kafka_bootstrap: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic(partitions=3)
    p = producer(kafka_bootstrap)
    for i in range(60):
        p.send(topic, key=f"src-{i % 4}".encode(), value=str(i).encode())
    p.flush(timeout=20)
    p.close(timeout=5)
    got = read_all(kafka_bootstrap, topic, partitions=3)
    assert len(got) == 60
    by_key: dict[bytes, set[int]] = {}
    for part, key, _ in got:
        by_key.setdefault(key or b"", set()).add(part)
    assert all(len(parts) == 1 for parts in by_key.values())
    for key in by_key:  # per key, values arrive in send order
        vals = [int(v or b"0") for _, k, v in got if k == key]
        assert vals == sorted(vals)


def test_committed_transaction_is_visible_and_aborted_one_is_not(
        kafka_bootstrap: str, new_topic: Callable[..., str]) -> None:
    events, checkpoints = new_topic("events"), new_topic("checkpoints")
    p = producer(kafka_bootstrap, transactional_id=f"fw-test-{uuid.uuid4().hex}")
    p.init_transactions()

    p.begin_transaction()
    for i in range(3):
        p.send(events, key=b"cam", value=f"ok-{i}".encode())
    p.send(checkpoints, key=b"cam", value=b"frame=3")
    p.commit_transaction()

    p.begin_transaction()
    for i in range(2):
        p.send(events, key=b"cam", value=f"aborted-{i}".encode())
    p.send(checkpoints, key=b"cam", value=b"frame=5")
    p.flush(timeout=20)  # the aborted records really reach the log
    p.abort_transaction()

    p.begin_transaction()
    p.send(events, key=b"cam", value=b"ok-3")
    p.send(checkpoints, key=b"cam", value=b"frame=4")
    p.commit_transaction()
    p.close(timeout=5)

    committed = [v for _, _, v in read_all(kafka_bootstrap, events)]
    assert committed == [b"ok-0", b"ok-1", b"ok-2", b"ok-3"]
    assert [v for _, _, v in read_all(kafka_bootstrap, checkpoints)] == [b"frame=3", b"frame=4"]
    raw = [v for _, _, v in read_all(kafka_bootstrap, events, isolation="read_uncommitted")]
    assert raw == [b"ok-0", b"ok-1", b"ok-2", b"aborted-0", b"aborted-1", b"ok-3"]


def test_restarted_producer_aborts_the_crashed_ones_open_transaction_and_fences_it(
        kafka_bootstrap: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic()
    txid = f"fw-test-{uuid.uuid4().hex}"
    first = producer(kafka_bootstrap, transactional_id=txid)
    first.init_transactions()
    first.begin_transaction()
    first.send(topic, value=b"lost")
    first.flush(timeout=20)  # written, never committed: the "crash" happens here

    second = producer(kafka_bootstrap, transactional_id=txid)
    second.init_transactions()  # bumps the epoch and aborts first's open transaction

    # The zombie's next write is rejected. Its transactional calls then raise a plain KafkaError
    # (kafka-python does not re-raise the typed error): "Invalid transition ... BUMPING_PRODUCER_EPOCH"
    # while it tries to bump its epoch, "... error state: ProducerFencedError" once the broker said no.
    with pytest.raises((InvalidProducerEpochError, ProducerFencedError)):
        first.send(topic, value=b"zombie").get(timeout=10)
    with pytest.raises(KafkaError):
        first.abort_transaction()
    first.close(timeout=5)

    second.begin_transaction()  # the zombie's attempts did not disturb the new producer
    second.send(topic, value=b"kept")
    second.commit_transaction()
    second.close(timeout=5)

    assert [v for _, _, v in read_all(kafka_bootstrap, topic)] == [b"kept"]
    assert [v for _, _, v in read_all(kafka_bootstrap, topic, isolation="read_uncommitted")] == [b"lost", b"kept"]


def test_consumed_offsets_commit_with_the_transaction(kafka_bootstrap: str, new_topic: Callable[..., str]) -> None:
    """Consume-transform-produce: offsets sent in an aborted transaction are not committed."""
    src, dst = new_topic("in"), new_topic("out")
    p = producer(kafka_bootstrap)
    for i in range(4):
        p.send(src, value=str(i).encode())
    p.flush(timeout=20)
    p.close(timeout=5)

    group = f"fw-test-{uuid.uuid4().hex[:8]}"
    consumer = KafkaConsumer(src, bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False,
                             auto_offset_reset="earliest", isolation_level="read_committed")
    tx = producer(kafka_bootstrap, transactional_id=f"fw-test-{uuid.uuid4().hex}")
    tx.init_transactions()
    records = []
    for _ in range(20):
        for batch in consumer.poll(timeout_ms=1_000).values():
            records.extend(batch)
        if len(records) >= 4:
            break
    assert [r.value for r in records] == [b"0", b"1", b"2", b"3"]
    tp = TopicPartition(src, 0)

    def offsets(upto: int) -> dict[TopicPartition, OffsetAndMetadata]:
        return {tp: OffsetAndMetadata(upto, "", -1)}

    tx.begin_transaction()
    tx.send(dst, value=b"first-two")
    tx.send_offsets_to_transaction(offsets(2), consumer.group_metadata())
    tx.commit_transaction()
    assert consumer.committed(tp) == 2

    tx.begin_transaction()
    tx.send(dst, value=b"rest")
    tx.send_offsets_to_transaction(offsets(4), consumer.group_metadata())
    tx.abort_transaction()
    assert consumer.committed(tp) == 2
    tx.close(timeout=5)
    consumer.close(autocommit=False)
    assert [v for _, _, v in read_all(kafka_bootstrap, dst)] == [b"first-two"]


def test_status_and_start_reuse(local_broker: LocalBroker | None, tmp_path: Any) -> None:
    if local_broker is None:
        pytest.skip("an external cluster (FRAMEWIRE_KAFKA_BOOTSTRAP) is under test, not the local broker")
    st = local_broker.status()
    assert st.running and st.pid and st.bootstrap == local_broker.bootstrap
    assert st.log_file.exists() and (st.data_dir / "meta.properties").exists()
    again = LocalBroker(port=local_broker.port, controller_port=local_broker.controller_port,
                        run_dir=local_broker.run_dir).start(timeout=10)
    assert again.pid == st.pid  # reused, not a second JVM

    other = LocalBroker(port=local_broker.port, controller_port=local_broker.controller_port,
                        run_dir=tmp_path / "elsewhere")
    assert not other.status().running
    assert other.stop() is False
    with pytest.raises(OSError, match="in use"):
        other.start(timeout=5)  # the port belongs to a broker this run dir did not start


def test_a_launched_child_is_alive_until_it_exits_whatever_its_cmdline() -> None:
    """A broker child is judged by poll(), not by /proc's cmdline: while the exit-with-parent wrapper execs
    java the cmdline is not the JVM's yet, and reading it then once called a starting broker dead (CI)."""
    import signal
    import subprocess
    import sys

    from pipeline.broker import local

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    local._CHILDREN[child.pid] = child  # as _launch registers it
    try:
        assert b"kafka.Kafka" not in open(f"/proc/{child.pid}/cmdline", "rb").read()
        assert local._pid_alive(child.pid)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert not local._pid_alive(child.pid)
        assert local._exit_text(local._EXITED[child.pid]) == "signal SIGKILL"
    finally:
        child.kill()
        local._CHILDREN.pop(child.pid, None)
