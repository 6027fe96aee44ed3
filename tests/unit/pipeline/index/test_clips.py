"""Clips cut from the real sample clips with PyAV: remux from the keyframe, exact re-encode, drawn boxes."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.index.clips import cut_clip


def _probe(path: Path) -> tuple[float, float, int, list[np.ndarray]]:
    """(first pts in s, container duration in s, frame count, the frames as RGB arrays)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = list(c.decode(s))
        return (float(frames[0].pts * s.time_base), c.duration / 1e6, len(frames),
                [f.to_ndarray(format="rgb24") for f in frames])


def _keyframes(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return sorted(float(p.pts * s.time_base) for p in c.demux(s) if p.is_keyframe and p.pts is not None)


def test_remux_starts_on_the_keyframe_before_the_start(bikes: Path, tmp_path: Path) -> None:
    kf = max(k for k in _keyframes(bikes) if k <= 4.2)
    info = cut_clip(str(bikes), tmp_path / "r.mp4", 4.2, 6.0)
    first, dur, n, _ = _probe(tmp_path / "r.mp4")
    assert info.mode == "remux" and info.start == pytest.approx(kf) and kf < 4.2
    assert first == 0.0 and n == info.frames
    assert 6.0 - kf - 0.05 <= dur <= 6.0 - kf + 0.25  # ends at the first packet decoded after 6.0 (B-frames)


def test_exact_reencode_is_frame_accurate(samples_dir: Path, tmp_path: Path) -> None:
    src = samples_dir / "carphone_pristine.mp4"
    with av.open(str(src)) as c:
        rate = float(c.streams.video[0].average_rate)
    info = cut_clip(str(src), tmp_path / "e.mp4", 1.0, 2.5, exact=True)
    first, dur, n, _ = _probe(tmp_path / "e.mp4")
    assert info.mode == "exact" and info.start == pytest.approx(1.0, abs=1 / rate)
    assert first == 0.0 and n == round(1.5 * rate) and dur == pytest.approx(1.5, abs=1.5 / rate)


def test_boxes_are_drawn_on_the_frames_they_belong_to(bikes: Path, tmp_path: Path) -> None:
    det = [(4.5, [{"label": "bicycle", "score": 0.7, "box": [100, 60, 300, 200], "track_id": 3}])]
    plain = _probe(Path(cut_clip(str(bikes), tmp_path / "p.mp4", 4.0, 5.0, exact=True).path))[3]
    drawn = _probe(Path(cut_clip(str(bikes), tmp_path / "b.mp4", 4.0, 5.0, boxes=det, hold=0.3).path))[3]
    assert len(plain) == len(drawn) == 25
    # the box's bottom edge (y = 200, 2 px), away from the label text
    diff = [float(np.abs(a.astype(int) - b.astype(int))[199:202, 120:280].mean())
            for a, b in zip(plain, drawn, strict=True)]
    assert max(diff[:12]) < 8.0  # before 4.5 s: no detections yet (only colour-conversion rounding)
    assert min(diff[13:20]) > 30.0  # 4.5 s .. 4.8 s: the box is there
    assert max(diff[21:]) < 8.0  # held at most 0.3 s


def test_bad_requests_name_the_problem(bikes: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not after its start"):
        cut_clip(str(bikes), tmp_path / "x.mp4", 3.0, 2.0)
    with pytest.raises(ValueError, match="past the end"):
        cut_clip(str(bikes), tmp_path / "x.mp4", 30.0, 32.0)
    (tmp_path / "t.mp4").write_text("not a video")
    with pytest.raises(ValueError, match="cannot open"):
        cut_clip(str(tmp_path / "t.mp4"), tmp_path / "x.mp4", 0.0, 1.0)
