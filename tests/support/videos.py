"""Test videos generated with PyAV, plus broken variants (truncated, not a video)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def make_video(path: Path, *, frames: int = 50, fps: int = 25, size: tuple[int, int] = (96, 128),
               codec: str = "libx264", gop: int = 10) -> Path:
    """Write an H.264 clip whose frame i has brightness ramping with i (so frames differ)."""
    h, w = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        stream.time_base = Fraction(1, fps)
        yy, xx = np.mgrid[0:h, 0:w]
        for i in range(frames):
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 0] = (xx * 2 + i * 5) % 256
            img[..., 1] = (yy * 2) % 256
            img[..., 2] = (i * 255 // max(1, frames - 1))
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for pkt in stream.encode(frame):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    return path


def truncate(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def not_a_video(dst: Path) -> Path:
    dst.write_text("this is a text file, not a video\n" * 20)
    return dst
