"""The web side on a real live run (real Ray, Kafka, RTSP cameras): /metrics matches the driver's totals,
/readyz follows the broker, and the live view works in a real headless Chromium driven over CDP."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from pipeline.runtime.driver import Driver
from pipeline.sources import expand_sources
from pipeline.spec import load_spec
from pipeline.web.cli import attach_web
from pipeline.web.server import ui_spec
from pipeline.web.view import LiveView
from tests.support.browser import Browser, chromium
from tests.support.fake_model import FAKE
from tests.support.live_servers import RtspCameras, available

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
TOKEN = "test-token-7f3a"


def wait_for(cond: Any, timeout: float, what: str) -> None:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.mark.skipif(available() is not None, reason=str(available()))
@pytest.mark.skipif(chromium() is None, reason="chromium not installed (apt-get install chromium)")
def test_live_view_in_a_browser_and_metrics_after_a_run(kafka_bootstrap: str, ray_local: None, bikes: Path,
                                                         samples_dir: Path, tmp_path: Path) -> None:
    prefix = f"web{time.time_ns() % 10**9}"
    spec = ui_spec(load_spec([], environ={}).with_overrides(**{
        "mode": "live", "model.name": FAKE, "model.id": "fake", "model.options": {"size": [192, 320], "movers": 2},
        "model.tasks": ["detect", "caption"], "queries": [], "decode.fps": 4, "decode.chunk": 2, "model.cpus": 0.5,
        "decode.cpus": 0.25, "kafka.topic_prefix": prefix, "live.read_timeout_s": 5,
        "analytics.lines": [{"name": "gate", "source": "*", "start": [0.5, 0.0], "end": [0.5, 1.0]}]}))
    with RtspCameras({"cam1": bikes, "cam2": samples_dir / "carphone_pristine.mp4", "cam3": bikes}) as cams:
        srcs = expand_sources([cams.url("cam1", "viewer:hunter2"), cams.url("cam2")])
        stop = threading.Event()
        pipe = Driver(spec, srcs, bootstrap=kafka_bootstrap, stop=stop)
        web = attach_web(pipe, kafka_bootstrap, ui=True, host="127.0.0.1", port=0, token=TOKEN,
                         console=Console(file=open(tmp_path / "console.txt", "w")))  # noqa: SIM115
        url = web.server.url
        result: dict[str, Any] = {}
        runner = threading.Thread(target=lambda: result.setdefault("summary", pipe.run()), daemon=True)
        runner.start()
        browser = Browser(tmp_path / "chromium")
        try:
            assert httpx.get(f"{url}/healthz").json() == {"ok": True}
            wait_for(lambda: all(pipe.progress[s.id].published >= 4 for s in srcs), 90, "both cameras publishing")
            ready = httpx.get(f"{url}/readyz")
            assert ready.status_code == 200, ready.text
            # without the token the page is refused, in the browser and to a plain client
            browser.goto(f"{url}/")
            assert "token" in browser.evaluate("document.body.innerText")
            assert browser.evaluate("document.querySelector('#grid') === null")
            assert httpx.get(f"{url}/api/state").status_code == 401
            # with it (once, in the URL) the grid shows each source, its frame and boxes, and updates
            browser.goto(f"{url}/?token={TOKEN}")
            assert "token=" not in browser.evaluate("location.href")  # moved into a cookie
            n_loaded = ("[...document.querySelectorAll('.card')].filter(c => c.querySelector('img').naturalWidth > 0"
                        " && c.dataset.state === 'live').length")
            browser.wait_for(f"{n_loaded} >= 2", 40, "two live cards with frames")
            cards = browser.evaluate("[...document.querySelectorAll('.card')].map(c => c.dataset.source)")
            assert sorted(cards) == sorted(s.id for s in srcs)
            first = browser.evaluate(f"document.querySelector('.card[data-source=\"{srcs[0].id}\"]').dataset.pts")
            browser.wait_for(f"document.querySelector('.card[data-source=\"{srcs[0].id}\"]').dataset.pts "
                             f"!== '{first}'", 20, "the frame to update")
            width = browser.evaluate(f"document.querySelector('.card[data-source=\"{srcs[0].id}\"] img').naturalWidth")
            assert width == 320  # --ui thumbnails: up to 480 px, here the model's 320 px input (the default: 160)
            browser.wait_for("[...document.querySelectorAll('.boxes')].some(b => /#\\d+/.test(b.textContent))", 20,
                             "boxes with track ids listed")
            assert "hunter2" not in browser.evaluate("document.documentElement.outerHTML")
            # a camera added through the form starts publishing
            cam3_url = cams.url("cam3")
            browser.evaluate(f"(() => {{ const f = document.getElementById('add-source'); f.uri.value = '{cam3_url}';"
                             " f.requestSubmit(); return true; })()")
            browser.wait_for("document.getElementById('reply').textContent.includes('add_source: ok')", 30,
                             "the add_source reply")
            browser.wait_for(f"{n_loaded} >= 3", 60, "the added camera's card with a frame")
            cam3 = next(sid for sid in pipe.progress if sid not in {s.id for s in srcs})
            assert pipe.progress[cam3].published > 0
            browser.wait_for("document.querySelectorAll('#events li').length > 3", 10, "the events feed")
            # `framewire ui` beside the run: no driver in process, stats through the control topic
            remote = LiveView(kafka_bootstrap, prefix, spec=spec).start()
            try:
                def remote_ok() -> bool:
                    rows = {r["source_id"]: r for r in remote.snapshot()["sources"]}
                    return all(sid in rows and (rows[sid].get("fps") or 0) > 0 and rows[sid]["frame_pts"] is not None
                               and remote.frame(sid) for sid in (srcs[0].id, cam3))
                wait_for(remote_ok, 30, "the stand-alone view's stats and frames")
            finally:
                remote.stop()
            shot = browser.screenshot(tmp_path / "live_view.png")
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copy(shot, ARTIFACTS / "live_view.png")
        finally:
            browser.close()
            stop.set()
            runner.join(timeout=60)
            if "summary" not in result:
                web.stop()
    summary = result["summary"]
    assert summary.delivery.failed == 0
    # after the run the driver's final progress is in /metrics exactly
    try:
        got = samples(httpx.get(f"{url}/metrics").text)
    finally:
        web.stop()
    for sid, p in pipe.progress.items():
        lab = (("source", sid),)
        assert got[("framewire_frames_published_total", lab)] == p.published > 0
        assert got[("framewire_frames_decoded_total", lab)] == p.decoded
        assert got.get(("framewire_frames_dropped_total", (("reason", "driver"), ("source", sid))), 0) \
            == p.driver_dropped
        assert got[("framewire_capture_to_publish_ms_count", lab)] == len(p.latency_ms)
        assert got[("framewire_source_state", (("source", sid), ("state", "ended")))] == 1
    assert got[("framewire_model_batches_total", ())] >= 3
    assert got[("framewire_model_batch_frames_sum", ())] == summary.frames
    # the actors' own series (ray.util.metrics) on this Ray node's metrics endpoint, tagged with the run
    import ray

    port = ray._private.worker.global_worker.node.metrics_export_port
    ray_series: dict[str, float] = {}

    def exported() -> bool:
        ray_series.clear()
        for (name, labels), v in samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text).items():
            if dict(labels).get("run_id") == pipe.run_id:
                ray_series[name] = ray_series.get(name, 0.0) + v
        return ray_series.get("ray_framewire_actor_model_frames_total", 0) >= summary.frames \
            and ray_series.get("ray_framewire_kafka_acked_total", 0) >= summary.delivery.acked
    wait_for(exported, 40, "the actors' metrics on Ray's endpoint")
    assert ray_series["ray_framewire_actor_model_frames_total"] == summary.frames
    assert ray_series["ray_framewire_kafka_sent_total"] == summary.delivery.sent


def test_readiness_goes_false_when_the_broker_stops(tmp_path: Path) -> None:
    """A broker of its own, so stopping it leaves the session's broker alone."""
    from pipeline.broker import LocalBroker
    from pipeline.web.app import Health, create_app
    from pipeline.web.server import WebServer
    from tests.support.live_servers import free_port

    port, ctl = free_port(), free_port()
    broker = LocalBroker(port=port, controller_port=ctl, run_dir=tmp_path / "kafka", exit_with_parent=True)
    broker.start(timeout=90.0)
    server = WebServer(create_app(health=Health(broker.bootstrap, cache_s=0.0)), port=0).start()
    try:
        r = httpx.get(f"{server.url}/readyz")
        assert r.status_code == 200 and r.json()["checks"]["broker"]["ok"] is True
        broker.stop()
        r = httpx.get(f"{server.url}/readyz")
        assert r.status_code == 503 and r.json()["checks"]["broker"]["ok"] is False
        assert httpx.get(f"{server.url}/healthz").status_code == 200  # alive all the same
    finally:
        server.stop()
        broker.stop()
