"""The subscriber in docs/examples (kafka-python + json only) consumes and parses every event type."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

from kafka import KafkaProducer

from pipeline.events import EVENT_TYPES, Topics, parse_event, to_record
from pipeline.events.schema import DOC

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "examples" / "subscriber.py"


def test_docs_subscriber_reads_every_type_and_dedupes(kafka_bootstrap: str) -> None:
    import re

    prefix = f"doc{uuid.uuid4().hex[:8]}"
    topics = Topics(prefix)
    examples = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", DOC.read_text(), flags=re.S)]
    events = [parse_event(json.dumps(e)) for e in examples]
    assert {e.type for e in events} == set(EVENT_TYPES)
    prod = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for ev in [*events, events[0]]:  # the first one twice, as an at-least-once replay would
        topic, key, value, headers = to_record(ev, topics)
        prod.send(topic, key=key, value=value, headers=headers)
    prod.flush()
    prod.close()
    r = subprocess.run([sys.executable, str(SCRIPT), "--bootstrap", kafka_bootstrap, "--prefix", prefix,
                        "--timeout", "8"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    # one line per example (some types have two), each once: the replay deduped
    assert sorted(line.split()[0] for line in lines) == sorted(e.type for e in events)
    caption = next(line for line in lines if line.startswith("caption"))
    assert "a person and a bicycle" in caption
