"""The consumer library against the real broker: filters, time, read_committed, commit after handling."""

from __future__ import annotations

import time
import uuid

import numpy as np
from kafka import KafkaProducer

from operators.frames import FrameBatch
from operators.results import Captions, ModelOutput
from pipeline.events import Topics, build_frame_events, to_record
from pipeline.kafka.consumer import Subscriber


def publish(bootstrap: str, prefix: str, sources: list[str], n: int, wall: float, **producer: object) -> None:
    topics = Topics(prefix)
    prod = KafkaProducer(bootstrap_servers=bootstrap, acks="all", **producer)
    if "transactional_id" in producer:
        prod.init_transactions()
        prod.begin_transaction()
    for sid in sources:
        b = FrameBatch(np.zeros((n, 2, 2, 3), np.uint8), [sid] * n, np.arange(n), np.arange(n) / 2.0,
                       np.full(n, wall), np.full(n, 2), np.full(n, 2))
        out = ModelOutput(n, captions=Captions(["x"] * n), models={"caption": "m"})
        for ev in build_frame_events(b, out, run_id="r", uris={}):
            topic, key, value, headers = to_record(ev, topics)
            prod.send(topic, key=key, value=value, headers=headers)
    if "transactional_id" in producer:
        prod.flush()  # the records reach the log, then the abort marks them aborted
        prod.abort_transaction()
    prod.flush()
    prod.close()


def test_filters_by_source_type_and_time(kafka_bootstrap: str) -> None:
    prefix = f"c{uuid.uuid4().hex[:8]}"
    publish(kafka_bootstrap, prefix, ["camA-1", "camB-2"], 3, wall=1000.0)
    publish(kafka_bootstrap, prefix, ["camA-1"], 2, wall=5000.0)
    got = [r.event for r in Subscriber(kafka_bootstrap, prefix=prefix, from_beginning=True, sources={"camA"},
                                        types={"caption"}, idle_timeout=3.0)]
    assert [e.source_id for e in got] == ["camA-1"] * 5
    late = [r.event for r in Subscriber(kafka_bootstrap, prefix=prefix, since=4000.0, idle_timeout=3.0)]
    assert len(late) == 2 and all(e.capture_time == 5000.0 for e in late)


def test_aborted_transactions_are_invisible_by_default(kafka_bootstrap: str) -> None:
    prefix = f"c{uuid.uuid4().hex[:8]}"
    publish(kafka_bootstrap, prefix, ["s-1"], 4, wall=1.0, transactional_id=f"t-{prefix}")
    publish(kafka_bootstrap, prefix, ["s-1"], 1, wall=2.0)
    committed = list(Subscriber(kafka_bootstrap, prefix=prefix, from_beginning=True, idle_timeout=3.0))
    assert len(committed) == 1
    everything = list(Subscriber(kafka_bootstrap, prefix=prefix, from_beginning=True, idle_timeout=3.0,
                                 read_committed=False))
    assert len(everything) == 5


def test_group_commits_after_handling_and_resumes(kafka_bootstrap: str) -> None:
    prefix = f"c{uuid.uuid4().hex[:8]}"
    publish(kafka_bootstrap, prefix, ["s-1"], 6, wall=time.time())
    group = f"g-{prefix}"
    first = []
    with Subscriber(kafka_bootstrap, prefix=prefix, group_id=group, from_beginning=True, idle_timeout=5.0,
                    commit_every=1) as sub:
        for rec in sub:
            first.append(rec.event.frame_index)
            if len(first) == 4:
                break  # the 4th was taken but the loop left before asking for more
    rest = [r.event.frame_index for r in Subscriber(kafka_bootstrap, prefix=prefix, group_id=group,
                                                    idle_timeout=5.0)]
    assert first == [0, 1, 2, 3]
    assert rest == [3, 4, 5]  # the unacknowledged 4th is delivered again: at least once, nothing lost


def test_a_reader_without_a_group_joins_none_and_picks_up_topics_created_later(kafka_bootstrap: str) -> None:
    """Group-less reads assign partitions by hand: nothing waits on a group join (which, made before the
    topics' metadata arrived, once left a check with no partitions for 60 s), and a topic created after
    the reader started is read from its beginning."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    groups_before = {g["group_id"] for g in admin.list_groups()}
    prefix = f"c{uuid.uuid4().hex[:8]}"
    publish(kafka_bootstrap, prefix, ["early-1"], 2, wall=1.0)  # creates the captions topic only
    sub = Subscriber(kafka_bootstrap, prefix=prefix, from_beginning=True, idle_timeout=3.0 + Subscriber.REFRESH_S)
    started = time.monotonic()
    got = []
    for rec in sub:
        got.append(rec.event)
        if len(got) == 2:  # the reader is running: now a topic it could not see at start appears
            prod = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
            prod.send(Topics(prefix).status, key=b"late-1", value=got[0].model_dump_json().encode())
            prod.flush()
            prod.close()
    sub.close()
    assert [e.source_id for e in got] == ["early-1", "early-1", "early-1"]
    assert time.monotonic() - started < 30  # never the 60 s of a stuck group join
    try:
        assert {g["group_id"] for g in admin.list_groups()} == groups_before  # the reader made no group
    finally:
        admin.close()
