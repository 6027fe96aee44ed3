"""Indexer rows and hybrid search on hand-built events, no Kafka: records go straight to Indexer.write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.index.indexer import Indexer
from pipeline.index.mapping import event_row
from pipeline.index.search import search
from pipeline.index.store import IndexStore
from tests.support.index_events import T0, as_records, ocr_event, scene, track_event


@pytest.fixture(scope="module")
def embedder():  # type: ignore[no-untyped-def]
    import torch

    from operators.models.minilm import TextEmbedder

    torch.set_num_threads(1)
    return TextEmbedder()


@pytest.fixture
def indexed(tmp_path: Path, embedder) -> IndexStore:  # type: ignore[no-untyped-def]
    store = IndexStore(tmp_path / "db")
    ix = Indexer(store, "unused:9092")
    ix._embedder = embedder
    events = scene("bikes-1") + scene("street-2", bicycle=range(0)) + [
        ("ocr", ocr_event("street-2", 3.0, ["OPEN 24 HOURS", "PHARMACY"], 6)),
        ("tracks", track_event("bikes-1", "started", 7, "bicycle", 4.0, 4.0))]
    recs = as_records(events, partitions=3)
    for i in range(0, len(recs), 37):
        ix.write(recs[i:i + 37])
    return store


def test_every_event_one_row_with_its_offset_and_replay_adds_nothing(indexed: IndexStore, embedder) -> None:  # type: ignore[no-untyped-def]
    n = indexed.count()
    assert n == 4 * 20 * 2 + 2
    ix = Indexer(indexed, "unused:9092")
    ix._embedder = embedder
    recs = as_records(scene("bikes-1"), partitions=3)
    ix.write(recs[:50])  # a replay of already-stored records
    assert indexed.count() == n
    nxt = indexed.next_offsets()
    assert sum(nxt.values()) == n  # dense offsets from 0: next offset == records per partition
    ids = [r["event_id"] for r in indexed.rows(columns=["event_id"])]
    assert len(ids) == len(set(ids))


def test_rows_map_known_and_new_event_types(indexed: IndexStore) -> None:
    ocr = indexed.rows("type = 'ocr'")[0]
    assert ocr["ocr"] == "OPEN 24 HOURS PHARMACY" and "PHARMACY" in ocr["text"] and ocr["text_vec"] is not None
    assert json.loads(ocr["raw"])["lines"][0]["confidence"] == 0.95
    tr = indexed.rows("type = 'track'")[0]
    assert tr["track_ids"] == [7] and tr["labels"] == ["bicycle"] and tr["pts"] == 4.0
    det = indexed.rows("type = 'detections' AND source_id = 'bikes-1' AND pts = 4.0")[0]
    assert det["labels"] == ["car", "person", "bicycle"] and det["track_ids"] is None
    thumb = indexed.rows("type = 'thumbnail'", limit=1)[0]
    assert thumb["thumb_jpeg"][:2] == b"\xff\xd8" and "jpeg_base64" not in json.loads(thumb["raw"])
    assert indexed.sources()["bikes-1"]["step"] == 0.5


def test_generic_mapping_of_an_unknown_type_keeps_raw_json() -> None:
    row = event_row({"type": "zone_v9", "event_id": "z", "source_id": "cam", "start_pts": 2.5, "label": "person",
                     "track_id": 3, "emitted_at": 5.0, "extra": {"a": 1}})
    assert (row["type"], row["pts"], row["labels"], row["track_ids"], row["time"]) == \
        ("zone_v9", 2.5, ["person"], [3], 5.0)
    assert json.loads(row["raw"])["extra"] == {"a": 1}


def test_search_bicycle_returns_the_bicycle_moment_first(indexed: IndexStore, embedder) -> None:  # type: ignore[no-untyped-def]
    res = search(indexed, "bicycle", embedder=embedder)
    assert res.signals["fts"] == "used" and res.signals["text"] == "used"
    assert res.signals["image"].startswith("skipped")
    top = res.moments[0]
    assert top.source_id == "bikes-1" and (top.start_pts, top.end_pts) == (4.0, 5.5) and top.frames == 4
    assert any(e["field"] == "labels" and "bicycle" in e["text"] for e in top.evidence)
    assert top.thumbnail is not None and top.thumbnail[:2] == b"\xff\xd8"
    assert top.start_time == T0 + 4.0
    d = res.to_dict()
    assert d["moments"][0]["thumbnail_base64"]


def test_search_finds_ocr_text_and_filters(indexed: IndexStore, embedder) -> None:  # type: ignore[no-untyped-def]
    res = search(indexed, "pharmacy", embedder=embedder)
    top = res.moments[0]
    assert (top.source_id, top.start_pts) == ("street-2", 3.0)
    assert any(e["field"] == "ocr" and e["signal"] == "fts" for e in top.evidence)
    assert all(m.source_id == "street-2" for m in search(indexed, "car", source="street", embedder=embedder).moments)
    late = search(indexed, "bicycle", since=T0 + 5.0, embedder=embedder).moments
    assert late and all(m.start_pts >= 5.0 for m in late)
    labelled = search(indexed, "car", label="bicycle", embedder=embedder).moments
    assert labelled and all(m.source_id == "bikes-1" and 4.0 <= m.start_pts <= 5.5 for m in labelled)
    with pytest.raises(ValueError, match="not in the index"):
        search(indexed, "x", source="nope", embedder=embedder)


def test_gap_rule_splits_at_a_non_matching_frame(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    store = IndexStore(tmp_path / "db")
    ix = Indexer(store, "unused:9092")
    ix._embedder = embedder
    ix.write(as_records(scene("cam-1", bicycle=(2, 3, 5, 6), thumbnails=False)))
    spans = sorted((m.start_pts, m.end_pts) for m in search(store, "bicycle", embedder=embedder).moments)
    assert spans == [(1.0, 1.5), (2.5, 3.0)]  # frame 4 (pts 2.0) has no bicycle: two moments
    wide = search(store, "bicycle", gap=1.0, embedder=embedder).moments
    assert [(m.start_pts, m.end_pts) for m in wide] == [(1.0, 3.0)]


def test_a_long_lived_reader_sees_rows_written_by_another_writer(tmp_path: Path) -> None:
    reader = IndexStore(tmp_path / "db", read_consistency_s=0)
    writer = Indexer(IndexStore(tmp_path / "db"), "unused:9092", text_vectors=False)
    recs = as_records(scene("cam-1", frames=4))
    writer.write(recs[:8])
    assert reader.count() == 8
    writer.write(recs[8:])
    assert reader.count() == len(recs) and reader.next_offsets() == writer.store.next_offsets()
