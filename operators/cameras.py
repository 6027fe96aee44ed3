"""Live sources (RTSP, RTMP, HTTP/HLS, UDP, V4L2 webcams) read in real time with PyAV.

A ``LiveReader`` opens the stream in a background thread, decodes every frame, keeps the
newest one and samples it by wall clock at the target fps (a camera's pts can jump,
restart or stall, the clock does not). Sampled frames wait in a small buffer that drops
the oldest when the consumer is slower than the camera, counting every drop, so what
comes out is always current. Open and read timeouts turn a stalled camera into an error
instead of a hung thread; the reader then reconnects with exponential backoff and jitter,
for ever unless ``max_attempts`` says otherwise. Every state change (connecting, live,
stalled, reconnecting, ended, failed) is recorded once, with credentials removed.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from operators.decode import resize_meta, to_rgb
from operators.frames import FrameBatch
from operators.geometry import RESIZE_MODES, ResizeMode

__all__ = ["LiveOptions", "LiveReader", "StateChange", "backoff_delays", "live_kind", "open_options", "redact_uri"]

log = logging.getLogger(__name__)

_CRED = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")
STATES = ("connecting", "live", "stalled", "reconnecting", "ended", "failed")


def redact_uri(text: str) -> str:
    """Remove ``user:password@`` from every URL in ``text`` (also inside error messages).

    >>> redact_uri("cannot open rtsp://admin:s3cret@10.0.0.5:554/live (timeout)")
    'cannot open rtsp://***@10.0.0.5:554/live (timeout)'
    """
    return _CRED.sub(r"\g<scheme>***@", text)


def live_kind(uri: str) -> str | None:
    """rtsp, rtmp, hls, http, udp, v4l2, or None for a file.

    >>> [live_kind(u) for u in ["rtsp://h/x", "https://h/x.m3u8?t=1", "http://h/s.ts", "udp://@:5000",
    ...                          "/dev/video0", "clip.mp4"]]
    ['rtsp', 'hls', 'http', 'udp', 'v4l2', None]
    """
    low = uri.lower()
    if low.startswith(("rtsp://", "rtsps://")):
        return "rtsp"
    if low.startswith(("rtmp://", "rtmps://")):
        return "rtmp"
    if low.startswith(("http://", "https://")):
        return "hls" if ".m3u8" in low.split("?", 1)[0] else "http"
    if low.startswith(("udp://", "rtp://", "srt://", "tcp://")):
        return "udp" if low.startswith("udp://") else low.split("://", 1)[0]
    if low.startswith("/dev/video"):
        return "v4l2"
    return None


@dataclass(frozen=True)
class LiveOptions:
    """How to read a camera. Times in seconds; ``size`` is (height, width) to resize to, ``resize``
    how (``stretch`` or ``letterbox``, as ``DecodeOptions.resize``)."""

    fps: float = 2.0
    size: tuple[int, int] | None = None
    resize: ResizeMode = "stretch"
    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0
    rtsp_transport: str = "tcp"
    buffer_frames: int = 4
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2
    max_attempts: int | None = None  # None: reconnect for ever
    reconnect_on_end: bool = True  # a live stream that closes is a camera that went away
    threads: int = 0  # decoder threads per camera; 0: FFmpeg's frame and slice threads (about a core's worth)

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise ValueError(f"live fps must be > 0, got {self.fps}")
        if self.rtsp_transport not in ("tcp", "udp"):
            raise ValueError(f"rtsp_transport must be tcp or udp, got {self.rtsp_transport!r}")
        if self.buffer_frames < 1:
            raise ValueError(f"buffer_frames must be >= 1, got {self.buffer_frames}")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"live resize must be one of {list(RESIZE_MODES)}, got {self.resize!r}")


def open_options(uri: str, opts: LiveOptions) -> tuple[str | None, dict[str, str]]:
    """(format, FFmpeg options) for ``uri``: low-delay demuxing plus the kind's transport options.

    Socket timeouts are in microseconds (FFmpeg 7: ``timeout`` for rtsp/tcp/udp/http).
    """
    kind = live_kind(uri)
    read_us = str(int(opts.read_timeout_s * 1e6))
    o: dict[str, str] = {"fflags": "nobuffer+discardcorrupt", "flags": "low_delay", "analyzeduration": "1000000",
                         "probesize": "1000000"}
    fmt = None
    if kind == "rtsp":
        o.update(rtsp_transport=opts.rtsp_transport, timeout=read_us)
    elif kind in ("http", "hls"):
        o.update(timeout=read_us, rw_timeout=read_us, reconnect="0")
    elif kind == "udp":
        o.update(timeout=read_us, overrun_nonfatal="1", fifo_size="1000000")
    elif kind == "rtmp":
        o.update(rw_timeout=read_us)
    elif kind == "v4l2":
        fmt = "video4linux2"
        o = {"framerate": str(max(1, int(round(opts.fps * 4))))}
    return fmt, o


def backoff_delays(opts: LiveOptions, rng: random.Random | None = None) -> Callable[[int], float]:
    """Delay before reconnect attempt n (1-based): initial * multiplier**(n-1), capped, +- jitter.

    >>> d = backoff_delays(LiveOptions(initial_backoff_s=1, max_backoff_s=8, jitter=0))
    >>> [d(n) for n in range(1, 7)]
    [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    """
    r = rng or random.Random()

    def delay(n: int) -> float:
        base = min(opts.max_backoff_s, opts.initial_backoff_s * opts.multiplier ** max(0, n - 1))
        return max(0.0, base * (1 + r.uniform(-opts.jitter, opts.jitter)))

    return delay


@dataclass(frozen=True)
class StateChange:
    state: str
    reason: str = ""
    attempt: int = 0
    at: float = 0.0


class WallClockSampler:
    """Keep a frame when the wall clock reaches the next tick of ``fps`` (clock injectable).

    >>> t = [0.0]
    >>> s = WallClockSampler(2.0, clock=lambda: t[0])
    >>> kept = []
    >>> for now in [0.0, 0.1, 0.45, 0.5, 0.9, 1.6, 1.7]:
    ...     t[0] = now
    ...     kept.append(s.due())
    >>> kept
    [True, False, False, True, False, True, False]
    """

    def __init__(self, fps: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.period = 1.0 / fps
        self.clock = clock
        self.next_t: float | None = None

    def due(self) -> bool:
        now = self.clock()
        if self.next_t is None or now + 1e-9 >= self.next_t:
            base = now if self.next_t is None else self.next_t
            steps = 1 if self.next_t is None else int((now - base) / self.period) + 1  # skip missed ticks
            self.next_t = base + steps * self.period
            return True
        return False


class DropOldestBuffer:
    """A bounded FIFO that evicts its oldest item when full and counts the evictions.

    >>> b = DropOldestBuffer(2)
    >>> for i in range(5):
    ...     b.put(i)
    >>> b.take(10), b.dropped
    ([3, 4], 3)
    """

    def __init__(self, size: int, notify: Callable[[], None] | None = None) -> None:
        self._q: deque[Any] = deque()
        self.size = size
        self.dropped = 0
        self._cv = threading.Condition()
        self._notify = notify  # also told (outside the lock) when an item arrives or wake() is called

    def __len__(self) -> int:
        return len(self._q)

    def put(self, item: Any) -> None:
        with self._cv:
            if len(self._q) >= self.size:
                self._q.popleft()
                self.dropped += 1
            self._q.append(item)
            self._cv.notify_all()
        if self._notify is not None:
            self._notify()

    def take(self, n: int, timeout: float = 0.0) -> list[Any]:
        with self._cv:
            if not self._q and timeout > 0:
                self._cv.wait(timeout)
            out = [self._q.popleft() for _ in range(min(n, len(self._q)))]
            return out

    def wake(self) -> None:
        with self._cv:
            self._cv.notify_all()
        if self._notify is not None:
            self._notify()


class _Stalled(Exception):
    pass


class LiveReader:
    """Reads one live source in a background thread; ``read`` hands out sampled frames."""

    def __init__(self, uri: str, source_id: str, opts: LiveOptions, *, rng: random.Random | None = None,
                 notify: Callable[[], None] | None = None) -> None:
        self.uri = uri
        self.display = redact_uri(uri)
        self.source_id = source_id
        self.opts = opts
        self.kind = live_kind(uri)
        self.buffer = DropOldestBuffer(opts.buffer_frames, notify)  # notify: a frame came, or the reader ended
        self.delay = backoff_delays(opts, rng)
        self.state = ""
        self.finished = False
        self.frames_decoded = 0
        self.frames_sampled = 0
        self._changes: deque[StateChange] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last_frame = 0.0
        self._thread = threading.Thread(target=self._run, name=f"live-{source_id}", daemon=True)

    @property
    def dropped(self) -> int:
        return self.buffer.dropped

    @property
    def ready(self) -> bool:
        """A ``read`` now would not wait: a frame is buffered, or the reader ended."""
        return self.finished or len(self.buffer) > 0

    def start(self) -> LiveReader:
        self._thread.start()
        return self

    # ---- state ---------------------------------------------------------------------------
    def _set(self, state: str, reason: str = "", attempt: int = 0) -> None:
        with self._lock:
            if state == self.state and state != "reconnecting":
                return
            self.state = state
            ch = StateChange(state, redact_uri(reason), attempt, time.time())
            self._changes.append(ch)
        log.info("%s: %s %s", self.display, state, ch.reason)
        if state in ("ended", "failed"):
            self.finished = True
            self.buffer.wake()

    def drain_changes(self) -> list[StateChange]:
        with self._lock:
            out = list(self._changes)
            self._changes.clear()
            return out

    # ---- reading -------------------------------------------------------------------------
    def read(self, max_frames: int, timeout: float = 0.5) -> FrameBatch | None:
        """Up to ``max_frames`` sampled frames, oldest first; waits up to ``timeout`` for one."""
        items = self.buffer.take(max_frames, 0.0 if self.finished else timeout)
        if not items:
            return None
        return FrameBatch(
            pixels=np.stack([it[0] for it in items]),
            source_id=np.full(len(items), self.source_id),
            frame_index=np.asarray([it[1] for it in items], np.int64),
            pts=np.asarray([it[2] for it in items], np.float64),
            wall_time=np.asarray([it[3] for it in items], np.float64),
            orig_width=np.asarray([it[4] for it in items], np.int32),
            orig_height=np.asarray([it[5] for it in items], np.int32),
            meta={self.source_id: resize_meta(self.opts.resize)},
        )

    def _open(self) -> Any:
        fmt, options = open_options(self.uri, self.opts)
        container = av.open(self.uri, mode="r", format=fmt, options=options,
                            timeout=(self.opts.open_timeout_s, self.opts.read_timeout_s))
        if not container.streams.video:
            container.close()
            raise ValueError("the stream has no video track")
        return container

    def _watchdog(self) -> None:
        """Report "stalled" as soon as no frame came for read_timeout_s; PyAV's read timeout
        (an FFmpeg interrupt callback) then ends the blocked read and the reader reconnects."""
        while not self._stop.is_set() and not self.finished:
            time.sleep(min(0.2, self.opts.read_timeout_s / 4))
            if self.state == "live" and time.monotonic() - self._last_frame > self.opts.read_timeout_s:
                self._set("stalled", f"no frame for {self.opts.read_timeout_s:.1f}s")

    def _stream(self, container: Any) -> None:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if self.opts.threads:
            stream.codec_context.thread_count = self.opts.threads
        sampler = WallClockSampler(self.opts.fps)
        tb = float(stream.time_base) if stream.time_base else 0.0
        self._last_frame = time.monotonic()
        first_pts: float | None = None
        for frame in container.decode(stream):
            if self._stop.is_set():
                return
            now = time.time()
            self._last_frame = time.monotonic()
            self.frames_decoded += 1
            if self.state != "live":
                self._set("live", f"{frame.width}x{frame.height} {stream.codec_context.name}")
            if not sampler.due():
                continue
            pts = frame.pts * tb if (frame.pts is not None and tb) else self.frames_decoded / 25.0
            first_pts = pts if first_pts is None else first_pts
            img = to_rgb(frame, self.opts.size, self.opts.resize)
            self.buffer.put((img, self.frames_sampled, pts, now, frame.width, frame.height))
            self.frames_sampled += 1

    def _run(self) -> None:
        attempt = 0
        reason = ""
        watchdog = threading.Thread(target=self._watchdog, name=f"live-watch-{self.source_id}", daemon=True)
        watchdog.start()
        while not self._stop.is_set():
            if attempt == 0:
                self._set("connecting")
            else:
                self._set("reconnecting", reason, attempt)
                if self._stop.wait(self.delay(attempt)):
                    break
            before = self.frames_decoded
            container = None
            try:
                container = self._open()
                self._stream(container)
                reason = "the stream ended"
            except Exception as exc:  # noqa: BLE001 - every failure is a reason to reconnect
                reason = _describe(exc)
                quiet = time.monotonic() - self._last_frame
                if self.state in ("live", "stalled") and quiet >= 0.8 * self.opts.read_timeout_s:
                    reason = f"no frame for {quiet:.1f}s (read timeout {self.opts.read_timeout_s:g}s)"
                    self._set("stalled", reason)
            finally:
                if container is not None:
                    try:
                        container.close()
                    except Exception:  # noqa: BLE001 - it is being abandoned
                        pass
            if self._stop.is_set():
                break
            if reason == "the stream ended" and not self.opts.reconnect_on_end:
                self._set("ended", reason)
                return
            # a connection that delivered frames starts the backoff over
            attempt = 1 if self.frames_decoded > before else attempt + 1
            if self.opts.max_attempts is not None and attempt > self.opts.max_attempts:
                self._set("failed", f"gave up after {self.opts.max_attempts} reconnect attempts: {reason}")
                return
        self._set("ended", "closed")

    def close(self, timeout: float | None = None) -> None:
        """Stop reading. A blocked read returns within read_timeout_s (FFmpeg's interrupt callback)."""
        self._stop.set()
        self.buffer.wake()
        if self._thread.is_alive():
            self._thread.join(self.opts.read_timeout_s + 2.0 if timeout is None else timeout)
        if not self.finished:
            self._set("ended", "closed")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, av.error.FFmpegError):
        msg = exc.strerror or str(exc)
    else:
        msg = str(exc) or type(exc).__name__
    return redact_uri(f"{type(exc).__name__}: {msg}")
