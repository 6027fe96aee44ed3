"""Archives of many short files against one long file of the same frames, in the same run.

Real archives are thousands of short clips (dashcams, body cameras, CCTV exports). With a
model that costs nothing (the fake model), the difference between the two runs is what the
runtime spends per file: opening it, its status events, its checkpoint transactions.

    python -m tests.bench.bench_archive [--files 64] [--fps 10]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from fractions import Fraction
from pathlib import Path

import av


def long_clip(src: Path, dst: Path, copies: int) -> Path:
    """``copies`` times ``src`` back to back in one H.264 file (same frames, same rate)."""
    with av.open(str(src)) as inp:
        stream = inp.streams.video[0]
        rate = stream.average_rate or Fraction(25)
        frames = [f.to_ndarray(format="rgb24") for f in inp.decode(stream)]
    h, w = frames[0].shape[:2]
    with av.open(str(dst), "w") as out:
        vs = out.add_stream("libx264", rate=rate)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"preset": "ultrafast"}
        i = 0
        for _ in range(copies):
            for img in frames:
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = i
                i += 1
                for pkt in vs.encode(frame):
                    out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
    return dst


def run(files: list[Path], fps: float, bootstrap: str) -> tuple[int, float]:
    from pipeline.runtime.driver import Driver
    from pipeline.sources import expand_sources
    from pipeline.spec import load_spec
    from tests.support.fake_model import FAKE

    spec = load_spec([], environ={}).with_overrides(**{
        "model.name": FAKE, "model.options": {"size": [144, 176]}, "model.tasks": ["caption", "detect", "query"],
        "decode.fps": fps,
        "kafka.topic_prefix": f"bencharch{uuid.uuid4().hex[:6]}"})
    summary = Driver(spec, expand_sources([str(f) for f in files]), bootstrap=bootstrap).run()
    if summary.delivery.failed or any(p.error for p in summary.sources):
        raise SystemExit(f"run incomplete: {summary.delivery}")
    return summary.frames, summary.seconds - summary.extra["startup_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=64)
    ap.add_argument("--fps", type=float, default=10.0)
    args = ap.parse_args()
    import ray

    from pipeline.broker import resolve_bootstrap
    from pipeline.samples import sample_path

    src = sample_path("carphone_pristine.mp4")
    work = Path(tempfile.mkdtemp(prefix="framewire-bench-archive-"))
    try:
        many = []
        for i in range(args.files):
            many.append(work / f"clip{i:04d}.mp4")
            shutil.copy(src, many[-1])
        t0 = time.perf_counter()
        one = long_clip(src, work / "long.mp4", args.files)
        print(f"{args.files} copies of {src.name} vs one clip of the same frames ({time.perf_counter() - t0:.1f}s "
              f"to build), fake model, sampled at {args.fps} fps")
        bootstrap = resolve_bootstrap(None, start=True)
        n_long, s_long = run([one], args.fps, bootstrap)
        print(f"  one long clip: {n_long} frames in {s_long:.1f}s", flush=True)
        n_many, s_many = run(many, args.fps, bootstrap)
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    r_long, r_many = n_long / s_long, n_many / s_many
    per_file = (s_many - s_long * n_many / n_long) / args.files
    print(f"{'one long clip':>22}: {n_long:6d} frames in {s_long:6.1f}s = {r_long:7.1f} frames/s")
    print(f"{f'{args.files} short files':>22}: {n_many:6d} frames in {s_many:6.1f}s = {r_many:7.1f} frames/s "
          f"({r_many / r_long:.2f} x the long clip; {per_file * 1000:+.0f} ms per file)")


if __name__ == "__main__":
    main()
