"""Pure configuration of the local broker: server.properties, Log4j 2 config, cluster id, bootstrap choice.

No sockets, no processes: everything here is unit-testable data.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
DEFAULT_PORT = 9092
ENV_BOOTSTRAP = "FRAMEWIRE_KAFKA_BOOTSTRAP"

PropValue = str | int | float | bool


def server_properties(*, port: int, controller_port: int, data_dir: Path, node_id: int = 1,
                      overrides: Mapping[str, PropValue] | None = None,
                      security: BrokerSecurity | None = None) -> dict[str, str]:
    """KRaft combined-mode (broker + controller) settings for one dev node on 127.0.0.1.

    Replication factors are 1 because there is one node; internal topics get few
    partitions so a fresh broker is ready fast; retention is short because it is dev data.
    `security` swaps the PLAINTEXT listener for SASL_SSL with SCRAM and ACLs (BrokerSecurity).
    `overrides` win over every default.
    """
    if port == controller_port:
        raise ValueError(f"broker port and controller port are both {port}; pick two ports")
    props: dict[str, PropValue] = {
        "process.roles": "broker,controller",
        "node.id": node_id,
        # Static quorum: no --standalone at format time, and changing the controller port later just works.
        "controller.quorum.voters": f"{node_id}@{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": 1,
        "default.replication.factor": 1,
        "min.insync.replicas": 1,
        "auto.create.topics.enable": True,
        "offsets.topic.replication.factor": 1,
        "offsets.topic.num.partitions": 4,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "transaction.state.log.num.partitions": 4,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        "group.initial.rebalance.delay.ms": 0,
        "num.network.threads": 2,
        "num.io.threads": 4,
        "num.recovery.threads.per.data.dir": 1,
        "log.segment.bytes": 16 * 1024 * 1024,
        "log.retention.hours": 24,
        "log.retention.bytes": 1024 * 1024 * 1024,
        "log.retention.check.interval.ms": 60_000,
    }
    if security is not None:
        props.update(security.properties(port=port, controller_port=controller_port))
    props.update(overrides or {})
    return {k: _prop_str(v) for k, v in props.items()}


def _prop_str(value: PropValue) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def render_properties(props: Mapping[str, str], header: str = "") -> str:
    r"""Java .properties text, one `key=value` a line, escaped so `java.util.Properties` reads it back.

    >>> render_properties({"log.dirs": "C:\\kafka", "a b": "x"})
    'a\\ b=x\nlog.dirs=C:\\\\kafka\n'
    """
    lines = [f"# {line}" for line in header.splitlines()]
    for key in sorted(props):
        lines.append(f"{_escape(key, is_key=True)}={_escape(props[key], is_key=False)}")
    return "\n".join(lines) + "\n"


def _escape(text: str, *, is_key: bool) -> str:
    out = []
    for i, ch in enumerate(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch in "=:#!" and (is_key or i == 0):
            out.append("\\" + ch)
        elif ch == " " and (is_key or i == 0):
            out.append("\\ ")
        else:
            out.append(ch)
    return "".join(out)


def log4j2_xml(log_dir: Path, level: str = "INFO") -> str:
    """Log4j 2 config: the broker logs to `<log_dir>/server.log` (10 MB x 3 rolling), nothing to the console.

    Config dumps and per-request logs are held at WARN so the file stays readable. Log4j's own
    shutdown hook is off so the broker's clean-shutdown lines still reach the file (it flushes per line).
    """
    quiet = ["kafka.request.logger", "org.apache.kafka.common.config.AbstractConfig",
             "org.apache.kafka.common.utils.AppInfoParser",
             "org.apache.kafka.common.utils.internals.AppInfoParser", "state.change.logger", "kafka.log.LogCleaner"]
    loggers = "\n".join(f'    <Logger name="{name}" level="WARN"/>' for name in quiet)
    log_file = _xml_attr(str(log_dir / "server.log"))
    pattern = _xml_attr(str(log_dir / "server.log.%i"))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by framewire (pipeline/broker); rewritten on every start. -->
<Configuration status="WARN" shutdownHook="disable">
  <Appenders>
    <RollingFile name="server" fileName="{log_file}" filePattern="{pattern}">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="10 MB"/></Policies>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
{loggers}
    <Root level="{level}"><AppenderRef ref="server"/></Root>
  </Loggers>
</Configuration>
"""


def _xml_attr(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


def new_cluster_id() -> str:
    """A random KRaft cluster id: 16 bytes, URL-safe base64 without padding (what `kafka-storage random-uuid` prints).

    >>> len(new_cluster_id())
    22
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):  # Kafka's Uuid.randomUuid() avoids ids that look like CLI flags
            return cid


def choose_bootstrap(configured: str | None, environ: Mapping[str, str]) -> str | None:
    """The external cluster to use, or None for the local dev broker.

    `FRAMEWIRE_KAFKA_BOOTSTRAP` wins over the configured value; blank values count as unset.

    >>> choose_bootstrap("cfg:9092", {"FRAMEWIRE_KAFKA_BOOTSTRAP": "env:9092"})
    'env:9092'
    >>> choose_bootstrap(None, {}) is None
    True
    """
    for value in (environ.get(ENV_BOOTSTRAP), configured):
        if value and value.strip():
            return value.strip()
    return None


def local_bootstrap(port: int = DEFAULT_PORT) -> str:
    """Bootstrap address of the local broker on `port`."""
    return f"{HOST}:{port}"


@dataclass(frozen=True)
class BrokerSecurity:
    """A secured client listener for the local broker: SASL_SSL with SCRAM-SHA-512 and ACLs enforced.

    The client listener speaks SASL_SSL with the PKCS#12 ``keystore`` (key + certificate for 127.0.0.1);
    the controller listener (loopback only) uses SASL PLAIN for the broker's own principal. ``users``
    (name -> password) get SCRAM-SHA-512 credentials when storage is formatted; ``super_user`` is the
    broker's principal and the only super user (StandardAuthorizer, no ACL means deny).
    """

    keystore: Path
    keystore_password: str
    super_password: str
    super_user: str = "broker"
    users: Mapping[str, str] = field(default_factory=dict)
    cafile: Path | None = None  # PEM CA that signed the keystore's certificate: truststore and probe

    def properties(self, *, port: int, controller_port: int) -> dict[str, PropValue]:
        """server.properties entries that replace the PLAINTEXT listeners."""
        scram = _jaas("org.apache.kafka.common.security.scram.ScramLoginModule", self.super_user, self.super_password)
        plain = _jaas("org.apache.kafka.common.security.plain.PlainLoginModule", self.super_user, self.super_password,
                      {f"user_{self.super_user}": self.super_password})
        trust: dict[str, PropValue] = {}
        if self.cafile is not None:  # the broker's own inter-broker client checks the certificate too
            trust = {"ssl.truststore.type": "PEM", "ssl.truststore.location": str(self.cafile)}
        return {
            **trust,
            "listeners": f"SASL_SSL://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
            "advertised.listeners": f"SASL_SSL://{HOST}:{port}",
            "inter.broker.listener.name": "SASL_SSL",
            "listener.security.protocol.map": "CONTROLLER:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": plain,
            "listener.name.sasl_ssl.sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram,
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(self.keystore),
            "ssl.keystore.password": self.keystore_password,
            "ssl.key.password": self.keystore_password,
            "ssl.endpoint.identification.algorithm": "",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{self.super_user}",
            "allow.everyone.if.no.acl.found": False,
        }

    def scram_args(self) -> list[str]:
        """``kafka-storage format --add-scram`` arguments: SCRAM-SHA-512 credentials for the super user and users."""
        users = {self.super_user: self.super_password, **self.users}
        out: list[str] = []
        for name, password in users.items():
            out += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]"]
        return out

    def client(self, user: str | None = None) -> dict[str, Any]:
        """kafka-python settings to connect as ``user`` (default: the super user)."""
        name = user or self.super_user
        password = self.super_password if name == self.super_user else self.users[name]
        conf: dict[str, Any] = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                                "sasl_plain_username": name, "sasl_plain_password": password}
        if self.cafile is not None:
            conf["ssl_cafile"] = str(self.cafile)
        return conf


def _jaas(module: str, user: str, password: str, extra: Mapping[str, str] | None = None) -> str:
    for name, value in {"username": user, "password": password, **(extra or {})}.items():
        if '"' in value or "\\" in value or '"' in name:
            raise ValueError(f"JAAS value for {name} may not hold quotes or backslashes")
    opts = " ".join(f'{k}="{v}"' for k, v in {"username": user, "password": password, **(extra or {})}.items())
    return f"{module} required {opts};"
