"""Thumbnails: aspect ratio, the size cap, and one event per frame that decodes back to an image."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image
from skimage import data

from operators.frames import FrameBatch
from pipeline.events import ThumbnailEvent, Topics, build_thumbnail_events, parse_event, to_record
from pipeline.events.thumbnails import encode_thumbnail, thumbnail_size


def _squashed(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A real photo resized to a model's input (aspect ratio not kept), as the decoder hands it on."""
    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BILINEAR))


def test_keeps_the_source_aspect_ratio_from_squashed_model_pixels() -> None:
    px = _squashed(data.astronaut(), (512, 512))
    jpeg, w, h = encode_thumbnail(px, 640, 272, max_side=160, quality=70, max_bytes=16384)  # type: ignore[misc]
    assert (w, h) == (160, 68)
    img = Image.open(io.BytesIO(jpeg))
    assert img.format == "JPEG" and img.size == (160, 68) and img.mode == "RGB"


def test_size_cap_lowers_quality_then_size_and_is_never_exceeded() -> None:
    px = _squashed(data.coffee(), (768, 768))
    big, w0, _ = encode_thumbnail(px, 600, 400, max_side=320, quality=95, max_bytes=262144)  # type: ignore[misc]
    for cap in (len(big) // 2, 3000, 1200):
        jpeg, w, h = encode_thumbnail(px, 600, 400, max_side=320, quality=95, max_bytes=cap)  # type: ignore[misc]
        assert len(jpeg) <= cap
        assert abs(w / h - 1.5) < 0.05 and w <= w0
    assert encode_thumbnail(px, 600, 400, max_side=320, quality=95, max_bytes=100) is None


def test_never_larger_than_the_pixels_at_hand() -> None:
    assert thumbnail_size(640, 272, 160, pixels_wh=(64, 48)) == (64, 27)
    assert thumbnail_size(100, 50, 160) == (100, 50)


def test_rejects_non_rgb() -> None:
    with pytest.raises(ValueError, match="RGB uint8"):
        encode_thumbnail(np.zeros((8, 8), np.uint8), 8, 8)


def test_one_event_per_frame_round_trips_through_a_record() -> None:
    px = np.stack([_squashed(data.chelsea(), (96, 64)), _squashed(data.astronaut(), (96, 64))])
    batch = FrameBatch(pixels=px, source_id=np.array(["cam1", "cam2"]), frame_index=np.array([0, 5]),
                       pts=np.array([0.0, 2.5]), wall_time=np.array([1000.0, 1000.5]),
                       orig_width=np.array([451, 512]), orig_height=np.array([300, 512]))
    events = build_thumbnail_events(batch, run_id="r", uris={"cam1": "a.mp4"}, max_side=48, max_bytes=4096,
                                    now=1001.0)
    assert [(e.source_id, e.pts, e.width, e.height) for e in events] == [("cam1", 0.0, 48, 32), ("cam2", 2.5, 48, 48)]
    topic, key, value, headers = to_record(events[0], Topics("fw"))
    assert topic == "fw.thumbnails" and key == b"cam1"
    assert dict(headers)["ce_type"] == b"io.framewire.thumbnail.v1"
    back = parse_event(value)
    assert isinstance(back, ThumbnailEvent) and back == events[0] and back.source_uri == "a.mp4"
    jpeg = base64.b64decode(back.jpeg_base64)
    assert len(jpeg) == back.size_bytes <= 4096 and Image.open(io.BytesIO(jpeg)).size == (48, 32)
    again = build_thumbnail_events(batch, run_id="r2", uris={}, max_side=48, max_bytes=4096)
    assert [e.event_id for e in again] == [e.event_id for e in events]  # deterministic ids
    from pipeline.cli.progress import describe_event

    assert describe_event(events[0]) == f"cam1 t=   0.00s thumbnail 48x32 jpeg, {events[0].size_bytes} bytes"


def test_every_s_keeps_one_frame_per_slot_whatever_the_batches() -> None:
    from pipeline.events.thumbnails import wanted_rows

    sids = np.array(["a", "b"] * 20)
    pts = np.repeat(np.arange(20) * 0.2, 2)  # two sources sampled at 5 fps, 4 s each
    whole = {(sids[r], round(float(pts[r]), 3)) for r in wanted_rows(sids, pts, every_s=0.5, step_s=0.2)}
    assert whole == {(s, t) for s in "ab" for t in (0.0, 0.6, 1.0, 1.6, 2.0, 2.6, 3.0, 3.6)}  # first frame of each slot
    order = np.random.default_rng(0).permutation(len(pts))  # replicas see any split and order
    parts = set()
    for chunk in np.array_split(order, 7):
        parts |= {(sids[chunk][r], round(float(pts[chunk][r]), 3))
                  for r in wanted_rows(sids[chunk], pts[chunk], every_s=0.5, step_s=0.2)}
    assert parts == whole
    assert wanted_rows(sids, pts, every_s=0.0) == list(range(len(pts)))
    assert len(wanted_rows(sids[::2], pts[::2], every_s=0.5)) == 8  # the step found from the frames' own gaps


def test_thumbnail_events_follow_every_s() -> None:
    px = np.stack([_squashed(data.chelsea(), (96, 64))] * 6)
    batch = FrameBatch(pixels=px, source_id=np.array(["cam1"] * 6), frame_index=np.arange(6),
                       pts=np.arange(6) * 0.25, wall_time=np.full(6, 1000.0), orig_width=np.full(6, 451),
                       orig_height=np.full(6, 300))
    events = build_thumbnail_events(batch, run_id="r", uris={}, max_side=48, every_s=0.5, step_s=0.25)
    assert [e.pts for e in events] == [0.0, 0.5, 1.0]
