"""Window summaries (boundaries, counts, zones, lines, queries, caption) and query intervals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from operators.analytics.events import LineEvent
from operators.analytics.queries import QueryIntervals
from operators.analytics.tracker import Tracker
from operators.analytics.windows import WindowSummarizer
from operators.results import Detections
from tests.support.analytics_scenes import Obj, scene, walker


def test_window_boundaries_counts_and_tracks() -> None:
    # 2 fps, 5 s windows = 10 frames each; 25 frames -> windows 0, 1 complete, window 2 partial (5 frames)
    objs = [Obj("person", walker(10, 10, 1, 0)), Obj("person", walker(300, 10, 1, 0, stop=7)),
            Obj("car", walker(10, 300, 1, 0, start=12))]
    tr, ws = Tracker("cam"), WindowSummarizer("cam", 5.0)
    out = []
    for c in scene(objs, 25, chunk=4):
        ids, _ = tr.update(c)
        out += ws.update(c, ids)
    out += ws.end()
    assert [(w.index, w.start, w.end, w.frames, w.first_pts, w.last_pts, w.complete) for w in out] == [
        (0, 0.0, 5.0, 10, 0.0, 4.5, True), (1, 5.0, 10.0, 10, 5.0, 9.5, True), (2, 10.0, 15.0, 5, 10.0, 12.0, False)]
    w0, w1, _ = out
    assert w0.counts == {"person": {"max": 2.0, "mean": pytest.approx(1.7)}}
    assert w1.counts == {"car": {"max": 1.0, "mean": 0.8}, "person": {"max": 1.0, "mean": 1.0}}
    assert w0.unique_tracks == {"person": 2} and w1.unique_tracks == {"car": 1, "person": 1}
    assert w0.key == "window/cam/0" and w0.frame_index == 9 and w0.pts == 4.5
    assert ws.end() == []


def test_window_zone_line_query_and_caption_fields() -> None:
    n = 4
    dets = Detections(np.array([0, 1, 1, 3]), np.tile([0, 0, 5, 5], (4, 1)), np.full(4, 0.9),
                      np.array(["person", "person", "dog", "person"]))
    from operators.analytics.frames import SourceFrames
    from operators.results import QueryAnswers
    qa = QueryAnswers(["a dog"], np.array([[False, True, True, False]]), np.zeros((1, n), np.float32))
    frames = SourceFrames("cam", np.arange(n), np.arange(n) * 1.0, np.arange(n) + 100.0, 64, 48, dets,
                          ["one", "a person and a dog", "empty", "a person"], qa)
    inside = {"bay": [(), (3,), (3, 4), (4,)]}
    line = LineEvent("cam", "door", 3, "person", "in", 2.0, 102.0, 2, 2.0)
    ws = WindowSummarizer("cam", 10.0, zones=["bay"], lines=["door", "gate"])
    assert ws.update(frames, None, inside, [line]) == []
    (w,) = ws.end()
    assert w.zones == {"bay": {"max": 2.0, "mean": 1.0, "unique_tracks": 2.0}}
    assert w.lines == {"door": {"in": 1, "out": 0}, "gate": {"in": 0, "out": 0}}
    assert w.queries == {"a dog": {"frames": 2.0, "seconds": pytest.approx(2 / 4 * 3.0)}}  # partial: covers 0..3 s
    assert (w.caption, w.caption_pts) == ("a person and a dog", 1.0)  # most distinct labels
    assert json.loads(json.dumps(w.to_dict()))["caption"] == "a person and a dog"


def test_wall_clock_windows_align_to_the_epoch_and_snapshot() -> None:
    chunks = scene([Obj("person", walker(10, 10, 1, 0))], 30, chunk=4, wall0=1000.0)  # wall 1000.0 .. 1014.5
    ref_ws = WindowSummarizer("cam", 4.0, clock="wall")
    ref = [w for c in chunks for w in ref_ws.update(c)] + ref_ws.end()
    assert [(w.index, w.start, w.frames) for w in ref] == [(250, 1000.0, 8), (251, 1004.0, 8), (252, 1008.0, 8),
                                                           (253, 1012.0, 6)]
    for k in range(1, len(chunks)):
        a = WindowSummarizer("cam", 4.0, clock="wall")
        first = [w for c in chunks[:k] for w in a.update(c)]
        b = WindowSummarizer("cam", 4.0, clock="wall")
        b.restore(json.loads(json.dumps(a.snapshot())))
        assert first + [w for c in chunks[k:] for w in b.update(c)] + b.end() == ref


# ---- query intervals -------------------------------------------------------------------------
PATTERN = [0, 1, 1, 1, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1]


def intervals(qi: QueryIntervals, chunks: list) -> list:
    return [e for c in chunks for e in qi.update(c)]


def test_query_intervals_with_hysteresis_and_end() -> None:
    chunks = scene([], len(PATTERN), chunk=3, queries={"a red car": PATTERN, "never": [0] * len(PATTERN)})
    qi = QueryIntervals("cam", on_frames=3, off_frames=2)
    ev = intervals(qi, chunks) + qi.end()
    assert [(e.kind, e.query, e.started_pts, e.pts, e.frames, e.reason) for e in ev] == [
        ("started", "a red car", 0.5, 1.5, 3, None),
        ("ended", "a red car", 0.5, 4.0, 5, "unmatched"),
        ("started", "a red car", 5.0, 6.0, 3, None),
        ("ended", "a red car", 5.0, 6.5, 4, "end_of_stream"),
    ]
    assert ev[0].max_score == pytest.approx(0.8) and ev[0].key == "query/cam/a red car/0.5/started"


def test_removed_query_ends_its_match_and_snapshot_is_exact() -> None:
    chunks = scene([], len(PATTERN), chunk=3, queries={"a red car": PATTERN})
    qi = QueryIntervals("cam", 2, 2)
    intervals(qi, chunks[:2])
    assert qi.active() == ["a red car"]
    gone = scene([], 3, queries={"other": [1, 1, 1]})[0]
    ev = qi.update(gone)
    assert ev[0].reason == "removed" and ev[0].kind == "ended"
    ref_q = QueryIntervals("cam", 2, 2)
    ref = intervals(ref_q, chunks) + ref_q.end()
    for k in range(1, len(chunks)):
        a = QueryIntervals("cam", 2, 2)
        first = intervals(a, chunks[:k])
        b = QueryIntervals("cam", 2, 2)
        b.restore(json.loads(json.dumps(a.snapshot())))
        assert first + intervals(b, chunks[k:]) + b.end() == ref
