"""The web app in process (starlette's TestClient, no socket): the token gate, the probes, /metrics."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from starlette.testclient import TestClient

from pipeline.web.app import COOKIE, Health, create_app
from pipeline.web.metrics import DriverMetrics


class FakeView:
    """Stands in for LiveView (which needs Kafka) with fixed data."""

    def snapshot(self) -> dict[str, Any]:
        return {"version": 1, "sources": [{"source_id": "cam1", "uri": "rtsp://cam1"}], "events": []}

    def frame(self, sid: str) -> bytes | None:
        return b"\xff\xd8jpeg" if sid == "cam1" else None

    def command(self, op: str, args: dict[str, Any]) -> list[Any]:
        return [SimpleNamespace(ok=True, result={"op": op, **args}, error=None)]


def _client(ready: bool = True) -> TestClient:
    health = Health("127.0.0.1:1", {"model": lambda: (ready, "m")})
    health.broker = lambda: (True, "stub")  # type: ignore[method-assign]
    app = create_app(health=health, metrics=DriverMetrics(), view=FakeView(), token="s3cret")
    return TestClient(app)


def test_ui_needs_the_token_and_the_query_token_becomes_a_cookie() -> None:
    c = _client()
    assert c.get("/").status_code == 401
    assert c.get("/api/state").status_code == 401
    assert c.get("/?token=wrong").status_code == 401
    assert c.get("/api/state", headers={"Authorization": "Bearer s3cret"}).json()["sources"][0]["source_id"] == "cam1"
    r = c.get("/?token=s3cret", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/" and COOKIE in r.cookies
    assert "framewire" in c.get("/").text  # the cookie now carries the token
    assert c.get("/frame/cam1.jpg").content.startswith(b"\xff\xd8")
    assert c.get("/frame/nope.jpg").status_code == 404
    r = c.post("/api/command", json={"op": "add_source", "args": {"uri": "rtsp://x/y"}})
    assert r.json()["result"] == {"op": "add_source", "uri": "rtsp://x/y"}
    assert c.post("/api/command", json={"op": "shutdown"}).status_code == 400


def test_probes_and_metrics_are_open_and_readiness_follows_the_checks() -> None:
    c = _client(ready=True)
    assert c.get("/healthz").json() == {"ok": True}
    assert c.get("/readyz").status_code == 200
    assert "framewire_policy_buffered_frames" in c.get("/metrics").text
    r = _client(ready=False).get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["model"]["ok"] is False
