"""Live benchmark: N simulated cameras (looped sample clips served over RTSP) through the live pipeline.

For each N and each live policy it prints sustained fps per camera, the frames/s delivered in
all against the model's capacity, capture-to-publish latency p50/p95/p99 (capture = the
frame left the camera reader; publish = its events handed to the Kafka producer), the drop
rate, and whether N holds the target fps with p95 under the budget. Two baselines, measured
in the same run: the model alone on the same frames with every core of an idle machine
(``of alone``: the best of one replica on every thread and the arrangements compared), and
the model alone (arranged as in the row) while N camera readers decode the same streams in
another process (``beside N``, ``of it``; measured just before and just after the row's window and
averaged, as this machine's speed drifts): on a 2-core machine the cameras' decoding takes a
share of the cores, so that is the capacity no scheduler could beat. ``busy`` is the share of
the window the models spent in their own calls (2 replicas: up to 200%), ``in-call`` their
frames/s inside them; ``models`` is replicas x threads (``--replicas 1,auto`` compares), ``rd``
the cameras per reader process (``--per-reader 1,4`` compares). ``budget`` is the live policy;
``fifo`` is the earlier one (full batches oldest first, two queued per model). Under each row,
``cores used`` is every process's CPU over the window by its part (models, camera readers, the
bench's RTSP cameras, driver, publisher, raylet, Kafka, the rest), and the CPU the pipeline's
own machinery (all but the models, readers and cameras) spent per delivered frame.

``--profile fake`` swaps CenterNet for a model that costs time but no CPU (20 ms a call plus
80 ms a frame, asleep, at CenterNet's 512x512 input): a GPU's share of the work. The cores then
only decode and move frames, so its rows measure the scheduling alone against the model's
capacity, with no CPU contention between the model and the rest of the pipeline.

    python -m tests.bench.bench_live [--cameras 1,2,4,8,12] [--fps 2] [--seconds 20] [--policies budget,fifo]
                                     [--replicas 1,auto] [--per-reader 1,4] [--profile centernet|fake]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

from operators.decode import DecodeOptions, decode
from operators.models.registry import create
from pipeline.runtime.driver import Driver, model_replicas, model_threads
from pipeline.runtime.summary import percentile
from pipeline.sources import expand_sources
from pipeline.spec import PipelineSpec, load_spec
from tests.support.live_servers import RtspCameras, available


def model_only_fps(spec: PipelineSpec, clip: str, frames: int = 48, threads: int | None = None,
                   ready: Any = None) -> tuple[float, tuple[int, int]]:
    """Frames/s of the model alone on decoded frames (``threads``: every core), and its input size;
    ``ready`` (if given) is called after the warm-up, before the timed part."""
    m = spec.model
    model = create(m.name, model_id=m.id, path=m.path, tasks=list(m.tasks), queries=list(spec.queries),
                   batch_size=m.batch_size, **{**m.options, "threads": threads or os.cpu_count() or 1})
    model.setup()
    chunks = list(decode(clip, "bench", DecodeOptions(fps=None, size=model.input_size(), chunk=m.batch_size,
                                                      max_frames=frames)))
    model(chunks[0])  # warm-up
    if ready is not None:
        ready()
    t0 = time.perf_counter()
    n = 0
    for c in chunks:
        model(c)
        n += len(c)
    fps = n / (time.perf_counter() - t0)
    size = tuple(model.input_size())
    model.teardown()
    return fps, size  # type: ignore[return-value]


def _alone_worker(spec_json: str, clip: str, threads: int, frames: int = 48) -> None:
    """One replica of ``model_capacity``: warm up, say so, wait for the go line, print frames/s."""
    spec = PipelineSpec.model_validate_json(spec_json)
    fps, _ = model_only_fps(spec, clip, frames=frames, threads=threads,
                            ready=lambda: (print("ready", flush=True), sys.stdin.readline()))
    print(f"fps {fps}", flush=True)


def model_capacity(spec: PipelineSpec, clip: str, replicas: int, threads: int, frames: int = 48) -> float:
    """Frames/s of ``replicas`` copies of the model running side by side (each ``threads`` threads, each in
    its own process, timed together, each on the same ``frames``): the machine's capacity for the model
    arranged that way."""
    if replicas == 1:
        return model_only_fps(spec, clip, frames=frames, threads=threads)[0]
    code = (f"from tests.bench.bench_live import _alone_worker; "
            f"_alone_worker({spec.model_dump_json()!r}, {clip!r}, {threads}, {frames})")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              cwd=REPO) for _ in range(replicas)]
    try:
        for p in procs:
            while p.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
                pass
        for p in procs:
            p.stdin.write("go\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
        out = [p.stdout.read() for p in procs]  # type: ignore[union-attr]
    finally:
        for p in procs:
            p.wait(timeout=60)
    return sum(float(line.split()[1]) for o in out for line in o.splitlines() if line.startswith("fps "))


def read_cameras(urls: list[str], fps: float, size: tuple[int, int]) -> None:
    """Decode and sample cameras like the pipeline's readers until stdin closes (the loaded baseline's load)."""
    from operators.cameras import LiveOptions, LiveReader
    from pipeline.runtime.cameras import decoder_threads

    threads = decoder_threads(len(urls))  # as the pipeline's readers
    readers = [LiveReader(u, f"cam{i}", LiveOptions(fps=fps, size=size, threads=threads)).start()
               for i, u in enumerate(urls)]
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    while True:
        for r in readers:
            r.read(8, 0.0)
        time.sleep(0.1)


def model_beside_cameras(spec: PipelineSpec, clip: str, cams: RtspCameras, n: int, size: tuple[int, int],
                         arrangement: tuple[int, int]) -> float:
    """The model alone while ``n`` camera readers decode in another process: its capacity on this machine
    under the same decode load as the pipeline (the in-pipeline bound no scheduler can beat)."""
    urls = [cams.url(f"cam{i}") for i in range(n)]
    code = (f"from tests.bench.bench_live import read_cameras; read_cameras({urls!r}, {spec.decode.fps or 2.0}, "
            f"{tuple(size)!r})")
    load = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, cwd=REPO)
    try:
        time.sleep(4)  # connected and decoding
        return model_capacity(spec, clip, *arrangement)
    finally:
        load.stdin.close()  # type: ignore[union-attr]
        load.wait(timeout=30)


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_n(spec: PipelineSpec, n: int, clip: str, seconds: float, warmup: float, policy: str,
          size: tuple[int, int], arrangement: tuple[int, int]) -> dict[str, Any]:
    cams = RtspCameras({f"cam{i}": clip for i in range(n)})
    cams.start()
    try:
        loaded = model_beside_cameras(spec, clip, cams, n, size, arrangement)
        srcs = expand_sources([cams.url(f"cam{i}") for i in range(n)])
        stop = threading.Event()
        calls = [0, 0.0, 0]  # frames, seconds and count of the model's own calls (its busy time)

        def on_publish(res: Any) -> None:
            calls[0] += res.model_frames
            calls[1] += res.model_s
            calls[2] += 1 if res.model_frames else 0

        pipe = Driver(spec.with_overrides(**{"kafka.topic_prefix": f"benchlive{uuid.uuid4().hex[:6]}"}),
                     srcs, bootstrap=BOOTSTRAP, stop=stop, policy=policy, on_publish=on_publish)
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
        calls0 = list(calls)
        cpu0 = cpu_by_role()
        time.sleep(seconds)
        cpu = {k: v - cpu0.get(k, 0.0) for k, v in cpu_by_role().items()}
        busy = ((calls[1] - calls0[1]) / seconds, (calls[0] - calls0[0]) / max(1e-9, calls[1] - calls0[1]),
                (calls[0] - calls0[0]) / max(1, calls[2] - calls0[2]))
        snap = {sid: (p.published, p.decoded + p.reader_dropped, p.dropped, list(p.latency_ms))
                for sid, p in pipe.progress.items()}
        stop.set()
        t.join(timeout=120)
        # this machine's speed drifts by 20% within minutes: the baseline is measured on both sides of the
        # window and averaged, and both are printed
        after = model_beside_cameras(spec, clip, cams, n, size, arrangement)
    finally:
        cams.close()
    fps = [(snap[s][0] - base[s][0]) / seconds for s in snap]
    sampled = sum(snap[s][1] - base[s][1] for s in snap)
    dropped = sum(snap[s][2] - base[s][2] for s in snap)
    lat = sorted(x for s in snap for x in snap[s][3])
    return {"n": n, "fps_min": min(fps), "fps_mean": sum(fps) / len(fps), "fps_sum": sum(fps),
            "p50": percentile(lat, 0.5),
            "p95": percentile(lat, 0.95), "p99": percentile(lat, 0.99),
            "drop_rate": dropped / sampled if sampled else 0.0, "busy": busy[0], "call_fps": busy[1], "batch": busy[2],
            "loaded": (loaded + after) / 2, "loaded_each": (loaded, after),
            "cpu": {k: v / seconds for k, v in cpu.items()}}


ROLES = [("model", "ModelActor"), ("reader", "LiveDecodeActor"), ("publisher", "PublisherActor"),
         ("raylet", "raylet"), ("kafka", "java"), ("cameras", "rtsp_server"), ("cameras", "ffmpeg"),
         ("driver", "tests.bench.bench_live")]


def cpu_by_role() -> dict[str, float]:
    """CPU seconds used so far by every process on the machine, summed by its part in the run (``ROLES``,
    the rest as ``other``): where the cores go while the pipeline runs."""
    import psutil

    out: dict[str, float] = {}
    for proc in psutil.process_iter(["cmdline", "name", "cpu_times"]):
        t = proc.info["cpu_times"]
        if t is None:
            continue
        cmd = " ".join(proc.info["cmdline"] or []) or proc.info["name"] or ""
        role = next((r for r, key in ROLES if key in cmd), "other")
        out[role] = out.get(role, 0.0) + t.user + t.system
    return out


BOOTSTRAP = ""


def main() -> None:
    global BOOTSTRAP
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", default="1,2,4,8,12", help="comma-separated camera counts")
    ap.add_argument("--fps", type=float, default=2.0, help="target fps per camera")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured window per N")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--profile", default="centernet", choices=["centernet", "fake"])
    ap.add_argument("--policies", default="budget,fifo", help="live policies to compare (budget, fifo)")
    ap.add_argument("--per-reader", default="8",
                    help="live.cameras_per_reader values to compare, e.g. 1,4 (1: a reader process per camera)")
    ap.add_argument("--replicas", default="auto",
                    help="model.replicas values to compare, e.g. 1,auto (auto: 2 single-threaded replicas on a CPU)")
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
                     "model.options": {"size": [512, 512], "delay_s": 0.02, "delay_per_frame_s": 0.08}})
    spec = load_spec([], environ={}).with_overrides(**over)
    BOOTSTRAP = resolve_bootstrap(spec.kafka.bootstrap_servers, start=True)
    clip = str(sample_path("bikes.mp4"))
    budget = spec.live.latency_budget_ms
    print(f"profile {args.profile}, target {args.fps:g} fps per camera, latency budget {budget:.0f} ms, "
          f"{args.seconds:g}s measured per N")
    arrangements: dict[str, tuple[int, int]] = {}
    for replicas in args.replicas.split(","):
        rspec = spec.with_overrides(**{"model.replicas": replicas if replicas == "auto" else int(replicas)})
        arrangements[replicas] = (model_replicas(rspec), model_threads(rspec, replicas=model_replicas(rspec)))
    cores = os.cpu_count() or 1
    size = model_only_fps(spec, clip, frames=8)[1]
    alone = {a: model_capacity(spec, clip, *a) for a in {(1, cores), *arrangements.values()}}
    base = max(alone.values())  # the model's capacity on this machine, however it is arranged
    for (r, t), fps in sorted(alone.items()):
        print(f"baseline, model alone at batch {spec.model.batch_size}, {r} replica(s) x {t} thread(s): {fps:.1f} "
              f"frames/s -> at most {fps / args.fps:.1f} cameras at {args.fps:g} fps")
    init_ray(spec, 8)
    print(f"{'policy':>7} {'models':>6} {'rd':>2} {'N':>3} {'fps/cam min':>11} {'mean':>6} {'delivered':>9} "
          f"{'of alone':>8} "
          f"{'beside N':>8} {'of it':>6} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'drops':>6} {'busy':>5} "
          f"{'in-call':>7}  holds")
    best: dict[str, int] = {}
    for n in [int(x) for x in args.cameras.split(",")]:
        for replicas, arrangement in arrangements.items():
            rspec = spec.with_overrides(**{"model.replicas": replicas if replicas == "auto" else int(replicas)})
            models = "x".join(map(str, arrangement))
            for per, policy in [(int(k), p) for k in args.per_reader.split(",") for p in args.policies.split(",")]:
                pspec = rspec.with_overrides(**{"live.cameras_per_reader": per})
                r = run_n(pspec, n, clip, args.seconds, args.warmup, policy, size, arrangement)
                holds = r["fps_min"] >= 0.9 * args.fps and r["p95"] is not None and r["p95"] < budget
                key = f"{policy} {models} {per} per reader"
                best[key] = n if holds else best.get(key, 0)
                demand = n * args.fps
                print(f"{policy:>7} {models:>6} {per:>2} {n:>3} {r['fps_min']:>11.2f} {r['fps_mean']:>6.2f} "
                      f"{r['fps_sum']:>9.2f} {min(r['fps_sum'], demand) / min(base, demand):>8.0%} "
                      f"{r['loaded']:>8.1f} {min(r['fps_sum'], demand) / min(r['loaded'], demand):>6.0%} "
                      f"{r['p50'] or 0:>7.0f} {r['p95'] or 0:>7.0f} {r['p99'] or 0:>7.0f} {r['drop_rate']:>6.1%} "
                      f"{r['busy']:>5.0%} {r['call_fps']:>7.1f}  {'yes' if holds else 'no'}", flush=True)
                cpu = r["cpu"]
                used = ", ".join(f"{k} {v:.0%}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))
                extra = sum(v for k, v in cpu.items() if k not in ("model", "cameras", "reader"))
                print(f"        cores used: {used}; outside the models, readers and cameras: "
                      f"{1000 * extra / max(1e-9, r['fps_sum']):.1f} CPU ms per delivered frame; beside N "
                      "measured before / after the window: {:.1f} / {:.1f}".format(*r["loaded_each"]), flush=True)
    for policy, n in best.items():
        print(f"{policy}: largest N holding {args.fps:g} fps per camera with p95 < {budget:.0f} ms: {n}")


if __name__ == "__main__":
    main()
