"""What the live view and metrics cost: the same archive run (fake model, one short clip) with the web side
off and on, in one process, printed side by side.

"on" = ``framewire run --ui``: thumbnails at 480 px on their topic, driver metrics on every progress/publish,
the view's Kafka consumer, and a poller standing in for an open page (state + every source's annotated
frame twice a second). Frames/s exclude startup (Ray, model load).

    python -m tests.bench.bench_ui [--clip bikes.mp4] [--fps 5] [--size 384] [--repeats 1]
"""

from __future__ import annotations

import argparse
import threading
import uuid
from typing import Any

from pipeline.samples import sample_path
from tests.support.fake_model import FAKE


def one_run(spec: Any, clip: str, bootstrap: str, ui: bool) -> dict[str, float]:
    import httpx
    from rich.console import Console

    from pipeline.runtime.driver import Driver
    from pipeline.sources import expand_sources
    from pipeline.web.cli import attach_web
    from pipeline.web.server import ui_spec

    spec = spec.with_overrides(**{"kafka.topic_prefix": f"benchui{uuid.uuid4().hex[:6]}"})
    if ui:
        spec = ui_spec(spec)
    pipe = Driver(spec, expand_sources([clip]), bootstrap=bootstrap, restart=True)
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
    ap.add_argument("--fps", type=float, default=5.0)
    ap.add_argument("--size", type=int, default=384, help="the fake model's square input (thumbnails come from it)")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()

    from pipeline.broker import resolve_bootstrap
    from pipeline.runtime.driver import init_ray
    from pipeline.spec import load_spec

    spec = load_spec([], environ={}).with_overrides(**{
        "model.name": FAKE, "model.id": "fake", "model.options": {"size": [args.size, args.size], "movers": 3},
        "model.tasks": ["detect", "caption"], "queries": [], "decode.fps": args.fps, "model.cpus": 0.5,
        "decode.cpus": 0.25})
    bootstrap = resolve_bootstrap(spec.kafka.bootstrap_servers, start=True)
    clip = str(sample_path(args.clip))
    init_ray(spec, 2)
    rows: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    for _ in range(args.repeats):
        for mode in ("off", "on"):
            rows[mode].append(one_run(spec, clip, bootstrap, ui=mode == "on"))
    off = sum(r["fps"] for r in rows["off"]) / len(rows["off"])
    on = sum(r["fps"] for r in rows["on"]) / len(rows["on"])
    print(f"{args.clip} at {args.fps:g} fps, fake model {args.size}px, {args.repeats} run(s) each")
    print(f"{'':<28}{'frames/s':>10}{'frames':>8}{'events':>8}{'page polls':>12}")
    for mode, label in (("off", "ui + metrics off"), ("on", "ui + metrics on (--ui)")):
        r = rows[mode][-1]
        print(f"{label:<28}{sum(x['fps'] for x in rows[mode]) / len(rows[mode]):>10.1f}{r['frames']:>8.0f}"
              f"{r['events']:>8.0f}{r['polls']:>12.0f}")
    print(f"cost of the web side: {100 * (off - on) / off:+.1f}% frames/s")


if __name__ == "__main__":
    main()
