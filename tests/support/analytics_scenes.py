"""Synthetic detections with known motion, as SourceFrames chunks, for the analytics operators' tests and bench."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from operators.analytics.frames import SourceFrames
from operators.results import Detections, QueryAnswers

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Obj:
    """An object of ``label`` whose box at frame f is ``path(f)`` (None: not detected in that frame)."""

    label: str
    path: Callable[[int], Box | None]
    score: float = 0.9


def walker(x0: float, y0: float, vx: float, vy: float, w: float = 40, h: float = 80, start: int = 0,
           stop: int = 10**9, gaps: Sequence[int] = ()) -> Callable[[int], Box | None]:
    """A box moving at constant velocity (pixels per frame) from frame ``start`` to ``stop`` (exclusive)."""
    def path(f: int) -> Box | None:
        if f < start or f >= stop or f in gaps:
            return None
        x, y = x0 + vx * (f - start), y0 + vy * (f - start)
        return (x, y, x + w, y + h)
    return path


def scene(objs: Sequence[Obj], n_frames: int, chunk: int = 8, fps: float = 2.0, source: str = "cam",
          size: tuple[int, int] = (640, 480), wall0: float = 1.7e9, queries: dict[str, Sequence[bool]] | None = None,
          captions: bool = False) -> list[SourceFrames]:
    """The scene cut into chunks of ``chunk`` frames (pts = frame / fps)."""
    out = []
    for c0 in range(0, n_frames, chunk):
        idx = np.arange(c0, min(n_frames, c0 + chunk))
        fr, xy, sc, lab = [], [], [], []
        for i, f in enumerate(idx.tolist()):
            for o in objs:
                b = o.path(f)
                if b is not None:
                    fr.append(i)
                    xy.append(b)
                    sc.append(o.score)
                    lab.append(o.label)
        dets = Detections(np.array(fr, np.int64), np.array(xy, np.float32).reshape(-1, 4), np.array(sc, np.float32),
                          np.array(lab, np.str_))
        qa = None
        if queries:
            names = list(queries)
            matched = np.array([[bool(queries[q][f]) for f in idx] for q in names])
            qa = QueryAnswers(names, matched, np.where(matched, 0.8, 0.1).astype(np.float32))
        caps = [" and ".join(sorted({lab[k] for k in range(len(fr)) if fr[k] == i})) or "nothing"
                for i in range(len(idx))] if captions else None
        out.append(SourceFrames(source, idx, idx / fps, wall0 + idx / fps, size[0], size[1], dets, caps, qa))
    return out


def crowd(n_tracks: int, n_frames: int, chunk: int = 8, seed: int = 0, size: tuple[int, int] = (1920, 1080),
          **kw: object) -> list[SourceFrames]:
    """``n_tracks`` non-overlapping walkers on a grid, each drifting a little per frame (bench load)."""
    rng = np.random.default_rng(seed)
    cols = int(np.ceil(np.sqrt(n_tracks)))
    cw, ch = size[0] / cols, size[1] / cols
    objs = []
    for k in range(n_tracks):
        x0, y0 = (k % cols) * cw + 2, (k // cols) * ch + 2
        vx, vy = rng.uniform(-0.3, 0.3, 2)
        objs.append(Obj("person" if k % 3 else "car", walker(x0 + 5, y0 + 5, vx, vy, cw * 0.5, ch * 0.5)))
    return scene(objs, n_frames, chunk, size=size, **kw)  # type: ignore[arg-type]
