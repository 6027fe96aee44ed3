"""The planner: a PipelineSpec becomes Ray actors and a driver loop that moves object refs.

Pixels never pass through the driver: DecodeActors return (ChunkInfo, FrameBatch) pairs,
the driver reads only the small ChunkInfo, groups chunk refs into batches across sources
(max_batch / max_wait_ms) and hands the refs to a ModelActor, whose result ref goes
straight to the PublisherActor. Every stage is bounded: at most ``inflight_per_source``
chunks per source and ``inflight_per_model`` batches per model actor are in flight; in
archive mode a full stage stops the decoders (backpressure), nothing is dropped.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import ray

from operators.decode import DecodeOptions
from pipeline.actors.decode import ChunkInfo, DecodeActor
from pipeline.actors.model import ModelActor, ModelResult
from pipeline.actors.publish import DeliveryReport, PublisherActor
from pipeline.checkpoints import Checkpoint, read_checkpoints, transactional_id_for
from pipeline.events import ErrorEvent, StatusEvent, Topics, event_id, to_record
from pipeline.sources import Source
from pipeline.spec import PipelineSpec
from pipeline.topics import ensure_for_run

__all__ = ["Pipeline", "RunSummary", "SourceProgress", "init_ray"]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class SourceProgress:
    source: Source
    state: str = "waiting"  # waiting, decoding, ended, failed
    decoded: int = 0  # sampled frames handed to the model stage
    published: int = 0  # frames whose events were sent to the producer
    events: int = 0
    error: str | None = None
    detail: str = ""
    started: float | None = None
    ended: float | None = None
    # live sources
    live_state: str = ""
    dropped: int = 0  # reader_dropped + driver_dropped
    reader_dropped: int = 0  # the camera reader dropped its oldest frames (consumer slower than the camera)
    driver_dropped: int = 0  # older than the latency budget, or past the queue, when a model was free
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=2000))  # capture -> handed to Kafka
    recent: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=256))  # (monotonic, frames)

    @property
    def live_fps(self) -> float:
        """Frames published per second over the last 10 s."""
        now = time.monotonic()
        window = [(t, n) for t, n in self.recent if now - t <= 10.0]
        if len(window) < 2:
            return 0.0
        span = max(1e-3, now - window[0][0])
        return sum(n for _, n in window[1:]) / span

    @property
    def fps(self) -> float:
        if not self.started or not self.published:
            return 0.0
        return self.published / max(1e-6, (self.ended or time.time()) - self.started)


@dataclass
class RunSummary:
    run_id: str
    sources: list[SourceProgress]
    delivery: DeliveryReport
    seconds: float
    frames: int
    model_seconds: float
    batches: int
    errors: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.delivery.failed == 0


def init_ray(spec: PipelineSpec, needed_cpus: float = 0.0) -> None:
    """Start a local Ray sized for the plan, or join ``ray.address``."""
    if ray.is_initialized():
        return
    env = {"PYTHONPATH": os.pathsep.join(p for p in [REPO_ROOT, os.environ.get("PYTHONPATH", "")] if p),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "TRANSFORMERS_VERBOSITY": "error", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
    if spec.ray.address:
        ray.init(address=spec.ray.address, runtime_env={"env_vars": env}, log_to_driver=True)
        return
    cpus = spec.ray.num_cpus or max(os.cpu_count() or 1, math.ceil(needed_cpus))
    ray.init(num_cpus=cpus, object_store_memory=spec.ray.object_store_mb * 1024 * 1024,
             include_dashboard=False, runtime_env={"env_vars": env}, log_to_driver=True,
             configure_logging=True, logging_level="WARNING")


class Pipeline:
    """Runs one spec over a list of sources to completion (archive mode)."""

    def __init__(self, spec: PipelineSpec, sources: list[Source], *, bootstrap: str,
                 run_id: str | None = None,
                 on_progress: Callable[[dict[str, SourceProgress]], None] | None = None,
                 allow_empty: bool = False) -> None:
        if not sources and not allow_empty:
            raise ValueError("no sources to run; name files, directories, globs or URLs")
        self.spec = spec
        self.sources = list(sources)
        self.bootstrap = bootstrap
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.on_progress = on_progress
        self.topics = Topics(spec.kafka.topic_prefix)
        self.progress = {s.id: SourceProgress(s) for s in sources}

    # ---- setup -------------------------------------------------------------------------
    def _model_kwargs(self) -> dict[str, Any]:
        m = self.spec.model
        opts = dict(m.options)
        opts.setdefault("threads", max(1, int(m.cpus)))
        return dict(model_id=m.id, path=m.path, tasks=list(m.tasks), queries=list(self.spec.queries),
                    device=m.device, dtype=m.dtype, batch_size=m.batch_size, **opts)

    def _start_actors(self) -> None:
        spec = self.spec
        self.topic_report = ensure_for_run(spec, self.bootstrap)  # before Ray: a bad topic fails in seconds
        live = spec.mode == "live"
        concurrent = len(self.sources) if live else min(len(self.sources), spec.decode.concurrent_sources)
        init_ray(spec, spec.decode.cpus * concurrent + spec.model.cpus * spec.model.replicas + 0.5)
        has_gpu = ray.cluster_resources().get("GPU", 0) > 0
        gpus = spec.model.gpus if (has_gpu and spec.model.device != "cpu") else 0
        uris = {s.id: s.display for s in self.sources}
        self.models = [
            ModelActor.options(num_cpus=spec.model.cpus, num_gpus=gpus).remote(  # type: ignore[attr-defined]
                spec.model.name, self._model_kwargs(), self.run_id, uris, spec.kafka.topic_prefix, live,
                thumbnails=spec.thumbnails.model_dump(exclude={"enabled"}) if spec.thumbnails.enabled else None)
            for _ in range(spec.model.replicas)
        ]
        self.exactly_once = spec.mode == "archive" and spec.kafka.exactly_once
        self.resume: dict[str, Checkpoint] = {}
        txn_id = None
        if self.exactly_once:
            txn_id = spec.kafka.transactional_id or transactional_id_for(spec.kafka.topic_prefix,
                                                                         [s.id for s in self.sources])
        self.publisher = PublisherActor.options(num_cpus=0.1).remote(  # type: ignore[attr-defined]
            self.bootstrap, spec.kafka.producer, transactional_id=txn_id,
            checkpoint_topic=self.topics.checkpoints if self.exactly_once else None, run_id=self.run_id,
            commit_timeout=spec.kafka.commit_timeout_s, topic_prefix=spec.kafka.topic_prefix,
            hysteresis=(spec.live.query_on_frames, spec.live.query_off_frames),
            per_frame_queries=spec.live.per_frame_queries)
        ray.get(self.publisher.ready.remote())  # init_transactions done: a crashed predecessor is fenced
        if self.exactly_once:
            ids = {s.id for s in self.sources}
            self.resume = {k: v for k, v in read_checkpoints(self.bootstrap, self.topics.checkpoints).items()
                           if k in ids}
            resume_pts = {k: v.last_pts for k, v in self.resume.items() if v.last_pts is not None}
            ray.get(self.publisher.set_resume.remote(resume_pts))
        infos = ray.get([m.info.remote() for m in self.models])
        self.input_size = tuple(infos[0]["input_size"])
        self.model_info = infos[0]

    def _decode_options(self) -> DecodeOptions:
        d = self.spec.decode
        chunk = min(d.chunk, self.spec.batching.max_batch)
        return DecodeOptions(fps=d.fps, keyframes_only=d.keyframes_only, size=self.input_size,  # type: ignore[arg-type]
                             resize=self.model_info.get("resize_mode", "stretch"),
                             chunk=chunk, threads=d.threads, max_frames=d.max_frames)

    # ---- events outside the model path --------------------------------------------------
    def _status(self, p: SourceProgress, state: str, detail: str = "") -> None:
        ev = StatusEvent(event_id=event_id(p.source.id, self.run_id, "status", state), run_id=self.run_id,
                         source_id=p.source.id, source_uri=p.source.display, emitted_at=time.time(),
                         state=state, frames=p.decoded, detail=detail)  # type: ignore[arg-type]
        rec = [to_record(ev, self.topics)]
        if state == "started":
            self.publisher.send.remote(rec)
        else:  # a clean end marks the source done in the same transaction
            self.publisher.finish.remote(p.source.id, rec, state == "ended" and not p.error)

    def _error(self, p: SourceProgress, info: ChunkInfo) -> None:
        ev = ErrorEvent(event_id=event_id(p.source.id, info.error_pts or -1.0, "error", info.error_stage),
                        run_id=self.run_id, source_id=p.source.id, source_uri=p.source.display,
                        emitted_at=time.time(), stage=info.error_stage or "decode",  # type: ignore[arg-type]
                        reason=info.error_reason or "", error_type=info.error_type or "Error",
                        frame_index=info.error_frame_index, pts=info.error_pts)
        self.publisher.send.remote([to_record(ev, self.topics)])

    # ---- the loop ------------------------------------------------------------------------
    def run(self) -> RunSummary:
        t_start = time.perf_counter()
        self._start_actors()
        startup_s = time.perf_counter() - t_start
        spec = self.spec
        opts = self._decode_options()
        waiting: deque[Source] = deque()
        for src in self.sources:
            cp = self.resume.get(src.id)
            if cp is not None and cp.done:
                p = self.progress[src.id]
                p.state, p.detail = "done", f"already complete (run {cp.run_id})"
            else:
                waiting.append(src)
        decoders: dict[str, Any] = {}
        closing: dict[str, Any] = {}  # at end of stream, waiting for their in-flight requests
        inflight_meta: dict[ray.ObjectRef, tuple[str, ray.ObjectRef]] = {}  # meta ref -> (sid, batch ref)
        per_source_inflight: dict[str, int] = {}
        pending: deque[tuple[str, int, ray.ObjectRef, float]] = deque()  # (sid, n, batch ref, t_ready)
        model_load = [0] * len(self.models)
        model_refs: dict[ray.ObjectRef, int] = {}  # publish ref -> model index
        frames = batches = errors = 0
        model_s = 0.0
        buffered_limit = spec.batching.max_batch * max(2, len(self.models) * spec.batching.inflight_per_model)

        def open_more() -> None:
            while waiting and len(decoders) < spec.decode.concurrent_sources:
                src = waiting.popleft()
                cp = self.resume.get(src.id)
                src_opts = opts if cp is None or cp.last_pts is None else replace(opts, start_after_pts=cp.last_pts)
                decoders[src.id] = DecodeActor.options(num_cpus=spec.decode.cpus).remote(  # type: ignore[attr-defined]
                    src, src_opts, spec.batching.inflight_per_source)
                per_source_inflight[src.id] = 0
                p = self.progress[src.id]
                p.state, p.started = "decoding", time.time()
                self._status(p, "started")

        def request_chunks() -> None:
            buffered = sum(n for _, n, _, _ in pending)
            for sid, actor in decoders.items():
                while per_source_inflight[sid] < spec.batching.inflight_per_source and buffered < buffered_limit:
                    meta_ref, batch_ref = actor.next_chunk.remote()
                    inflight_meta[meta_ref] = (sid, batch_ref)
                    per_source_inflight[sid] += 1
                    buffered += spec.decode.chunk

        def dispatch(force: bool) -> None:
            nonlocal batches
            while pending:
                idx = min(range(len(self.models)), key=lambda i: model_load[i])
                if model_load[idx] >= spec.batching.inflight_per_model:
                    return
                total, take = 0, 0
                for _, n, _, _ in pending:
                    if take and total + n > spec.batching.max_batch:
                        break
                    total += n
                    take += 1
                waited_ms = (time.perf_counter() - pending[0][3]) * 1000
                if total < spec.batching.max_batch and not force and waited_ms < spec.batching.max_wait_ms:
                    return
                chunk_refs = [pending.popleft()[2] for _ in range(take)]
                result_ref = self.models[idx].process.remote(*chunk_refs)
                pub_ref = self.publisher.publish.remote(result_ref)
                model_refs[pub_ref] = idx
                model_load[idx] += 1
                batches += 1

        open_more()
        request_chunks()
        while decoders or waiting or pending or inflight_meta or model_refs:
            wait_on = list(inflight_meta) + list(model_refs)
            timeout = spec.batching.max_wait_ms / 1000 if pending else 1.0
            ready, _ = ray.wait(wait_on, num_returns=1, timeout=timeout) if wait_on else ([], [])
            if ready:  # take everything else already done too
                more, _ = ray.wait(wait_on, num_returns=len(wait_on), timeout=0)
                ready = list(dict.fromkeys(ready + more))
            for ref in ready:
                if ref in inflight_meta:
                    sid, batch_ref = inflight_meta.pop(ref)
                    per_source_inflight[sid] -= 1
                    info: ChunkInfo = ray.get(ref)
                    p = self.progress[sid]
                    if info.n:
                        pending.append((sid, info.n, batch_ref, time.perf_counter()))
                        p.decoded += info.n
                    if info.eos and sid in decoders:
                        if info.error_stage:
                            errors += 1
                            p.error = info.error_reason
                            self._error(p, info)
                        closing[sid] = decoders.pop(sid)
                        p.state = "failed" if info.error_stage and not p.decoded else "ended"
                        if p.published >= p.decoded:
                            self._finish(p)
                    if sid in closing and per_source_inflight[sid] == 0:
                        ray.kill(closing.pop(sid), no_restart=True)  # its extra requests have drained
                elif ref in model_refs:
                    model_load[model_refs.pop(ref)] -= 1
                    res: ModelResult = ray.get(ref)
                    frames += sum(res.frames.values())
                    model_s += res.model_s
                    if res.failed:
                        errors += res.events
                    for sid, n in res.frames.items():
                        p = self.progress[sid]
                        p.published += n
                        p.events += res.events * n // max(1, sum(res.frames.values()))
                        if p.state in ("ended", "failed") and p.published >= p.decoded and p.ended is None:
                            self._finish(p)
            open_more()
            sources_busy = any(per_source_inflight.get(s, 0) for s in decoders)
            dispatch(force=not sources_busy or not decoders)
            request_chunks()
            if self.on_progress:
                self.on_progress(self.progress)

        delivery: DeliveryReport = ray.get(self.publisher.close.remote())
        for m in self.models:
            m.teardown.remote()
        if self.on_progress:
            self.on_progress(self.progress)
        return RunSummary(self.run_id, list(self.progress.values()), delivery, time.perf_counter() - t_start,
                          frames, model_s, batches, errors,
                          {"input_size": self.input_size, "startup_s": startup_s, **self.model_info})

    def _finish(self, p: SourceProgress) -> None:
        p.ended = time.time()
        if p.state == "failed":
            self._status(p, "failed", p.error or "")
        else:
            self._status(p, "ended", p.error or "")

    def shutdown(self) -> None:
        for a in [*getattr(self, "models", []), getattr(self, "publisher", None)]:
            if a is not None:
                ray.kill(a, no_restart=True)
