"""The real pipeline (default CenterNet COCO and PP-OCR, real weights) on bikes.mp4 and the street-sign clip,
indexed from the real broker: ``search "bicycle"`` puts a moment where the detector saw a bicycle first, and
a search for a word drawn into the sign clip finds that clip's moment through the text OCR read."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from pipeline.index.indexer import Indexer
from pipeline.index.search import search
from pipeline.index.store import IndexStore
from pipeline.runtime.driver import Driver
from pipeline.sample_signs import ensure_sign_clip
from pipeline.sources import expand_sources
from pipeline.spec import PipelineSpec

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_pipeline_then_index_then_search_bicycle(ray_local, kafka_bootstrap: str, bikes: Path,
                                                 tmp_path: Path) -> None:
    signs = ensure_sign_clip(bikes.parent)  # "PIZZA HOUSE" 0-1 s, "EXIT 12" 1-2 s, "FRAMEWIRE" 2-3 s
    prefix = f"ixp{uuid.uuid4().hex[:8]}"
    spec = PipelineSpec().with_overrides(**{"kafka.topic_prefix": prefix, "decode.cpus": 0.25, "model.cpus": 0.5,
                                            "thumbnails": {"enabled": True},
                                            "model.tasks": ["caption", "detect", "query", "ocr"]})
    summary = Driver(spec, expand_sources([str(bikes), str(signs)]), bootstrap=kafka_bootstrap).run()
    assert summary.delivery.failed == 0 and not summary.errors
    sid = next(p.source.id for p in summary.sources if p.source.uri == str(bikes))
    sign_id = next(p.source.id for p in summary.sources if p.source.uri == str(signs))

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

    text = search(store, "exit 12")
    assert text.moments, text.signals
    first = text.moments[0]
    assert first.source_id == sign_id and 1.0 - 1e-3 <= first.start_pts < 2.0, first  # read while on screen
    assert any(e["field"] == "ocr" and "EXIT" in e["text"].upper() for e in first.evidence), first.evidence
