"""What the default detector finds on real clips: frames with a person / bicycle / car and boxes per frame.

Runs CenterNet (real weights) over bikes.mp4 (640x272 street) and vtest.avi (768x576
pedestrians, Debian's opencv-doc) three ways in the same run: ``before`` (frames stretched to
512x512, one 0.35 threshold: the old default), ``letterbox`` (aspect kept, same thresholds)
and ``after`` (letterbox plus the per-class thresholds, today's default). Counts are not
accuracy against labels; ``--png DIR`` writes every frame with its boxes for eyeballing.

    python -m tests.bench.bench_detect_quality [--png /tmp/frames] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from operators.decode import DecodeOptions, decode
from operators.frames import FrameBatch
from operators.models.centernet import CLASS_THRESHOLDS, CenterNetModel

CLASSES = ("person", "bicycle", "car")
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
OLD = {"score_threshold": 0.35, "class_thresholds": dict.fromkeys(CLASS_THRESHOLDS, 0.35)}
CONFIGS: list[tuple[str, str, dict[str, Any]]] = [
    ("before: stretch, 0.35", "stretch", OLD),
    ("letterbox, 0.35", "letterbox", OLD),
    ("after: letterbox, per class", "letterbox", {}),
]


def clips() -> list[tuple[str, str, float]]:
    from pipeline.samples import sample_path

    out = [("bikes.mp4", str(sample_path("bikes.mp4")), 2.0)]
    if VTEST.is_file():
        out.append(("vtest.avi", str(VTEST), 0.5))
    return out


def draw(batch: FrameBatch, row: int, dets: Any, path: Path) -> None:
    import cv2

    img = np.ascontiguousarray(batch.pixels[row][..., ::-1])
    for (x1, y1, x2, y2), lab, s in zip(dets.xyxy.astype(int), dets.label, dets.score, strict=True):
        cv2.rectangle(img, (x1, y1), (x2, y2), (0, 255, 255), 1)
        cv2.putText(img, f"{lab} {s:.2f}", (x1, max(10, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1)
    cv2.imwrite(str(path), img)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--png", default="", help="write each frame (source size) with the 'after' boxes here")
    args = ap.parse_args()
    print(f"{'clip / config':<40} {'frames':>6} " + " ".join(f"{'w/ ' + c:>11}" for c in CLASSES)
          + " " + " ".join(f"{c + '/frame':>14}" for c in CLASSES)
          + f" {'all/frame':>9} {'s':>5}  other classes (boxes)")
    for name, path, fps in clips():
        source = next(decode(path, name, DecodeOptions(fps=fps, chunk=10_000)))  # source size, for drawing
        for label, mode, opts in CONFIGS:
            model = CenterNetModel(tasks=["detect"], threads=args.threads, **opts)
            model.setup()
            t0 = time.perf_counter()
            batch = FrameBatch.concat(list(decode(path, name, DecodeOptions(fps=fps, size=model.input_size(),
                                                                            resize=mode, chunk=8))))  # type: ignore[arg-type]
            dets = model(batch).detections
            took = time.perf_counter() - t0
            assert dets is not None
            n = len(batch)
            with_cls = [len(set(dets.frame[dets.label == c].tolist())) for c in CLASSES]
            per = [float((dets.label == c).sum()) / n for c in CLASSES]
            print(f"{name + ' / ' + label:<40} {n:>6} " + " ".join(f"{k:>11}" for k in with_cls) + " "
                  + " ".join(f"{p:>14.2f}" for p in per) + f" {len(dets) / n:>9.2f} {took:>5.1f}  "
                  + ", ".join(f"{k} {v}" for k, v in Counter(dets.label[~np.isin(dets.label, CLASSES)].tolist())
                              .most_common(3)), flush=True)
            if args.png and label.startswith("after"):
                out = Path(args.png)
                out.mkdir(parents=True, exist_ok=True)
                for row in range(n):
                    draw(source, row, dets.for_frame(row), out / f"{Path(name).stem}-{row:03d}.png")
            model.teardown()


if __name__ == "__main__":
    main()
