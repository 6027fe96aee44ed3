"""Live benchmark: N simulated cameras (looped sample clips served over RTSP) through the live pipeline.

For each N and each live policy it prints sustained fps per camera, the frames/s delivered in
all against the model's capacity, capture-to-publish latency p50/p95/p99 (capture = the
frame left the camera reader; publish = its events handed to the Kafka producer), the drop
rate, and whether N holds the target fps with p95 under the budget. The baseline, measured
in the same run, is the model alone on the same frames with every core: the frames/s it
can do bounds how many cameras any scheduler could keep up with. ``budget`` is the live
policy; ``fifo`` is the earlier one (full batches oldest first, two queued per model).

    python -m tests.bench.bench_live [--cameras 1,2,4,6,8] [--fps 2] [--seconds 20] [--policies budget,fifo]
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
from typing import Any

from operators.decode import DecodeOptions, decode
from operators.models.registry import create
from pipeline.runtime.driver import Driver
from pipeline.runtime.summary import percentile
from pipeline.sources import expand_sources
from pipeline.spec import PipelineSpec, load_spec
from tests.support.live_servers import RtspCameras, available


def model_only_fps(spec: PipelineSpec, clip: str, frames: int = 48) -> float:
    m = spec.model
    model = create(m.name, model_id=m.id, path=m.path, tasks=list(m.tasks), queries=list(spec.queries),
                   batch_size=m.batch_size, threads=os.cpu_count() or 1, **m.options)
    model.setup()
    chunks = list(decode(clip, "bench", DecodeOptions(fps=None, size=model.input_size(), chunk=m.batch_size,
                                                      max_frames=frames)))
    model(chunks[0])  # warm-up
    t0 = time.perf_counter()
    n = 0
    for c in chunks:
        model(c)
        n += len(c)
    fps = n / (time.perf_counter() - t0)
    model.teardown()
    return fps


def run_n(spec: PipelineSpec, n: int, clip: str, seconds: float, warmup: float, policy: str) -> dict[str, Any]:
    cams = RtspCameras({f"cam{i}": clip for i in range(n)})
    cams.start()
    try:
        srcs = expand_sources([cams.url(f"cam{i}") for i in range(n)])
        stop = threading.Event()
        pipe = Driver(spec.with_overrides(**{"kafka.topic_prefix": f"benchlive{uuid.uuid4().hex[:6]}"}),
                     srcs, bootstrap=BOOTSTRAP, stop=stop, policy=policy)
        out: dict[str, Any] = {}
        t = threading.Thread(target=lambda: out.setdefault("s", pipe.run()), daemon=True)
        t.start()
        t_end = time.monotonic() + 90
        while time.monotonic() < t_end and not all(p.published for p in pipe.progress.values()):
            time.sleep(0.2)
        time.sleep(warmup)
        base = {sid: (p.published, p.decoded + p.reader_dropped, p.dropped) for sid, p in pipe.progress.items()}
        for p in pipe.progress.values():
            p.latency_ms.clear()
        time.sleep(seconds)
        snap = {sid: (p.published, p.decoded + p.reader_dropped, p.dropped, list(p.latency_ms))
                for sid, p in pipe.progress.items()}
        stop.set()
        t.join(timeout=120)
    finally:
        cams.close()
    fps = [(snap[s][0] - base[s][0]) / seconds for s in snap]
    sampled = sum(snap[s][1] - base[s][1] for s in snap)
    dropped = sum(snap[s][2] - base[s][2] for s in snap)
    lat = sorted(x for s in snap for x in snap[s][3])
    return {"n": n, "fps_min": min(fps), "fps_mean": sum(fps) / len(fps), "fps_sum": sum(fps),
            "p50": percentile(lat, 0.5),
            "p95": percentile(lat, 0.95), "p99": percentile(lat, 0.99),
            "drop_rate": dropped / sampled if sampled else 0.0}


BOOTSTRAP = ""


def main() -> None:
    global BOOTSTRAP
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", default="1,2,4,6,8", help="comma-separated camera counts")
    ap.add_argument("--fps", type=float, default=2.0, help="target fps per camera")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured window per N")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--profile", default="centernet", choices=["centernet", "fake"])
    ap.add_argument("--policies", default="budget,fifo", help="live policies to compare (budget, fifo)")
    args = ap.parse_args()
    missing = available()
    if missing:
        raise SystemExit(f"cannot run the live benchmark: {missing}")
    from pipeline.broker import resolve_bootstrap
    from pipeline.runtime.driver import init_ray
    from pipeline.samples import sample_path

    over: dict[str, Any] = {"mode": "live", "decode.fps": args.fps, "live.control": False, "decode.cpus": 0.1,
                            "model.tasks": ["caption", "detect", "query"]}
    if args.profile == "fake":
        over.update({"model.name": "tests.support.fake_model:FakeModel", "model.id": "fake",
                     "model.options": {"size": [64, 64], "delay_s": 0.02}})
    spec = load_spec([], environ={}).with_overrides(**over)
    BOOTSTRAP = resolve_bootstrap(spec.kafka.bootstrap_servers, start=True)
    clip = str(sample_path("bikes.mp4"))
    budget = spec.live.latency_budget_ms
    base = model_only_fps(spec, clip)
    print(f"profile {args.profile}, target {args.fps:g} fps per camera, latency budget {budget:.0f} ms, "
          f"{args.seconds:g}s measured per N")
    print(f"baseline, model alone at batch {spec.model.batch_size}: {base:.1f} frames/s "
          f"-> at most {base / args.fps:.1f} cameras at {args.fps:g} fps")
    init_ray(spec, 8)
    print(f"{'policy':>7} {'N':>3} {'fps/cam min':>11} {'mean':>6} {'delivered':>9} {'of model':>8} {'p50 ms':>7} "
          f"{'p95 ms':>7} {'p99 ms':>7} {'drops':>6}  holds")
    best: dict[str, int] = {}
    for n in [int(x) for x in args.cameras.split(",")]:
        for policy in args.policies.split(","):
            r = run_n(spec, n, clip, args.seconds, args.warmup, policy)
            holds = r["fps_min"] >= 0.9 * args.fps and r["p95"] is not None and r["p95"] < budget
            best[policy] = n if holds else best.get(policy, 0)
            print(f"{policy:>7} {n:>3} {r['fps_min']:>11.2f} {r['fps_mean']:>6.2f} {r['fps_sum']:>9.2f} "
                  f"{min(r['fps_sum'], n * args.fps) / min(base, n * args.fps):>8.0%} {r['p50'] or 0:>7.0f} "
                  f"{r['p95'] or 0:>7.0f} {r['p99'] or 0:>7.0f} {r['drop_rate']:>6.1%}  {'yes' if holds else 'no'}",
                  flush=True)
    for policy, n in best.items():
        print(f"{policy}: largest N holding {args.fps:g} fps per camera with p95 < {budget:.0f} ms: {n}")


if __name__ == "__main__":
    main()
