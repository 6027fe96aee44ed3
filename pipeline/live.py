"""Live mode: cameras in real time, bounded latency, reconnects, run-time control.

The driver keeps one read outstanding per camera. Chunks wait for a free ModelActor in a
small queue; a chunk older than its source's latency budget, or past the queue's size,
is dropped oldest-first and counted, so latency never grows without bound. Camera state
changes (connecting, live, stalled, reconnecting, ended, failed, removed) become one
status event each on the compacted status topic. Standing queries become match
started/ended events in the publisher (hysteresis). Commands on ``<prefix>.control``
add and remove sources and queries while it runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import ray

from operators.geometry import ResizeMode
from operators.live import LiveOptions
from pipeline.actors.live import LiveChunk, LiveDecodeActor
from pipeline.actors.model import ModelResult
from pipeline.actors.publish import DeliveryReport
from pipeline.control import Command, ControlChannel, Reply
from pipeline.events import StatusEvent, event_id, to_record
from pipeline.planner import Pipeline, RunSummary, SourceProgress
from pipeline.sources import Source, expand_sources
from pipeline.spec import PipelineSpec

__all__ = ["LivePipeline", "live_options"]

log = logging.getLogger(__name__)
FINAL = ("ended", "failed", "removed")


def live_options(spec: PipelineSpec, size: tuple[int, int], resize: ResizeMode = "stretch") -> LiveOptions:
    lv, rc = spec.live, spec.live.reconnect
    return LiveOptions(
        fps=spec.decode.fps or 2.0, size=size, resize=resize, open_timeout_s=lv.open_timeout_s,
        read_timeout_s=lv.read_timeout_s,
        rtsp_transport=lv.rtsp_transport, buffer_frames=lv.buffer_frames, initial_backoff_s=rc.initial_backoff_s,
        max_backoff_s=rc.max_backoff_s, multiplier=rc.multiplier, jitter=rc.jitter, max_attempts=rc.max_attempts)


def percentile(sorted_values: list[float], f: float) -> float | None:
    """Nearest-rank percentile of an ascending list; None when empty.

    >>> percentile([10.0, 20.0, 30.0, 40.0], 0.5), percentile([], 0.95)
    (30.0, None)
    """
    if not sorted_values:
        return None
    return round(sorted_values[min(len(sorted_values) - 1, int(f * len(sorted_values)))], 1)


class LivePipeline(Pipeline):
    """Runs until stopped (``stop`` event, ``live.duration_s``) or every camera has ended."""

    def __init__(self, spec: PipelineSpec, sources: list[Source], *, bootstrap: str, run_id: str | None = None,
                 on_progress: Callable[[dict[str, SourceProgress]], None] | None = None,
                 stop: threading.Event | None = None) -> None:
        super().__init__(spec, sources, bootstrap=bootstrap, run_id=run_id, on_progress=on_progress,
                         allow_empty=True)
        self.stop_event = stop or threading.Event()
        self.scopes: dict[str, list[str] | None] = {q: None for q in spec.queries}
        self.actors: dict[str, Any] = {}
        self.reads: dict[ray.ObjectRef, tuple[str, ray.ObjectRef]] = {}  # meta ref -> (sid, batch ref)
        self.seq: dict[str, int] = {}
        self.control: ControlChannel | None = None

    # ---- sources -------------------------------------------------------------------------
    def budget_ms(self, src: Source) -> float:
        b = self.spec.live.budgets
        return float(b.get(src.id, b.get(src.uri, b.get(src.display, self.spec.live.latency_budget_ms))))

    def _read(self, sid: str) -> None:
        meta, batch = self.actors[sid].next_chunk.remote(self.spec.decode.chunk, 0.5)
        self.reads[meta] = (sid, batch)

    def add_source(self, src: Source) -> None:
        if src.id in self.actors:
            raise ValueError(f"source {src.display} is already running as {src.id}")
        if src.id not in self.progress:
            self.progress[src.id] = SourceProgress(src)
            self.sources.append(src)
            for m in self.models:
                m.add_uris.remote({src.id: src.display})
        p = self.progress[src.id]
        p.state, p.started, p.ended, p.error = "connecting", time.time(), None, None
        self.actors[src.id] = LiveDecodeActor.options(  # type: ignore[attr-defined]
            num_cpus=self.spec.decode.cpus, max_concurrency=2).remote(src, self.opts)
        self._read(src.id)

    def remove_source(self, sid: str, state: str = "removed", detail: str = "") -> None:
        actor = self.actors.pop(sid, None)
        p = self.progress[sid]
        if actor is not None:
            try:
                ray.get(actor.stop.remote(), timeout=10)
            except Exception as exc:  # noqa: BLE001 - the actor is killed below either way
                log.warning("stopping %s: %s", p.source.display, exc)
            ray.kill(actor, no_restart=True)
        self.publisher.close_source.remote(sid)
        if p.state not in FINAL:
            self._live_status(p, state, detail)
        p.ended = p.ended or time.time()

    def _live_status(self, p: SourceProgress, state: str, detail: str = "", attempt: int = 0) -> None:
        if state == p.live_state and state not in ("reconnecting",):
            return  # one event per change
        n = self.seq[p.source.id] = self.seq.get(p.source.id, 0) + 1
        p.live_state = p.state = state
        p.detail = detail
        ev = StatusEvent(event_id=event_id(p.source.id, self.run_id, "status", state, n), run_id=self.run_id,
                         source_id=p.source.id, source_uri=p.source.display, emitted_at=time.time(),
                         state=state, frames=p.decoded, detail=detail, dropped=p.dropped,  # type: ignore[arg-type]
                         attempt=attempt)
        self.publisher.send.remote([to_record(ev, self.topics)])

    # ---- control -------------------------------------------------------------------------
    def handle(self, cmd: Command) -> Reply:
        try:
            result = self._apply(cmd)
            return Reply(command_id=cmd.command_id, run_id=self.run_id, ok=True, result=result)
        except (ValueError, KeyError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            return Reply(command_id=cmd.command_id, run_id=self.run_id, ok=False, error=str(msg))

    def _find(self, key: str) -> str:
        for sid, p in self.progress.items():
            if key in (sid, p.source.uri, p.source.display):
                return sid
        raise KeyError(f"no source {key!r} in run {self.run_id}; `framewire sources ls` lists them")

    def _apply(self, cmd: Command) -> Any:
        a = cmd.args
        if cmd.op == "add_source":
            uri = a.get("uri")
            if not isinstance(uri, str) or not uri:
                raise ValueError("add_source needs args.uri (rtsp://, http(s)://, udp://, rtmp:// or /dev/videoN)")
            srcs = expand_sources([uri])
            if not srcs or not srcs[0].is_live:
                raise ValueError(f"{srcs[0].display if srcs else uri} is not a live source; "
                                 "live runs take rtsp://, rtmp://, http(s)://, udp:// URLs or /dev/videoN")
            self.add_source(srcs[0])
            return {"source_id": srcs[0].id, "uri": srcs[0].display}
        if cmd.op == "remove_source":
            sid = self._find(str(a.get("source", a.get("source_id", a.get("uri", "")))))
            if sid not in self.actors:
                raise ValueError(f"source {sid} is not running (state {self.progress[sid].state})")
            self.remove_source(sid, "removed", "removed by command")
            return {"source_id": sid}
        if cmd.op == "list_sources":
            return [self.describe(p) for p in self.progress.values()]
        if cmd.op == "add_query":
            text = a.get("text")
            if not isinstance(text, str) or not text.strip():
                raise ValueError("add_query needs args.text, the free-text query")
            srcs = a.get("sources") or None
            scope = None if srcs is None else [self._find(s) for s in srcs]
            self.scopes[text.strip()] = scope
            self._push_queries()
            return {"query": text.strip(), "sources": scope}
        if cmd.op == "remove_query":
            text = str(a.get("text", "")).strip()
            if text not in self.scopes:
                raise KeyError(f"no standing query {text!r}; `framewire queries ls` lists them")
            del self.scopes[text]
            self._push_queries()
            return {"query": text}
        if cmd.op == "list_queries":
            return [{"query": q, "sources": s} for q, s in self.scopes.items()]
        raise ValueError(f"unknown op {cmd.op!r}")

    def _push_queries(self) -> None:
        ray.get([m.set_queries.remote(list(self.scopes)) for m in self.models]
                + [self.publisher.set_query_scopes.remote(dict(self.scopes))])

    def describe(self, p: SourceProgress) -> dict[str, Any]:
        lat = sorted(p.latency_ms)
        q = lambda f: percentile(lat, f)  # noqa: E731
        sampled = p.decoded + p.reader_dropped
        return {"source_id": p.source.id, "uri": p.source.display, "state": p.state, "frames": p.published,
                "fps": round(p.live_fps, 2), "latency_p50_ms": q(0.5), "latency_p95_ms": q(0.95),
                "latency_p99_ms": q(0.99), "dropped": p.dropped,
                "drop_rate": round(p.dropped / sampled, 4) if sampled else 0.0,
                "budget_ms": self.budget_ms(p.source), "detail": p.detail}

    # ---- the loop ------------------------------------------------------------------------
    def run(self) -> RunSummary:
        t_start = time.perf_counter()
        self._start_actors()
        startup_s = time.perf_counter() - t_start
        spec = self.spec
        self.opts = live_options(spec, self.input_size,  # type: ignore[arg-type]
                                 self.model_info.get("resize_mode", "stretch"))
        ray.get(self.publisher.set_query_scopes.remote(dict(self.scopes)))
        if spec.live.control:
            self.control = ControlChannel(self.bootstrap, spec.kafka.topic_prefix, self.run_id, spec)
            self.control.open()
        for src in list(self.sources):
            self.add_source(src)
        pending: deque[tuple[str, int, ray.ObjectRef, float]] = deque()  # (sid, n, batch ref, newest capture)
        model_load = [0] * len(self.models)
        model_refs: dict[ray.ObjectRef, int] = {}
        frames = batches = errors = 0
        model_s = 0.0
        cap = spec.batching.max_batch * len(self.models)
        deadline = time.monotonic() + spec.live.duration_s if spec.live.duration_s else None
        next_control = 0.0
        try:
            while not self.stop_event.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if not self.actors and not spec.live.control and not model_refs and not pending:
                    break  # every camera ended and nothing can add one
                wait_on = list(self.reads) + list(model_refs)
                ready, _ = ray.wait(wait_on, num_returns=1, timeout=0.05) if wait_on else ([], [])
                if not wait_on:
                    time.sleep(0.05)
                if ready:
                    more, _ = ray.wait(wait_on, num_returns=len(wait_on), timeout=0)
                    ready = list(dict.fromkeys(ready + more))
                for ref in ready:
                    if ref in self.reads:
                        sid, batch_ref = self.reads.pop(ref)
                        self._on_chunk(sid, ray.get(ref), batch_ref, pending)
                    elif ref in model_refs:
                        model_load[model_refs.pop(ref)] -= 1
                        res: ModelResult = ray.get(ref)
                        frames += sum(res.frames.values())
                        model_s += res.model_s
                        errors += res.events if res.failed else 0
                        self._on_result(res)
                # stay current: drop what is already too old, then what does not fit
                now = time.time()
                kept: deque[tuple[str, int, ray.ObjectRef, float]] = deque()
                for item in pending:
                    sid, n, _, newest = item
                    if (now - newest) * 1000 > self.budget_ms(self.progress[sid].source):
                        self.progress[sid].driver_dropped += n
                    else:
                        kept.append(item)
                while sum(n for _, n, _, _ in kept) > cap and len(kept) > 1:
                    sid, n, _, _ = kept.popleft()
                    self.progress[sid].driver_dropped += n
                pending = kept
                # dispatch to free model actors
                while pending:
                    idx = min(range(len(self.models)), key=lambda i: model_load[i])
                    if model_load[idx] >= spec.batching.inflight_per_model:
                        break
                    total, refs, sids = 0, [], set()
                    while pending and (not refs or total + pending[0][1] <= spec.batching.max_batch):
                        sid, n, bref, _ = pending.popleft()
                        total += n
                        refs.append(bref)
                        sids.add(sid)
                    budgets = {s: self.budget_ms(self.progress[s].source) for s in sids}
                    pub = self.publisher.publish.remote(self.models[idx].process.remote(*refs, budgets_ms=budgets))
                    model_refs[pub] = idx
                    model_load[idx] += 1
                    batches += 1
                if self.control is not None and time.monotonic() >= next_control:
                    next_control = time.monotonic() + 0.2
                    for cmd in self.control.poll():
                        if isinstance(cmd, Command):
                            self.control.reply(self.handle(cmd))
                for p in self.progress.values():
                    p.dropped = p.reader_dropped + p.driver_dropped
                if self.on_progress:
                    self.on_progress(self.progress)
        finally:
            for sid in list(self.actors):
                self.remove_source(sid, "ended", "run stopped")
            for ref in list(model_refs):  # let batches already sent to the models finish
                try:
                    self._on_result(ray.get(ref, timeout=60))
                except Exception as exc:  # noqa: BLE001
                    log.warning("a model batch did not finish at shutdown: %s", exc)
            if self.control is not None:
                self.control.close()
        delivery: DeliveryReport = ray.get(self.publisher.close.remote())
        for m in self.models:
            m.teardown.remote()
        if self.on_progress:
            self.on_progress(self.progress)
        return RunSummary(self.run_id, list(self.progress.values()), delivery, time.perf_counter() - t_start,
                          frames, model_s, batches, errors,
                          {"input_size": self.input_size, "startup_s": startup_s, "mode": "live",
                           "live": [self.describe(p) for p in self.progress.values()], **self.model_info})

    def _on_chunk(self, sid: str, info: LiveChunk, batch_ref: ray.ObjectRef,
                  pending: deque[tuple[str, int, ray.ObjectRef, float]]) -> None:
        p = self.progress[sid]
        p.reader_dropped = info.dropped
        for state, detail, attempt in info.states:
            if state == "failed":
                p.error = detail
            self._live_status(p, state, detail, attempt)
        if info.n:
            p.decoded += info.n
            pending.append((sid, info.n, batch_ref, info.newest_capture or time.time()))
        if sid not in self.actors:
            return  # removed while this read was in flight
        if info.final:
            actor = self.actors.pop(sid)
            ray.kill(actor, no_restart=True)
            self.publisher.close_source.remote(sid)
            p.ended = time.time()
        else:
            self._read(sid)

    def _on_result(self, res: ModelResult) -> None:
        now = time.monotonic()
        for sid, n in res.dropped.items():
            if sid in self.progress:
                self.progress[sid].driver_dropped += n
        for sid, n in res.frames.items():
            p = self.progress.get(sid)
            if p is None:
                continue
            p.published += n
            p.events += res.events * n // max(1, sum(res.frames.values()))
            p.recent.append((now, n))
        for sid, ms in res.latency_ms:
            if sid in self.progress:
                self.progress[sid].latency_ms.append(ms)
