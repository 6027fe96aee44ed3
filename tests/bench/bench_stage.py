"""Per-source analytics cost: ms per frame at 10 and 100 synthetic tracks per frame.

Three rows per load, measured on the same frames in the same run:
- ``bytetrack``: the baseline, one bare ``trackers.ByteTrackTracker`` fed the boxes (association only);
- ``tracker``: framewire's ``Tracker`` (ByteTrack per label, own ids, track events);
- ``stage``: the whole ``SourceStage`` (tracker + 2 zones + 2 lines + query intervals + 10 s windows),
  plus the time and size of one ``to_bytes()`` snapshot at the end.

    python -m tests.bench.bench_stage [--tracks 10,100] [--frames 120]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from operators.analytics.config import AnalyticsSpec
from operators.analytics.frames import SourceFrames
from operators.analytics.stage import SourceStage
from operators.analytics.tracker import Tracker
from tests.support.analytics_scenes import crowd

SPEC = AnalyticsSpec.model_validate({
    "zones": [{"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]},
              {"name": "top", "polygon": [[0, 0], [1, 0], [1, 0.3], [0, 0.3]]}],
    "lines": [{"name": "v", "start": [0.5, 0], "end": [0.5, 1]}, {"name": "h", "start": [0, 0.5], "end": [1, 0.5]}],
    "windows": {"window_s": 10},
})


def bare_bytetrack(chunks: list[SourceFrames]) -> float:
    bt = ByteTrackTracker(frame_rate=2.0, minimum_consecutive_frames=2)
    t0 = time.perf_counter()
    for c in chunks:
        d = c.detections
        for i in range(len(c)):
            r = d.frame == i
            bt.update(sv.Detections(xyxy=d.xyxy[r].astype(np.float64), confidence=d.score[r].astype(np.float64)),
                      timestamp=float(c.pts[i]))
    return time.perf_counter() - t0


def tracker_only(chunks: list[SourceFrames]) -> float:
    tr = Tracker("cam", SPEC.tracker, frame_rate=2.0)
    t0 = time.perf_counter()
    for c in chunks:
        tr.update(c)
    return time.perf_counter() - t0


def whole_stage(chunks: list[SourceFrames]) -> tuple[float, float, int]:
    st = SourceStage("cam", SPEC, frame_rate=2.0)
    t0 = time.perf_counter()
    for seq, c in enumerate(chunks):
        st.push(seq, c)
    elapsed = time.perf_counter() - t0
    t1 = time.perf_counter()
    data = st.to_bytes()
    return elapsed, time.perf_counter() - t1, len(data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", default="10,100", help="comma-separated tracks per frame")
    ap.add_argument("--frames", type=int, default=120, help="frames per run (2 fps, chunks of 8)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    print(f"{'tracks':>6} {'frames':>6} {'bytetrack ms/f':>15} {'tracker ms/f':>13} {'stage ms/f':>11} "
          f"{'snapshot ms':>12} {'snapshot KiB':>13}")
    for n in (int(x) for x in args.tracks.split(",")):
        chunks = crowd(n, args.frames, queries={"q": [f % 7 < 4 for f in range(args.frames)]}, captions=True)
        base = bare_bytetrack(chunks)
        trk = tracker_only(chunks)
        stage, snap, size = whole_stage(chunks)
        f = args.frames
        print(f"{n:>6} {f:>6} {1e3 * base / f:>15.2f} {1e3 * trk / f:>13.2f} {1e3 * stage / f:>11.2f} "
              f"{1e3 * snap:>12.2f} {size / 1024:>13.1f}")


if __name__ == "__main__":
    main()
