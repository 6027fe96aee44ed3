"""OCR throughput and what it reads: framewire's batched rapidocr family vs RapidOCR's own per-image call.

Frames are real bikes.mp4 frames with real words drawn on them (``tests.support.text_clip``),
decoded at 640x272. Baseline: ``RapidOCR()(frame)`` one frame at a time at the source size (its
defaults: the short side scaled up to 736, upright-classifier on). Ours: ``RapidOcrModel`` at its
544x960 input, batch 1 and batch 8. Both on one onnxruntime thread.

    python -m tests.bench.bench_ocr [--frames 16]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from operators.decode import DecodeOptions, decode
from operators.frames import FrameBatch
from operators.models.ocr import RapidOcrModel
from tests.support.text_clip import make_text_clip


def _frames(n: int, size: tuple[int, int] | None) -> tuple[FrameBatch, list[set[str]]]:
    with tempfile.TemporaryDirectory() as d:
        clip, spans = make_text_clip(Path(d) / "signs.mp4", fps=4, seconds_per_word=n / 12)
        b = FrameBatch.concat(list(decode(str(clip), "signs", DecodeOptions(fps=4, size=size, chunk=64))))
    truth = [{s.text for s in spans if s.start <= t < s.end} for t in b.pts.tolist()]
    return b[: n], truth[:n]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=16)
    args = ap.parse_args()
    from rapidocr_onnxruntime import RapidOCR

    src, truth = _frames(args.frames, None)
    base = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)
    base(np.ascontiguousarray(src.pixels[0][..., ::-1]))  # warm-up
    t = time.perf_counter()
    base_read = [{r[1] for r in (base(np.ascontiguousarray(f[..., ::-1]))[0] or [])} for f in src.pixels]
    base_s = time.perf_counter() - t
    print(f"{'path':44s} {'frames/s':>9s} {'words read':>11s}")
    hits = sum(len(w & r) for w, r in zip(truth, base_read, strict=True))
    total = sum(len(w) for w in truth)
    print(f"{'RapidOCR() per frame, 640x272 (baseline)':44s} {len(src) / base_s:9.2f} {hits:>5d}/{total}")
    model = RapidOcrModel(threads=1)
    model.setup()
    sized, _ = _frames(args.frames, model.input_size())
    model(sized[:1])  # warm-up
    for bs in (1, 8):
        t = time.perf_counter()
        read: list[set[str]] = []
        for part in sized.split(bs):
            lines = model(part).text
            read += [set(lines.for_frame(r).text.tolist()) for r in range(len(part))]
        s = time.perf_counter() - t
        hits = sum(len(w & r) for w, r in zip(truth, read, strict=True))
        print(f"{f'rapidocr family, {model.input_size()[1]}x{model.input_size()[0]}, batch {bs}':44s} "
              f"{len(sized) / s:9.2f} {hits:>5d}/{total}")


if __name__ == "__main__":
    main()
