"""What the live view and metrics cost: the same archive run with the web side off and on, alternating in
one process, printed side by side.

"on" = ``framewire run --ui``: 480 px thumbnails (one per 0.5 s of each source) on their topic, driver
metrics on every progress/publish, the view's Kafka consumer, and a poller standing in for an open page
(state + every source's annotated frame twice a second). Frames/s exclude startup (Ray, model load).
The default is the harsh case: a fake model that costs nothing, every frame of four copies of the clip,
so all the web side's work shows; ``--model default`` runs the offline default detector instead.

    python -m tests.bench.bench_ui [--clip bikes.mp4] [--sources 4] [--fps 25] [--model fake|default]
                                   [--size 384] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import uuid
from typing import Any

from pipeline.samples import sample_path
from tests.support.fake_model import FAKE


def copies(clip: str, n: int) -> list[str]:
    """``n`` copies of ``clip`` under distinct names (n sources: one resolved path is one source)."""
    import os
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="bench-ui-")
    stem, ext = os.path.splitext(os.path.basename(clip))
    paths = [os.path.join(folder, f"{stem}-{i + 1}{ext}") for i in range(n)]
    for p in paths:
        shutil.copyfile(clip, p)
    return paths


def one_run(spec: Any, clips: list[str], bootstrap: str, ui: bool) -> dict[str, float]:
    import httpx
    from rich.console import Console

    from pipeline.runtime.driver import Driver
    from pipeline.sources import expand_sources
    from pipeline.web.cli import attach_web
    from pipeline.web.server import ui_spec

    spec = spec.with_overrides(**{"kafka.topic_prefix": f"benchui{uuid.uuid4().hex[:6]}"})
    if ui:
        spec = ui_spec(spec)
    pipe = Driver(spec, expand_sources(clips), bootstrap=bootstrap, restart=True)
    web, done, polls = None, threading.Event(), [0]
    if ui:
        web = attach_web(pipe, bootstrap, ui=True, host="127.0.0.1", port=0, token="bench",
                         console=Console(quiet=True))

        def page() -> None:  # what an open browser tab asks for
            with httpx.Client(base_url=web.server.url, headers={"Authorization": "Bearer bench"}) as c:
                while not done.wait(0.5):
                    for s in c.get("/api/state").json()["sources"]:
                        c.get(f"/frame/{s['source_id']}.jpg")
                    polls[0] += 1

        threading.Thread(target=page, daemon=True).start()
    try:
        summary = pipe.run()
    finally:
        done.set()
        if web is not None:
            web.stop()
    stream_s = summary.seconds - summary.extra["startup_s"]
    return {"fps": summary.frames / stream_s, "frames": summary.frames, "events": summary.delivery.acked,
            "polls": polls[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default="bikes.mp4")
    ap.add_argument("--sources", type=int, default=4, help="copies of the clip run side by side")
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--model", choices=["fake", "default"], default="fake")
    ap.add_argument("--size", type=int, default=384, help="the fake model's square input (thumbnails come from it)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from pipeline.broker import resolve_bootstrap
    from pipeline.runtime.driver import init_ray
    from pipeline.spec import load_spec

    spec = load_spec([], environ={}).with_overrides(**{"queries": [], "decode.fps": args.fps})
    if args.model == "fake":
        spec = spec.with_overrides(**{
            "model.name": FAKE, "model.id": "fake", "model.options": {"size": [args.size, args.size], "movers": 3},
            "model.tasks": ["detect", "caption"], "model.cpus": 0.5, "decode.cpus": 0.25})
    bootstrap = resolve_bootstrap(spec.kafka.bootstrap_servers, start=True)
    clips = copies(str(sample_path(args.clip)), args.sources)
    init_ray(spec, 2)
    rows: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    for _ in range(args.repeats):
        for mode in ("off", "on"):  # alternating, so a slow spell of the machine hits both
            rows[mode].append(one_run(spec, clips, bootstrap, ui=mode == "on"))
    med = {m: statistics.median(r["fps"] for r in rows[m]) for m in rows}
    print(f"{args.sources} x {args.clip} at {args.fps:g} fps, {args.model} model, {args.repeats} run(s) each")
    print(f"{'':<26}{'frames/s (median)':>18}  {'each run':<32}{'frames':>7}{'events':>8}{'page polls':>12}")
    for mode, label in (("off", "ui + metrics off"), ("on", "ui + metrics on (--ui)")):
        r = rows[mode][-1]
        each = " ".join(f"{x['fps']:.2f}" for x in rows[mode])
        print(f"{label:<26}{med[mode]:>18.2f}  {each:<32}{r['frames']:>7.0f}{r['events']:>8.0f}{r['polls']:>12.0f}")
    print(f"cost of the web side: {100 * (med['off'] - med['on']) / med['off']:+.1f}% frames/s (target < 5%)")


if __name__ == "__main__":
    main()
