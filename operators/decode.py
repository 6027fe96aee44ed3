"""Video decoding with PyAV: threaded decode, sampling to a target fps, keyframe-only mode,
resize on decode (libswscale, once per kept frame; stretched or letterboxed), output as FrameBatch chunks.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from operators.frames import FrameBatch
from operators.geometry import RESIZE_MODES, ResizeMode, letterbox

__all__ = ["LETTERBOX_PAD", "DecodeError", "DecodeOptions", "FpsSampler", "VideoInfo", "decode", "probe",
           "resize_meta", "to_rgb"]

LETTERBOX_PAD = 0  # value of the letterbox bars (black, as CenterNet's own affine-warp preprocessing pads)


class DecodeError(OSError):
    """A source could not be opened or decoded. The message names the source and the fix."""

    def __init__(self, source: str, stage: str, reason: str, *, frame_index: int | None = None,
                 pts: float | None = None) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.stage = stage
        self.reason = reason
        self.frame_index = frame_index
        self.pts = pts


@dataclass(frozen=True)
class DecodeOptions:
    """How to turn a video into frames.

    ``fps``: sample to this many frames per second of video time (None keeps every frame).
    ``size``: (height, width) to resize to on decode (None keeps the source size).
    ``resize``: ``stretch`` squashes to ``size``; ``letterbox`` scales to fit keeping the aspect
    ratio and centres the frame on bars of ``LETTERBOX_PAD`` (placement: ``geometry.letterbox``).
    ``chunk``: frames per emitted FrameBatch. ``start_after_pts``: skip frames at or
    before this pts (resume). ``max_frames``: stop after this many sampled frames.
    """

    fps: float | None = 2.0
    keyframes_only: bool = False
    size: tuple[int, int] | None = None
    resize: ResizeMode = "stretch"
    chunk: int = 8
    threads: int = 0
    start_after_pts: float | None = None
    max_frames: int | None = None

    def __post_init__(self) -> None:
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"fps must be > 0 (or null for every frame), got {self.fps}")
        if self.chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {self.chunk}")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {list(RESIZE_MODES)}, got {self.resize!r}")


def to_rgb(frame: av.VideoFrame, size: tuple[int, int] | None, mode: ResizeMode = "stretch") -> np.ndarray:
    """One decoded frame as RGB uint8 ``[H,W,3]``, scaled by libswscale to ``size`` (height, width).

    ``letterbox`` scales to the fitted size and pads to ``size`` with ``LETTERBOX_PAD``, the
    frame centred where ``geometry.letterbox`` says, so boxes map back exactly.
    """
    if size is None:
        return frame.to_ndarray(format="rgb24")
    h, w = size
    if mode == "stretch" or (frame.width, frame.height) == (w, h):
        return frame.to_ndarray(format="rgb24", width=w, height=h)
    lb = letterbox(frame.width, frame.height, w, h)
    canvas = np.full((h, w, 3), LETTERBOX_PAD, np.uint8)
    canvas[lb.y:lb.y + lb.h, lb.x:lb.x + lb.w] = frame.to_ndarray(format="rgb24", width=lb.w, height=lb.h)
    return canvas


def resize_meta(mode: ResizeMode) -> dict[str, str]:
    """The per-source ``FrameBatch.meta`` entry that tells every family how pixels map to the source."""
    return {"resize": mode}


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    duration: float | None
    frames: int | None
    codec: str


class FpsSampler:
    """Keep a frame when its pts reaches the next sample time; deterministic in pts.

    >>> s = FpsSampler(2.0)
    >>> [t for t in [0.0, 0.1, 0.5, 0.6, 1.0, 1.49, 1.5] if s.keep(t)]
    [0.0, 0.5, 1.0, 1.5]
    """

    def __init__(self, fps: float | None) -> None:
        self.period = 1.0 / fps if fps else 0.0
        self.next_t: float | None = None

    def keep(self, pts: float) -> bool:
        if self.period == 0.0:
            return True
        eps = 1e-6
        if self.next_t is None or pts + eps >= self.next_t:
            base = pts if self.next_t is None else self.next_t
            # snap forward over gaps so a jump in pts does not emit a burst
            steps = max(1, int((pts + eps - base) / self.period) + 1) if self.next_t is not None else 1
            self.next_t = base + steps * self.period
            return True
        return False


def _open(path: str) -> av.container.InputContainer:
    p = Path(path)
    if "://" not in path and not p.exists():
        raise DecodeError(path, "open", "file not found; check the path (globs are expanded by framewire, "
                                        "quote them in the shell)")
    if "://" not in path and p.is_file() and p.stat().st_size == 0:
        raise DecodeError(path, "open", "file is empty; it is not a video")
    try:
        container = av.open(path, mode="r", timeout=(10.0, 10.0))
    except av.error.InvalidDataError as exc:
        raise DecodeError(path, "open", f"not a video FFmpeg can read ({exc.strerror or exc}); "
                                        "check the file is a complete video (mp4, mkv, avi, ts, ...)") from exc
    except av.error.FFmpegError as exc:
        raise DecodeError(path, "open", f"cannot open ({exc.strerror or exc})") from exc
    except OSError as exc:
        raise DecodeError(path, "open", f"cannot open ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise DecodeError(path, "open", "has no video stream; give a video file")
    return container


def probe(path: str) -> VideoInfo:
    """Read size, frame rate and duration without decoding."""
    with _open(path) as c:
        s = c.streams.video[0]
        rate = float(s.average_rate or s.guessed_rate or 0)
        dur = float(s.duration * s.time_base) if s.duration and s.time_base else (
            c.duration / 1e6 if c.duration else None)
        cc = s.codec_context
        return VideoInfo(cc.width, cc.height, rate, dur, s.frames or None, cc.name)


def decode(path: str, source_id: str, opts: DecodeOptions) -> Iterator[FrameBatch]:
    """Yield FrameBatch chunks of sampled, resized RGB frames from ``path``.

    Raises DecodeError when the file cannot be opened, and when decoding fails midway
    (after yielding every frame decoded before the failure).
    """
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if opts.threads:
            stream.thread_count = opts.threads
        if opts.keyframes_only:
            stream.codec_context.skip_frame = "NONKEY"
        sampler = FpsSampler(opts.fps)
        time_base = float(stream.time_base) if stream.time_base else 0.0
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        buf: list[np.ndarray] = []
        meta: dict[str, list[float]] = {"idx": [], "pts": [], "wall": [], "w": [], "h": []}
        decoded = 0
        kept = 0
        last_pts: float | None = None

        def flush() -> FrameBatch:
            batch = FrameBatch(
                pixels=np.stack(buf),
                source_id=np.full(len(buf), source_id),
                frame_index=np.asarray(meta["idx"], np.int64),
                pts=np.asarray(meta["pts"], np.float64),
                wall_time=np.asarray(meta["wall"], np.float64),
                orig_width=np.asarray(meta["w"], np.int32),
                orig_height=np.asarray(meta["h"], np.int32),
                meta={source_id: resize_meta(opts.resize)},
            )
            buf.clear()
            for v in meta.values():
                v.clear()
            return batch

        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                if buf:
                    yield flush()
                raise DecodeError(path, "decode", f"decoding failed after frame {decoded} "
                                  f"({exc.strerror or exc}); the file may be truncated or corrupt",
                                  frame_index=decoded, pts=last_pts) from exc
            index = decoded
            decoded += 1
            if frame.pts is not None and time_base:
                pts = frame.pts * time_base
            else:
                pts = index / rate
            last_pts = pts
            if opts.start_after_pts is not None and pts <= opts.start_after_pts + 1e-9:
                sampler.keep(pts)
                continue
            if not sampler.keep(pts):
                continue
            buf.append(to_rgb(frame, opts.size, opts.resize))
            meta["idx"].append(index)
            meta["pts"].append(pts)
            meta["wall"].append(time.time())
            meta["w"].append(frame.width)
            meta["h"].append(frame.height)
            kept += 1
            if len(buf) >= opts.chunk:
                yield flush()
            if opts.max_frames is not None and kept >= opts.max_frames:
                break
        if buf:
            yield flush()
        if decoded == 0:
            raise DecodeError(path, "decode", "no frame could be decoded; the file may be truncated or corrupt")
    finally:
        container.close()
