"""A deterministic stand-in model that plugs in through the registry by dotted path.

It answers from the pixels (mean brightness), so its output depends on the frame and
exercises the same shapes as a real model without loading weights.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from operators.frames import FrameBatch
from operators.models.base import VisionModel
from operators.results import Captions, Detections, ModelOutput, QueryAnswers

FAKE = "tests.support.fake_model:FakeModel"


class FakeModel(VisionModel):
    family = "fake"

    def __init__(self, **kwargs: Any) -> None:
        self.fail_on_frame: int | None = kwargs.pop("fail_on_frame", None)
        self.delay_s: float = kwargs.pop("delay_s", 0.0)  # stands in for model compute time: per call
        self.delay_per_frame_s: float = kwargs.pop("delay_per_frame_s", 0.0)  # and per frame (no CPU: a GPU's)
        self.size = tuple(kwargs.pop("size", (64, 64)))
        self.movers: int = kwargs.pop("movers", 0)  # >0: that many boxes crossing the frame at known speeds
        kwargs.pop("threads", None)
        super().__init__(**kwargs)
        self.calls = 0

    def input_size(self) -> tuple[int, int]:
        return self.size  # type: ignore[return-value]

    def __call__(self, batch: FrameBatch) -> ModelOutput:
        self.calls += 1
        if self.delay_s or self.delay_per_frame_s:
            time.sleep(self.delay_s + self.delay_per_frame_s * len(batch))
        if self.fail_on_frame is not None and (batch.frame_index == self.fail_on_frame).any():
            raise RuntimeError(f"poison frame {self.fail_on_frame}")
        n = len(batch)
        mean = batch.pixels.reshape(n, -1).mean(axis=1) / 255.0 if n else np.zeros(0)
        out = ModelOutput(n_frames=n, models={t: "fake/brightness" for t in self.tasks})
        if "caption" in self.tasks:
            out.captions = Captions([f"brightness {m:.3f}" for m in mean], kind="model")
        if "detect" in self.tasks and self.movers:
            out.detections = movers(batch, self.movers)
        elif "detect" in self.tasks:
            w = batch.orig_width.astype(np.float32)
            h = batch.orig_height.astype(np.float32)
            out.detections = Detections(np.arange(n), np.stack([w * 0.25, h * 0.25, w * 0.75, h * 0.75], 1),
                                        mean.astype(np.float32), np.full(n, "thing"))
        if "query" in self.tasks:
            q = len(self.queries)
            out.queries = QueryAnswers(list(self.queries), np.tile(mean > 0.3, (q, 1)),
                                       np.tile(mean.astype(np.float32), (q, 1)))
        return out


def movers(batch: FrameBatch, k: int) -> Detections:
    """``k`` boxes sliding left to right, each at its own speed and height, leaving and re-entering the frame
    (so tracks start, end, cross lines and enter zones): a pure function of the frame index."""
    frames, boxes = [], []
    for row in range(len(batch)):
        w, h, i = float(batch.orig_width[row]), float(batch.orig_height[row]), int(batch.frame_index[row])
        bw, bh = w / 8, h / 6
        for j in range(k):
            span = w + 3 * bw
            x = (i * w / (20 + 7 * j) + j * w / k) % span - 1.5 * bw  # off-screen for part of each lap
            if x < -bw or x > w:
                continue
            y = (j + 0.5) * h / (k + 1) - bh / 2
            frames.append(row)
            boxes.append([max(0.0, x), y, min(w, x + bw), y + bh])
    n = len(frames)
    return Detections(np.array(frames, np.int64), np.array(boxes, np.float32).reshape(n, 4),
                      np.full(n, 0.9, np.float32), np.full(n, "thing"))
