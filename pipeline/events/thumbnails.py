"""Thumbnails: a small JPEG of each frame, so a subscriber can show what the models saw.

Built in the ModelActor from the pixels the model ran on, resized back to the source's
aspect ratio with the longest side at most ``max_side``. The JPEG never exceeds
``max_bytes``: quality steps down first, then the size; a frame that still does not fit
gets no thumbnail (and a warning), never an oversized record.
"""

from __future__ import annotations

import io
import logging

import numpy as np
from PIL import Image

__all__ = ["encode_thumbnail", "thumbnail_size"]

log = logging.getLogger(__name__)
MIN_QUALITY = 30
MIN_SIDE = 16


def thumbnail_size(orig_w: int, orig_h: int, max_side: int,
                   pixels_wh: tuple[int, int] | None = None) -> tuple[int, int]:
    """(width, height) with the source's aspect ratio and the longest side at most ``max_side``,
    never larger than the source nor than the pixels at hand (``pixels_wh``) along either axis.

    >>> thumbnail_size(640, 272, 160)
    (160, 68)
    >>> thumbnail_size(640, 272, 160, pixels_wh=(64, 48))
    (64, 27)
    """
    scale = min(1.0, max_side / max(orig_w, orig_h, 1))
    if pixels_wh is not None:
        scale = min(scale, pixels_wh[0] / max(orig_w, 1), pixels_wh[1] / max(orig_h, 1))
    return max(1, round(orig_w * scale)), max(1, round(orig_h * scale))


def encode_thumbnail(pixels: np.ndarray, orig_w: int, orig_h: int, *, max_side: int = 160, quality: int = 70,
                     max_bytes: int = 16384) -> tuple[bytes, int, int] | None:
    """JPEG bytes, width and height of one RGB uint8 frame ``[H, W, 3]``; None when it cannot fit ``max_bytes``."""
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"thumbnail needs an RGB uint8 [H,W,3] frame, got {pixels.dtype} {pixels.shape}")
    img = Image.fromarray(pixels)
    side = max_side
    while side >= MIN_SIDE:
        w, h = thumbnail_size(orig_w, orig_h, side, (pixels.shape[1], pixels.shape[0]))
        small = img.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=2.0)
        q = quality
        while True:
            buf = io.BytesIO()
            small.save(buf, format="JPEG", quality=q, optimize=True)
            if buf.tell() <= max_bytes:
                return buf.getvalue(), w, h
            if q <= MIN_QUALITY:
                break
            q = max(MIN_QUALITY, q - 15)
        side = int(side * 0.75)
    log.warning("a %dx%d frame does not fit a %d-byte thumbnail even at %dpx, quality %d; raise "
                "thumbnails.max_bytes", orig_w, orig_h, max_bytes, MIN_SIDE, MIN_QUALITY)
    return None
