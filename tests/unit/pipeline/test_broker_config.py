"""The local broker's pure parts: server.properties, Log4j config, cluster ids, bootstrap choice, paths.

No sockets, no subprocesses: nothing here starts Java or Maven.
"""

from __future__ import annotations

import base64
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import pipeline.broker as broker_pkg
from pipeline.broker import (
    ENV_BOOTSTRAP,
    BrokerError,
    LocalBroker,
    MissingToolError,
    choose_bootstrap,
    ensure_jars,
    kafka_version,
    log4j2_xml,
    new_cluster_id,
    render_properties,
    resolve_bootstrap,
    server_properties,
)
from pipeline.broker.jars import POM, java_major


def props(**kw: object) -> dict[str, str]:
    args: dict[str, object] = {"port": 19092, "controller_port": 19093, "data_dir": Path("/d")}
    args.update(kw)
    return server_properties(**args)  # type: ignore[arg-type]


def parse_properties(text: str) -> dict[str, str]:
    """A reader for the subset render_properties writes (escaped chars, no continuation lines)."""
    out = {}
    unescape = {"n": "\n", "r": "\r", "t": "\t"}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"((?:\\.|[^=\\])*)=(.*)", line)
        assert m, line
        key, value = (re.sub(r"\\(.)", lambda g: unescape.get(g.group(1), g.group(1)), part) for part in m.groups())
        out[key] = value
    return out


def test_kraft_combined_mode_on_loopback() -> None:
    p = props()
    assert p["process.roles"] == "broker,controller"
    assert p["node.id"] == "1"
    assert p["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert p["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert p["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert p["controller.listener.names"] == "CONTROLLER"
    assert p["log.dirs"] == "/d"


def test_single_node_replication_and_dev_defaults() -> None:
    p = props()
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "transaction.state.log.min.isr", "default.replication.factor", "num.partitions"):
        assert p[key] == "1", key
    assert p["auto.create.topics.enable"] == "true"
    assert p["group.initial.rebalance.delay.ms"] == "0"
    assert int(p["log.segment.bytes"]) <= 64 * 1024 * 1024


def test_overrides_win_and_values_render_as_java_expects() -> None:
    p = props(overrides={"num.partitions": 3, "auto.create.topics.enable": False, "message.max.bytes": "2097152"})
    assert p["num.partitions"] == "3"
    assert p["auto.create.topics.enable"] == "false"
    assert p["message.max.bytes"] == "2097152"


def test_same_port_for_broker_and_controller_is_refused() -> None:
    with pytest.raises(ValueError, match="both 9092"):
        props(port=9092, controller_port=9092)


def test_properties_text_round_trips() -> None:
    p = dict(props(data_dir=Path("/tmp/with space/and=equals")), **{"odd key": " lead\\ing\ttab"})
    text = render_properties(p, header="line one\nline two")
    assert text.startswith("# line one\n# line two\n")
    assert parse_properties(text) == p


def test_log4j_config_writes_one_rolling_file_and_no_console(tmp_path: Path) -> None:
    root = ET.fromstring(log4j2_xml(tmp_path / "logs"))
    appenders = list(root.find("Appenders") or [])
    assert [a.tag for a in appenders] == ["RollingFile"]
    assert appenders[0].get("fileName") == str(tmp_path / "logs" / "server.log")
    assert root.get("shutdownHook") == "disable"
    quiet = {lg.get("name"): lg.get("level") for lg in root.iter("Logger")}
    assert quiet["kafka.request.logger"] == "WARN"


def test_cluster_ids_are_16_random_bytes_in_urlsafe_base64() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cid in ids:
        assert len(cid) == 22 and not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16


@pytest.mark.parametrize(("env", "configured", "expected"), [
    ({ENV_BOOTSTRAP: "env:9092"}, "cfg:9092", "env:9092"),  # env var overrides config
    ({}, "cfg:9092", "cfg:9092"),  # config overrides the local broker
    ({ENV_BOOTSTRAP: "  "}, "cfg:9092", "cfg:9092"),  # blank counts as unset
    ({}, None, None),  # neither: the local broker
    ({}, "", None),
])
def test_bootstrap_precedence(env: dict[str, str], configured: str | None, expected: str | None) -> None:
    assert choose_bootstrap(configured, env) == expected


def test_resolve_bootstrap_returns_external_clusters_without_starting(tmp_path: Path) -> None:
    broker = LocalBroker(port=1, run_dir=tmp_path)  # would fail loudly if started
    assert resolve_bootstrap("kafka-0:9092,kafka-1:9092", broker=broker, environ={}) == "kafka-0:9092,kafka-1:9092"
    assert resolve_bootstrap(None, broker=broker, environ={ENV_BOOTSTRAP: "env:1"}) == "env:1"
    assert not list(tmp_path.iterdir())


def test_resolve_bootstrap_without_start_names_the_local_broker(tmp_path: Path) -> None:
    broker = LocalBroker(port=19092, run_dir=tmp_path)
    assert resolve_bootstrap(None, start=False, broker=broker, environ={}) == "127.0.0.1:19092"


def test_local_broker_paths_and_defaults(tmp_path: Path) -> None:
    b = LocalBroker(port=9192, cache_dir=tmp_path)
    assert b.controller_port == 9193
    assert b.run_dir == tmp_path / "run" / "9192"
    assert b.bootstrap == "127.0.0.1:9192"
    assert b.properties()["log.dirs"] == str(b.run_dir / "data")
    st = b.status()  # no pid file: not running, and no socket is opened to find out
    assert (st.running, st.pid, st.bootstrap, st.log_file) == (False, None, "127.0.0.1:9192", b.log_file)
    assert b.stop() is False


def test_stale_pid_file_does_not_count_as_running(tmp_path: Path) -> None:
    b = LocalBroker(port=9192, run_dir=tmp_path)
    b.pid_file.write_text("999999999\n")
    assert b.status().running is False
    b.pid_file.write_text(f"{os.getpid()}\n")  # alive, but a recycled pid is not a Kafka JVM
    assert b.status().running is False


def test_pom_pins_a_kafka_4_release_and_ships_in_the_package() -> None:
    assert POM == Path(broker_pkg.__file__).with_name("pom.xml") and POM.is_file()
    assert re.fullmatch(r"4\.\d+\.\d+", kafka_version())


@pytest.mark.parametrize(("text", "major"), [
    ('openjdk version "17.0.15" 2025-04-15', 17), ('java version "1.8.0_392"', 8),
    ('openjdk version "21" 2023-09-19', 21), ("garbage", None)])
def test_java_major(text: str, major: int | None) -> None:
    assert java_major(text) == major


def test_missing_mvn_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingToolError, match="apt-get install maven") as err:
        ensure_jars(tmp_path / "cache")
    assert isinstance(err.value, BrokerError) and isinstance(err.value, OSError)


def test_resolved_jars_are_not_resolved_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    libs = tmp_path / kafka_version() / "libs"
    libs.mkdir(parents=True)
    (libs / f"kafka_2.13-{kafka_version()}.jar").write_bytes(b"")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # mvn would be missing if it were needed
    assert ensure_jars(tmp_path) == libs
