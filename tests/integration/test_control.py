"""The control channel against the real broker: commands in, replies out, targeting by run id."""

from __future__ import annotations

import json
import threading
import uuid

from kafka import KafkaProducer

from pipeline.kafka.control import Command, ControlChannel, Reply, control_topics, send_command


def serve(channel: ControlChannel, stop: threading.Event, seen: list[Command]) -> None:
    while not stop.is_set():
        for cmd in channel.poll(timeout_ms=100):
            assert isinstance(cmd, Command)
            seen.append(cmd)
            channel.reply(Reply(command_id=cmd.command_id, run_id=channel.run_id, ok=cmd.op != "remove_query",
                                result={"echo": cmd.args} if cmd.op != "remove_query" else None,
                                error="no such query" if cmd.op == "remove_query" else None))


def test_commands_reach_the_running_pipelines_and_replies_come_back(kafka_bootstrap: str) -> None:
    prefix = f"ctl{uuid.uuid4().hex[:8]}"
    runs = [ControlChannel(kafka_bootstrap, prefix, "run-a"), ControlChannel(kafka_bootstrap, prefix, "run-b")]
    stop = threading.Event()
    seen: dict[str, list[Command]] = {"run-a": [], "run-b": []}
    threads = []
    for ch in runs:
        ch.open()
        t = threading.Thread(target=serve, args=(ch, stop, seen[ch.run_id]), daemon=True)
        t.start()
        threads.append(t)
    try:
        # both runs answer an untargeted command
        replies = send_command(kafka_bootstrap, prefix, "add_query", {"text": "a dog"}, expect=2, timeout_s=20)
        assert sorted(r.run_id for r in replies) == ["run-a", "run-b"]
        assert all(r.ok and r.result == {"echo": {"text": "a dog"}} for r in replies)
        # only run-b acts on a command addressed to it
        replies = send_command(kafka_bootstrap, prefix, "list_sources", run_id="run-b", expect=2, timeout_s=3)
        assert [r.run_id for r in replies] == ["run-b"]
        assert [c.op for c in seen["run-a"]] == ["add_query"]
        # failures come back as data
        (rep,) = send_command(kafka_bootstrap, prefix, "remove_query", {"text": "x"}, run_id="run-a", timeout_s=20)
        assert not rep.ok and rep.error == "no such query"
        # a malformed command is answered with an error naming the valid ops, and skipped
        topic, _ = control_topics(prefix)
        prod = KafkaProducer(bootstrap_servers=kafka_bootstrap)
        prod.send(topic, json.dumps({"command_id": "bad-1", "op": "explode"}).encode()).get(timeout=10)
        prod.close()
        replies = send_command(kafka_bootstrap, prefix, "list_queries", run_id="run-a", timeout_s=20)
        assert [r.ok for r in replies] == [True]
        assert [c.op for c in seen["run-a"]] == ["add_query", "remove_query", "list_queries"]
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
        for ch in runs:
            ch.close()


def test_a_pipeline_never_replays_commands_sent_before_it_started(kafka_bootstrap: str) -> None:
    prefix = f"ctl{uuid.uuid4().hex[:8]}"
    assert send_command(kafka_bootstrap, prefix, "list_sources", timeout_s=1) == []  # nobody listening yet
    ch = ControlChannel(kafka_bootstrap, prefix, "late")
    ch.open()
    try:
        assert ch.poll(timeout_ms=1000) == []
    finally:
        ch.close()
