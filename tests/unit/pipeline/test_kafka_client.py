"""client_config: kafka.security as kafka-python settings; secrets from env or files, never in messages."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pipeline.broker import BrokerSecurity, server_properties
from pipeline.kafka.acls import pipeline_acls, reader_acls, strimzi_acls
from pipeline.kafka.client import KafkaSecurityError, client_config, describe_security, redact
from pipeline.spec import ConfigError, KafkaSecuritySpec, load_spec


def test_plaintext_is_the_default_and_adds_nothing_else() -> None:
    assert client_config(load_spec([]).kafka) == {"security_protocol": "PLAINTEXT"}


def test_sasl_ssl_reads_the_password_from_the_named_variable(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("pem")
    sec = KafkaSecuritySpec(protocol="SASL_SSL", username="framewire", ssl_cafile=str(ca))
    conf = client_config(sec, environ={"FRAMEWIRE_KAFKA_PASSWORD": "pw1"})
    assert conf == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                    "sasl_plain_username": "framewire", "sasl_plain_password": "pw1", "ssl_cafile": str(ca),
                    "ssl_check_hostname": True}
    assert redact(conf)["sasl_plain_password"] == "***"


def test_files_win_over_variables_and_usernames_come_from_env(tmp_path: Path) -> None:
    pw = tmp_path / "password"
    pw.write_text("from-file\n")
    sec = KafkaSecuritySpec(protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", password_file=str(pw))
    conf = client_config(sec, environ={"FRAMEWIRE_KAFKA_PASSWORD": "from-env", "FRAMEWIRE_KAFKA_USERNAME": "u"})
    assert (conf["sasl_plain_username"], conf["sasl_plain_password"], conf["sasl_mechanism"]) == (
        "u", "from-file", "PLAIN")
    assert "ssl_cafile" not in conf


def test_a_missing_secret_names_the_fix_and_no_value() -> None:
    sec = KafkaSecuritySpec(protocol="SASL_SSL", username="framewire")
    with pytest.raises(KafkaSecurityError, match="FRAMEWIRE_KAFKA_PASSWORD.*never on the command line"):
        client_config(sec, environ={})
    with pytest.raises(KafkaSecurityError, match="password_file /nope/pw: cannot read it"):
        client_config(sec.model_copy(update={"password_file": "/nope/pw"}), environ={})
    with pytest.raises(KafkaSecurityError, match="ssl_cafile /nope/ca.crt does not exist"):
        client_config(sec.model_copy(update={"ssl_cafile": "/nope/ca.crt"}), environ={"FRAMEWIRE_KAFKA_PASSWORD": "x"})


def test_a_password_cannot_be_written_into_the_config(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafka:\n  security:\n    protocol: SASL_SSL\n    password: hunter2\n")
    with pytest.raises(ConfigError, match="unknown key 'kafka.security.password'.*password_env") as info:
        load_spec([cfg])
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigError, match="SASL_SSL"):
        load_spec([], environ={"FRAMEWIRE__KAFKA__SECURITY__PROTOCOL": "SASL"})


def test_describe_security_names_the_principal_not_the_secret() -> None:
    sec = KafkaSecuritySpec(protocol="SASL_SSL", username="framewire")
    assert describe_security(sec) == "SASL_SSL SCRAM-SHA-512 as framewire"
    assert describe_security(KafkaSecuritySpec(protocol="SASL_SSL")) == (
        "SASL_SSL SCRAM-SHA-512 as the user in $FRAMEWIRE_KAFKA_USERNAME")


def test_admin_client_debug_config_line_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    import pipeline.kafka.client  # noqa: F401 - installs the filter

    log = logging.getLogger("kafka.admin.client")
    with caplog.at_level(logging.DEBUG, logger="kafka.admin.client"):
        log.debug("Starting KafkaAdminClient with configuration: %s", {"sasl_plain_password": "hunter2", "a": 1})
    assert "hunter2" not in caplog.text and "'***'" in caplog.text


def test_secured_broker_properties_replace_the_plaintext_listener(tmp_path: Path) -> None:
    sec = BrokerSecurity(keystore=tmp_path / "k.p12", keystore_password="kp", super_password="sp",
                         users={"framewire": "fp"}, cafile=tmp_path / "ca.pem")
    props = server_properties(port=9092, controller_port=9093, data_dir=tmp_path, security=sec)
    assert props["listeners"] == "SASL_SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["allow.everyone.if.no.acl.found"] == "false" and props["super.users"] == "User:broker"
    assert "PLAINTEXT://" not in props["advertised.listeners"]
    assert sec.scram_args() == ["--add-scram", "SCRAM-SHA-512=[name=broker,password=sp]",
                                "--add-scram", "SCRAM-SHA-512=[name=framewire,password=fp]"]
    with pytest.raises(ValueError, match="quotes"):
        BrokerSecurity(keystore=tmp_path, keystore_password="k", super_password='a"b').properties(
            port=1, controller_port=2)


def test_acls_as_strimzi_entries() -> None:
    acls = strimzi_acls(pipeline_acls("framewire"))
    assert acls[0] == {"resource": {"type": "topic", "name": "framewire.", "patternType": "prefix"},
                       "operations": ["Create", "Describe", "DescribeConfigs", "Read", "Write"]}
    assert acls[-1] == {"resource": {"type": "cluster"}, "operations": ["IdempotentWrite"]}
    assert all("Write" not in r.operations for r in reader_acls())


def test_record_batches_are_checksummed_in_c() -> None:
    """kafka-python falls back to a pure-Python CRC-32C without the ``crc32c`` package (the [crc32c] extra):
    17% of the publisher's CPU in ``make bench``, CPU the model lacks on a small machine."""
    import os

    from kafka.record import util

    assert util.calc_crc32c.__defaults__[0] is not util.crc32c_py  # the C function is what batches use
    data = memoryview(os.urandom(4096))
    assert util.calc_crc32c(data) == util.crc32c_py(data)
