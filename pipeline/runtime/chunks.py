"""What travels from a model actor to the stateful stage: one ``ChunkResult`` per decoded chunk.

A model batch joins chunks of several sources; its output is split back per chunk, so the
stage can put each source's chunks in order (``seq``) however the replicas finished, and a
chunk's events are published with the stage's events for the same frames, in one
transaction with the checkpoint. Pixels stay behind: only metadata arrays and the model's
columnar results travel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from operators.frames import FrameBatch
from operators.results import Captions, Detections, ModelOutput, QueryAnswers

__all__ = ["ChunkResult", "FrameMeta", "select_output"]


@dataclass(frozen=True)
class FrameMeta:
    """A FrameBatch's metadata without its pixels (what event builders read)."""

    source_id: npt.NDArray[np.str_]
    frame_index: npt.NDArray[np.int64]
    pts: npt.NDArray[np.float64]
    wall_time: npt.NDArray[np.float64]
    orig_width: npt.NDArray[np.int32]
    orig_height: npt.NDArray[np.int32]

    @classmethod
    def of(cls, batch: FrameBatch, rows: npt.NDArray[np.int64] | slice = slice(None)) -> FrameMeta:
        return cls(batch.source_id[rows], batch.frame_index[rows], batch.pts[rows], batch.wall_time[rows],
                   batch.orig_width[rows], batch.orig_height[rows])

    def __len__(self) -> int:
        return len(self.pts)


def select_output(out: ModelOutput, rows: npt.NDArray[np.int64]) -> ModelOutput:
    """The rows ``rows`` of a batch's output, renumbered 0..len(rows)-1 (embeddings are not carried)."""
    rows = np.asarray(rows, np.int64)
    remap = {int(r): i for i, r in enumerate(rows)}
    det = None
    if out.detections is not None:
        d = out.detections
        mask = np.isin(d.frame, rows)
        det = Detections(np.array([remap[int(f)] for f in d.frame[mask]], np.int64), d.xyxy[mask], d.score[mask],
                         d.label[mask])
    caps = None if out.captions is None else Captions([out.captions.text[int(r)] for r in rows], out.captions.kind)
    qa = None
    if out.queries is not None:
        q = out.queries
        boxes = None
        if q.boxes is not None:
            bm = np.isin(q.boxes.frame, rows)
            boxes = Detections(np.array([remap[int(f)] for f in q.boxes.frame[bm]], np.int64), q.boxes.xyxy[bm],
                               q.boxes.score[bm], q.boxes.label[bm])
        qa = QueryAnswers(list(q.queries), q.matched[:, rows], q.score[:, rows], boxes)
    return ModelOutput(len(rows), captions=caps, detections=det, queries=qa, models=dict(out.models))


@dataclass
class ChunkResult:
    """One decoded chunk after the model: its frames' metadata and results, and the records
    already built for it (captions, per-frame queries, embeddings, thumbnails, errors)."""

    source_id: str
    seq: int
    meta: FrameMeta | None  # None when the model dropped every frame or failed
    output: ModelOutput | None
    records: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = field(default_factory=list)
    decoded: int = 0  # frames the decoder sent in this chunk
    dropped: int = 0  # live: frames the model actor judged too late to run
    failed: bool = False
    last_pts: float | None = None
    capture: list[float] = field(default_factory=list)  # capture (wall) time of each frame that ran
