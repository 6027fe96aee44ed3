"""Topic management against the real broker: create, describe, detect and fix bad settings, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipeline.kafka.topics import TopicError, describe, ensure, ensure_for_run, plan_topics
from pipeline.spec import load_spec


def _spec(prefix: str, **more: object):  # type: ignore[no-untyped-def]
    return load_spec([]).with_overrides(**{"kafka.topic_prefix": prefix.rstrip("."), **more})


def test_ensure_creates_every_topic_once_with_its_settings(kafka_bootstrap: str, topic_prefix: str) -> None:
    spec = _spec(topic_prefix, **{"kafka.topics.overrides": {"embeddings": {"retention_ms": 3600000}}})
    plans = plan_topics(spec)
    first = ensure(kafka_bootstrap, plans)
    assert sorted(first.created) == sorted(p.name for p in plans) and first.problems == []
    again = ensure(kafka_bootstrap, plans)
    assert again.created == [] and again.fixed == [] and again.problems == []

    states = describe(kafka_bootstrap, [p.name for p in plans])
    p = spec.kafka.topic_prefix
    assert states[f"{p}.detections"].partitions == 3 and states[f"{p}.detections"].replication_factor == 1
    assert states[f"{p}.detections"].configs["cleanup.policy"] == "delete"
    assert states[f"{p}.detections"].configs["retention.ms"] == str(7 * 24 * 3600 * 1000)
    assert states[f"{p}.embeddings"].configs["retention.ms"] == "3600000"
    assert states[f"{p}.status"].configs["cleanup.policy"] == "compact"
    assert states[f"{p}.checkpoints"].configs["cleanup.policy"] == "compact"
    assert states[f"{p}.control"].partitions == 1


def test_bad_existing_topics_stop_a_run_then_fix_repairs_them(kafka_bootstrap: str, topic_prefix: str) -> None:
    from kafka import KafkaAdminClient

    spec = _spec(topic_prefix)
    p = spec.kafka.topic_prefix
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:  # what a hand-made (or auto-created) setup looks like: wrong policies, one partition
        admin.create_topics({
            f"{p}.detections": {"num_partitions": 1, "replication_factor": 1,
                                "configs": {"cleanup.policy": "compact"}},
            f"{p}.checkpoints": {"num_partitions": 1, "replication_factor": 1,
                                 "configs": {"cleanup.policy": "delete", "retention.ms": "60000"}},
            f"{p}.status": {"num_partitions": 1, "replication_factor": 1},
        }, wait_for_metadata=True)
    finally:
        admin.close()

    with pytest.raises(TopicError) as err:
        ensure_for_run(spec, kafka_bootstrap)
    msg = str(err.value)
    assert f"{p}.detections: cleanup.policy is compact" in msg and "only the last event" in msg
    assert f"{p}.checkpoints: cleanup.policy is delete" in msg and "framewire topics create --fix" in msg
    assert f"{p}.status" not in msg  # a warning, not a reason to stop

    warn = _spec(topic_prefix, **{"kafka.topics.check": "warn"})
    assert len(ensure_for_run(warn, kafka_bootstrap).errors) == 2  # runs anyway, problems reported

    fixed = ensure(kafka_bootstrap, plan_topics(spec), fix=True)
    assert sorted(fixed.fixed) == sorted([f"{p}.detections", f"{p}.checkpoints", f"{p}.status"])
    assert fixed.problems == []
    states = describe(kafka_bootstrap, [f"{p}.detections", f"{p}.checkpoints", f"{p}.status"])
    assert states[f"{p}.detections"].configs["cleanup.policy"] == "delete"
    assert states[f"{p}.detections"].partitions == 3
    assert states[f"{p}.checkpoints"].configs["cleanup.policy"] == "compact"
    assert states[f"{p}.status"].configs["cleanup.policy"] == "compact"


def test_replication_above_the_cluster_fails_clearly(kafka_bootstrap: str, topic_prefix: str) -> None:
    spec = _spec(topic_prefix, **{"kafka.topics.replication_factor": 3})
    with pytest.raises(TopicError, match="InvalidReplicationFactor.*kafka.topics.replication_factor"):
        ensure_for_run(spec, kafka_bootstrap)


def _fw(args: list[str], bootstrap: str, prefix: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FRAMEWIRE_KAFKA_BOOTSTRAP": bootstrap, "FRAMEWIRE__KAFKA__TOPIC_PREFIX": prefix,
           "COLUMNS": "160"}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "topics", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_describe_create_describe(kafka_bootstrap: str, topic_prefix: str) -> None:
    prefix = topic_prefix.rstrip(".")
    before = _fw(["describe"], kafka_bootstrap, prefix)
    assert before.returncode == 1
    n = len(plan_topics(load_spec([], environ={})))  # every topic of the plan (events, status, control, ...)
    assert f"{n} topics missing" in before.stdout and "framewire topics create" in before.stdout
    made = _fw(["create", "--json"], kafka_bootstrap, prefix)
    assert made.returncode == 0, made.stderr
    assert len(json.loads(made.stdout)["created"]) == n
    after = _fw(["describe", "--json"], kafka_bootstrap, prefix)
    assert after.returncode == 0, after.stdout + after.stderr
    rows = {r["name"]: r for r in json.loads(after.stdout)}
    status = rows[f"{prefix}.status"]
    assert status["exists"] and status["role"] == "status" and status["configs"]["cleanup.policy"] == "compact"
    assert status["want"]["cleanup.policy"] == "compact" and status["problems"] == []
    assert rows[f"{prefix}.captions"]["partitions"] == 3
    table = _fw(["describe"], kafka_bootstrap, prefix)
    assert table.returncode == 0 and f"{prefix}.checkpoints" in table.stdout and "compact" in table.stdout
