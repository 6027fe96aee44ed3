"""Run-time control of a live pipeline through Kafka: commands in, replies out.

A running live pipeline reads ``<prefix>.control`` from its end (old commands are never
replayed) and answers every command on ``<prefix>.control.replies`` with the same
``command_id``. Commands name an ``op`` and its ``args``; ``run_id`` (optional) picks
one pipeline when several share a cluster. The CLI (``framewire sources|queries``) is a
thin client over :func:`send_command`.

    {"command_id": "4f1c...", "op": "add_source", "args": {"uri": "rtsp://cam3/stream"}}
    {"command_id": "4f1c...", "run_id": "a1b2c3", "ok": true, "result": {"source_id": "cam3_stream-1a2b3c4d"}}
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["OPS", "Command", "ControlChannel", "Reply", "send_command"]

Op = Literal["add_source", "remove_source", "list_sources", "add_query", "remove_query", "list_queries"]
OPS: tuple[str, ...] = Op.__args__  # type: ignore[attr-defined]


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    op: Op
    args: dict[str, Any] = Field(default_factory=dict)
    run_id: str | None = Field(None, description="only this run acts; null: every live run listening")
    sent_at: float = Field(default_factory=time.time)


class Reply(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command_id: str
    run_id: str
    ok: bool
    result: Any = None
    error: str | None = None
    replied_at: float = Field(default_factory=time.time)


def control_topics(prefix: str) -> tuple[str, str]:
    """(commands, replies) topic names; named with every other topic in ``pipeline.events.Topics``."""
    from pipeline.events import Topics

    t = Topics(prefix)
    return t.control, t.control_replies


@dataclass
class ControlChannel:
    """The pipeline's side: poll commands (from the end of the topic), publish replies."""

    bootstrap: str
    prefix: str
    run_id: str
    spec: Any = None  # a PipelineSpec: kafka.topics settings for the control topics
    _consumer: Any = field(default=None, init=False)
    _producer: Any = field(default=None, init=False)

    def open(self) -> None:
        from kafka import KafkaConsumer, KafkaProducer

        topic, _ = control_topics(self.prefix)
        _ensure_topics(self.bootstrap, self.prefix, self.spec)
        sec = _client(self.spec)
        self._consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None,
                                       **sec)
        _assign_at_end(self._consumer, topic)
        self._producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True, **sec)

    def poll(self, timeout_ms: int = 0) -> list[Command | Reply]:
        """New commands for this run; a malformed command gets an error reply and is skipped."""
        out: list[Command | Reply] = []
        for recs in self._consumer.poll(timeout_ms=timeout_ms).values():
            for rec in recs:
                try:
                    cmd = Command.model_validate_json(rec.value)
                except ValidationError as exc:
                    cid = _command_id(rec.value)
                    if cid:
                        self.reply(Reply(command_id=cid, run_id=self.run_id, ok=False,
                                         error=f"malformed command: {exc.errors()[0]['msg']}; ops: {', '.join(OPS)}"))
                    continue
                if cmd.run_id in (None, self.run_id):
                    out.append(cmd)
        return out

    def reply(self, reply: Reply) -> None:
        _, topic = control_topics(self.prefix)
        self._producer.send(topic, key=reply.command_id.encode(), value=reply.model_dump_json().encode())
        self._producer.flush(timeout=10)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
        if self._producer is not None:
            self._producer.close(timeout=5)


def _ensure_topics(bootstrap: str, prefix: str, spec: Any = None) -> None:
    """Create the control topics if missing, with the settings the topic plan gives them
    (``pipeline/kafka/topics.py``: one partition, so commands stay in order); ``spec`` supplies
    ``kafka.topics`` (default: the built-in defaults)."""
    from pipeline.kafka.topics import ensure, plan_topics
    from pipeline.spec import PipelineSpec

    spec = (spec or PipelineSpec()).with_overrides(**{"kafka.topic_prefix": prefix})
    ensure(bootstrap, [p for p in plan_topics(spec) if p.role == "control"], security=spec.kafka.security)


def _client(spec: Any) -> dict[str, Any]:
    """TLS/SASL settings of ``spec.kafka.security`` (PLAINTEXT without a spec)."""
    from pipeline.kafka.client import client_config

    return client_config(spec.kafka if spec is not None else None)


def _assign_at_end(consumer: Any, topic: str) -> None:
    from kafka import TopicPartition

    deadline = time.monotonic() + 10
    parts = consumer.partitions_for_topic(topic)
    while not parts and time.monotonic() < deadline:  # metadata of a just-created topic
        time.sleep(0.1)
        consumer.topics()
        parts = consumer.partitions_for_topic(topic)
    tps = [TopicPartition(topic, p) for p in sorted(parts or [0])]
    consumer.assign(tps)
    consumer.seek_to_end(*tps)
    for tp in tps:  # resolve the end offsets now: whatever is sent after this is seen
        consumer.position(tp)


def _command_id(raw: bytes) -> str | None:
    try:
        cid = json.loads(raw).get("command_id")
    except (ValueError, AttributeError):
        return None
    return cid if isinstance(cid, str) else None


def send_command(bootstrap: str, prefix: str, op: str, args: dict[str, Any] | None = None, *,
                 run_id: str | None = None, timeout_s: float = 10.0, expect: int = 1, spec: Any = None) -> list[Reply]:
    """Send one command and wait for ``expect`` replies (one per listening run) or the timeout;
    ``spec`` (a PipelineSpec) gives the settings of control topics this creates."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.errors import AuthorizationError, KafkaError

    from pipeline.kafka.client import describe_security

    cmd = Command(op=op, args=args or {}, run_id=run_id)  # type: ignore[arg-type]
    topic, replies_topic = control_topics(prefix)
    _ensure_topics(bootstrap, prefix, spec)
    sec = _client(spec)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, **sec)
    try:
        _assign_at_end(consumer, replies_topic)
        # one record: no idempotent producer id, so a principal without Write fails on the topic, named
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, **sec)
        try:
            producer.send(topic, key=cmd.command_id.encode(),
                          value=cmd.model_dump_json().encode()).get(timeout=timeout_s)
        except KafkaError as exc:
            if not isinstance(exc, AuthorizationError) and "AuthorizationFailed" not in str(exc):
                raise
            who = describe_security(spec.kafka if spec else None)
            raise PermissionError(f"Kafka refused the command: the principal {who} may not "
                                  f"write to {topic} ({type(exc).__name__}); grant it Write on topic {topic} "
                                  "(docs/deploy.md lists the ACLs)") from exc
        finally:
            producer.close(timeout=5)
        got: list[Reply] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(got) < expect:
            for recs in consumer.poll(timeout_ms=200).values():
                for rec in recs:
                    try:
                        rep = Reply.model_validate_json(rec.value)
                    except ValidationError:
                        continue
                    if rep.command_id == cmd.command_id:
                        got.append(rep)
        return got
    finally:
        consumer.close()
