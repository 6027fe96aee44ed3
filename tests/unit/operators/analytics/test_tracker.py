"""Tracker on synthetic boxes with known motion: one id per object, ids per instance from 1, exact resume."""

from __future__ import annotations

import json

import numpy as np

from operators.analytics.config import TrackerSpec
from operators.analytics.frames import SourceFrames
from operators.analytics.tracker import Tracker
from tests.support.analytics_scenes import Obj, scene, walker


def run(tracker: Tracker, chunks: list[SourceFrames]) -> tuple[list[list[int]], list]:
    ids, events = [], []
    for c in chunks:
        i, e = tracker.update(c)
        ids.append(i.tolist())
        events += e
    return ids, events


def per_object_ids(chunks: list[SourceFrames], ids: list[list[int]], objs: list[Obj]) -> list[set[int]]:
    """The set of track ids each object's boxes got (identified by the box the path gives)."""
    out: list[set[int]] = [set() for _ in objs]
    for c, cid in zip(chunks, ids, strict=True):
        for m in range(len(c.detections)):
            f = int(c.frame_index[c.detections.frame[m]])
            for k, o in enumerate(objs):
                b = o.path(f)
                if b is not None and np.allclose(b, c.detections.xyxy[m]) and cid[m] >= 0:
                    out[k].add(cid[m])
    return out


OBJS = [Obj("person", walker(10, 100, 6, 0)), Obj("person", walker(500, 300, -6, -2)),
        Obj("car", walker(200, 20, 0, 5, start=4, stop=20)), Obj("person", walker(300, 380, 2, 0, gaps=(9, 10)))]


def test_each_object_keeps_one_id_and_ids_start_at_one() -> None:
    chunks = scene(OBJS, 40)
    ids, events = run(Tracker("cam"), chunks)
    got = per_object_ids(chunks, ids, OBJS)
    assert all(len(s) == 1 for s in got), got
    assert sorted(next(iter(s)) for s in got) == [1, 2, 3, 4]
    started = [e for e in events if e.kind == "started"]
    assert sorted(e.track_id for e in started) == [1, 2, 3, 4]
    car = next(e for e in started if e.label == "car")
    assert car.first_pts == 2.0 and car.pts == 2.5 and car.frames == 2  # seen at frame 4, confirmed at frame 5
    # the car leaves at frame 20; 1.5 s (3 frames at 2 fps) later its track ends as lost
    ended = [e for e in events if e.kind == "ended"]
    assert [(e.track_id, e.reason, e.last_pts, e.frames) for e in ended] == [(car.track_id, "lost", 9.5, 16)]
    assert ended[0].pts > ended[0].last_pts + 1.5 - 1e-9
    # the 2-frame gap of object 4 is within the lost-track buffer: still one id (asserted above)


def test_ids_are_per_instance_not_global() -> None:
    chunks = scene(OBJS, 12)
    alone, _ = run(Tracker("a"), chunks)
    assert max(max(x) for x in alone) == 4
    a, b = Tracker("a"), Tracker("b")
    a_ids, b_ids = [], []
    for c in chunks:  # two sources interleaved: neither sees the other's ids (no class-level counters)
        a_ids.append(a.update(c)[0].tolist())
        b_ids.append(b.update(c)[0].tolist())
    assert a_ids == alone and b_ids == alone


def test_class_filter_and_disabled() -> None:
    chunks = scene(OBJS, 12)
    ids, events = run(Tracker("cam", TrackerSpec(classes=["car"])), chunks)
    labels = np.concatenate([c.detections.label for c in chunks])
    flat = np.concatenate([np.array(i, np.int64) for i in ids])
    assert set(flat[labels == "person"].tolist()) == {-1} and set(flat[labels == "car"].tolist()) == {-1, 1}
    ids, events = run(Tracker("cam", TrackerSpec(enabled=False)), chunks)
    assert events == [] and {x for i in ids for x in i} == {-1}


def test_end_closes_open_tracks_in_id_order() -> None:
    t = Tracker("cam")
    run(t, scene(OBJS[:2], 6))
    ev = t.end(99.0)
    assert [(e.kind, e.track_id, e.reason, e.pts) for e in ev] == [("ended", 1, "end_of_stream", 99.0),
                                                                    ("ended", 2, "end_of_stream", 99.0)]
    assert t.end() == []


def test_snapshot_restore_into_fresh_tracker_is_exact_at_every_chunk() -> None:
    chunks = scene(OBJS, 40, chunk=3)
    ref_ids, ref_events = run(Tracker("cam"), chunks)
    for k in range(1, len(chunks)):
        first = Tracker("cam")
        ids1, ev1 = run(first, chunks[:k])
        state = json.loads(json.dumps(first.snapshot()))
        ids2, ev2 = run(Tracker.from_snapshot("cam", state), chunks[k:])
        assert ids1 + ids2 == ref_ids, k
        assert ev1 + ev2 == ref_events, k
