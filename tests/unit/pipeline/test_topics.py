"""Topic plans and checks: what each topic should look like and every problem that loses events."""

from __future__ import annotations

import pytest

from pipeline.kafka.topics import TopicState, check, plan_topics
from pipeline.spec import load_spec


def _plans(**overrides: object) -> dict[str, object]:
    spec = load_spec([]).with_overrides(**overrides) if overrides else load_spec([])
    return {p.name: p for p in plan_topics(spec)}


def _ok_states(plans: dict[str, object]) -> dict[str, TopicState]:
    return {n: TopicState(n, True, p.partitions, p.replication_factor, dict(p.configs))  # type: ignore[attr-defined]
            for n, p in plans.items()}


def test_default_plan_compacts_status_and_checkpoints_only() -> None:
    plans = _plans()
    assert plans["framewire.status"].configs == {"cleanup.policy": "compact"}
    assert plans["framewire.checkpoints"].configs == {"cleanup.policy": "compact"}
    for t in ("captions", "detections", "queries", "errors", "embeddings", "thumbnails"):
        p = plans[f"framewire.{t}"]
        assert p.role == "events" and p.partitions == 3 and p.replication_factor == 1
        assert p.configs == {"cleanup.policy": "delete", "retention.ms": str(7 * 24 * 3600 * 1000)}
    assert plans["framewire.control"].partitions == 1 and plans["framewire.control.replies"].partitions == 1


def test_overrides_prefix_and_replication() -> None:
    plans = _plans(**{"kafka.topic_prefix": "acme", "kafka.topics.replication_factor": 3,
                      "kafka.topics.overrides": {"embeddings": {"retention_ms": 3600000, "partitions": 12,
                                                                "configs": {"compression.type": "zstd"}}}})
    emb = plans["acme.embeddings"]
    assert emb.partitions == 12 and emb.configs["retention.ms"] == "3600000"
    assert emb.configs["compression.type"] == "zstd" and emb.configs["min.insync.replicas"] == "2"
    assert plans["acme.captions"].partitions == 3 and plans["acme.captions"].replication_factor == 3


def test_unknown_override_topic_is_a_config_error() -> None:
    from pipeline.spec import ConfigError

    with pytest.raises(ConfigError, match="overrides"):
        load_spec([]).with_overrides(**{"kafka.topics.overrides": {"captionz": {"partitions": 2}}})


def test_matching_cluster_has_no_problems() -> None:
    plans = _plans()
    assert check(list(plans.values()), _ok_states(plans)) == []  # type: ignore[arg-type]


@pytest.mark.parametrize(("topic", "setting", "value", "severity", "phrase"), [
    ("framewire.detections", "cleanup.policy", "compact", "error", "only the last event"),
    ("framewire.checkpoints", "cleanup.policy", "delete", "error", "publish its sources again"),
    ("framewire.status", "cleanup.policy", "delete", "warning", "current state"),
    ("framewire.captions", "min.insync.replicas", "2", "error", "every write would fail"),
    ("framewire.captions", "retention.ms", "3600000", "warning", "deleted sooner"),
])
def test_each_bad_setting_is_named_with_its_fix(topic: str, setting: str, value: str, severity: str,
                                                phrase: str) -> None:
    plans = _plans()
    states = _ok_states(plans)
    states[topic].configs[setting] = value
    problems = check(list(plans.values()), states)  # type: ignore[arg-type]
    assert len(problems) == 1
    p = problems[0]
    assert (p.topic, p.setting, p.have, p.severity) == (topic, setting, value, severity)
    assert phrase in p.why and p.fix and topic in str(p)


def test_missing_and_fewer_partitions() -> None:
    plans = _plans()
    states = _ok_states(plans)
    states["framewire.errors"] = TopicState("framewire.errors", exists=False)
    states["framewire.queries"].partitions = 1
    states["framewire.control"].partitions = 4
    problems = check(list(plans.values()), states)  # type: ignore[arg-type]
    assert [(p.topic, p.setting, p.severity) for p in problems] == [
        ("framewire.errors", "topic", "error"), ("framewire.queries", "partitions", "warning"),
        ("framewire.control", "partitions", "warning")]
    assert str(problems[0]) == "framewire.errors is missing; fix: framewire topics create " \
                               "(or kafka.topics.create_missing: true)"


def test_strimzi_manifests_in_k8s_match_the_cluster_config() -> None:
    import re

    import yaml

    from pipeline.kafka.topics import strimzi_manifests
    from pipeline.spec import CONFIG_DIR

    plans = plan_topics(load_spec([CONFIG_DIR / "cluster.yaml"], environ={}))
    want = strimzi_manifests(plans, cluster="framewire")
    committed = list(yaml.safe_load_all((CONFIG_DIR.parent / "k8s" / "base" / "kafka-topics.yaml").read_text()))
    assert committed == want, "regenerate: framewire topics manifest --config configs/cluster.yaml " \
                              "> k8s/base/kafka-topics.yaml"
    names = [d["metadata"]["name"] for d in want]
    assert len(set(names)) == len(names) == len(plans)
    for doc, plan in zip(want, plans, strict=True):
        assert doc["apiVersion"] == "kafka.strimzi.io/v1" and doc["kind"] == "KafkaTopic"
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])  # RFC 1123 label
        assert doc["metadata"]["labels"]["strimzi.io/cluster"] == "framewire"
        spec = doc["spec"]
        assert spec["topicName"] == plan.name and spec["replicas"] == 3
        assert {k: str(v) for k, v in spec["config"].items()} == plan.configs
    status = next(d for d in want if d["spec"]["topicName"] == "framewire.status")
    assert status["spec"]["config"] == {"cleanup.policy": "compact", "min.insync.replicas": 2}


def test_every_planned_topic_can_be_overridden_by_its_short_name() -> None:
    plans = plan_topics(load_spec([], environ={}))
    for plan in plans:
        short = plan.name.removeprefix("framewire.")
        over = {p.name: p for p in plan_topics(load_spec([], environ={}).with_overrides(
            **{"kafka.topics.overrides": {short: {"configs": {"max.message.bytes": 2000000}}}}))}
        assert over[plan.name].configs["max.message.bytes"] == "2000000", short
        assert all("max.message.bytes" not in p.configs for n, p in over.items() if n != plan.name)
