"""Serving the web app beside a run (``framewire run --ui`` / ``--metrics-port``) or on its own
(``framewire ui``): uvicorn in a daemon thread on a socket bound up front, so port 0 works and the URL is known."""

from __future__ import annotations

import os
import secrets
import socket
import threading
from typing import Any

from pipeline.runtime.summary import percentile
from pipeline.web.priority import yield_to_pipeline

__all__ = ["UI_THUMBNAIL_SIDE", "WebServer", "driver_checks", "driver_queries", "driver_stats", "for_driver",
           "resolve_token", "ui_spec"]

UI_THUMBNAIL_SIDE = 480
UI_THUMBNAIL_EVERY_S = 0.5  # the page asks for each source's latest frame twice a second
TOKEN_ENV = "FRAMEWIRE_UI_TOKEN"


def resolve_token(given: str | None = None, environ: dict[str, str] | None = None) -> tuple[str, bool]:
    """(token, generated): ``given``, else ``FRAMEWIRE_UI_TOKEN``, else a random one to print at start."""
    env = os.environ if environ is None else environ
    tok = given or env.get(TOKEN_ENV, "").strip()
    if tok:
        return tok, False
    return secrets.token_urlsafe(18), True


def ui_spec(spec: Any) -> Any:
    """The spec with thumbnails on, large enough to watch (480 px, up to 96 KiB), for ``--ui``.

    Thumbnails the run did not ask for itself come every ``UI_THUMBNAIL_EVERY_S`` of each source, as often
    as the page refreshes: encoding and publishing one for every frame cost a fast run a quarter of its
    frames/s (tests/bench/bench_ui.py)."""
    t = spec.thumbnails
    return spec.with_overrides(**{"thumbnails.enabled": True,
                                  "thumbnails.max_side": max(t.max_side, UI_THUMBNAIL_SIDE),
                                  "thumbnails.max_bytes": max(t.max_bytes, 96 * 1024),
                                  "thumbnails.every_s": t.every_s if t.enabled else UI_THUMBNAIL_EVERY_S})


class WebServer:
    """uvicorn serving ``app`` on ``host:port`` in a daemon thread (at idle priority: ``yield_to_pipeline``)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise OSError(f"cannot serve the web app on {host}:{port} ({exc}); pick another port "
                          "(--ui-port / --metrics-port, 0 = any free one)") from None
        self.host, self.port = host, int(self.sock.getsockname()[1])
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
        self.thread = threading.Thread(target=self._serve, daemon=True, name="framewire-web")

    def _serve(self) -> None:
        yield_to_pipeline()
        self.server.run(sockets=[self.sock])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> WebServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and time.monotonic() < deadline and self.thread.is_alive():
            time.sleep(0.02)
        if not self.server.started:
            raise RuntimeError(f"the web app did not start on {self.url}")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()


# ---- what an in-process driver tells the app ---------------------------------------------
def driver_stats(driver: Any) -> list[dict[str, Any]]:
    """Per source: state, fps, latency p50/p95, drops, frames (the live feed's own ``describe`` when live)."""
    feed = getattr(driver, "feed", None)

    def row(p: Any) -> dict[str, Any]:
        if hasattr(feed, "describe"):
            return dict(feed.describe(p))
        lat = sorted(p.latency_ms)
        return {"source_id": p.source.id, "uri": p.source.display, "state": p.live_state or p.state,
                "frames": p.published, "fps": round(p.fps, 2), "latency_p50_ms": percentile(lat, 0.5),
                "latency_p95_ms": percentile(lat, 0.95), "dropped": p.dropped, "detail": p.detail}

    rows = []
    for p in list(driver.progress.values()):
        for attempt in range(5):  # the driver thread appends to the latency/fps deques meanwhile
            try:
                rows.append(row(p))
                break
            except RuntimeError:
                if attempt == 4:
                    rows.append({"source_id": p.source.id, "uri": p.source.display, "state": p.live_state or p.state})
    return rows


def driver_queries(driver: Any) -> list[dict[str, Any]]:
    scopes = getattr(getattr(driver, "feed", None), "scopes", None)
    if scopes is None:
        return [{"query": q, "sources": None} for q in driver.spec.queries]
    return [{"query": q, "sources": s} for q, s in list(scopes.items())]


def driver_checks(driver: Any) -> dict[str, Any]:
    """Readiness beyond the broker: the model actors answered ``info`` and some source is live (or decoding)."""

    def model() -> tuple[bool, str]:
        ok = bool(driver.models) and hasattr(driver, "model_info")
        return ok, f"{len(driver.models)} model actor(s) loaded" if ok else "model not loaded yet"

    def sources() -> tuple[bool, str]:
        states = {p.source.id: (p.live_state or p.state) for p in list(driver.progress.values())}
        live = [s for s, st in states.items() if st in ("live", "decoding", "started")]
        if not states and driver.spec.mode == "live" and driver.spec.live.control:
            return bool(driver.models), "no cameras yet; waiting for `framewire sources add`"
        return bool(live), f"{len(live)}/{len(states)} sources live"

    return {"model": model, "sources": sources}


def for_driver(driver: Any, *, bootstrap: str, ui: bool, host: str = "127.0.0.1", port: int = 0,
               token: str | None = None, metrics: Any = None) -> tuple[WebServer, Any]:
    """Start the app beside ``driver`` (before ``driver.run()``): metrics and probes, plus the live view when
    ``ui``. Returns (server, view or None); stop both after the run."""
    from pipeline.web.app import Health, create_app
    from pipeline.web.view import LiveView

    view = None
    if ui:
        view = LiveView(bootstrap, driver.spec.kafka.topic_prefix, run_id=driver.run_id,
                        analytics=driver.spec.analytics, stats=lambda: driver_stats(driver),
                        queries=lambda: driver_queries(driver), spec=driver.spec).start()
    app = create_app(health=Health(bootstrap, driver_checks(driver)), metrics=metrics, view=view,
                     token=token if ui else None)
    return WebServer(app, host, port).start(), view
