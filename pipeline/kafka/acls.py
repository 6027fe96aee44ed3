"""The Kafka ACLs the pipeline's principal needs, as data: for docs/deploy.md, the Strimzi KafkaUser and tests.

Everything is prefixed, so one user runs any number of pipelines under its topic prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["AclRule", "kafka_python_acls", "pipeline_acls", "reader_acls", "strimzi_acls"]

ResourceType = Literal["topic", "group", "transactionalId", "cluster"]


@dataclass(frozen=True)
class AclRule:
    resource: ResourceType
    name: str
    pattern: Literal["prefix", "literal"]
    operations: tuple[str, ...]  # Strimzi / Kafka operation names: Read, Write, Create, Describe, ...
    why: str


def pipeline_acls(prefix: str = "framewire", group_prefix: str = "framewire-") -> list[AclRule]:
    """What ``framewire run`` (archive and live), ``sources``/``queries``, ``tail`` and ``index`` need.

    >>> [r.resource for r in pipeline_acls()]
    ['topic', 'group', 'transactionalId', 'cluster']
    """
    return [
        AclRule("topic", f"{prefix}.", "prefix", ("Create", "Describe", "DescribeConfigs", "Read", "Write"),
                "create and check its topics, publish events, read checkpoints and control commands"),
        AclRule("group", group_prefix, "prefix", ("Read", "Describe"),
                "consumer groups of framewire index (framewire-index) and tail (framewire-tail-*)"),
        AclRule("transactionalId", f"{prefix}-archive-", "prefix", ("Write", "Describe"),
                "exactly-once archive runs: one transaction per batch of events and checkpoints"),
        AclRule("cluster", "kafka-cluster", "literal", ("IdempotentWrite",),
                "idempotent producers (acks=all, no duplicates on retry)"),
    ]


def reader_acls(prefix: str = "framewire", group_prefix: str = "framewire-") -> list[AclRule]:
    """A subscriber that may read events and watch the control topics but never send a command."""
    return [
        AclRule("topic", f"{prefix}.", "prefix", ("Describe", "DescribeConfigs", "Read"), "read events"),
        AclRule("group", group_prefix, "prefix", ("Read", "Describe"), "its consumer groups"),
    ]


def strimzi_acls(rules: list[AclRule]) -> list[dict[str, Any]]:
    """The rules as ``KafkaUser.spec.authorization.acls`` entries (type simple)."""
    out: list[dict[str, Any]] = []
    for r in rules:
        res: dict[str, Any] = {"type": r.resource}
        if r.resource != "cluster":
            res.update(name=r.name, patternType=r.pattern)
        out.append({"resource": res, "operations": list(r.operations)})
    return out


def kafka_python_acls(principal: str, rules: list[AclRule]) -> list[Any]:
    """The rules as kafka-python ``ACL`` objects for ``KafkaAdminClient.create_acls`` (allow, any host)."""
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern, ResourceType

    kinds = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
             "transactionalId": ResourceType.TRANSACTIONAL_ID, "cluster": ResourceType.CLUSTER}
    out = []
    for r in rules:
        pattern = ResourcePattern(kinds[r.resource], r.name,
                                  ACLResourcePatternType.PREFIXED if r.pattern == "prefix"
                                  else ACLResourcePatternType.LITERAL)
        for op in r.operations:
            operation = ACLOperation[_snake(op)]
            out.append(ACL(principal=principal, host="*", operation=operation,
                           permission_type=ACLPermissionType.ALLOW, resource_pattern=pattern))
    return out


def _snake(op: str) -> str:
    """'DescribeConfigs' -> 'DESCRIBE_CONFIGS' (kafka-python's ACLOperation names)."""
    return "".join("_" + c if c.isupper() and i else c for i, c in enumerate(op)).upper()
