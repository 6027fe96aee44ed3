"""Topic management: the topics a spec needs, with partitions, replication, retention and compaction.

``plan_topics(spec)`` says what each topic should look like; ``describe`` reads what the
cluster has; ``check`` compares the two and names every problem with its fix; ``ensure``
creates what is missing (and, with ``fix``, raises partitions and sets configs on topics
that exist). The pipeline calls ``ensure`` at start and refuses to run on an error-level
problem, e.g. a compacted events topic (compaction by source id would keep one event per
camera) or a checkpoints topic that deletes old records (a rerun would lose its resume points).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pipeline.events import Topics

if TYPE_CHECKING:
    from pipeline.spec import KafkaSecuritySpec, PipelineSpec

__all__ = ["TopicPlan", "TopicState", "Problem", "EnsureReport", "TopicError", "plan_topics", "describe",
           "check", "ensure"]

log = logging.getLogger(__name__)

Role = Literal["events", "status", "checkpoints", "control"]
Severity = Literal["error", "warning"]


class TopicError(RuntimeError):
    """A topic the pipeline needs is missing or set up so that events would be lost or wrong."""


@dataclass(frozen=True)
class TopicPlan:
    name: str
    role: Role
    partitions: int
    replication_factor: int
    configs: dict[str, str]


@dataclass
class TopicState:
    name: str
    exists: bool
    partitions: int = 0
    replication_factor: int = 0
    configs: dict[str, str] = field(default_factory=dict)  # every topic config with its effective value


@dataclass(frozen=True)
class Problem:
    topic: str
    setting: str
    want: str
    have: str
    severity: Severity
    why: str
    fix: str

    def __str__(self) -> str:
        if self.setting == "topic":
            return f"{self.topic} is missing; fix: {self.fix}"
        return f"{self.topic}: {self.setting} is {self.have}, want {self.want} ({self.why}); fix: {self.fix}"


@dataclass
class EnsureReport:
    created: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]


def plan_topics(spec: PipelineSpec) -> list[TopicPlan]:
    """Every topic a run of ``spec`` writes, with the settings it should have."""
    ts = spec.kafka.topics
    names = Topics(spec.kafka.topic_prefix)
    roles: list[tuple[str, str, Role]] = [
        ("captions", names.captions, "events"), ("detections", names.detections, "events"),
        ("queries", names.queries, "events"), ("errors", names.errors, "events"),
        ("embeddings", names.embeddings, "events"), ("thumbnails", names.thumbnails, "events"),
        ("ocr", names.ocr, "events"),
        ("tracks", names.tracks, "events"), ("zones", names.zones, "events"), ("windows", names.windows, "events"),
        ("status", names.status, "status"), ("checkpoints", names.checkpoints, "checkpoints"),
    ]
    commands, replies = names.control, names.control_replies
    roles += [("control", commands, "control"), ("control.replies", replies, "control")]
    plans = []
    for short, name, role in roles:
        over = ts.overrides.get(short)
        partitions = 1 if role == "control" else ts.partitions  # one partition keeps commands in order
        retention = ts.control_retention_ms if role == "control" else ts.retention_ms
        rf = ts.replication_factor
        configs: dict[str, str] = {}
        if role in ("status", "checkpoints"):
            configs["cleanup.policy"] = "compact"  # the latest record per source id is kept for ever
        else:
            configs["cleanup.policy"] = "delete"
            configs["retention.ms"] = str(retention)
        if over is not None:
            partitions = over.partitions or partitions
            rf = over.replication_factor or rf
            if over.retention_ms is not None and role not in ("status", "checkpoints"):
                configs["retention.ms"] = str(over.retention_ms)
            configs.update({k: str(v) for k, v in over.configs.items()})
        if rf > 1:
            configs.setdefault("min.insync.replicas", str(rf - 1 if rf > 2 else 1))
        plans.append(TopicPlan(name, role, partitions, rf, configs))
    return plans


def _admin(bootstrap: str, security: KafkaSecuritySpec | None = None) -> Any:
    from kafka.admin import KafkaAdminClient

    from pipeline.kafka.client import check_connection, client_config

    check_connection(bootstrap, security)
    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="framewire-topics", request_timeout_ms=15000,
                            **client_config(security))


def describe(bootstrap: str, names: list[str], *, admin: Any = None,
             security: KafkaSecuritySpec | None = None) -> dict[str, TopicState]:
    """What the cluster has for each of ``names`` (``exists=False`` for a missing one)."""
    from kafka.admin import ConfigResource, ConfigResourceType

    own = admin is None
    admin = admin or _admin(bootstrap, security)
    try:
        existing = set(admin.list_topics())
        out = {n: TopicState(n, exists=False) for n in names if n not in existing}
        present = [n for n in names if n in existing]
        if not present:
            return out
        resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in present]
        configs = admin.describe_configs(resources, config_filter="all").get("topic", {})
        for meta in admin.describe_topics(present):
            parts = meta["partitions"]
            entries = configs.get(meta["name"], {})
            out[meta["name"]] = TopicState(
                meta["name"], exists=True, partitions=len(parts),
                replication_factor=min((len(p["replica_nodes"]) for p in parts), default=0),
                configs={k: str(v["value"]) for k, v in entries.items() if v["value"] is not None})
        return {n: out[n] for n in names}
    finally:
        if own:
            admin.close()


def check(plans: list[TopicPlan], states: dict[str, TopicState]) -> list[Problem]:
    """Every way the cluster's topics differ from the plan that matters, worst first."""
    problems: list[Problem] = []
    for plan in plans:
        st = states.get(plan.name)
        if st is None or not st.exists:
            problems.append(Problem(plan.name, "topic", "present", "missing", "error",
                                    "the run would write to a topic that does not exist",
                                    "framewire topics create (or kafka.topics.create_missing: true)"))
            continue
        policy = set(st.configs.get("cleanup.policy", "delete").split(","))
        if plan.role == "events" and "compact" in policy:
            problems.append(Problem(plan.name, "cleanup.policy", "delete", ",".join(sorted(policy)), "error",
                                    "compaction by source id would keep only the last event of each source",
                                    f"kafka-configs --alter --topic {plan.name} --add-config cleanup.policy=delete"))
        if plan.role == "checkpoints" and "compact" not in policy:
            problems.append(Problem(plan.name, "cleanup.policy", "compact", ",".join(sorted(policy)), "error",
                                    "old checkpoints would be deleted after retention.ms and a rerun would "
                                    "publish its sources again",
                                    "framewire topics create --fix"))
        if plan.role == "status" and "compact" not in policy:
            problems.append(Problem(plan.name, "cleanup.policy", "compact", ",".join(sorted(policy)), "warning",
                                    "a new subscriber would not find the current state of every source",
                                    "framewire topics create --fix"))
        if plan.role == "control" and st.partitions > 1:
            problems.append(Problem(plan.name, "partitions", "1", str(st.partitions), "warning",
                                    "commands on several partitions may be applied out of order",
                                    f"recreate {plan.name} with one partition"))
        if plan.role != "control" and st.partitions < plan.partitions:
            problems.append(Problem(plan.name, "partitions", str(plan.partitions), str(st.partitions), "warning",
                                    "fewer partitions than configured limits consumer parallelism",
                                    "framewire topics create --fix (adding partitions moves the keys of "
                                    "future records, so do it between runs)"))
        if st.replication_factor < plan.replication_factor:
            problems.append(Problem(plan.name, "replication_factor", str(plan.replication_factor),
                                    str(st.replication_factor), "warning",
                                    "fewer replicas than configured: a broker loss can lose events",
                                    "kafka-reassign-partitions to add replicas"))
        min_isr = int(st.configs.get("min.insync.replicas", "1") or 1)
        if min_isr > st.replication_factor:
            problems.append(Problem(plan.name, "min.insync.replicas", f"<= {st.replication_factor}", str(min_isr),
                                    "error", "with acks=all every write would fail (not enough in-sync replicas)",
                                    f"kafka-configs --alter --topic {plan.name} --add-config "
                                    f"min.insync.replicas={max(1, st.replication_factor - 1)}"))
        want_ret, have_ret = plan.configs.get("retention.ms"), st.configs.get("retention.ms")
        if want_ret and have_ret and "delete" in policy and _ms_or_inf(have_ret) < _ms_or_inf(want_ret):
            problems.append(Problem(plan.name, "retention.ms", want_ret, have_ret, "warning",
                                    "events are deleted sooner than configured", "framewire topics create --fix"))
    order = {"error": 0, "warning": 1}
    return sorted(problems, key=lambda p: order[p.severity])


def _ms_or_inf(value: str) -> float:
    """retention.ms as a number, -1 (keep for ever) as infinity."""
    ms = int(value)
    return float("inf") if ms < 0 else float(ms)


def ensure(bootstrap: str, plans: list[TopicPlan], *, create: bool = True, fix: bool = False,
           security: KafkaSecuritySpec | None = None) -> EnsureReport:
    """Create missing topics (``create``), bring existing ones to the plan (``fix``), then check."""
    from kafka.admin import ConfigResource, ConfigResourceType
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    report = EnsureReport()
    admin = _admin(bootstrap, security)
    try:
        states = describe(bootstrap, [p.name for p in plans], admin=admin)
        missing = [p for p in plans if not states[p.name].exists]
        if create and missing:
            new = {p.name: {"num_partitions": p.partitions, "replication_factor": p.replication_factor,
                            "configs": p.configs} for p in missing}
            try:
                admin.create_topics(new, timeout_ms=30000, wait_for_metadata=True)
            except TopicAlreadyExistsError:  # another run created one meanwhile; the others were created
                pass
            except KafkaError as exc:
                raise TopicError(f"could not create {', '.join(new)}: {type(exc).__name__}: {exc} (check "
                                 "kafka.topics.replication_factor against the number of brokers, and the "
                                 "overrides' configs)") from exc
            report.created = [p.name for p in missing]
        if fix:
            for p in plans:
                st = states[p.name]
                if not st.exists:
                    continue
                changed = {k: v for k, v in p.configs.items() if st.configs.get(k) != v}
                if changed:
                    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, p.name, configs=changed)])
                if p.role != "control" and st.partitions < p.partitions:
                    admin.create_partitions({p.name: p.partitions})
                    changed["partitions"] = str(p.partitions)
                if changed:
                    report.fixed.append(p.name)
        if report.created or report.fixed:
            states = describe(bootstrap, [p.name for p in plans], admin=admin)
        report.problems = check(plans, states)
        return report
    finally:
        admin.close()


def ensure_for_run(spec: PipelineSpec, bootstrap: str) -> EnsureReport:
    """The pipeline's start-up check: create what is missing, fail on an error, log warnings."""
    from kafka.errors import AuthorizationError

    ts = spec.kafka.topics
    try:
        report = ensure(bootstrap, plan_topics(spec), create=ts.create_missing, fix=False,
                        security=spec.kafka.security)
    except AuthorizationError as exc:  # a locked-down cluster: its admins own the topics
        log.warning("could not check topics on %s (%s: %s); running without the check", bootstrap,
                    type(exc).__name__, exc)
        return EnsureReport()
    for name in report.created:
        log.info("created topic %s", name)
    if report.errors and ts.check == "fail":
        lines = "\n  ".join(str(p) for p in report.errors)
        raise TopicError(f"Kafka {bootstrap}: {len(report.errors)} topic problem(s) would lose or corrupt events:"
                         f"\n  {lines}\n(set kafka.topics.check: warn to run anyway)")
    for p in report.problems:  # with check: warn, the errors too
        log.warning("topic %s", p)
    return report


def state_dict(st: TopicState, plan: TopicPlan | None = None) -> dict[str, Any]:
    d = asdict(st)
    if plan is not None:
        d["role"] = plan.role
        d["want"] = {"partitions": plan.partitions, "replication_factor": plan.replication_factor, **plan.configs}
    return d


def strimzi_manifests(plans: list[TopicPlan], *, cluster: str, namespace: str | None = None) -> list[dict[str, Any]]:
    """The plan as Strimzi ``KafkaTopic`` resources (kafka.strimzi.io/v1, Strimzi 1.x), for clusters whose
    topics are managed by the Topic Operator rather than by ``framewire topics create``."""
    docs = []
    for p in plans:
        meta: dict[str, Any] = {"name": p.name.replace(".", "-").replace("_", "-").lower(),
                                "labels": {"strimzi.io/cluster": cluster, "app.kubernetes.io/part-of": "framewire",
                                           "framewire.io/role": p.role}}
        if namespace:
            meta["namespace"] = namespace
        docs.append({"apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaTopic", "metadata": meta,
                     "spec": {"topicName": p.name, "partitions": p.partitions, "replicas": p.replication_factor,
                              "config": {k: int(v) if v.lstrip("-").isdigit() else v for k, v in p.configs.items()}}})
    return docs
