"""FrameBatch: frames as a structure of arrays, the unit that crosses process boundaries.

A batch holds uint8 pixels ``[N, H, W, 3]`` (RGB) and one metadata array per field,
so a batch of 16 frames is a handful of numpy arrays, never 16 Python objects.
Indexing with a boolean mask or an index array returns a new batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["FrameBatch"]


def _as_1d(name: str, value: Any, dtype: Any, n: int) -> np.ndarray:
    arr = np.asarray(value, dtype=dtype)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"FrameBatch.{name} must be a 1-D array of length {n} (one per frame), got shape {arr.shape}")
    return arr


@dataclass(frozen=True)
class FrameBatch:
    """A batch of frames from one or more sources.

    ``pixels`` are RGB uint8 ``[N, H, W, 3]`` (already resized for the model when the
    decoder was asked to). ``orig_width``/``orig_height`` keep the source frame size
    so boxes can be scaled back to source pixels. ``pts`` are seconds in the source
    timeline; ``wall_time`` is the UNIX time the frame was captured (live) or decoded
    (archive).

    >>> b = FrameBatch.empty(4, 6)
    >>> len(b), b.pixels.shape
    (0, (0, 4, 6, 3))
    """

    pixels: npt.NDArray[np.uint8]
    source_id: npt.NDArray[np.str_]
    frame_index: npt.NDArray[np.int64]
    pts: npt.NDArray[np.float64]
    wall_time: npt.NDArray[np.float64]
    orig_width: npt.NDArray[np.int32]
    orig_height: npt.NDArray[np.int32]
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        px = self.pixels
        if not isinstance(px, np.ndarray) or px.dtype != np.uint8 or px.ndim != 4 or px.shape[3] != 3:
            shape = getattr(px, "shape", None)
            dtype = getattr(px, "dtype", type(px).__name__)
            raise ValueError(f"FrameBatch.pixels must be uint8 [N,H,W,3] RGB, got {dtype} {shape}")
        n = px.shape[0]
        set_ = object.__setattr__
        set_(self, "source_id", _as_1d("source_id", self.source_id, np.str_, n))
        set_(self, "frame_index", _as_1d("frame_index", self.frame_index, np.int64, n))
        set_(self, "pts", _as_1d("pts", self.pts, np.float64, n))
        set_(self, "wall_time", _as_1d("wall_time", self.wall_time, np.float64, n))
        set_(self, "orig_width", _as_1d("orig_width", self.orig_width, np.int32, n))
        set_(self, "orig_height", _as_1d("orig_height", self.orig_height, np.int32, n))

    @classmethod
    def empty(cls, height: int, width: int) -> FrameBatch:
        """A batch with no frames and the given frame size."""
        return cls(
            pixels=np.zeros((0, height, width, 3), np.uint8),
            source_id=np.array([], np.str_),
            frame_index=np.array([], np.int64),
            pts=np.array([], np.float64),
            wall_time=np.array([], np.float64),
            orig_width=np.array([], np.int32),
            orig_height=np.array([], np.int32),
        )

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[2])

    def __getitem__(self, index: Any) -> FrameBatch:
        """Select frames by boolean mask, index array or slice; returns a new batch."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        idx = np.asarray(index) if not isinstance(index, slice) else index
        if isinstance(idx, np.ndarray) and idx.dtype == bool and idx.shape != (len(self),):
            raise IndexError(f"boolean mask of length {idx.shape} does not match a batch of {len(self)} frames")
        sources = self.source_id[idx]
        return FrameBatch(
            pixels=self.pixels[idx],
            source_id=sources,
            frame_index=self.frame_index[idx],
            pts=self.pts[idx],
            wall_time=self.wall_time[idx],
            orig_width=self.orig_width[idx],
            orig_height=self.orig_height[idx],
            meta={s: m for s, m in self.meta.items() if s in set(sources.tolist())},
        )

    @classmethod
    def concat(cls, batches: list[FrameBatch]) -> FrameBatch:
        """Join batches of the same frame size (e.g. from several sources) into one."""
        batches = [b for b in batches if len(b)] or batches[:1]
        if not batches:
            raise ValueError("FrameBatch.concat needs at least one batch")
        sizes = {(b.height, b.width) for b in batches}
        if len(sizes) > 1:
            raise ValueError(f"cannot concat batches of different frame sizes {sorted(sizes)}; "
                             "resize on decode to one size")
        meta: dict[str, dict[str, Any]] = {}
        for b in batches:
            meta.update(b.meta)
        return cls(
            pixels=np.concatenate([b.pixels for b in batches]),
            source_id=np.concatenate([b.source_id for b in batches]),
            frame_index=np.concatenate([b.frame_index for b in batches]),
            pts=np.concatenate([b.pts for b in batches]),
            wall_time=np.concatenate([b.wall_time for b in batches]),
            orig_width=np.concatenate([b.orig_width for b in batches]),
            orig_height=np.concatenate([b.orig_height for b in batches]),
            meta=meta,
        )

    def split(self, size: int) -> list[FrameBatch]:
        """Cut into consecutive batches of at most ``size`` frames."""
        if size < 1:
            raise ValueError(f"split size must be >= 1, got {size}")
        return [self[slice(i, i + size)] for i in range(0, len(self), size)]

    @property
    def nbytes(self) -> int:
        return int(self.pixels.nbytes)
