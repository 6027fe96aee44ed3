"""The HTTP API over the index (Starlette, ASGI): search, clips (mp4) and summaries as JSON.

Every route but ``/health`` needs the token, as ``Authorization: Bearer TOKEN`` or ``?token=TOKEN``,
compared in constant time. ``framewire api`` prints a random token at start unless one is configured
(``--token`` or ``FRAMEWIRE_API_TOKEN``). Model work runs in the thread pool, not on the event loop.
"""

from __future__ import annotations

import hmac
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from pipeline.index.store import IndexStore

__all__ = ["create_app", "new_token", "serve", "TOKEN_ENV"]

TOKEN_ENV = "FRAMEWIRE_API_TOKEN"


def new_token() -> str:
    return secrets.token_urlsafe(24)


class _TokenAuth(BaseHTTPMiddleware):
    def __init__(self, app: Any, token: str) -> None:
        super().__init__(app)
        self.token = token.encode()

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if request.url.path == "/health":
            return await call_next(request)
        auth = request.headers.get("authorization", "")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else request.query_params.get("token", "")
        if not hmac.compare_digest(given.encode(), self.token):
            return JSONResponse({"error": "missing or wrong token: send Authorization: Bearer TOKEN or ?token=TOKEN"},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)


def _float(q: Any, name: str, default: float | None = None) -> float | None:
    v = q.get(name)
    if v in (None, ""):
        return default
    try:
        return float(v)
    except ValueError:
        raise ValueError(f"{name}={v!r} is not a number") from None


def _time(q: Any, name: str) -> float | None:
    from pipeline.kafka.consumer import parse_since

    v = q.get(name)
    return None if v in (None, "") else parse_since(v)


def _flag(q: Any, name: str) -> bool:
    return q.get(name, "").lower() in ("1", "true", "yes", "on")


def create_app(db: str | IndexStore, *, token: str, embedder: Any = None, llm_path: str | None = None,
               image_model_paths: dict[str, str] | None = None) -> Starlette:
    """The ASGI app over the index at ``db``; ``embedder`` (a MiniLM TextEmbedder) is loaded on first search."""
    store = db if isinstance(db, IndexStore) else IndexStore(db, create=False)
    state: dict[str, Any] = {"embedder": embedder}

    def _embedder() -> Any:
        if state["embedder"] is None:
            from operators.models.minilm import TextEmbedder

            state["embedder"] = TextEmbedder()
        return state["embedder"]

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "events": await run_in_threadpool(store.count)})

    async def sources(request: Request) -> Response:
        return JSONResponse({"sources": list((await run_in_threadpool(store.sources)).values())})

    async def search_route(request: Request) -> Response:
        from pipeline.index.search import search

        q = request.query_params
        if not q.get("q"):
            raise ValueError("give the search text as ?q=...")
        res = await run_in_threadpool(
            lambda: search(store, q["q"], source=q.get("source") or None, since=_time(q, "since"),
                           until=_time(q, "until"), label=q.get("label") or None,
                           limit=int(q.get("limit", "10")), embedder=_embedder(),
                           image_model_paths=image_model_paths))
        return JSONResponse(res.to_dict())

    async def summary_route(request: Request) -> Response:
        from pipeline.index.summary import summarize

        q = request.query_params
        if not q.get("source"):
            raise ValueError("give the source as ?source=ID")
        s = await run_in_threadpool(lambda: summarize(store, q["source"], since=_time(q, "since"),
                                                      until=_time(q, "until"), llm_path=llm_path))
        return JSONResponse(s.to_dict())

    async def clip_route(request: Request) -> Response:
        from pipeline.index.clips import cut_clip, detections_for, source_file

        q = request.query_params
        if not q.get("source"):
            raise ValueError("give ?source=ID and ?at=SECONDS (or ?start=&end=)")
        start, end = _float(q, "start"), _float(q, "end")
        if start is None or end is None:
            at = _float(q, "at")
            if at is None:
                raise ValueError("give ?at=SECONDS (with ?before= and ?after=) or ?start=&end=")
            start, end = at - (_float(q, "before", 2.0) or 0.0), at + (_float(q, "after", 2.0) or 0.0)
        path = await run_in_threadpool(source_file, store, q["source"])
        fd, out = tempfile.mkstemp(suffix=".mp4", prefix="framewire-clip-")
        os.close(fd)
        boxes = await run_in_threadpool(detections_for, store, q["source"], start, end) if _flag(q, "boxes") \
            else None
        try:
            info = await run_in_threadpool(lambda: cut_clip(path, out, start, end, exact=_flag(q, "exact"),
                                                            boxes=boxes))
        except Exception:
            Path(out).unlink(missing_ok=True)
            raise
        return FileResponse(out, media_type="video/mp4", filename=f"{Path(path).stem}_{start:.2f}-{end:.2f}.mp4",
                            headers={"X-Clip-Start": f"{info.start:.6f}", "X-Clip-Mode": info.mode},
                            background=BackgroundTask(lambda: Path(out).unlink(missing_ok=True)))

    async def bad_request(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=400)

    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=404)

    app = Starlette(routes=[Route("/health", health), Route("/sources", sources), Route("/search", search_route),
                            Route("/summary", summary_route), Route("/clip", clip_route)],
                    exception_handlers={ValueError: bad_request, FileNotFoundError: not_found})
    app.add_middleware(_TokenAuth, token=token)
    return app


def serve(db: str, *, host: str = "127.0.0.1", port: int = 8710, token: str | None = None,
          llm_path: str | None = None) -> None:
    """Run the API with uvicorn until interrupted (prints the token when it made one)."""
    import uvicorn

    token = token or os.environ.get(TOKEN_ENV) or None
    if token is None:
        token = new_token()
        print(f"framewire api: token {token}  (Authorization: Bearer {token})", flush=True)
    uvicorn.run(create_app(db, token=token, llm_path=llm_path), host=host, port=port, log_level="warning")
