"""Zones (enter/exit/dwell/occupancy) and lines (crossings per direction) on tracks with known paths."""

from __future__ import annotations

import json

import numpy as np
import pytest

from operators.analytics.config import LineSpec, ZoneSpec
from operators.analytics.frames import SourceFrames
from operators.analytics.lines import LineCounter, sides
from operators.analytics.tracker import Tracker
from operators.analytics.zones import ZoneCounter
from tests.support.analytics_scenes import Obj, scene, walker

# bottom-centre of a 40x80 box at x0 + 10 f: x = x0 + 20 + 10 f, y = y0 + 80
ZONE = ZoneSpec(name="bay", polygon=[(200, 0), (400, 0), (400, 480), (200, 480)], coords="pixels")


def tracked(objs: list[Obj], n: int, chunk: int = 4) -> list[tuple[SourceFrames, np.ndarray, list]]:
    t = Tracker("cam")
    out = []
    for c in scene(objs, n, chunk):
        ids, ev = t.update(c)
        out.append((c, ids, [e for e in ev if e.kind == "ended"]))
    return out


def zone_run(zc: ZoneCounter, data: list) -> list:
    return [e for c, ids, ended in data for e in zc.update(c, ids, ended)]


def test_enter_exit_dwell_and_occupancy() -> None:
    # A: anchor x = 30 + 10 f: inside [200, 400] at frames 17..37. B: starts inside (x = 310), leaves at x > 400
    objs = [Obj("person", walker(10, 100, 10, 0)), Obj("person", walker(290, 300, 10, 0))]
    zc = ZoneCounter("cam", [ZONE])
    events = zone_run(zc, tracked(objs, 48))
    got = [(e.kind, e.track_id, e.frame_index, e.occupancy, e.dwell_s, e.reason) for e in events]
    b_in, b_out = 1, 10  # B is confirmed at frame 1 (min_frames=2); x = 310 + 10 f > 400 from f = 10
    assert got == [
        ("entered", 2, b_in, 1, None, None),
        ("exited", 2, b_out, 0, pytest.approx((b_out - 1 - b_in) / 2), "left"),
        ("entered", 1, 17, 1, None, None),
        ("exited", 1, 38, 0, pytest.approx((37 - 17) / 2), "left"),
    ]
    assert zc.occupancy() == {"bay": 0}


def test_lost_track_exits_and_end_of_stream_exits() -> None:
    objs = [Obj("person", walker(290, 100, 0, 0, stop=6)), Obj("car", walker(250, 300, 0, 0))]
    zc = ZoneCounter("cam", [ZONE])
    events = zone_run(zc, tracked(objs, 20))
    lost = [e for e in events if e.kind == "exited"]
    assert [(e.label, e.reason, e.dwell_s) for e in lost] == [("person", "lost", pytest.approx(2.0))]  # frames 1..5
    end = zc.end(50.0)
    assert [(e.label, e.reason, e.pts, e.occupancy) for e in end] == [("car", "end_of_stream", 50.0, 0)]


def test_class_filter_normalized_zone_and_inside_per_frame() -> None:
    objs = [Obj("person", walker(290, 100, 0, 0)), Obj("car", walker(250, 300, 0, 0))]
    zone = ZoneSpec(name="left-half", polygon=[(0, 0), (0.5, 0), (0.5, 1), (0, 1)], classes=["car"])
    zc = ZoneCounter("cam", [zone])
    data = tracked(objs, 6, chunk=6)
    events = zone_run(zc, data)
    assert [(e.kind, e.label) for e in events] == [("entered", "car")]  # the person is filtered out
    assert zc.inside_per_frame["left-half"] == [(), (1,), (1,), (1,), (1,), (1,)]


def test_zone_snapshot_restore_is_exact() -> None:
    objs = [Obj("person", walker(10, 100, 10, 0)), Obj("person", walker(290, 300, 10, 0))]
    data = tracked(objs, 48, chunk=4)
    ref = zone_run(ZoneCounter("cam", [ZONE]), data)
    for k in range(1, len(data)):
        a = ZoneCounter("cam", [ZONE])
        first = zone_run(a, data[:k])
        b = ZoneCounter("cam", [ZONE])
        b.restore(json.loads(json.dumps(a.snapshot())))
        assert first + zone_run(b, data[k:]) == ref


# ---- lines -----------------------------------------------------------------------------------
DOOR = LineSpec(name="door", start=(320, 0), end=(320, 480), coords="pixels")  # vertical, pointing down


def test_sides_match_supervision_left() -> None:
    left, ok = sides(np.array([[330.0, 10.0], [310.0, 10.0], [330.0, 500.0]]), (320, 0), (320, 480))
    assert left.tolist()[:2] == [True, False] and ok.tolist() == [True, True, False]  # arrow down: left is +x


def line_run(lc: LineCounter, data: list) -> list:
    return [e for c, ids, ended in data for e in lc.update(c, ids, ended)]


def test_crossings_counted_exactly_per_direction() -> None:
    objs = [Obj("person", walker(100, 100, 12, 0)),            # crosses left -> right: into the left side: in
            Obj("person", walker(560, 250, -12, 0)),            # right -> left: out
            Obj("car", walker(150, 20, 0, 0)),                  # never crosses
            Obj("person", walker(250, 380, 8, 0, stop=12)),     # x: 270..358 anchor crosses once, then vanishes
            Obj("person", walker(100, 420, 12, 0)),             # below the segment's end (y = 500): not counted
            ]
    lc = LineCounter("cam", [DOOR])
    events = line_run(lc, tracked(objs, 40))
    assert sorted((e.direction, e.label) for e in events) == [("in", "person"), ("in", "person"), ("out", "person")]
    assert len({e.track_id for e in events}) == 3
    assert lc.counts() == {"door": {"in": {"person": 2}, "out": {"person": 1}}}
    assert events[-1].in_counts == {"person": 2} or events[-1].out_counts == {"person": 1}
    flipped = LineCounter("cam", [DOOR.model_copy(update={"in_side": "right"})])
    assert flipped.counts()["door"] == {"in": {}, "out": {}}
    line_run(flipped, tracked(objs, 40))
    assert flipped.counts() == {"door": {"in": {"person": 1}, "out": {"person": 2}}}


def test_back_and_forth_and_min_crossing_frames() -> None:
    def pace(f: int) -> tuple[float, float, float, float]:  # anchor x = box x + 20; the line is at x = 320
        x = 270 + 4 * f if f < 10 else (306 - 4 * (f - 10) if f < 20 else 270 + 4 * (f - 20))
        return (x, 100.0, x + 40, 180.0)

    def step(f: int) -> tuple[float, float, float, float]:  # one frame over the line and back
        x = 304.0 if f == 5 else 296.0
        return (x, 300.0, x + 40, 380.0)
    data = tracked([Obj("person", pace), Obj("car", step)], 32)
    every = line_run(LineCounter("cam", [DOOR]), data)
    assert [(e.label, e.direction, e.frame_index) for e in every] == [
        ("car", "in", 5), ("car", "out", 6), ("person", "in", 8), ("person", "out", 12), ("person", "in", 28)]
    assert every[-1].in_counts == {"car": 1, "person": 2} and every[-1].out_counts == {"car": 1, "person": 1}
    calm = line_run(LineCounter("cam", [DOOR.model_copy(update={"min_crossing_frames": 2})]), data)
    assert [(e.label, e.direction, e.frame_index) for e in calm] == [  # one-frame excursions are noise
        ("person", "in", 9), ("person", "out", 13), ("person", "in", 29)]


def test_line_snapshot_restore_is_exact() -> None:
    objs = [Obj("person", walker(100, 100, 12, 0)), Obj("person", walker(560, 250, -12, 0))]
    data = tracked(objs, 40, chunk=4)
    ref = line_run(LineCounter("cam", [DOOR]), data)
    assert len(ref) == 2
    for k in range(1, len(data)):
        a = LineCounter("cam", [DOOR])
        first = line_run(a, data[:k])
        b = LineCounter("cam", [DOOR])
        b.restore(json.loads(json.dumps(a.snapshot())))
        assert first + line_run(b, data[k:]) == ref
