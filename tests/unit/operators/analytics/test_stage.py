"""SourceStage: the reorder buffer, event order, end of stream, exact resume through bytes; SourceFrames slicing."""

from __future__ import annotations

import numpy as np
import pytest

from operators.analytics.config import AnalyticsSpec
from operators.analytics.frames import SourceFrames
from operators.analytics.stage import SourceStage, StageOutput
from operators.frames import FrameBatch
from operators.results import Captions, Detections, ModelOutput, QueryAnswers
from tests.support.analytics_scenes import Obj, scene, walker

SPEC = AnalyticsSpec.model_validate({
    "zones": [{"name": "bay", "polygon": [[200, 0], [400, 0], [400, 480], [200, 480]], "coords": "pixels"}],
    "lines": [{"name": "door", "start": [0.5, 0], "end": [0.5, 1]}],
    "windows": {"window_s": 4},
    "queries": {"on_frames": 2, "off_frames": 2},
})
OBJS = [Obj("person", walker(10, 100, 10, 0)), Obj("person", walker(560, 250, -12, 0)),
        Obj("car", walker(250, 300, 0, 0, stop=20)), Obj("person", walker(100, 20, 3, 1, gaps=(14,)))]
N = 44
QUERY = [(f // 5) % 2 == 1 for f in range(N)]


def chunks(chunk: int = 4) -> list[SourceFrames]:
    return scene(OBJS, N, chunk, queries={"a car": QUERY}, captions=True)


def flat(outs: list[StageOutput]) -> tuple[list, list]:
    ids = [(c.seq, c.track_ids.tolist()) for o in outs for c in o.chunks]
    return ids, [e for o in outs for e in o.events]


def run_in_order(stage: SourceStage, cs: list[SourceFrames]) -> list[StageOutput]:
    return [stage.push(i, c) for i, c in enumerate(cs)] + [stage.end()]


def test_every_operator_reports_and_events_are_ordered() -> None:
    outs = run_in_order(SourceStage("cam", SPEC), chunks())
    ids, events = flat(outs)
    kinds = {type(e).__name__ for e in events}
    assert kinds == {"TrackEvent", "ZoneEvent", "LineEvent", "QueryInterval", "WindowSummary"}
    for chunk in (c for o in outs for c in o.chunks):
        assert [e.frame_index for e in chunk.events] == sorted(e.frame_index for e in chunk.events)
        # a window is summarised when the next one's first frame arrives: its frame may be in an earlier chunk
        own = {e.frame_index for e in chunk.events if type(e).__name__ != "WindowSummary"}
        assert own <= set(chunk.frames.frame_index.tolist())
    assert len({e.key for e in events}) == len(events)  # identities are unique
    windows = [e for e in events if type(e).__name__ == "WindowSummary"]
    assert len(windows) == 6 and windows[-1].complete is False  # 22 s of video in 4 s windows
    end = outs[-1].end_events
    assert [type(e).__name__ for e in end][-1] == "WindowSummary"
    assert {(type(e).__name__, getattr(e, "reason", None)) for e in end[:-1]} <= {
        ("TrackEvent", "end_of_stream"), ("ZoneEvent", "end_of_stream"), ("QueryInterval", "end_of_stream")}
    open_at_end = [e for e in end if type(e).__name__ == "TrackEvent"]
    assert len(open_at_end) == 3  # the car left at frame 20; three people walk on


def test_out_of_order_chunks_give_the_same_output_as_in_order() -> None:
    cs = chunks()
    ref_ids, ref_events = flat(run_in_order(SourceStage("cam", SPEC), cs))
    order = [1, 0, 3, 4, 2, 6, 5, 7, 10, 9, 8]
    stage = SourceStage("cam", SPEC)
    outs = []
    for seq in order:
        outs.append(stage.push(seq, cs[seq]))
    assert outs[0].chunks == [] and outs[0].waiting == [1]
    assert [c.seq for c in outs[1].chunks] == [0, 1]
    assert outs[2].waiting == [3] and outs[3].waiting == [3, 4]
    outs.append(stage.end())
    ids, events = flat(outs)
    assert sorted(ids) == ref_ids and events == ref_events


def test_duplicates_are_dropped_and_gaps_block_end() -> None:
    cs = chunks()
    stage = SourceStage("cam", SPEC)
    stage.push(0, cs[0])
    assert stage.push(0, cs[0]).duplicates == [0]
    stage.push(2, cs[2])
    assert stage.push(2, cs[2]).duplicates == [2]
    with pytest.raises(ValueError, match=r"chunks \[2\] still wait for seq 1"):
        stage.end()
    out = stage.end(force=True)
    assert [c.seq for c in out.chunks] == [2] and out.next_seq == 3
    with pytest.raises(ValueError, match="already ended"):
        stage.push(3, cs[3])
    with pytest.raises(ValueError, match="got frames of 'other'"):
        SourceStage("cam").push(0, scene(OBJS, 2, source="other")[0])


def test_snapshot_to_bytes_and_restore_into_a_fresh_stage_is_exact_at_every_chunk() -> None:
    cs = chunks(chunk=3)
    ref_ids, ref_events = flat(run_in_order(SourceStage("cam", SPEC), cs))
    for k in range(1, len(cs)):
        first = SourceStage("cam", SPEC)
        outs = [first.push(i, cs[i]) for i in range(k)]
        if k + 1 < len(cs):
            first.push(k + 1, cs[k + 1])  # waiting chunks are not in the snapshot: the runtime resends them
        resumed = SourceStage.from_bytes(first.to_bytes(), SPEC)
        assert resumed.next_seq == k and resumed.waiting == []
        outs += run_in_order_from(resumed, cs, k)
        ids, events = flat(outs)
        assert ids == ref_ids, k
        assert events == ref_events, k


def run_in_order_from(stage: SourceStage, cs: list[SourceFrames], k: int) -> list[StageOutput]:
    return [stage.push(i, cs[i]) for i in range(k, len(cs))] + [stage.end()]


def test_restore_refuses_another_source() -> None:
    data = SourceStage("cam", SPEC).to_bytes()
    with pytest.raises(ValueError, match="does not fit"):
        SourceStage("other", SPEC).restore(__import__("json").loads(data))


# ---- SourceFrames ----------------------------------------------------------------------------
def test_from_batch_slices_one_source_and_renumbers_rows() -> None:
    n = 5
    batch = FrameBatch(np.zeros((n, 4, 4, 3), np.uint8), np.array(["a", "b", "a", "b", "a"]),
                       np.array([0, 0, 1, 1, 2]), np.array([0.0, 0.0, 0.5, 0.5, 1.0]), np.arange(n) + 10.0,
                       np.array([640, 320, 640, 320, 640]), np.array([480, 240, 480, 240, 480]))
    dets = Detections(np.array([4, 1, 0, 2, 2]), np.arange(20).reshape(5, 4), np.linspace(0.5, 0.9, 5),
                      np.array(["car", "dog", "person", "cat", "cow"]))
    out = ModelOutput(n, Captions([f"c{i}" for i in range(n)]), dets,
                      QueryAnswers(["q"], np.array([[1, 0, 0, 1, 1]], bool), np.arange(n, dtype=np.float32)[None]))
    a = SourceFrames.from_batch(batch, out, "a")
    assert a.frame_index.tolist() == [0, 1, 2] and (a.width, a.height) == (640, 480)
    assert a.detections.frame.tolist() == [0, 1, 1, 2] and a.detections.label.tolist() == ["person", "cat", "cow",
                                                                                          "car"]
    assert a.captions == ["c0", "c2", "c4"] and a.queries is not None
    assert a.queries.matched.tolist() == [[True, False, True]] and a.queries.score.tolist() == [[0.0, 2.0, 4.0]]
    b = SourceFrames.from_batch(batch, out, "b")
    assert b.detections.label.tolist() == ["dog"] and (b.width, b.height) == (320, 240)
    with pytest.raises(ValueError, match="no frames of source 'c'"):
        SourceFrames.from_batch(batch, out, "c")


def test_source_frames_validation() -> None:
    d = Detections(np.array([3]), np.zeros((1, 4)), np.ones(1), np.array(["x"]))
    with pytest.raises(ValueError, match=r"detections.frame must index rows 0..1"):
        SourceFrames("s", np.arange(2), np.arange(2.0), np.arange(2.0), 4, 4, d)
    with pytest.raises(ValueError, match="pts must be non-decreasing"):
        SourceFrames("s", np.arange(2), np.array([1.0, 0.0]), np.arange(2.0), 4, 4, Detections.empty())
