"""The pipeline on real Ray and the real Kafka broker: counts, ordering, bad inputs, poison batches."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from pipeline.kafka.consumer import subscribe
from pipeline.runtime.driver import Driver
from pipeline.runtime.summary import RunSummary
from pipeline.sources import expand_sources
from pipeline.spec import PipelineSpec
from tests.support.fake_model import FAKE
from tests.support.videos import make_video, not_a_video, truncate

pytestmark = [pytest.mark.integration]


def spec_for(prefix: str, **over: Any) -> PipelineSpec:
    base = {"model.name": FAKE, "model.options": {"size": [48, 64]}, "queries": ["something bright"],
            "kafka.topic_prefix": prefix, "decode.cpus": 0.25, "model.cpus": 0.5}
    base.update(over)
    return PipelineSpec().with_overrides(**base)


def run(spec: PipelineSpec, items: list[str], bootstrap: str) -> tuple[RunSummary, list[Any]]:
    pipe = Driver(spec, expand_sources(items), bootstrap=bootstrap)
    summary = pipe.run()
    events = [r.event for r in subscribe(bootstrap, prefix=spec.kafka.topic_prefix, from_beginning=True,
                                         run_id=summary.run_id, idle_timeout=4.0)]
    return summary, events


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def test_every_sampled_frame_yields_one_event_per_task(ray_local, kafka_bootstrap, prefix, bikes, ramp_video):
    spec = spec_for(prefix, **{"decode.fps": 2.0})
    summary, events = run(spec, [str(bikes), str(ramp_video)], kafka_bootstrap)
    assert summary.delivery.failed == 0 and summary.errors == 0
    frames = {p.source.id: p.published for p in summary.sources}
    by_source = {Path(p.source.uri).name: p.source.id for p in summary.sources}
    assert frames[by_source["bikes.mp4"]] == 20  # 10 s at 2 fps
    assert frames[by_source["ramp.mp4"]] == 4  # 2 s at 2 fps
    assert len({e.event_id for e in events}) == len(events)  # no duplicates
    per = Counter((e.source_id, e.type, e.pts) for e in events if e.type in ("caption", "detections", "query"))
    assert set(per.values()) == {1}
    for sid, n in frames.items():
        for t in ("caption", "detections", "query"):
            assert sum(1 for (s, ty, _) in per if s == sid and ty == t) == n
    states = [(e.source_id, e.state) for e in events if e.type == "status"]
    assert sorted(states) == sorted([(sid, s) for sid in frames for s in ("started", "ended")])


def test_corrupt_and_missing_inputs_yield_error_events_and_others_finish(
        ray_local, kafka_bootstrap, prefix, ramp_video, tmp_path):
    trunc = truncate(ramp_video, tmp_path / "truncated.mp4", 0.4)
    text = not_a_video(tmp_path / "notes.mp4")
    missing = tmp_path / "missing.mp4"
    spec = spec_for(prefix, **{"decode.fps": 5.0})
    summary, events = run(spec, [str(trunc), str(ramp_video), str(text), str(missing)], kafka_bootstrap)
    errors = [e for e in events if e.type == "error"]
    assert Counter(Path(e.source_uri).name for e in errors) == {"truncated.mp4": 1, "notes.mp4": 1, "missing.mp4": 1}
    assert all(e.stage in ("open", "decode") and e.reason for e in errors)
    good = next(p for p in summary.sources if p.source.uri == str(ramp_video))
    assert good.published == 10 and good.error is None
    assert sum(1 for e in events if e.type == "detections" and e.source_id == good.source.id) == 10


def test_events_of_a_source_arrive_in_pts_order(ray_local, kafka_bootstrap, prefix, tmp_path):
    videos = [make_video(tmp_path / f"v{i}.mp4", frames=60, fps=30, size=(48, 64)) for i in range(3)]
    spec = spec_for(prefix, **{"decode.fps": None, "decode.chunk": 3, "batching.max_batch": 5,
                               "model.replicas": 2, "batching.inflight_per_model": 3})
    summary, events = run(spec, [str(v) for v in videos], kafka_bootstrap)
    assert summary.frames == 180
    seq: dict[tuple[str, str], list[float]] = defaultdict(list)
    for e in events:
        if e.type in ("caption", "detections", "query"):
            seq[(e.source_id, e.type)].append(e.pts)
    assert len(seq) == 9
    for pts in seq.values():
        assert len(pts) == 60 and pts == sorted(pts)


def test_poison_batch_yields_error_events_and_the_source_goes_on(ray_local, kafka_bootstrap, prefix, ramp_video):
    spec = spec_for(prefix, **{"decode.fps": None, "decode.chunk": 5, "batching.max_batch": 5,
                               "model.options": {"size": [48, 64], "fail_on_frame": 12}})
    summary, events = run(spec, [str(ramp_video)], kafka_bootstrap)
    errors = [e for e in events if e.type == "error"]
    assert sorted(e.frame_index for e in errors) == [10, 11, 12, 13, 14]  # the batch holding frame 12
    assert all(e.stage == "model" and "poison" in e.reason for e in errors)
    captions = sorted(e.frame_index for e in events if e.type == "caption")
    assert captions == [i for i in range(50) if not 10 <= i < 15]


def test_thumbnails_one_per_frame_joined_to_its_events(ray_local, kafka_bootstrap, prefix, bikes):
    import base64
    import io

    from PIL import Image

    spec = spec_for(prefix, **{"decode.fps": 2.0, "decode.max_frames": 6, "model.options": {"size": [272, 640]},
                               "thumbnails": {"enabled": True, "max_side": 120, "max_bytes": 3000}})
    summary, events = run(spec, [str(bikes)], kafka_bootstrap)
    thumbs = [e for e in events if e.type == "thumbnail"]
    dets = {(e.source_id, e.pts) for e in events if e.type == "detections"}
    assert len(thumbs) == summary.frames == 6
    assert {(t.source_id, t.pts) for t in thumbs} == dets  # each joins its frame's events on (source, pts)
    for t in thumbs:
        img = Image.open(io.BytesIO(base64.b64decode(t.jpeg_base64)))
        assert img.size == (t.width, t.height) == (120, 51) and t.size_bytes <= 3000
        assert (t.frame_width, t.frame_height) == (640, 272)


def test_many_broken_files_in_one_run_each_get_one_error_and_failed(ray_local, kafka_bootstrap, ramp_video,
                                                                     tmp_path):
    """Issue 8's archive: dozens of unreadable files among good ones, decoded by a pool that reuses its actors;
    every broken file ends `failed` with exactly one error event, run after run (it used to lose one)."""
    import random

    broken: list[Path] = []
    rng = random.Random(7)
    for i in range(45):
        kind = i % 3
        p = tmp_path / f"broken{i:02d}.mp4"
        if kind == 0:
            not_a_video(p)
        elif kind == 1:
            p.write_bytes(rng.randbytes(rng.randint(1, 4000)))
        else:
            truncate(ramp_video, p, 0.03)  # the mp4 index is at the end: nothing is readable
        broken.append(p)
    good = [make_video(tmp_path / f"good{i}.mp4", frames=10, fps=10, size=(48, 64)) for i in range(3)]
    items = [str(p) for p in broken + good]
    rng.shuffle(items)
    for attempt in range(3):
        spec = spec_for(f"t{uuid.uuid4().hex[:8]}", **{"decode.fps": 5.0, "decode.concurrent_sources": 4})
        summary, events = run(spec, items, kafka_bootstrap)
        errors = Counter(Path(e.source_uri).name for e in events if e.type == "error")
        states = {Path(e.source_uri).name: e.state for e in events if e.type == "status" and e.state != "started"}
        assert errors == {p.name: 1 for p in broken}, f"attempt {attempt}"
        assert {n: states.get(n) for n in errors} == {p.name: "failed" for p in broken}, f"attempt {attempt}"
        assert all(states[g.name] == "ended" for g in good)
        assert {p.state for p in summary.sources if Path(p.source.uri) in broken} == {"failed"}
