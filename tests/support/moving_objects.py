"""A test clip with known motion: real pedestrians cut out of OpenCV's vtest.avi, moved along known paths.

The background is vtest's median frame (the empty hall); each actor is a person cut from one vtest
frame by differencing against that median (so only the person's own pixels move, not a rectangle),
then pasted along a path given per frame. The clip is H.264 at a known fps, encoded with PyAV, and
the ground-truth box of every actor in every frame comes back with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from scipy import ndimage

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
# (vtest frame, xyxy) of isolated people the default CenterNet detector finds (scores 0.62-0.73)
PEOPLE = {"p0": (100, (586, 158, 619, 235)), "p1": (200, (615, 262, 649, 366)), "p2": (0, (499, 156, 529, 231))}
# the clip's background: this square of vtest (it leaves out a poster CenterNet calls a person, at x ~ 161-192)
CROP = (192, 0, 768, 576)


@dataclass(frozen=True)
class Actor:
    """A person cut from ``PEOPLE[person]`` whose box's top-left corner is ``path(frame)`` in clip pixels."""

    name: str
    person: str
    path: Callable[[int], tuple[float, float]]
    scale: float = 1.0


@dataclass(frozen=True)
class Clip:
    path: Path
    fps: int
    frames: int
    size: int
    boxes: dict[str, npt.NDArray[np.float64]]  # actor -> [frames, 4] xyxy ground truth in clip pixels


def _read_vtest(indices: set[int], step: int = 8, upto: int = 400) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    if not VTEST.is_file():
        raise FileNotFoundError(f"{VTEST} is missing; install Debian's opencv-doc package (apt-get install opencv-doc)")
    picked, sample = {}, []
    with av.open(str(VTEST)) as c:
        for i, f in enumerate(c.decode(c.streams.video[0])):
            if i >= upto and len(picked) == len(indices):
                break
            if i in indices or (i < upto and i % step == 0):
                img = f.to_ndarray(format="rgb24")
                if i in indices:
                    picked[i] = img
                if i < upto and i % step == 0:
                    sample.append(img)
    return np.median(np.stack(sample), axis=0).astype(np.uint8), picked


def _cutout(frame: np.ndarray, bg: np.ndarray, box: tuple[int, int, int, int], pad: int = 6) -> tuple[np.ndarray,
                                                                                                      np.ndarray]:
    """RGB patch and boolean mask of the person in ``box``: pixels that differ from the median background."""
    x1, y1, x2, y2 = box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad
    patch, ref = frame[y1:y2, x1:x2].astype(np.int16), bg[y1:y2, x1:x2].astype(np.int16)
    mask = np.abs(patch - ref).max(axis=2) > 28
    mask = ndimage.binary_closing(mask, iterations=2)
    labels, n = ndimage.label(mask)
    if n:
        sizes = ndimage.sum(mask, labels, range(1, n + 1))
        mask = labels == (1 + int(np.argmax(sizes)))
    mask = ndimage.binary_fill_holes(ndimage.binary_dilation(mask, iterations=1))
    ys, xs = np.nonzero(mask)
    sl = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    return frame[y1:y2, x1:x2][sl], mask[sl]


def _resize(img: np.ndarray, scale: float, mask: bool = False) -> np.ndarray:
    from PIL import Image
    h, w = img.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if mask:
        return np.asarray(Image.fromarray(img.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 127
    return np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR))


def make_clip(path: Path, actors: list[Actor], *, frames: int = 80, fps: int = 10, size: int = 512) -> Clip:
    """Write the clip to ``path`` and return it with every actor's true box per frame."""
    bg_full, picked = _read_vtest({PEOPLE[a.person][0] for a in actors})
    x1, y1, x2, y2 = CROP
    k = size / (x2 - x1)  # a square crop scaled uniformly: no distortion
    background = _resize(bg_full[y1:y2, x1:x2], k)
    sprites = {}
    for a in actors:
        fi, box = PEOPLE[a.person]
        patch, mask = _cutout(picked[fi], bg_full, box)
        sprites[a.name] = (_resize(patch, k * a.scale), _resize(mask, k * a.scale, mask=True))
    boxes = {a.name: np.zeros((frames, 4)) for a in actors}
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.codec_context.options = {"crf": "18"}
        for f in range(frames):
            img = background.copy()
            for a in actors:
                patch, mask = sprites[a.name]
                px, py = (round(v) for v in a.path(f))
                h, w = mask.shape
                region = img[py:py + h, px:px + w]
                if region.shape[:2] != (h, w):
                    raise ValueError(f"actor {a.name} leaves the {size}px frame at frame {f} ({px}, {py})")
                region[mask] = patch[mask]
                boxes[a.name][f] = (px, py, px + w, py + h)
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            vf.pts = f
            for pkt in stream.encode(vf):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    return Clip(path, fps, frames, size, boxes)
