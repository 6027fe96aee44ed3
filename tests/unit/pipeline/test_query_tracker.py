import pytest

from pipeline.query_tracker import QueryTracker


def feed(t: QueryTracker, seq: list[int], source: str = "cam", query: str = "q", scores=None):
    out = []
    for i, m in enumerate(seq):
        s = None if scores is None else scores[i]
        tr = t.update(source, query, float(i), bool(m), s, 100.0 + i)
        if tr:
            out.append(tr)
    return out


def test_single_noisy_frames_neither_open_nor_close_a_match() -> None:
    t = QueryTracker(on_frames=3, off_frames=3)
    assert feed(t, [1, 0, 1, 1, 0, 1, 0, 0, 1]) == []
    assert t.active() == []


def test_start_after_n_consecutive_and_end_after_m_consecutive() -> None:
    t = QueryTracker(on_frames=3, off_frames=2)
    trs = feed(t, [0, 1, 1, 1, 1, 0, 1, 0, 0, 0], scores=[0.1, 0.6, 0.7, 0.9, 0.8, 0.2, 0.95, 0.1, 0.1, 0.1])
    assert [(tr.state, tr.pts, tr.started_pts) for tr in trs] == [("started", 3.0, 1.0), ("ended", 8.0, 1.0)]
    started, ended = trs
    assert started.started_capture == 101.0
    assert started.frames == 3 and started.max_score == pytest.approx(0.9)
    # frames 1-4 and 6 matched while open; the lone non-match at 5 did not close it
    assert ended.frames == 5 and ended.max_score == pytest.approx(0.95)
    assert t.active() == []


def test_sources_and_queries_are_tracked_apart() -> None:
    t = QueryTracker(on_frames=2, off_frames=2)
    assert feed(t, [1, 1], source="a") and feed(t, [1, 0], source="b") == []
    assert feed(t, [1, 1], source="a", query="other")
    assert sorted(t.active()) == [("a", "other"), ("a", "q")]


def test_close_ends_open_matches_of_a_source_or_query() -> None:
    t = QueryTracker(on_frames=1, off_frames=5)
    feed(t, [1], source="a")
    feed(t, [1], source="b")
    trs = t.close(source_id="a", pts=9.0)
    assert [(tr.source_id, tr.state, tr.pts) for tr in trs] == [("a", "ended", 9.0)]
    assert t.active() == [("b", "q")]
    assert [tr.source_id for tr in t.close(query="q")] == ["b"]
    assert t.active() == []


def test_rejects_zero_frames() -> None:
    with pytest.raises(ValueError, match="on_frames"):
        QueryTracker(on_frames=0)
