"""The real pipeline (default CenterNet COCO, real weights) on bikes.mp4, indexed from the real broker:
``search "bicycle"`` puts a moment where the detector saw a bicycle first; OCR text is found too."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from pipeline.index.indexer import Indexer
from pipeline.index.search import search
from pipeline.index.store import IndexStore
from pipeline.runtime.driver import Driver
from pipeline.sources import expand_sources
from pipeline.spec import PipelineSpec
from tests.support.index_events import ocr_event

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_pipeline_then_index_then_search_bicycle(ray_local, kafka_bootstrap: str, bikes: Path,
                                                 tmp_path: Path) -> None:
    from kafka import KafkaAdminClient, KafkaProducer

    prefix = f"ixp{uuid.uuid4().hex[:8]}"
    spec = PipelineSpec().with_overrides(**{"kafka.topic_prefix": prefix, "decode.cpus": 0.25, "model.cpus": 0.5,
                                            "thumbnails": {"enabled": True}})
    summary = Driver(spec, expand_sources([str(bikes)]), bootstrap=kafka_bootstrap).run()
    assert summary.frames == 20 and summary.delivery.failed == 0
    sid = summary.sources[0].source.id
    # an OCR event as the OCR branch will publish it (its own topic, plain JSON keyed by source id)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics({f"{prefix}.ocr": {"num_partitions": 3, "replication_factor": 1}}, wait_for_metadata=True)
    admin.close()
    ocr = {**ocr_event(sid, 7.0, ["SLOW DOWN", "BIKE LANE AHEAD"], 14), "source_uri": str(bikes)}
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    producer.send(f"{prefix}.ocr", key=sid.encode(), value=json.dumps(ocr).encode())
    producer.flush()
    producer.close()

    store = IndexStore(tmp_path / "db")
    stats = Indexer(store, kafka_bootstrap, prefix=prefix, batch_wait_ms=300).run(idle_timeout=4.0)
    assert stats.events == store.count() > 20 * 3
    bicycle_pts = {round(r["pts"], 3) for r in store.rows("type = 'detections' AND array_has(labels, 'bicycle')",
                                                          ["pts"])}
    assert bicycle_pts, "CenterNet found no bicycle in bikes.mp4"

    res = search(store, "bicycle")
    assert res.moments, res.signals
    top = res.moments[0]
    in_top = {p for p in bicycle_pts if top.start_pts - 1e-3 <= p <= top.end_pts + 1e-3}
    assert top.source_id == sid and in_top, (top, bicycle_pts)
    assert any("bicycle" in e["text"] for e in top.evidence)
    assert top.thumbnail is not None and top.thumbnail[:2] == b"\xff\xd8"

    text = search(store, "bike lane")
    assert (text.moments[0].source_id, text.moments[0].start_pts) == (sid, 7.0)
    assert any(e["field"] == "ocr" for e in text.moments[0].evidence)
