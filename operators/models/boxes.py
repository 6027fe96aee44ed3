"""Boxes from model-input pixels to source pixels, per frame of a batch, honouring how each source was resized.

The decoder records ``batch.meta[source_id]["resize"]`` (``stretch`` or ``letterbox``; absent
means ``stretch``). The families that return boxes in the pixels of the frames they were given
(hf_detect, zero_shot, onnx, rapidocr) map them back through here, so they all agree with
:func:`operators.geometry.to_source_xyxy`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from operators.frames import FrameBatch
from operators.geometry import ResizeMode, to_source_xyxy

__all__ = ["resize_mode", "to_source", "to_source_points"]


def resize_mode(batch: FrameBatch, row: int) -> ResizeMode:
    """How frame ``row`` was resized to the batch's size on decode (default ``stretch``)."""
    meta: Any = batch.meta.get(str(batch.source_id[row]), {})
    mode = meta.get("resize", "stretch") if isinstance(meta, dict) else "stretch"
    return "letterbox" if mode == "letterbox" else "stretch"


def to_source(batch: FrameBatch, row: int, xyxy: npt.ArrayLike, in_w: float | None = None,
              in_h: float | None = None) -> npt.NDArray[np.float32]:
    """``[M, 4]`` xyxy in the pixels of ``batch.pixels[row]`` (or an ``in_w x in_h`` model input) -> source pixels."""
    return to_source_xyxy(xyxy, float(batch.orig_width[row]), float(batch.orig_height[row]),
                          float(in_w or batch.width), float(in_h or batch.height), resize_mode(batch, row))


def to_source_points(batch: FrameBatch, row: int, points: npt.ArrayLike, in_w: float | None = None,
                     in_h: float | None = None) -> npt.NDArray[np.float32]:
    """``[..., 2]`` (x, y) points, mapped like boxes (each pair of points is one degenerate box)."""
    p = np.asarray(points, np.float32)
    flat = p.reshape(-1, 2)
    if len(flat) % 2:
        flat = np.concatenate([flat, flat[-1:]])
    out = to_source(batch, row, flat.reshape(-1, 4), in_w, in_h).reshape(-1, 2)
    return out[: p.reshape(-1, 2).shape[0]].reshape(p.shape)
