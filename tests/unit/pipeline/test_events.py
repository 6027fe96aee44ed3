import json

import numpy as np
import pytest

from operators.frames import FrameBatch
from operators.results import Captions, Detections, ModelOutput, QueryAnswers, TextLines
from pipeline.events import (
    CaptionEvent,
    DetectionsEvent,
    OcrEvent,
    QueryEvent,
    Topics,
    build_frame_events,
    event_id,
    parse_event,
    to_record,
)


def batch(n: int = 2) -> FrameBatch:
    return FrameBatch(np.zeros((n, 4, 4, 3), np.uint8), ["a"] * n, np.arange(n), np.arange(n) * 0.5,
                      np.full(n, 1000.0), np.full(n, 640), np.full(n, 272))


def output(n: int = 2) -> ModelOutput:
    return ModelOutput(
        n_frames=n,
        captions=Captions([f"c{i}" for i in range(n)], kind="composed"),
        detections=Detections([0, 0, 1], [[1, 2, 3, 4], [5, 6, 7, 8], [0, 0, 10, 10]], [0.9, np.nan, 0.5],
                              ["person", "car", "bicycle"]),
        queries=QueryAnswers(["q1", "q2"], np.array([[True, False], [False, False]]),
                             np.array([[0.8, 0.1], [0.2, 0.3]], np.float32),
                             Detections([0], [[1, 2, 3, 4]], [0.8], ["q1"])),
        models={"caption": "m/cap", "detect": "m/det", "query": "m/q"},
    )


def test_one_event_per_frame_per_task_and_query() -> None:
    evs = build_frame_events(batch(), output(), run_id="r", uris={"a": "file.mp4"}, now=1001.0)
    kinds = [(e.type, e.frame_index) for e in evs]
    assert kinds == [("caption", 0), ("detections", 0), ("query", 0), ("query", 0),
                     ("caption", 1), ("detections", 1), ("query", 1), ("query", 1)]
    det0 = evs[1]
    assert isinstance(det0, DetectionsEvent)
    assert [d.label for d in det0.detections] == ["person", "car"]
    assert det0.detections[1].score is None  # NaN -> null
    assert det0.frame_width == 640 and det0.latency_ms == pytest.approx(1000.0)
    q = evs[2]
    assert isinstance(q, QueryEvent) and q.matched and q.query == "q1" and len(q.boxes) == 1
    assert isinstance(evs[0], CaptionEvent) and evs[0].kind == "composed" and evs[0].source_uri == "file.mp4"


def test_ids_are_deterministic_and_distinct() -> None:
    a = build_frame_events(batch(), output(), run_id="r1", uris={}, now=1.0)
    b = build_frame_events(batch(), output(), run_id="r2", uris={}, now=2.0)
    assert [e.event_id for e in a] == [e.event_id for e in b]
    assert len({e.event_id for e in a}) == len(a)
    assert event_id("s", 1.0, "t") != event_id("s", 1.000001, "t")


def test_record_round_trip_with_cloudevents_headers() -> None:
    ev = build_frame_events(batch(), output(), run_id="r", uris={}, now=1.0)[1]
    topic, key, value, headers = to_record(ev, Topics())
    assert topic == "framewire.detections" and key == b"a"
    h = dict(headers)
    assert h["ce_specversion"] == b"1.0" and h["ce_type"] == b"io.framewire.detections.v1"
    assert h["ce_id"].decode() == ev.event_id and h["content-type"] == b"application/json"
    assert parse_event(value) == ev
    assert json.loads(value)["schema_version"] == 1


def test_mismatched_output_is_rejected() -> None:
    with pytest.raises(ValueError, match="3 frames"):
        build_frame_events(batch(2), ModelOutput(n_frames=3), run_id="r", uris={})


def test_parse_rejects_foreign_values() -> None:
    with pytest.raises(ValueError):
        parse_event(b'{"type": "caption"}')


def test_ocr_lines_become_one_event_per_frame_on_the_ocr_topic() -> None:
    quad = [[10, 20], [90, 20], [90, 40], [10, 40]]
    text = TextLines([1, 1], [quad, np.add(quad, 50)], ["EXIT 12", "PIZZA"], [0.97, 0.81])
    out = ModelOutput(n_frames=2, text=text, models={"ocr": "m/ocr"})
    evs = build_frame_events(batch(), out, run_id="r", uris={}, now=1.0)
    assert [(e.type, e.frame_index) for e in evs] == [("ocr", 0), ("ocr", 1)]
    assert isinstance(evs[1], OcrEvent) and evs[0].lines == []  # type: ignore[attr-defined]
    first = evs[1].lines[0]
    assert (first.text, first.score, first.box) == ("EXIT 12", 0.97, (10.0, 20.0, 90.0, 40.0))
    assert first.polygon == [(10.0, 20.0), (90.0, 20.0), (90.0, 40.0), (10.0, 40.0)]
    topic, _, value, headers = to_record(evs[1], Topics("fw"))
    assert topic == "fw.ocr" and dict(headers)["ce_type"] == b"io.framewire.ocr.v1"
    assert parse_event(value) == evs[1]
    assert "fw.ocr" in Topics("fw").all()


def test_answers_become_answer_events_on_the_queries_topic() -> None:
    from operators.results import Answers
    from pipeline.events import AnswerEvent

    out = ModelOutput(n_frames=2, answers=Answers(["how many people?", "weather?"], [["two", "none"], ["sunny", ""]]),
                      models={"ask": "m/vqa"})
    evs = build_frame_events(batch(), out, run_id="r", uris={}, now=1.0)
    assert [(e.type, e.frame_index) for e in evs] == [("answer", 0), ("answer", 0), ("answer", 1), ("answer", 1)]
    a = evs[2]
    assert isinstance(a, AnswerEvent) and (a.question, a.answer, a.model) == ("how many people?", "none", "m/vqa")
    assert len({e.event_id for e in evs}) == 4
    topic, _, value, headers = to_record(a, Topics("fw"))
    assert topic == "fw.queries" and dict(headers)["ce_type"] == b"io.framewire.answer.v1"
    assert parse_event(value) == a
    short = ModelOutput(n_frames=3, answers=Answers(["q"], [["a", "b"]]), models={"ask": "m"})
    with pytest.raises(ValueError, match="answers do not cover"):
        build_frame_events(batch(3), short, run_id="r", uris={}, now=1.0)
    with pytest.raises(ValueError, match="rows of text"):
        Answers(["q"], [])


def test_detection_masks_travel_with_their_box_index() -> None:
    from operators.masks import box_mask, compress_counts, decode_rle, encode_rle
    from operators.results import Segment

    seg = Segment((272, 640), compress_counts(encode_rle(box_mask([0, 0, 10, 10], 272, 640))), "box")
    poly = Segment((272, 640), compress_counts(encode_rle(box_mask([1, 2, 3, 4], 272, 640))), "polygon",
                   ((1.0, 2.0, 3.0, 2.0, 3.0, 4.0),))
    dets = Detections([0, 0, 1], [[1, 2, 3, 4], [5, 6, 7, 8], [0, 0, 10, 10]], [0.9, 0.1, 0.5], ["a", "b", "c"],
                      (poly, None, seg))
    evs = build_frame_events(batch(), ModelOutput(n_frames=2, detections=dets, models={"detect": "m"}), run_id="r",
                             uris={}, now=1.0)
    d0, d1 = evs
    assert isinstance(d0, DetectionsEvent) and [m.box for m in d0.masks] == [0]  # box 1 has no mask
    assert d0.masks[0].source == "polygon" and d0.masks[0].polygons == [[1.0, 2.0, 3.0, 2.0, 3.0, 4.0]]
    assert [m.box for m in d1.masks] == [0] and d1.masks[0].source == "box"  # indices are per frame
    assert decode_rle(d1.masks[0].counts, d1.masks[0].size).sum() == 100
    assert parse_event(to_record(d1, Topics())[2]) == d1
    plain = build_frame_events(batch(), output(), run_id="r", uris={}, now=1.0)[1]
    assert plain.masks == []  # type: ignore[attr-defined]  # detectors without masks: an empty list
    with pytest.raises(ValueError, match="masks"):
        Detections([0], [[1, 2, 3, 4]], [0.5], ["a"], (seg, seg))
    assert Detections.concat([dets, Detections([1], [[0, 0, 1, 1]], [0.2], ["d"])]).masks == (poly, None, seg, None)
