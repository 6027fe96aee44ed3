"""SourceFrames: one source's consecutive frames in pts order, with what the models found in them.

The per-source stage never sees a multi-source batch: the runtime slices each source's rows out
of a batch's ``ModelOutput`` with :meth:`SourceFrames.from_batch` (or :meth:`from_output` when it
kept only the metadata arrays), renumbering ``Detections.frame`` to rows of this object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from operators.frames import FrameBatch
from operators.results import Detections, ModelOutput, QueryAnswers

__all__ = ["Clock", "SourceFrames"]

Clock = Literal["pts", "wall"]


@dataclass(frozen=True)
class SourceFrames:
    """N frames of ``source_id`` in pts order; ``detections.frame[m]`` is the row (0..N-1) of box m.

    Boxes are xyxy in source pixels (``width`` x ``height``). ``captions`` holds one text per
    frame or None; ``queries`` holds ``matched[q, n]`` / ``score[q, n]`` or None.
    """

    source_id: str
    frame_index: npt.NDArray[np.int64]
    pts: npt.NDArray[np.float64]
    wall_time: npt.NDArray[np.float64]
    width: int
    height: int
    detections: Detections
    captions: list[str] | None = None
    queries: QueryAnswers | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        n = len(np.asarray(self.frame_index).reshape(-1))
        for name, dtype in (("frame_index", np.int64), ("pts", np.float64), ("wall_time", np.float64)):
            arr = np.asarray(getattr(self, name), dtype).reshape(-1)
            if arr.shape[0] != n:
                raise ValueError(f"SourceFrames.{name} has {arr.shape[0]} values for {n} frames; give one per frame")
            set_(self, name, arr)
        if n > 1 and np.any(np.diff(self.pts) < 0):
            raise ValueError(f"SourceFrames of {self.source_id!r}: pts must be non-decreasing (frames in pts order); "
                             "sort the source's frames by pts before building SourceFrames")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"SourceFrames of {self.source_id!r}: width/height must be > 0 source pixels, "
                             f"got {self.width}x{self.height}")
        fr = self.detections.frame
        if len(fr) and (fr.min() < 0 or fr.max() >= n):
            raise ValueError(f"SourceFrames of {self.source_id!r}: detections.frame must index rows 0..{n - 1}, "
                             f"got {int(fr.min())}..{int(fr.max())}")
        if self.captions is not None and len(self.captions) != n:
            raise ValueError(f"SourceFrames.captions has {len(self.captions)} texts for {n} frames; give one per frame")
        if self.queries is not None and np.asarray(self.queries.matched).shape != (len(self.queries.queries), n):
            raise ValueError(f"SourceFrames.queries.matched must be [Q={len(self.queries.queries)}, N={n}], "
                             f"got {np.asarray(self.queries.matched).shape}")

    def __len__(self) -> int:
        return int(self.frame_index.shape[0])

    def time(self, clock: Clock) -> npt.NDArray[np.float64]:
        """The stage's clock per frame: video ``pts`` (archive) or capture ``wall_time`` (live)."""
        if clock == "pts":
            return self.pts
        if clock == "wall":
            return self.wall_time
        raise ValueError(f"clock must be 'pts' or 'wall', got {clock!r}")

    @classmethod
    def from_output(cls, source_id: str, frame_index: npt.ArrayLike, pts: npt.ArrayLike, wall_time: npt.ArrayLike,
                    width: int, height: int, output: ModelOutput, rows: npt.ArrayLike) -> SourceFrames:
        """Slice batch ``rows`` (one source's, in pts order) out of a multi-source ``output``.

        ``frame_index``/``pts``/``wall_time`` are the BATCH arrays (length ``output.n_frames``); only
        ``rows`` of them are kept. Batch row ``rows[k]`` becomes local row ``k``.
        """
        rows = np.asarray(rows, np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= output.n_frames):
            raise ValueError(f"rows must index the batch's {output.n_frames} frames, got {rows.tolist()}")
        local = np.full(output.n_frames, -1, np.int64)
        local[rows] = np.arange(len(rows))
        det = output.detections or Detections.empty()
        keep = local[det.frame] >= 0 if len(det) else np.zeros(0, bool)
        dets = Detections(local[det.frame[keep]], det.xyxy[keep], det.score[keep], det.label[keep])
        order = np.argsort(dets.frame, kind="stable")  # group boxes by local row, keeping their order
        dets = Detections(dets.frame[order], dets.xyxy[order], dets.score[order], dets.label[order])
        captions = [output.captions.text[r] for r in rows] if output.captions is not None else None
        queries = None
        if output.queries is not None:
            q = output.queries
            queries = QueryAnswers(list(q.queries), np.asarray(q.matched, bool)[:, rows],
                                   np.asarray(q.score, np.float32)[:, rows])
        return cls(source_id, np.asarray(frame_index, np.int64)[rows], np.asarray(pts, np.float64)[rows],
                   np.asarray(wall_time, np.float64)[rows], int(width), int(height), dets, captions, queries)

    @classmethod
    def from_batch(cls, batch: FrameBatch, output: ModelOutput, source_id: str) -> SourceFrames:
        """The frames of ``source_id`` in ``batch`` (sorted by pts) with their slice of ``output``."""
        rows = np.flatnonzero(batch.source_id == source_id)
        if not len(rows):
            raise ValueError(f"batch has no frames of source {source_id!r}; it holds {sorted(set(batch.source_id))}")
        rows = rows[np.argsort(batch.pts[rows], kind="stable")]
        return cls.from_output(source_id, batch.frame_index, batch.pts, batch.wall_time,
                               int(batch.orig_width[rows[0]]), int(batch.orig_height[rows[0]]), output, rows)
