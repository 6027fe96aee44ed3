"""Summaries (table-driven timeline, derived windows, a tiny causal LM's paragraph) and the HTTP API via httpx."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.index.api import create_app
from pipeline.index.indexer import Indexer
from pipeline.index.store import IndexStore
from pipeline.index.summary import summarize
from tests.support.index_events import as_records, frame_common, ocr_event, scene, track_event


@pytest.fixture(scope="module")
def embedder():  # type: ignore[no-untyped-def]
    import torch

    from operators.models.minilm import TextEmbedder

    torch.set_num_threads(1)
    return TextEmbedder()


def _window(sid: str, a: float, b: float) -> dict[str, Any]:
    c = frame_common(sid, a, 0)
    return {"type": "window", "event_id": f"w{a}", "run_id": "r1", "source_id": sid, "source_uri": c["source_uri"],
            "emitted_at": c["emitted_at"], "start": a, "end": b, "clock": "pts", "frames": 20,
            "counts": {"car": {"max": 2, "mean": 1.2, "tracks": 3}, "person": {"max": 1, "mean": 0.4, "tracks": 0}},
            "tracks": 3, "lines": {"kerb": [1, 0]}, "caption": "cars pass by", "capture_time": c["emitted_at"]}


def _store(tmp: Path, embedder: Any, extra: list[tuple[str, dict[str, Any]]], bikes: Path | None = None) -> IndexStore:
    store = IndexStore(tmp / "db")
    ix = Indexer(store, "unused:9092")
    ix._embedder = embedder
    ev = scene("bikes-1") + extra
    if bikes is not None:
        ev = [(t, {**e, "source_uri": str(bikes)}) for t, e in ev]
    ix.write(as_records(ev))
    return store


def test_timeline_from_detections_alone(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    s = summarize(_store(tmp_path, embedder, []), "bikes", window_s=5.0)
    assert s.derived and s.source_id == "bikes-1"
    kinds = {(e.kind, e.text, e.pts, e.end_pts) for e in s.entries}
    assert ("label", "seen 'bicycle'", 4.0, 5.5) in kinds and ("label", "seen 'car'", 0.0, 9.5) in kinds
    assert ("query", "matched 'a person riding a bicycle'", 4.0, 5.5) in kinds
    wins = [e for e in s.entries if e.kind == "window"]
    assert [(w.pts, w.end_pts) for w in wins] == [(0.0, 5.0), (5.0, 10.0)]
    assert "1 bicycle" in wins[0].text and "1 car" in wins[0].text


def test_timeline_from_window_track_zone_line_and_ocr_events(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    sid = "bikes-1"
    base = {"run_id": "r1", "source_id": sid, "source_uri": "/videos/bikes-1.mp4", "emitted_at": 1.0}
    extra = [("windows", _window(sid, 0.0, 10.0)),
             ("tracks", track_event(sid, "started", 7, "bicycle", 4.0, 4.0)),
             ("tracks", track_event(sid, "ended", 7, "bicycle", 4.0, 5.5)),
             ("zones", {**base, "type": "zone", "event_id": "z1", "kind": "exited", "zone": "door", "track_id": 7,
                        "dwell_s": 1.5, "pts": 5.5}),
             ("lines", {**base, "type": "line", "event_id": "l1", "line": "kerb", "direction": "in", "track_id": 7,
                        "pts": 5.0}),
             ("ocr", ocr_event(sid, 3.0, ["EXIT"]))]
    s = summarize(_store(tmp_path, embedder, extra), sid)
    texts = [e.text for e in s.entries]
    assert not s.derived
    assert "at most 2 car, 1 person (3 car distinct); line kerb: 1 in, 0 out; cars pass by" in texts
    assert "bicycle #7 appeared" in texts and "bicycle #7 left after 1.5s" in texts
    assert "#7 left zone door after 1.5s" in texts and "#7 crossed line kerb in" in texts
    assert "reads 'EXIT'" in texts
    assert [e.pts for e in s.entries] == sorted(e.pts for e in s.entries)


def test_paragraph_from_a_local_causal_lm(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    from tests.support.tiny_lm import build_tiny_gpt2

    path = build_tiny_gpt2(tmp_path / "lm")
    s = summarize(_store(tmp_path, embedder, []), "bikes", llm_path=str(path), max_new_tokens=8)
    assert isinstance(s.paragraph, str) and s.to_dict()["paragraph"] == s.paragraph
    with pytest.raises(OSError, match="text-generation model"):
        summarize(_store(tmp_path, embedder, []), "bikes", llm_path=str(tmp_path / "nothing"))


def _get(app: Any, url: str, **kw: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await c.get(url, **kw)
    return asyncio.run(go())


def test_api_token_search_summary_clip(tmp_path: Path, embedder, bikes: Path) -> None:  # type: ignore[no-untyped-def]
    app = create_app(_store(tmp_path, embedder, [], bikes=bikes), token="s3cret", embedder=embedder)
    assert _get(app, "/health").status_code == 200
    assert _get(app, "/search?q=bicycle").status_code == 401
    assert _get(app, "/search?q=bicycle", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = _get(app, "/search?q=bicycle", headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200
    top = r.json()["moments"][0]
    assert (top["source_id"], top["start_pts"], top["end_pts"]) == ("bikes-1", 4.0, 5.5) and top["thumbnail_base64"]
    s = _get(app, "/summary?source=bikes&token=s3cret").json()
    assert s["source_id"] == "bikes-1" and s["timeline"]
    c = _get(app, "/clip?source=bikes&at=5&before=1&after=1&exact=1&token=s3cret")
    assert c.status_code == 200 and c.headers["content-type"] == "video/mp4" and c.content[4:8] == b"ftyp"
    assert float(c.headers["x-clip-start"]) == pytest.approx(4.0, abs=0.05)
    bad = _get(app, "/clip?source=nope&at=5&token=s3cret")
    assert bad.status_code == 400 and "not in the index" in bad.json()["error"]
