"""Anchor points of boxes, shared by zones and lines (the same points as supervision's ``Position``)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from operators.analytics.config import ANCHORS

__all__ = ["anchor_points"]


def anchor_points(xyxy: npt.NDArray[np.floating], anchor: str) -> npt.NDArray[np.float64]:
    """``[M, 2]`` points of ``anchor`` (e.g. ``bottom_center``) on ``[M, 4]`` xyxy boxes.

    >>> anchor_points(np.array([[0, 0, 10, 20]]), "bottom_center").tolist()
    [[5.0, 20.0]]
    """
    fx, fy = ANCHORS[anchor]
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    return np.stack([b[:, 0] + fx * (b[:, 2] - b[:, 0]), b[:, 1] + fy * (b[:, 3] - b[:, 1])], axis=1)
