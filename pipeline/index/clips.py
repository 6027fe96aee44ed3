"""Clips of an archive source with PyAV: a remux from the keyframe at or before the start (no
re-encoding, so it starts up to one GOP early), or a re-encode of the whole cut (``exact``, and
always with ``boxes``) that starts and ends on the requested frames. The video stream only.

Re-encoding the whole cut rather than only its edges keeps one code path; cuts are seconds long.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.index.store import IndexStore, sql_str

__all__ = ["ClipInfo", "cut_clip", "detections_for", "source_file"]


@dataclass(frozen=True)
class ClipInfo:
    path: str
    source: str
    requested_start: float
    requested_end: float
    start: float  # source time of the clip's first frame
    duration: float
    frames: int
    mode: str  # remux | exact | boxes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def source_file(store: IndexStore | None, source: str) -> str:
    """A playable file for ``source``: a path as given, else the indexed source's uri."""
    if Path(source).is_file():
        return source
    if store is None:
        raise FileNotFoundError(f"{source} is not a file; give the archive file or --db with the indexed source")
    sid = store.resolve_source(source)
    uri = store.sources()[sid]["source_uri"]
    if not Path(uri).is_file():
        raise FileNotFoundError(f"source {sid} was indexed from {uri}, which is not a file here (clips need the "
                                "archive file; live streams have no archive to cut)")
    return str(uri)


Boxes = list[tuple[float, list[dict[str, Any]]]]


def detections_for(store: IndexStore, source: str, start: float, end: float) -> Boxes:
    """``[(pts, [box dicts with label, score, box, track_id])]`` of the indexed detections in [start, end]."""
    sid = store.resolve_source(source)
    rows = store.rows(f"type = 'detections' AND source_id = {sql_str(sid)} AND pts >= {start - 5.0!r} AND "
                      f"pts <= {end!r}", ["pts", "raw"])
    out = [(float(r["pts"]), json.loads(r["raw"]).get("detections") or []) for r in rows]
    return sorted(out, key=lambda x: x[0])


def _window(path: str, start: float, end: float) -> tuple[Any, Any]:
    import av

    if end <= start:
        raise ValueError(f"clip end {end:.3f}s is not after its start {start:.3f}s; give --after > 0 or a later --at")
    try:
        inp = av.open(path)
    except (av.FFmpegError, OSError) as exc:
        raise ValueError(f"cannot open {path} as video ({exc}); clips need a readable video file") from exc
    if not inp.streams.video:
        inp.close()
        raise ValueError(f"{path} has no video stream")
    vs = inp.streams.video[0]
    dur = float(inp.duration / 1e6) if inp.duration else None
    if dur is not None and start >= dur:
        inp.close()
        raise ValueError(f"clip start {start:.3f}s is past the end of {path} ({dur:.3f}s)")
    inp.seek(int(max(0.0, start) / vs.time_base), stream=vs, backward=True, any_frame=False)
    return inp, vs


def _remux(path: str, out: str, start: float, end: float) -> tuple[float, int]:
    import av

    inp, vs = _window(path, start, end)
    tb = vs.time_base
    with inp, av.open(out, "w", format="mp4") as dst:
        ost = dst.add_stream_from_template(vs)
        base: int | None = None
        n = 0
        for pkt in inp.demux(vs):
            if pkt.dts is None or pkt.pts is None:
                continue
            if base is None:
                if not pkt.is_keyframe:
                    continue
                base = pkt.pts
            if pkt.dts * tb >= end:
                break
            pkt.pts -= base
            pkt.dts -= base
            pkt.stream = ost
            dst.mux(pkt)
            n += 1
        if base is None:
            raise ValueError(f"no keyframe in {path} before {end:.3f}s")
        return float(base * tb), n


def _draw(img: np.ndarray, boxes: list[dict[str, Any]], scale: tuple[float, float]) -> None:
    import cv2

    for b in boxes:
        x1, y1, x2, y2 = (int(round(v * s)) for v, s in zip(b["box"], (*scale, *scale), strict=True))
        tid = b.get("track_id")
        colour = (0, 200, 255) if tid is None else tuple(int(c) for c in np.random.default_rng(int(tid)).integers(
            64, 256, 3))
        cv2.rectangle(img, (x1, y1), (x2, y2), colour, 2)
        text = b["label"] + (f" #{tid}" if tid is not None else "") + (
            f" {b['score']:.2f}" if b.get("score") is not None else "")
        cv2.putText(img, text, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)


def _reencode(path: str, out: str, start: float, end: float, boxes: Boxes | None,
              hold: float) -> tuple[float, int]:
    import av

    inp, vs = _window(path, start, end)
    rate = vs.average_rate or Fraction(25)
    keys = [p for p, _ in boxes or []]
    with inp, av.open(out, "w", format="mp4") as dst:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        ost = dst.add_stream(codec, rate=rate)
        ost.width, ost.height = vs.codec_context.width, vs.codec_context.height
        ost.pix_fmt = "yuv420p"
        frame_tb = Fraction(1, 1) / rate
        first: float | None = None
        n = 0
        for frame in inp.decode(vs):
            t = float(frame.pts * vs.time_base) if frame.pts is not None else None
            if t is None or t < start - 1e-6:
                continue
            if t >= end - 1e-6:
                break
            first = t if first is None else first
            if boxes:
                img = frame.to_ndarray(format="bgr24")
                i = bisect.bisect_right(keys, t + 1e-6) - 1
                if i >= 0 and t - keys[i] <= hold:
                    raw = json.loads(json.dumps(boxes[i][1]))
                    _draw(img, raw, (1.0, 1.0))
                frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame = frame.reformat(format="yuv420p")
            frame.pts = n
            frame.time_base = frame_tb
            for pkt in ost.encode(frame):
                dst.mux(pkt)
            n += 1
        for pkt in ost.encode(None):
            dst.mux(pkt)
        if first is None:
            raise ValueError(f"no frames in {path} between {start:.3f}s and {end:.3f}s")
        return first, n


def cut_clip(path: str, out: str | Path, start: float, end: float, *, exact: bool = False,
             boxes: Boxes | None = None, hold: float = 1.0) -> ClipInfo:
    """Cut [start, end) of ``path`` into the mp4 ``out``. ``boxes`` (from ``detections_for``) are drawn
    on every frame until the next detections, for at most ``hold`` seconds."""
    import av

    start = max(0.0, float(start))
    out = str(out)
    if boxes is not None or exact:
        first, n = _reencode(path, out, start, float(end), boxes, hold)
        mode = "boxes" if boxes is not None else "exact"
    else:
        first, n = _remux(path, out, start, float(end))
        mode = "remux"
    with av.open(out) as c:
        dur = float(c.duration / 1e6) if c.duration else 0.0
    return ClipInfo(path=out, source=path, requested_start=start, requested_end=float(end), start=round(first, 6),
                    duration=round(dur, 6), frames=n, mode=mode)
