"""Instance masks in source pixels: COCO-style run-length encoding, polygons, and boxes as masks.

A mask is RLE over the ``h x w`` frame in column-major (Fortran) order, counts starting with
a run of zeros, exactly as COCO/pycocotools write it. ``counts`` travels either as the list of
run lengths ("uncompressed") or as COCO's compressed string (LEB128-like, 6 bits a character,
the delta against the run two back), which is what events carry: it decodes with
``pycocotools.mask.decode({"size": [h, w], "counts": s})``. Written here because pycocotools is
a C extension this project does not otherwise need, and the format is 40 lines.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["box_mask", "compress_counts", "decode_rle", "decompress_counts", "encode_rle", "polygon_mask",
           "rle_area"]


def encode_rle(mask: npt.ArrayLike) -> list[int]:
    """Run lengths of a ``[h, w]`` boolean mask in column-major order, starting with zeros.

    >>> encode_rle(np.array([[0, 1], [0, 1]], bool))
    [2, 2]
    >>> encode_rle(np.array([[1, 0], [1, 0]], bool))
    [0, 2, 2]
    """
    m = np.asarray(mask, bool)
    if m.ndim != 2:
        raise ValueError(f"a mask must be 2-D [h, w], got shape {m.shape}")
    flat = m.flatten(order="F").astype(np.int8)
    if flat.size == 0:
        return [0]
    edges = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], edges, [flat.size]])
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat[0] else runs


def decode_rle(counts: Sequence[int] | str, size: tuple[int, int]) -> npt.NDArray[np.bool_]:
    """The ``[h, w]`` boolean mask of run lengths ``counts`` (a list or a compressed string)."""
    h, w = int(size[0]), int(size[1])
    runs = decompress_counts(counts) if isinstance(counts, str) else [int(c) for c in counts]
    if sum(runs) != h * w:
        raise ValueError(f"RLE counts cover {sum(runs)} pixels but the mask is {h}x{w} = {h * w}")
    values = np.arange(len(runs)) % 2 == 1
    flat = np.repeat(values, runs)
    return flat.reshape((w, h)).T.copy()


def compress_counts(counts: Sequence[int]) -> str:
    """COCO's compressed string of run lengths (pycocotools ``rleToString``).

    >>> compress_counts([2, 2]), decompress_counts(compress_counts([2, 2, 300, 7]))
    ('22', [2, 2, 300, 7])
    """
    out = []
    cnts = [int(c) for c in counts]
    for i, c in enumerate(cnts):
        x = c - cnts[i - 2] if i > 2 else c
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5
            more = (x != -1) if (ch & 0x10) else (x != 0)
            if more:
                ch |= 0x20
            out.append(chr(ch + 48))
    return "".join(out)


def decompress_counts(s: str) -> list[int]:
    """Run lengths of a COCO compressed string (pycocotools ``rleFrString``)."""
    cnts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p >= len(s):
                raise ValueError(f"truncated RLE string {s!r}")
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(cnts) > 2:
            x += cnts[-2]
        cnts.append(x)
    return cnts


def rle_area(counts: Sequence[int] | str) -> int:
    """Pixels inside the mask."""
    runs = decompress_counts(counts) if isinstance(counts, str) else list(counts)
    return int(sum(runs[1::2]))


def polygon_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> npt.NDArray[np.bool_]:
    """Fill polygons (each a flat ``[x1, y1, x2, y2, ...]`` in pixels) into a ``[height, width]`` mask."""
    import cv2

    canvas = np.zeros((int(height), int(width)), np.uint8)
    pts = [np.round(np.asarray(p, np.float64).reshape(-1, 2)).astype(np.int32) for p in polygons if len(p) >= 6]
    if pts:
        cv2.fillPoly(canvas, pts, 1)
    return canvas.astype(bool)


def box_mask(xyxy: Sequence[float], height: int, width: int) -> npt.NDArray[np.bool_]:
    """The pixels whose centres lie inside box ``xyxy`` (the fallback mask where no decoder is configured)."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    m = np.zeros((int(height), int(width)), bool)
    c0, c1 = max(0, int(np.ceil(x1 - 0.5))), min(int(width), int(np.ceil(x2 - 0.5)))
    r0, r1 = max(0, int(np.ceil(y1 - 0.5))), min(int(height), int(np.ceil(y2 - 0.5)))
    m[r0:r1, c0:c1] = True
    return m
