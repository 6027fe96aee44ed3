"""The driver's ASGI app: ``/healthz``, ``/readyz``, ``/metrics`` (open, for probes and Prometheus) and the
live view (``/``, ``/api/*``, ``/frame/<source>.jpg``; a token: bearer header, or ``?token=`` once, then a cookie).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

__all__ = ["COOKIE", "Health", "broker_reachable", "create_app"]

COOKIE = "framewire_ui"
OPEN_PATHS = {"/healthz", "/readyz", "/metrics"}
UI_OPS = {"add_source", "remove_source", "add_query", "remove_query", "list_sources", "list_queries"}


def broker_reachable(bootstrap: str, timeout: float = 1.0) -> bool:
    """True when a TCP connection to any of the bootstrap servers opens (a stopped broker refuses it)."""
    for hostport in bootstrap.split(","):
        host, _, port = hostport.strip().rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
                return True
        except (OSError, ValueError):
            continue
    return False


@dataclass
class Health:
    """Readiness checks by name: each a callable returning (ok, detail); the broker's is cached ``cache_s``."""

    bootstrap: str
    checks: dict[str, Callable[[], tuple[bool, str]]] = field(default_factory=dict)
    cache_s: float = 1.0
    _broker: tuple[float, bool] = (0.0, False)

    def broker(self) -> tuple[bool, str]:
        now = time.monotonic()
        if now - self._broker[0] > self.cache_s:
            self._broker = (now, broker_reachable(self.bootstrap))
        ok = self._broker[1]
        return ok, f"Kafka {self.bootstrap} " + ("reachable" if ok else "unreachable")

    def ready(self) -> tuple[bool, dict[str, dict[str, Any]]]:
        results = {"broker": self.broker()} | {name: check() for name, check in self.checks.items()}
        detail = {k: {"ok": ok, "detail": why} for k, (ok, why) in results.items()}
        return all(ok for ok, _ in results.values()), detail


def _static(name: str) -> str:
    return resources.files("pipeline.web").joinpath("static", name).read_text(encoding="utf-8")


def create_app(*, health: Health, metrics: Any = None, view: Any = None, token: str | None = None) -> Any:
    """The app; ``metrics`` a DriverMetrics (or None: /metrics 404), ``view`` a LiveView (None: no UI)."""

    def authorised(request: Request) -> bool:
        if token is None:
            return True
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip() or \
            request.cookies.get(COOKIE, "")
        return bool(given) and hmac.compare_digest(given.encode(), token.encode())

    async def healthz(_: Request) -> Response:
        return JSONResponse({"ok": True})

    async def readyz(_: Request) -> Response:
        ok, detail = await run_in_threadpool(health.ready)
        return JSONResponse({"ready": ok, "checks": detail}, status_code=200 if ok else 503)

    async def metrics_endpoint(_: Request) -> Response:
        if metrics is None:
            return PlainTextResponse("metrics are off", status_code=404)
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def index(_: Request) -> Response:
        return HTMLResponse(_static("index.html"))

    async def script(_: Request) -> Response:
        return Response(_static("app.js"), media_type="text/javascript")

    async def state(_: Request) -> Response:
        return JSONResponse(await run_in_threadpool(view.snapshot))

    async def stream(request: Request) -> Response:
        async def events() -> Any:
            last, beat = -1, 0.0
            while not await request.is_disconnected():
                snap = await run_in_threadpool(view.snapshot)
                if snap["version"] != last or time.monotonic() - beat > 5:
                    last, beat = snap["version"], time.monotonic()
                    yield f"data: {json.dumps(snap)}\n\n"
                await asyncio.sleep(0.5)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def frame(request: Request) -> Response:
        jpeg = await run_in_threadpool(view.frame, request.path_params["source_id"])
        if jpeg is None:
            return PlainTextResponse("no frame yet", status_code=404)
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def command(request: Request) -> Response:
        try:
            body = await request.json()
            op, args = body["op"], dict(body.get("args") or {})
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"ok": False, "error": 'send JSON {"op": ..., "args": {...}}'}, status_code=400)
        if op not in UI_OPS:
            return JSONResponse({"ok": False, "error": f"unknown op {op!r}; one of {sorted(UI_OPS)}"}, status_code=400)
        replies = await run_in_threadpool(view.command, op, args)
        if not replies:
            return JSONResponse({"ok": False, "error": "no reply from a live run (is one listening on the control "
                                 "topic? archive runs take no commands)"}, status_code=504)
        rep = replies[0]
        return JSONResponse({"ok": rep.ok, "result": rep.result, "error": rep.error},
                            status_code=200 if rep.ok else 422)

    routes = [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics_endpoint)]
    if view is not None:
        routes += [Route("/", index), Route("/app.js", script), Route("/api/state", state),
                   Route("/api/stream", stream), Route("/api/command", command, methods=["POST"]),
                   Route("/frame/{source_id}.jpg", frame)]
    inner = Starlette(routes=routes)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Token check in front of every UI path (plain ASGI: server-sent events stream through untouched)."""
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or token is None:
            await inner(scope, receive, send)
            return
        request = Request(scope)
        given = request.query_params.get("token")
        if given is not None:
            if not hmac.compare_digest(given.encode(), token.encode()):
                resp: Response = PlainTextResponse("wrong token", status_code=401)
            else:
                rest = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
                resp = RedirectResponse(request.url.path + (f"?{rest}" if rest else ""), status_code=303)
                resp.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        elif authorised(request):
            await inner(scope, receive, send)
            return
        else:
            resp = PlainTextResponse("framewire UI: open the URL with ?token=... printed at start, or send "
                                     "'Authorization: Bearer TOKEN'", status_code=401)
        await resp(scope, receive, send)

    return app  # type: ignore[return-value]
