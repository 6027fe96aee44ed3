"""The live feed: cameras in real time, reconnects, run-time control.

Each reader process gets one read at a time for all its cameras due (one Ray task per camera
per frame cost a small machine CPU its models lacked), and while every model is busy the
driver lets the replies wait and takes them together when one frees; the live policy decides
what runs and what is dropped to keep each camera inside its latency budget. Camera state
changes (connecting, live, stalled, reconnecting, ended, failed, removed) become one status
event each on the compacted status topic; commands on ``<prefix>.control`` add and remove
cameras and queries while it runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING, Any

import ray

from operators.cameras import LiveOptions
from pipeline.events import StatusEvent, event_id, to_record
from pipeline.kafka.control import Command, ControlChannel, Reply
from pipeline.runtime.actors.camera import LiveChunk, LiveDecodeActor
from pipeline.runtime.actors.publish import PublishResult
from pipeline.runtime.feed import Feed
from pipeline.runtime.policy import Chunk, FifoLivePolicy, LivePolicy, Policy
from pipeline.runtime.summary import SourceProgress, percentile
from pipeline.sources import Source, expand_sources
from pipeline.spec import PipelineSpec

if TYPE_CHECKING:
    from pipeline.runtime.driver import Driver

__all__ = ["LiveFeed", "live_options"]

log = logging.getLogger(__name__)
FINAL = ("ended", "failed", "removed")
ACTOR_RESTARTS = 5  # a camera reader process that dies is restarted this often before its cameras fail


def decoder_threads(cameras: int, configured: int = 0, cores: int | None = None) -> int:
    """Decoder threads per camera (``LiveOptions.threads``): ``configured`` (``decode.threads``) when set;
    else with at least as many ``cameras`` as cores one each, the cameras being the parallelism (FFmpeg's
    frame threads cost 20% more CPU per frame: 0.57 against 0.46 ms on the 640x272 sample); with fewer,
    0: FFmpeg's own threads keep a big stream real time.

    >>> decoder_threads(16, cores=2), decoder_threads(1, cores=2), decoder_threads(16, configured=2, cores=2)
    (1, 0, 2)
    """
    return configured or (1 if cameras >= (cores or os.cpu_count() or 1) else 0)


def live_options(spec: PipelineSpec, size: tuple[int, int], resize: str = "stretch", cameras: int = 1,
                 cores: int | None = None) -> LiveOptions:
    """How each camera is read; ``cameras`` in the run sizes the decoders' threads (``decoder_threads``).

    >>> from pipeline.spec import PipelineSpec
    >>> spec = PipelineSpec(mode="live")
    >>> live_options(spec, (512, 512), cameras=16, cores=2).threads, live_options(spec, (512, 512), cores=2).threads
    (1, 0)
    """
    import dataclasses

    lv, rc = spec.live, spec.live.reconnect
    threads = decoder_threads(cameras, spec.decode.threads, cores)
    kw: dict[str, Any] = dict(
        fps=spec.decode.fps or 2.0, size=size, open_timeout_s=lv.open_timeout_s, read_timeout_s=lv.read_timeout_s,
        rtsp_transport=lv.rtsp_transport, buffer_frames=lv.buffer_frames, initial_backoff_s=rc.initial_backoff_s,
        max_backoff_s=rc.max_backoff_s, multiplier=rc.multiplier, jitter=rc.jitter, max_attempts=rc.max_attempts,
        threads=threads)
    if "resize" in {f.name for f in dataclasses.fields(LiveOptions)}:
        kw["resize"] = resize
    return LiveOptions(**kw)


class LiveFeed(Feed):
    def __init__(self, driver: Driver) -> None:
        super().__init__(driver)
        self.scopes: dict[str, list[str] | None] = {q: None for q in driver.spec.queries}
        self.actors: dict[str, Any] = {}  # camera -> the reader process (LiveDecodeActor) hosting it
        self.hosts: dict[Any, set[str]] = {}  # reader process -> its cameras (up to live.cameras_per_reader)
        self.tokens: dict[str, int] = {}  # camera -> its attachment to its reader (see LiveDecodeActor)
        self._next_token = 0
        # meta ref of a reader process's read -> ((camera, token) and its batch ref, for each camera read)
        self.reads: dict[Any, list[tuple[str, int, Any]]] = {}
        self.want: dict[Any, list[str]] = {}  # reader process -> cameras to read in its next call (request_more)
        self.seq: dict[str, int] = {}
        self.chunk_seq: dict[str, int] = {}  # per camera: the next chunk's number (the stage orders by it)
        self.control: ControlChannel | None = None
        self.next_control = 0.0
        self._retire: list[tuple[Any, Any]] = []  # (stop ref, reader process) to kill once that stop is done

    # ---- setup ---------------------------------------------------------------------------
    def publisher_options(self) -> dict[str, Any]:
        return {}

    def make_policy(self) -> Policy:
        spec = self.d.spec
        budgets = {s.id: self.budget_ms(s) for s in self.d.sources}
        if (self.d.policy_name or "budget") == "fifo":
            return FifoLivePolicy(spec.batching.max_batch, budgets, spec.live.latency_budget_ms,
                                  cap_frames=spec.batching.max_batch * len(self.d.models),
                                  inflight_per_model=spec.batching.inflight_per_model)
        return LivePolicy(spec.batching.max_batch, budgets, spec.live.latency_budget_ms, models=len(self.d.models))

    def budget_ms(self, src: Source) -> float:
        b = self.d.spec.live.budgets
        return float(b.get(src.id, b.get(src.uri, b.get(src.display, self.d.spec.live.latency_budget_ms))))

    def budgets(self, source_ids: set[str]) -> dict[str, float] | None:
        if (self.d.policy_name or "budget") != "fifo":
            return None  # the live policy already sized the batch to the budget: run every frame it sent
        return {s: self.budget_ms(self.d.progress[s].source) for s in source_ids}

    def start(self) -> None:
        d = self.d
        self.opts = live_options(d.spec, d.input_size, d.resize_mode,  # type: ignore[arg-type]
                                 cameras=len(d.sources))
        ray.get(d.publisher.set_query_scopes.remote(dict(self.scopes)))
        if d.spec.live.control:
            self.control = ControlChannel(d.bootstrap, d.spec.kafka.topic_prefix, d.run_id, d.spec)
            self.control.open()
        for src in list(d.sources):
            self.add_source(src)
        self.request_more()

    # ---- sources -------------------------------------------------------------------------
    def _read(self, sid: str) -> None:
        """Read ``sid`` again: in its reader process's next call, with the other cameras due there."""
        self.want.setdefault(self.actors[sid], []).append(sid)

    def request_more(self) -> None:
        """One read per reader process for all its cameras due (not one per camera)."""
        want, self.want = self.want, {}
        for host, sids in want.items():
            cams = [sid for sid in dict.fromkeys(sids) if self.actors.get(sid) is host]
            if not cams:
                continue
            args = [(self.d.progress[sid].source, self.tokens[sid]) for sid in cams]
            meta, *batches = host.next_chunks.options(num_returns=1 + len(cams)).remote(
                args, self.d.spec.decode.chunk, 0.5)
            self.reads[meta] = [(sid, self.tokens[sid], b) for sid, b in zip(cams, batches, strict=True)]

    def _host_for(self) -> Any:
        """A reader process with room for one more camera, started if none has room."""
        d = self.d
        per = d.spec.live.cameras_per_reader
        for host, cams in self.hosts.items():
            if len(cams) < per:
                return host
        # a reader process that dies (segfault, OOM kill, its node lost) is restarted by Ray, on another node
        # if need be, and the reads in flight retried there: its cameras reconnect, the others never notice
        host = LiveDecodeActor.options(  # type: ignore[attr-defined]
            num_cpus=d.spec.decode.cpus, resources=dict(d.spec.decode.resources), max_concurrency=per + 2,
            max_restarts=ACTOR_RESTARTS, max_task_retries=-1).remote(self.opts)
        self.hosts[host] = set()
        return host

    def _detach(self, sid: str) -> Any:
        """Take a camera off its reader process (stopping that process once it reads no camera); returns the
        ref of the reader's ``stop`` (its closing state changes), or None if the camera had no reader."""
        host = self.actors.pop(sid, None)
        if host is None:
            return None
        ref = host.stop.remote(sid, self.tokens.pop(sid))
        cams = self.hosts.get(host, set())
        cams.discard(sid)
        if not cams:
            self.hosts.pop(host, None)
            self._retire.append((ref, host))
        return ref

    def _kill_retired(self, wait_s: float = 0.0) -> None:
        """Kill the reader processes left with no camera, once their last ``stop`` is done (or at once)."""
        keep = []
        for ref, host in self._retire:
            ready, _ = ray.wait([ref], timeout=wait_s)
            if ready or wait_s > 0:
                ray.kill(host, no_restart=True)
            else:
                keep.append((ref, host))
        self._retire = keep

    def add_source(self, src: Source) -> None:
        d = self.d
        if src.id in self.actors:
            raise ValueError(f"source {src.display} is already running as {src.id}")
        if src.id not in d.progress:
            d.progress[src.id] = SourceProgress(src)
            d.sources.append(src)
            for m in d.models:
                m.add_uris.remote({src.id: src.display})
            d.publisher.set_uris.remote({src.id: src.display})
        policy = getattr(d, "policy", None)
        if policy is not None and hasattr(policy, "budgets_ms"):
            policy.budgets_ms[src.id] = self.budget_ms(src)
        p = d.progress[src.id]
        p.state, p.started, p.ended, p.error = "connecting", time.time(), None, None
        self.chunk_seq[src.id] = 0
        host = self._host_for()
        self.hosts[host].add(src.id)
        self.actors[src.id] = host
        self.tokens[src.id] = self._next_token = self._next_token + 1
        self._read(src.id)

    def remove_source(self, sid: str, state: str = "removed", detail: str = "") -> None:
        d = self.d
        p = d.progress[sid]
        ref = self._detach(sid)
        if ref is not None:
            try:
                ray.get(ref, timeout=10)
            except Exception as exc:  # noqa: BLE001 - its process is killed below if it reads no other camera
                log.warning("stopping %s: %s", p.source.display, exc)
            self._kill_retired(wait_s=0.0)
        forget = getattr(d.policy, "forget", None)
        if forget is not None:
            forget(sid)
        d.publisher.close_source.remote(sid)
        if p.state not in FINAL:
            self._live_status(p, state, detail)
        p.ended = p.ended or time.time()

    def _live_status(self, p: SourceProgress, state: str, detail: str = "", attempt: int = 0,
                     force: bool = False) -> None:
        if state == p.live_state and state not in ("reconnecting",) and not force:
            return  # one event per change
        d = self.d
        n = self.seq[p.source.id] = self.seq.get(p.source.id, 0) + 1
        p.live_state = p.state = state
        p.detail = detail
        ev = StatusEvent(event_id=event_id(p.source.id, d.run_id, "status", state, n), run_id=d.run_id,
                         source_id=p.source.id, source_uri=p.source.display, emitted_at=time.time(),
                         state=state, frames=p.decoded, detail=detail, dropped=p.dropped,  # type: ignore[arg-type]
                         attempt=attempt)
        d.publisher.send.remote([to_record(ev, d.topics)])

    def refs(self) -> list[Any]:
        return list(self.reads)

    def on_reply(self, ref: Any) -> None:
        cams = self.reads.pop(ref)
        try:
            infos: list[LiveChunk] = ray.get(ref)
        except ray.exceptions.RayError as exc:  # its reader died more often than Ray restarts it: its cameras end
            reason = f"camera reader lost ({type(exc).__name__}); restarted {ACTOR_RESTARTS} times, giving up"
            for sid, token, _ in cams:
                if self.tokens.get(sid) == token:  # not already removed (or attached again) meanwhile
                    p = self.d.progress[sid]
                    log.error("%s: %s: %s", p.source.display, reason, exc)
                    p.error = reason
                    self.remove_source(sid, "failed", reason)
            return
        for (sid, token, batch_ref), info in zip(cams, infos, strict=True):
            if self.tokens.get(sid) == token:  # not removed (and perhaps added again) while the read was in flight
                self._on_chunk(sid, info, batch_ref)

    def _on_chunk(self, sid: str, info: LiveChunk, batch_ref: Any) -> None:
        p = self.d.progress[sid]
        p.reader_dropped = info.dropped
        for state, detail, attempt in info.states:
            if state == "failed":
                p.error = detail
            self._live_status(p, state, detail, attempt)
        if info.n:
            p.decoded += info.n
            newest = info.newest_capture or time.time()
            # numbered here, not in the reader: a restarted reader starts counting again, the stage must not
            seq = self.chunk_seq[sid] = self.chunk_seq.get(sid, 0) + 1
            self.d.policy.admit(Chunk(sid, seq - 1, info.n, batch_ref, time.monotonic(),
                                      info.oldest_capture or newest, newest))
        if info.final:
            self._detach(sid)
            self.d.publisher.close_source.remote(sid)
            p.ended = time.time()
        else:
            self._read(sid)

    def dropped(self, chunks: list[Chunk]) -> list[Any]:
        by_source: dict[str, list[int]] = {}
        for c in chunks:
            if c.source_id in self.d.progress:
                self.d.progress[c.source_id].driver_dropped += c.n
            by_source.setdefault(c.source_id, []).append(c.seq)
        return [self.d.publisher.skip.remote(by_source)] if by_source else []  # one call: a Ray task costs CPU

    def on_published(self, res: PublishResult) -> None:
        now = time.monotonic()
        if res.outage is not None:  # the broker is back: every camera says what it lost meanwhile
            away_s, lost = res.outage
            log.warning("Kafka broker back after %.0fs; %d frames dropped while it was away", away_s,
                        sum(lost.values()))
            for sid in self.actors:
                p = self.d.progress[sid]
                self._live_status(p, p.live_state or "live", f"Kafka broker was unreachable for {away_s:.0f}s; "
                                  f"{lost.get(sid, 0)} frames dropped meanwhile (past their latency budget)",
                                  force=True)
        for sid, n in res.dropped.items():
            if sid in self.d.progress:
                self.d.progress[sid].driver_dropped += n
        total = max(1, sum(res.frames.values()))
        for sid, n in res.frames.items():
            p = self.d.progress.get(sid)
            if p is None:
                continue
            p.published += n
            p.events += res.events * n // total
            p.recent.append((now, n))
        for sid, ms in res.latency_ms:
            if sid in self.d.progress:
                self.d.progress[sid].latency_ms.append(ms)

    def idle(self) -> bool:
        return True

    def done(self) -> bool:
        return not self.actors and not self.d.spec.live.control

    def tick(self) -> None:
        if self.control is not None and time.monotonic() >= self.next_control:
            self.next_control = time.monotonic() + 0.2
            for cmd in self.control.poll():
                if isinstance(cmd, Command):
                    self.control.reply(self.handle(cmd))
        for p in self.d.progress.values():
            p.dropped = p.reader_dropped + p.driver_dropped
        if self._retire:
            self._kill_retired()

    def close(self) -> None:
        attached = list(self.actors)
        stops = [r for r in map(self._detach, attached) if r is not None]  # every reader closes at once
        with contextlib.suppress(Exception):
            ray.wait(stops, num_returns=len(stops), timeout=15)
        for sid in attached:
            self.remove_source(sid, "ended", "run stopped")
        self._kill_retired(wait_s=0.1)

    def finish_all(self) -> None:
        if self.control is not None:
            self.control.close()
            self.control = None  # tick() below must not poll the closed consumer
        self.tick()

    def summary_extra(self) -> dict[str, Any]:
        return {"live": [self.describe(p) for p in self.d.progress.values()]}

    # ---- control -------------------------------------------------------------------------
    def handle(self, cmd: Command) -> Reply:
        try:
            result = self._apply(cmd)
            return Reply(command_id=cmd.command_id, run_id=self.d.run_id, ok=True, result=result)
        except (ValueError, KeyError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            return Reply(command_id=cmd.command_id, run_id=self.d.run_id, ok=False, error=str(msg))

    def _find(self, key: str) -> str:
        for sid, p in self.d.progress.items():
            if key in (sid, p.source.uri, p.source.display):
                return sid
        raise KeyError(f"no source {key!r} in run {self.d.run_id}; `framewire sources ls` lists them")

    def _apply(self, cmd: Command) -> Any:
        return _OPS[cmd.op](self, cmd.args) if cmd.op in _OPS else _unknown(cmd.op)

    def _add_source(self, a: dict[str, Any]) -> Any:
        uri = a.get("uri")
        if not isinstance(uri, str) or not uri:
            raise ValueError("add_source needs args.uri (rtsp://, http(s)://, udp://, rtmp:// or /dev/videoN)")
        srcs = expand_sources([uri])
        if not srcs or not srcs[0].is_live:
            raise ValueError(f"{srcs[0].display if srcs else uri} is not a live source; "
                             "live runs take rtsp://, rtmp://, http(s)://, udp:// URLs or /dev/videoN")
        self.add_source(srcs[0])
        return {"source_id": srcs[0].id, "uri": srcs[0].display}

    def _remove_source(self, a: dict[str, Any]) -> Any:
        sid = self._find(str(a.get("source", a.get("source_id", a.get("uri", "")))))
        if sid not in self.actors:
            raise ValueError(f"source {sid} is not running (state {self.d.progress[sid].state})")
        self.remove_source(sid, "removed", "removed by command")
        return {"source_id": sid}

    def _add_query(self, a: dict[str, Any]) -> Any:
        text = a.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ValueError("add_query needs args.text, the free-text query")
        srcs = a.get("sources") or None
        scope = None if srcs is None else [self._find(s) for s in srcs]
        self.scopes[text.strip()] = scope
        self._push_queries()
        return {"query": text.strip(), "sources": scope}

    def _remove_query(self, a: dict[str, Any]) -> Any:
        text = str(a.get("text", "")).strip()
        if text not in self.scopes:
            raise KeyError(f"no standing query {text!r}; `framewire queries ls` lists them")
        del self.scopes[text]
        self._push_queries()
        return {"query": text}

    def _push_queries(self) -> None:
        ray.get([m.set_queries.remote(list(self.scopes)) for m in self.d.models]
                + [self.d.publisher.set_query_scopes.remote(dict(self.scopes))])

    def describe(self, p: SourceProgress) -> dict[str, Any]:
        lat = sorted(p.latency_ms)
        sampled = p.decoded + p.reader_dropped
        return {"source_id": p.source.id, "uri": p.source.display, "state": p.state, "frames": p.published,
                "fps": round(p.live_fps, 2), "latency_p50_ms": percentile(lat, 0.5),
                "latency_p95_ms": percentile(lat, 0.95), "latency_p99_ms": percentile(lat, 0.99),
                "dropped": p.dropped, "drop_rate": round(p.dropped / sampled, 4) if sampled else 0.0,
                "budget_ms": self.budget_ms(p.source), "detail": p.detail}


def _unknown(op: str) -> Any:
    raise ValueError(f"unknown op {op!r}; one of: {', '.join(sorted(_OPS))}")


# control operations by name (one place to add one)
_OPS: dict[str, Any] = {
    "add_source": LiveFeed._add_source,
    "remove_source": LiveFeed._remove_source,
    "list_sources": lambda self, _a: [self.describe(p) for p in self.d.progress.values()],
    "add_query": LiveFeed._add_query,
    "remove_query": LiveFeed._remove_query,
    "list_queries": lambda self, _a: [{"query": q, "sources": s} for q, s in self.scopes.items()],
}
