from pathlib import Path

import numpy as np
import pytest

from operators.decode import DecodeError, DecodeOptions, FpsSampler, decode, probe
from tests.support.videos import make_video, not_a_video, truncate


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("v") / "ramp.mp4", frames=50, fps=25, size=(96, 128))


def test_probe_reads_size_rate_duration(clip: Path) -> None:
    info = probe(str(clip))
    assert (info.width, info.height) == (128, 96)
    assert info.fps == pytest.approx(25)
    assert info.duration == pytest.approx(2.0, abs=0.1)


def test_every_frame_in_order_with_source_size(clip: Path) -> None:
    batches = list(decode(str(clip), "c", DecodeOptions(fps=None, chunk=16)))
    assert [len(b) for b in batches] == [16, 16, 16, 2]
    idx = np.concatenate([b.frame_index for b in batches])
    assert idx.tolist() == list(range(50))
    pts = np.concatenate([b.pts for b in batches])
    assert np.all(np.diff(pts) > 0)
    assert batches[0].pixels.shape[1:] == (96, 128, 3)
    assert set(batches[0].source_id.tolist()) == {"c"}


def test_fps_sampling_keeps_one_frame_per_period(clip: Path) -> None:
    frames = [b for b in decode(str(clip), "c", DecodeOptions(fps=5, chunk=100))][0]
    assert frames.pts.tolist() == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8])


def test_resize_on_decode_keeps_original_size(clip: Path) -> None:
    b = next(decode(str(clip), "c", DecodeOptions(fps=2, size=(64, 48))))
    assert b.pixels.shape[1:] == (64, 48, 3)
    assert b.orig_width.tolist()[0] == 128 and b.orig_height.tolist()[0] == 96


def test_pixels_follow_the_content(clip: Path) -> None:
    b = next(decode(str(clip), "c", DecodeOptions(fps=None, chunk=50)))
    blue = b.pixels[..., 2].reshape(len(b), -1).mean(1)
    assert blue[-1] > blue[0] + 150  # the clip ramps blue from 0 to 255


def test_keyframes_only(clip: Path) -> None:
    b = next(decode(str(clip), "c", DecodeOptions(fps=None, keyframes_only=True, chunk=100)))
    assert b.frame_index.tolist() == [0, 1, 2, 3, 4]  # index counts decoded frames
    assert b.pts.tolist() == pytest.approx([0.0, 0.4, 0.8, 1.2, 1.6])  # gop 10 at 25 fps


def test_resume_after_pts_and_max_frames(clip: Path) -> None:
    b = next(decode(str(clip), "c", DecodeOptions(fps=5, chunk=100, start_after_pts=0.8)))
    assert b.pts[0] == pytest.approx(1.0)
    b = next(decode(str(clip), "c", DecodeOptions(fps=None, chunk=100, max_frames=7)))
    assert len(b) == 7


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(DecodeError, match="not found") as ei:
        list(decode(str(tmp_path / "nope.mp4"), "x", DecodeOptions()))
    assert ei.value.stage == "open" and isinstance(ei.value, OSError)


def test_not_a_video(tmp_path: Path) -> None:
    with pytest.raises(DecodeError, match="not a video") as ei:
        list(decode(str(not_a_video(tmp_path / "x.mp4")), "x", DecodeOptions()))
    assert "x.mp4" in str(ei.value)


def test_truncated_file_fails_cleanly(clip: Path, tmp_path: Path) -> None:
    bad = truncate(clip, tmp_path / "t.mp4", 0.5)
    with pytest.raises(DecodeError):
        list(decode(str(bad), "x", DecodeOptions()))


def test_sampler_snaps_over_gaps() -> None:
    s = FpsSampler(1.0)
    kept = [t for t in [0.0, 0.5, 1.0, 5.2, 5.5, 6.1, 6.2, 7.0] if s.keep(t)]
    assert kept == [0.0, 1.0, 5.2, 6.1, 7.0]


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="fps"):
        DecodeOptions(fps=0)


# ---- letterbox on decode -----------------------------------------------------------------------
RECT = (400, 80, 560, 200)  # x1, y1, x2, y2 of a white rectangle on a 640x272 grey frame


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 640x272 clip (bikes.mp4's shape) with a white rectangle at RECT on mid grey."""
    import av

    path = tmp_path_factory.mktemp("wide") / "rect.mp4"
    img = np.full((272, 640, 3), 128, np.uint8)
    x1, y1, x2, y2 = RECT
    img[y1:y2, x1:x2] = 255
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 640, 272, "yuv420p"
        stream.options = {"crf": "10"}
        for i in range(4):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for pkt in stream.encode(frame):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    return path


def _white_box(px: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(px.mean(-1) > 192)
    return np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)


def test_letterbox_placement_and_meta(wide: Path) -> None:
    from operators.decode import LETTERBOX_PAD
    from operators.geometry import letterbox

    b = next(decode(str(wide), "w", DecodeOptions(fps=None, size=(512, 512), resize="letterbox")))
    assert b.meta == {"w": {"resize": "letterbox"}} and b.pixels.shape[1:] == (512, 512, 3)
    lb = letterbox(640, 272, 512, 512)
    assert (lb.x, lb.y, lb.w, lb.h) == (0, 147, 512, 218)
    px = b.pixels[0].astype(int)
    assert (px[:lb.y] == LETTERBOX_PAD).all() and (px[lb.y + lb.h:] == LETTERBOX_PAD).all()  # bars: exact
    assert abs(px[lb.y + 5:lb.y + lb.h - 5, 5:100].mean() - 128) < 4  # the picture fills the band between them
    stretched = next(decode(str(wide), "w", DecodeOptions(fps=None, size=(512, 512))))
    assert stretched.meta == {"w": {"resize": "stretch"}}
    assert abs(stretched.pixels[0, :100].astype(int).mean() - 128) < 4  # no bars when stretched


@pytest.mark.parametrize("mode", ["letterbox", "stretch"])
def test_boxes_map_back_to_source_pixels(wide: Path, mode: str) -> None:
    """A rectangle found in the decoded model input lands back on its source coordinates."""
    from operators.geometry import batch_to_source_xyxy

    b = next(decode(str(wide), "w", DecodeOptions(fps=None, size=(512, 512), resize=mode)))  # type: ignore[arg-type]
    found = _white_box(b.pixels[0])
    back = batch_to_source_xyxy(b, 0, found)
    np.testing.assert_allclose(back[0], RECT, atol=2.5)  # scaling blurs the edge by about a pixel


def test_bad_resize_mode() -> None:
    with pytest.raises(ValueError, match="resize must be one of"):
        DecodeOptions(resize="crop")  # type: ignore[arg-type]
