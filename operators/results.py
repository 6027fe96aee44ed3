"""Columnar results of vision tasks, keyed by the frame's row in its FrameBatch.

Model-specific parsing lives with each model (``operators/models/``); these types only
hold arrays and know how to select the rows of one frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["Answers", "Captions", "Detections", "Embeddings", "ModelOutput", "QueryAnswers", "Segment", "TextLines"]

MaskSource = Literal["decoder", "polygon", "box"]


@dataclass(frozen=True)
class Segment:
    """One box's instance mask in source pixels: COCO RLE (``operators.masks``) over ``size = (h, w)``.

    ``source`` says where the mask came from: ``decoder`` (a mask decoder, e.g. PaliGemma's VQ-VAE),
    ``polygon`` (polygons the model drew, e.g. Florence-2; kept in ``polygons``, flat x,y lists in
    source pixels) or ``box`` (no mask model: the box itself, a stand-in, not a segmentation).
    """

    size: tuple[int, int]
    counts: str
    source: MaskSource
    polygons: tuple[tuple[float, ...], ...] = ()


@dataclass(frozen=True)
class Detections:
    """M boxes over a batch: ``frame[m]`` is the row of the frame box m belongs to.

    Boxes are ``xyxy`` in source-frame pixels (the original frame, not the model input).
    ``score`` is NaN where the model gives no confidence (Florence-2 does not).
    ``masks`` (optional) holds one Segment per box, or None for a box without one.
    """

    frame: npt.NDArray[np.int64]
    xyxy: npt.NDArray[np.float32]
    score: npt.NDArray[np.float32]
    label: npt.NDArray[np.str_]
    masks: tuple[Segment | None, ...] | None = None

    def __post_init__(self) -> None:
        m = len(self.frame)
        set_ = object.__setattr__
        set_(self, "frame", np.asarray(self.frame, np.int64).reshape(m))
        set_(self, "xyxy", np.asarray(self.xyxy, np.float32).reshape(m, 4))
        set_(self, "score", np.asarray(self.score, np.float32).reshape(m))
        set_(self, "label", np.asarray(self.label, np.str_).reshape(m))
        if self.masks is not None:
            set_(self, "masks", tuple(self.masks))
            if len(self.masks) != m:
                raise ValueError(f"Detections.masks has {len(self.masks)} entries for {m} boxes")

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros(0, np.int64), np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.array([], np.str_))

    @classmethod
    def concat(cls, parts: list[Detections]) -> Detections:
        if not parts:
            return cls.empty()
        masks = None
        if any(p.masks is not None for p in parts):
            masks = tuple(mk for p in parts for mk in (p.masks if p.masks is not None else (None,) * len(p)))
        return cls(
            np.concatenate([p.frame for p in parts]),
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.score for p in parts]),
            np.concatenate([p.label for p in parts]),
            masks,
        )

    def __len__(self) -> int:
        return len(self.frame)

    def for_frame(self, row: int) -> Detections:
        return self.select(self.frame == row)

    def select(self, keep: npt.NDArray[np.bool_]) -> Detections:
        """The boxes where ``keep`` is true, masks included."""
        masks = None if self.masks is None else tuple(m for m, k in zip(self.masks, keep, strict=True) if k)
        return Detections(self.frame[keep], self.xyxy[keep], self.score[keep], self.label[keep], masks)


@dataclass(frozen=True)
class Captions:
    """One caption per frame. ``kind`` is ``"model"`` for a captioning model's text and
    ``"composed"`` when the text was assembled from detections."""

    text: list[str]
    kind: str = "model"


@dataclass(frozen=True)
class QueryAnswers:
    """Answers of Q standing queries on N frames: ``matched[q, n]``, ``score[q, n]``.

    ``boxes`` holds grounded boxes when the model grounds queries; its ``label`` is the
    query text. ``score`` is NaN when the model gives no confidence.
    """

    queries: list[str]
    matched: npt.NDArray[np.bool_]
    score: npt.NDArray[np.float32]
    boxes: Detections | None = None


@dataclass(frozen=True)
class Answers:
    """Free-form answers of Q standing questions on N frames: ``text[q][n]`` (task ``ask``)."""

    questions: list[str]
    text: list[list[str]]

    def __post_init__(self) -> None:
        if len(self.text) != len(self.questions):
            raise ValueError(f"Answers has {len(self.text)} rows of text for {len(self.questions)} questions")
        if len({len(r) for r in self.text}) > 1:
            raise ValueError("Answers rows must all cover the same frames")


@dataclass(frozen=True)
class Embeddings:
    """One vector a frame: ``vectors[n]`` is float32 ``[N, D]``; ``normalized`` when each has unit L2 norm
    (cosine similarity is then a dot product)."""

    vectors: npt.NDArray[np.float32]
    normalized: bool = True

    def __post_init__(self) -> None:
        v = np.asarray(self.vectors, np.float32)
        if v.ndim != 2:
            raise ValueError(f"Embeddings.vectors must be [N, D], got shape {v.shape}")
        object.__setattr__(self, "vectors", v)

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


@dataclass(frozen=True)
class TextLines:
    """M lines of text read over a batch (OCR): ``frame[m]`` is the row of the frame line m is on.

    ``polygon[m]`` is the line's quadrilateral (4 ``(x, y)`` corners, clockwise from top-left)
    and ``xyxy[m]`` its bounding box, both in source-frame pixels; ``score`` is the recogniser's
    confidence in ``text``.
    """

    frame: npt.NDArray[np.int64]
    polygon: npt.NDArray[np.float32]
    text: npt.NDArray[np.str_]
    score: npt.NDArray[np.float32]

    def __post_init__(self) -> None:
        m = len(self.frame)
        set_ = object.__setattr__
        set_(self, "frame", np.asarray(self.frame, np.int64).reshape(m))
        set_(self, "polygon", np.asarray(self.polygon, np.float32).reshape(m, 4, 2))
        set_(self, "text", np.asarray(self.text, np.str_).reshape(m))
        set_(self, "score", np.asarray(self.score, np.float32).reshape(m))

    @property
    def xyxy(self) -> npt.NDArray[np.float32]:
        """``[M, 4]`` axis-aligned bounding boxes of the polygons."""
        if not len(self):
            return np.zeros((0, 4), np.float32)
        return np.concatenate([self.polygon.min(1), self.polygon.max(1)], axis=1)

    @classmethod
    def empty(cls) -> TextLines:
        return cls(np.zeros(0, np.int64), np.zeros((0, 4, 2), np.float32), np.array([], np.str_),
                   np.zeros(0, np.float32))

    @classmethod
    def concat(cls, parts: list[TextLines]) -> TextLines:
        if not parts:
            return cls.empty()
        return cls(np.concatenate([p.frame for p in parts]), np.concatenate([p.polygon for p in parts]),
                   np.concatenate([p.text for p in parts]), np.concatenate([p.score for p in parts]))

    def __len__(self) -> int:
        return len(self.frame)

    def for_frame(self, row: int) -> TextLines:
        mask = self.frame == row
        return TextLines(self.frame[mask], self.polygon[mask], self.text[mask], self.score[mask])


@dataclass
class ModelOutput:
    """Everything one model pass produced for one batch; ``models`` maps task -> model id."""

    n_frames: int
    captions: Captions | None = None
    detections: Detections | None = None
    queries: QueryAnswers | None = None
    models: dict[str, str] = field(default_factory=dict)
    embeddings: Embeddings | None = None
    text: TextLines | None = None  # task ocr
    answers: Answers | None = None
