import random
from pathlib import Path

import pytest

from operators.cameras import (
    DropOldestBuffer,
    LiveOptions,
    WallClockSampler,
    backoff_delays,
    live_kind,
    open_options,
    redact_uri,
)
from pipeline.sources import redact


def test_backoff_grows_caps_and_jitters_within_bounds() -> None:
    opts = LiveOptions(initial_backoff_s=0.5, max_backoff_s=10, multiplier=2, jitter=0.2)
    delay = backoff_delays(opts, random.Random(7))
    for n in range(1, 12):
        base = min(10.0, 0.5 * 2 ** (n - 1))
        samples = [delay(n) for _ in range(50)]
        assert all(0.8 * base - 1e-9 <= d <= 1.2 * base + 1e-9 for d in samples)
        assert max(samples) - min(samples) > 0  # jitter spreads reconnecting cameras apart


@pytest.mark.parametrize(("uri", "kind"), [
    ("rtsp://cam/1", "rtsp"), ("RTSPS://cam/1", "rtsp"), ("rtmp://h/live", "rtmp"), ("http://h/a.ts", "http"),
    ("https://h/x/index.m3u8?token=1", "hls"), ("udp://127.0.0.1:5000", "udp"), ("/dev/video2", "v4l2"),
    ("clip.mp4", None),
])
def test_live_kind(uri: str, kind: str | None) -> None:
    assert live_kind(uri) == kind


def test_open_options_per_kind() -> None:
    opts = LiveOptions(read_timeout_s=3, rtsp_transport="udp")
    fmt, o = open_options("rtsp://h/s", opts)
    assert fmt is None and o["rtsp_transport"] == "udp" and o["timeout"] == "3000000"
    _, o = open_options("https://h/s.m3u8", opts)
    assert o["rw_timeout"] == "3000000"
    fmt, _ = open_options("/dev/video0", opts)
    assert fmt == "video4linux2"


def test_options_validate() -> None:
    with pytest.raises(ValueError, match="rtsp_transport"):
        LiveOptions(rtsp_transport="sctp")
    with pytest.raises(ValueError, match="fps"):
        LiveOptions(fps=0)


def test_drop_oldest_buffer_keeps_the_newest_and_counts() -> None:
    b = DropOldestBuffer(3)
    for i in range(10):
        b.put(i)
    assert b.dropped == 7
    assert b.take(2) == [7, 8] and b.take(5) == [9] and b.take(1) == []


def test_wall_clock_sampler_skips_missed_ticks_instead_of_bursting() -> None:
    now = [0.0]
    s = WallClockSampler(4.0, clock=lambda: now[0])
    kept = []
    for t in [0.0, 0.1, 0.25, 0.3, 2.0, 2.05, 2.1, 2.25]:  # a 1.7 s gap, then frames again
        now[0] = t
        kept.append(s.due())
    assert kept == [True, False, True, False, True, False, False, True]


def test_redaction_matches_the_pipeline_and_covers_error_text() -> None:
    u = "rtsp://admin:pa:ss@10.0.0.5:554/live"
    assert redact_uri(u) == redact(u) == "rtsp://***@10.0.0.5:554/live"
    assert "pa:ss" not in redact_uri(f"cannot open {u}: timeout; also http://u:p@h/x")


def test_live_letterbox_option_and_meta(tmp_path: Path) -> None:
    """A reader resizes like the file decoder and records the mode for box mapping."""
    from operators.cameras import LiveReader
    from tests.support.videos import make_video

    with pytest.raises(ValueError, match="live resize must be one of"):
        LiveOptions(resize="fill")  # type: ignore[arg-type]
    clip = make_video(tmp_path / "c.mp4", frames=20, size=(64, 128))
    reader = LiveReader(str(clip), "cam", LiveOptions(fps=1000, size=(96, 96), resize="letterbox",
                                                      reconnect_on_end=False, buffer_frames=32)).start()
    try:
        got = None
        for _ in range(40):  # each read waits up to 0.5 s for the decoder thread; no sleep
            got = reader.read(4, timeout=0.5)
            if got is not None or reader.finished:
                break
        assert got is not None
        assert got.meta == {"cam": {"resize": "letterbox"}} and got.pixels.shape[1:] == (96, 96, 3)
        assert (got.pixels[:, :24] == 0).all() and (got.pixels[:, 72:] == 0).all()  # 128x64 -> 96x48 at y=24
    finally:
        reader.close()


def test_drop_oldest_buffer_tells_its_listener_outside_its_lock() -> None:
    """A reader process waits on all its cameras at once: each buffer tells it when a frame comes or the
    reader ends, with the buffer's lock released (the listener's thread may look at the buffer)."""
    import threading

    seen: list[int] = []

    def notify() -> None:  # looks from another thread: it would block if put() still held the lock
        t = threading.Thread(target=lambda: seen.append(len(b.take(0)) + len(b)))
        t.start()
        t.join(5)
        assert not t.is_alive()

    b = DropOldestBuffer(2, notify=notify)
    b.put("a")
    b.put("b")
    b.wake()
    assert seen == [1, 2, 2] and len(b) == 2
