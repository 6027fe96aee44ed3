"""Model-input <-> source-frame geometry: one place that knows how a frame was resized on decode.

A decoder resizes each kept frame to the model's input size in one of two ways:
``stretch`` (squash to the input size; what most Hugging Face processors do) or
``letterbox`` (scale to fit, keeping the aspect ratio, centred on padding). Every family
maps its boxes back to source pixels through :func:`to_source_xyxy`, so a box lands on
the same object whatever the resize mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from operators.frames import FrameBatch

__all__ = ["RESIZE_MODES", "Letterbox", "ResizeMode", "batch_resize_mode", "batch_to_source_xyxy", "content_pixels",
           "letterbox", "to_source_xyxy"]

ResizeMode = Literal["stretch", "letterbox"]
RESIZE_MODES: tuple[ResizeMode, ...] = ("stretch", "letterbox")


@dataclass(frozen=True)
class Letterbox:
    """Where a ``src_w x src_h`` frame sits inside a ``dst_w x dst_h`` input: scaled by ``scale`` to
    ``w x h`` at offset ``(x, y)``; the rest is padding."""

    scale: float
    w: int
    h: int
    x: int
    y: int


def letterbox(src_w: int, src_h: int, dst_w: int, dst_h: int) -> Letterbox:
    """Fit keeping the aspect ratio, centred (integer placement, the same everywhere).

    >>> letterbox(640, 272, 512, 512)
    Letterbox(scale=0.8, w=512, h=218, x=0, y=147)
    """
    scale = min(dst_w / src_w, dst_h / src_h)
    w = max(1, min(dst_w, round(src_w * scale)))
    h = max(1, min(dst_h, round(src_h * scale)))
    return Letterbox(scale, w, h, (dst_w - w) // 2, (dst_h - h) // 2)


def to_source_xyxy(xyxy: npt.ArrayLike, src_w: float, src_h: float, in_w: float, in_h: float,
                   mode: ResizeMode = "stretch") -> npt.NDArray[np.float32]:
    """Boxes in model-input pixels (``[M,4]`` xyxy) -> source-frame pixels, clipped to the frame.

    >>> to_source_xyxy([[0, 147, 512, 365]], 640, 272, 512, 512, "letterbox").round(1).tolist()
    [[0.0, 0.0, 640.0, 272.0]]
    >>> to_source_xyxy([[0, 0, 256, 256]], 640, 272, 512, 512).tolist()
    [[0.0, 0.0, 320.0, 136.0]]
    """
    b = np.asarray(xyxy, np.float64).reshape(-1, 4).copy()
    if mode == "letterbox":
        lb = letterbox(int(src_w), int(src_h), int(in_w), int(in_h))
        sx, sy = lb.w / src_w, lb.h / src_h  # the placement was rounded: use the real per-axis scale
        b[:, [0, 2]] = (b[:, [0, 2]] - lb.x) / sx
        b[:, [1, 3]] = (b[:, [1, 3]] - lb.y) / sy
    else:
        b[:, [0, 2]] *= src_w / in_w
        b[:, [1, 3]] *= src_h / in_h
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, src_w)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, src_h)
    return b.astype(np.float32)


def batch_resize_mode(batch: FrameBatch, row: int) -> ResizeMode:
    """How frame ``row`` was resized on decode (``FrameBatch.meta[source]["resize"]``; stretch if unrecorded)."""
    mode = batch.meta.get(str(batch.source_id[row]), {}).get("resize", "stretch")
    if mode not in RESIZE_MODES:
        raise ValueError(f"FrameBatch.meta[{batch.source_id[row]!r}]['resize'] is {mode!r}; "
                         f"use one of {list(RESIZE_MODES)}")
    return cast(ResizeMode, mode)


def batch_to_source_xyxy(batch: FrameBatch, row: int, xyxy: npt.ArrayLike, in_w: int | None = None,
                         in_h: int | None = None, model_mode: ResizeMode = "stretch") -> npt.NDArray[np.float32]:
    """Boxes of frame ``row`` in model-input pixels -> that frame's source pixels.

    Two steps, each exact: a model whose input (``in_w x in_h``, default the batch's pixel size)
    differs from the batch's pixels resized them itself (``model_mode``); the decoder resized the
    source to the batch's pixels as recorded in the batch's meta.
    """
    bw, bh = batch.width, batch.height
    b = np.asarray(xyxy, np.float32).reshape(-1, 4)
    if (in_w or bw, in_h or bh) != (bw, bh):
        b = to_source_xyxy(b, bw, bh, in_w or bw, in_h or bh, model_mode)
    return to_source_xyxy(b, float(batch.orig_width[row]), float(batch.orig_height[row]), bw, bh,
                          batch_resize_mode(batch, row))


def content_pixels(batch: FrameBatch, row: int) -> npt.NDArray[np.uint8]:
    """Frame ``row``'s pixels without letterbox bars (a view), e.g. for thumbnails; the whole frame if stretched."""
    px = batch.pixels[row]
    if batch_resize_mode(batch, row) != "letterbox":
        return px
    lb = letterbox(int(batch.orig_width[row]), int(batch.orig_height[row]), batch.width, batch.height)
    return px[lb.y:lb.y + lb.h, lb.x:lb.x + lb.w]
