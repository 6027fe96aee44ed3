"""Every client on a secured genuine Kafka: SASL_SSL, SCRAM-SHA-512, ACLs enforced by KRaft's StandardAuthorizer.

The broker gets a throwaway CA and certificate, SCRAM users made at format time (the pipeline's
principal and a read-only one) and the ACLs of pipeline/kafka/acls.py; the super user is the broker's.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pipeline.broker import BrokerSecurity, LocalBroker
from pipeline.kafka.acls import kafka_python_acls, pipeline_acls, reader_acls
from pipeline.kafka.client import KafkaAuthError, check_connection
from pipeline.kafka.consumer import subscribe
from pipeline.kafka.control import send_command
from pipeline.runtime.driver import Driver
from pipeline.sources import expand_sources
from pipeline.spec import PipelineSpec
from tests.support.fake_model import FAKE
from tests.support.kafka_tls import make_tls

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]
PREFIX = "fwsec"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Secured:
    broker: LocalBroker
    security: BrokerSecurity
    cafile: Path
    secrets_dir: Path

    def spec(self, user: str, **over: object) -> PipelineSpec:
        """A spec that logs in as ``user`` with the password from a file (what a Kubernetes Secret mount gives)."""
        base: dict[str, object] = {
            "kafka.bootstrap_servers": self.broker.bootstrap, "kafka.topic_prefix": PREFIX,
            "kafka.security.protocol": "SASL_SSL", "kafka.security.username": user,
            "kafka.security.password_file": str(self.secrets_dir / user), "kafka.security.password_env": None,
            "kafka.security.ssl_cafile": str(self.cafile),
            "model.name": FAKE, "model.options": {"size": [48, 64]}, "queries": ["something bright"],
            "decode.cpus": 0.25, "model.cpus": 0.5}
        base.update(over)
        return PipelineSpec().with_overrides(**base)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    root = tmp_path_factory.mktemp("secured-kafka")
    tls = make_tls(root / "tls")
    users = {"framewire": secrets.token_urlsafe(12), "reader": secrets.token_urlsafe(12)}
    sec = BrokerSecurity(keystore=tls.keystore, keystore_password=tls.keystore_password,
                         super_password=secrets.token_urlsafe(12), users=users, cafile=tls.cafile)
    broker = LocalBroker(port=_free_port(), controller_port=_free_port(), run_dir=root / "run",
                         exit_with_parent=True, security=sec)
    broker.start(timeout=90.0)
    secrets_dir = root / "secrets"
    secrets_dir.mkdir()
    for name, pw in users.items():
        (secrets_dir / name).write_text(pw + "\n")
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, **sec.client())
    try:
        admin.create_acls(kafka_python_acls("User:framewire", pipeline_acls(PREFIX)))
        admin.create_acls(kafka_python_acls("User:reader", reader_acls(PREFIX)))
    finally:
        admin.close()
    try:
        yield Secured(broker, sec, tls.cafile, secrets_dir)
    finally:
        broker.stop()


def test_broker_refuses_plaintext_and_unknown_principals(secured: Secured) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError

    conf = secured.security.client("reader")
    admin = KafkaAdminClient(bootstrap_servers=secured.broker.bootstrap, **conf)
    try:  # ACLs are enforced: the reader may not create topics
        with pytest.raises(KafkaError, match="(?i)authoriz"):
            admin.create_topics([NewTopic(f"{PREFIX}.nope", 1, 1)])
    finally:
        admin.close()
    with pytest.raises(KafkaAuthError, match="ssl_cafile"):  # the system CAs do not trust the test CA
        check_connection(secured.broker.bootstrap, PipelineSpec().with_overrides(
            **{"kafka.security.protocol": "SSL"}).kafka, timeout_s=3)


def test_archive_run_with_the_right_credentials(secured: Secured, ray_local: None, bikes: Path) -> None:
    spec = secured.spec("framewire", **{"decode.fps": 2.0, "decode.max_frames": 6})
    summary = Driver(spec, expand_sources([str(bikes)]), bootstrap=secured.broker.bootstrap).run()
    assert summary.delivery.failed == 0 and summary.errors == 0
    assert summary.delivery.transactions > 0  # exactly-once: the transactional producer logged in too
    reader = secured.spec("reader")
    events = [r.event for r in subscribe(secured.broker.bootstrap, prefix=PREFIX, from_beginning=True,
                                         run_id=summary.run_id, idle_timeout=4.0, security=reader.kafka.security)]
    assert sum(1 for e in events if e.type == "detections") == 6
    assert {e.state for e in events if e.type == "status"} == {"started", "ended"}


def _cli(args: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, str, float]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", "from pipeline.cli import main; main()", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, " ".join((proc.stdout + proc.stderr).split()), time.monotonic() - t0  # unwrapped


def test_wrong_password_fails_fast_with_exit_1_and_no_secret_anywhere(
        secured: Secured, ramp_video: Path, tmp_path: Path) -> None:
    right = (secured.secrets_dir / "framewire").read_text().strip()
    wrong = "wrong-" + secrets.token_urlsafe(8)
    overlay = tmp_path / "secured.yaml"
    overlay.write_text(yaml.safe_dump({
        "model": {"name": FAKE, "options": {"size": [48, 64]}},
        "kafka": {"bootstrap_servers": secured.broker.bootstrap, "topic_prefix": f"{PREFIX}w{uuid.uuid4().hex[:6]}",
                  "security": {"protocol": "SASL_SSL", "username": "framewire", "ssl_cafile": str(secured.cafile)}}}))
    env = {**os.environ, "FRAMEWIRE_KAFKA_PASSWORD": wrong}
    env.pop("FRAMEWIRE_KAFKA_BOOTSTRAP", None)
    rc, out, took = _cli(["run", str(ramp_video), "--config", str(overlay), "-q", "-v"], env)
    assert rc == 1, out
    assert took < 45, f"took {took:.0f}s"  # the interpreter and imports included; the check itself waits 10 s at most
    assert "refused the connection" in out and "SaslAuthenticationFailed" in out and "password" in out
    assert wrong not in out and right not in out
    no_pw = {k: v for k, v in env.items() if k != "FRAMEWIRE_KAFKA_PASSWORD"}
    rc, out, _ = _cli(["run", str(ramp_video), "--config", str(overlay), "-q"], no_pw)
    assert rc != 0 and "FRAMEWIRE_KAFKA_PASSWORD" in out and "never on the command line" in out
    rc, out, _ = _cli(["run", "--help"], env)
    assert rc == 0 and wrong not in out and "password" not in out.lower()


def test_a_principal_without_write_on_control_cannot_add_a_camera(secured: Secured) -> None:
    owner = secured.spec("framewire")
    send_command(secured.broker.bootstrap, PREFIX, "list_sources", timeout_s=1, spec=owner)  # creates the topics
    reader = secured.spec("reader")
    with pytest.raises(PermissionError, match=rf"may not write to {PREFIX}\.control .*grant it Write") as info:
        send_command(secured.broker.bootstrap, PREFIX, "add_source", {"uri": "rtsp://10.0.0.9/stream"},
                     timeout_s=10, spec=reader)
    assert "as reader" in str(info.value)
    assert (secured.secrets_dir / "reader").read_text().strip() not in str(info.value)


def test_debug_logs_of_every_client_hold_no_password(secured: Secured, caplog: pytest.LogCaptureFixture) -> None:
    from pipeline.kafka.topics import describe, plan_topics

    spec = secured.spec("framewire")
    with caplog.at_level(logging.DEBUG, logger="kafka"):
        describe(secured.broker.bootstrap, [p.name for p in plan_topics(spec)][:2], security=spec.kafka.security)
        list(subscribe(secured.broker.bootstrap, prefix=PREFIX, idle_timeout=0.5, security=spec.kafka.security))
    text = caplog.text
    assert "Starting KafkaAdminClient with configuration" in text  # the DEBUG line that carries the config
    for name in ("framewire", "reader"):
        assert (secured.secrets_dir / name).read_text().strip() not in text


def test_a_wrong_password_in_process_is_a_kafka_auth_error(secured: Secured, tmp_path: Path) -> None:
    bad = tmp_path / "pw"
    bad.write_text("not-the-password")
    spec = secured.spec("framewire", **{"kafka.security.password_file": str(bad)})
    t0 = time.monotonic()
    with pytest.raises(KafkaAuthError, match="invalid credentials"):
        check_connection(secured.broker.bootstrap, spec.kafka, timeout_s=8)
    assert time.monotonic() - t0 < 10
