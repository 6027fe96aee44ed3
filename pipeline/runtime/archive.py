"""The archive feed: recorded files through a reusable pool of DecodeActors, exactly once.

Each pool slot decodes one file at a time and takes the next file when the last one's
requests have drained, so a run over many short clips starts ``concurrent_sources``
actors in all. A source's replies are handled in request order (``InOrder``), so its
error is never overtaken by its end of stream. Resume comes from the checkpoints of the
same analysis (``pipeline.runtime.analysis``).
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import ray

from operators.decode import DecodeOptions
from pipeline.events import ErrorEvent, StatusEvent, event_id, to_record
from pipeline.runtime.actors.decode import ChunkInfo, DecodeActor
from pipeline.runtime.actors.publish import PublishResult
from pipeline.runtime.analysis import ResumePlan, analysis_description, plan_resume
from pipeline.runtime.feed import Feed
from pipeline.runtime.policy import ArchivePolicy, Chunk, InOrder
from pipeline.runtime.summary import SourceProgress
from pipeline.sources import Source

if TYPE_CHECKING:
    from pipeline.runtime.driver import Driver

__all__ = ["ArchiveFeed", "plan_archive"]


def plan_archive(d: Driver) -> ResumePlan:
    """Read this analysis's checkpoints (no Ray): what resumes, what is done, and why, in one line."""
    from pipeline.kafka.checkpoints import read_checkpoints

    cps = (read_checkpoints(d.bootstrap, d.topics.checkpoints, security=d.spec.kafka.security)
           if d.spec.kafka.exactly_once else {})
    return plan_resume(d.spec, d.sources, cps, restart=d.restart)


@dataclasses.dataclass
class _Slot:
    actor: Any
    source: Source | None = None
    closing: bool = False


class ArchiveFeed(Feed):
    def __init__(self, driver: Driver) -> None:
        super().__init__(driver)
        spec = driver.spec
        self.exactly_once = spec.kafka.exactly_once
        self.plan = driver.plan() if self.exactly_once else None
        self.waiting: deque[Source] = deque()
        self.slots: list[_Slot] = []
        self.order = InOrder()
        self.reads: dict[Any, tuple[_Slot, str, int, Any]] = {}  # meta ref -> (slot, sid, request no, batch ref)
        self.released: dict[str, int] = {}  # decoded frames whose chunks the stage has published
        self.finished: set[str] = set()

    # ---- setup ---------------------------------------------------------------------------
    def publisher_options(self) -> dict[str, Any]:
        d = self.d
        if not self.exactly_once or self.plan is None:
            return {}
        from pipeline.kafka.checkpoints import transactional_id_for

        txn = d.spec.kafka.transactional_id or transactional_id_for(
            d.spec.kafka.topic_prefix, [s.id for s in d.sources], self.plan.analysis)
        return {"transactional_id": txn, "checkpoint_topic": d.topics.checkpoints, "analysis": self.plan.analysis,
                "epoch": self.plan.epoch, "describe": analysis_description(d.spec)}

    def make_policy(self) -> ArchivePolicy:
        b = self.d.spec.batching
        limit = b.max_batch * max(2, len(self.d.models) * b.inflight_per_model)
        return ArchivePolicy(b.max_batch, b.max_wait_ms, b.inflight_per_model, buffer_limit=limit)

    def _opts(self, src: Source) -> DecodeOptions:
        d = self.d.spec.decode
        chunk = min(d.chunk, self.d.spec.batching.max_batch)
        kw: dict[str, Any] = dict(fps=d.fps, keyframes_only=d.keyframes_only, size=self.d.input_size, chunk=chunk,
                                  threads=d.threads, max_frames=d.max_frames)
        if "resize" in {f.name for f in dataclasses.fields(DecodeOptions)}:
            kw["resize"] = self.d.resize_mode
        opts = DecodeOptions(**kw)
        cp = self.plan.resume.get(src.id) if self.plan else None
        if cp is not None and cp.last_pts is not None:
            opts = dataclasses.replace(opts, start_after_pts=cp.last_pts)
        return opts

    def start(self) -> None:
        d = self.d
        fresh: list[str] = []
        for src in d.sources:
            p = d.progress[src.id]
            if self.plan is not None and src.id in self.plan.done:
                p.state, p.detail = "done", f"already complete in analysis {self.plan.analysis}"
                self.finished.add(src.id)
                continue
            self.waiting.append(src)
            if self.plan is not None and src.id not in self.plan.resume:
                fresh.append(src.id)
        if self.plan is not None and self.plan.resume:
            ray.get(d.publisher.set_resume.remote(self.plan.resume))
        if self.plan is not None and self.plan.epoch > 0 and fresh:
            ray.get(d.publisher.begin_sources.remote(fresh, []))  # this epoch owns them from now on
        n = min(d.spec.decode.concurrent_sources, len(self.waiting))
        per = d.spec.decode.cpus
        free = ray.available_resources().get("CPU", 0.0)  # after the model and publisher actors took theirs
        if n and free + 1e-9 < per:
            raise RuntimeError(f"the Ray cluster has {free:g} CPU free after the model actors; a decoder needs "
                               f"decode.cpus={per:g}: lower decode.cpus or model.cpus, or give Ray more CPUs "
                               "(ray.num_cpus, or more nodes)")
        n = max(1, min(n, int((free + 1e-9) // per))) if n else 0  # as many decoders as can be scheduled
        avail = ray.available_resources()
        for res, need in d.spec.decode.resources.items():  # decoders pinned to nodes that offer a resource
            if n and need > 0:
                if avail.get(res, 0.0) + 1e-9 < need:
                    raise RuntimeError(f"decode.resources asks for {need:g} {res!r} per decoder but the Ray cluster "
                                       f"has {avail.get(res, 0.0):g} free: start a node with --resources "
                                       f"'{{\"{res}\": 4}}' or change decode.resources")
                n = max(1, min(n, int((avail[res] + 1e-9) // need)))
        prefetch = d.spec.batching.inflight_per_source
        self.slots = [_Slot(DecodeActor.options(  # type: ignore[attr-defined]
            num_cpus=d.spec.decode.cpus, resources=dict(d.spec.decode.resources)).remote(prefetch)) for _ in range(n)]
        self._open_more()
        self.request_more()

    # ---- sources -------------------------------------------------------------------------
    def _open_more(self) -> None:
        for slot in self.slots:
            if slot.source is not None or not self.waiting:
                continue
            src = self.waiting.popleft()
            cp = self.plan.resume.get(src.id) if self.plan else None
            seq = int((cp.state or {}).get("next_seq", 0)) if cp is not None else 0
            slot.actor.open.remote(src, self._opts(src), seq)
            slot.source, slot.closing = src, False
            p = self.d.progress[src.id]
            p.state, p.started = "decoding", time.time()
            self._status(p, "started")

    def request_more(self) -> None:
        policy: ArchivePolicy = self.d.policy  # type: ignore[assignment]
        limit = self.d.spec.batching.inflight_per_source
        chunk = self.d.spec.decode.chunk
        asked = 0
        for slot in self.slots:
            if slot.source is None or slot.closing:
                continue
            sid = slot.source.id
            while self.order.outstanding(sid) < limit and policy.want_more(asked):
                n = self.order.ask(sid)
                meta, batch = slot.actor.next_chunk.remote()
                self.reads[meta] = (slot, sid, n, batch)
                asked += chunk

    def refs(self) -> list[Any]:
        return list(self.reads)

    def on_reply(self, ref: Any) -> None:
        slot, sid, n, batch_ref = self.reads.pop(ref)
        info: ChunkInfo = ray.get(ref)
        for info_, bref in self.order.arrive(sid, n, (info, batch_ref)):
            self._handle(slot, info_, bref)
        if slot.closing and slot.source is not None and slot.source.id == sid and self.order.outstanding(sid) == 0:
            self.order.forget(sid)
            slot.source = None  # its extra requests have drained: the slot takes the next file
            self._open_more()

    def _handle(self, slot: _Slot, info: ChunkInfo, batch_ref: Any) -> None:
        p = self.d.progress[info.source_id]
        if info.n:
            self.d.policy.admit(Chunk(info.source_id, info.seq, info.n, batch_ref, time.monotonic()))
            p.decoded += info.n
        if info.eos and not slot.closing:
            slot.closing = True
            if info.error_stage:
                p.error = info.error_reason
                self._error(p, info)
            p.state = "failed" if info.error_stage and not p.decoded else "ended"
            self._maybe_finish(p)

    def on_published(self, res: PublishResult) -> None:
        now = time.monotonic()
        for sid, n in res.decoded.items():
            self.released[sid] = self.released.get(sid, 0) + n
        for sid, n in res.frames.items():
            p = self.d.progress[sid]
            p.published += n
            p.recent.append((now, n))
        total = max(1, sum(res.frames.values()))
        for sid, n in res.frames.items():
            self.d.progress[sid].events += res.events * n // total
        for sid in res.decoded:
            self._maybe_finish(self.d.progress[sid])

    def _maybe_finish(self, p: SourceProgress) -> None:
        sid = p.source.id
        if sid in self.finished or p.state not in ("ended", "failed"):
            return
        if self.released.get(sid, 0) >= p.decoded:
            self.finished.add(sid)
            p.ended = time.time()
            state = "failed" if p.state == "failed" else "ended"
            rec = [to_record(self._status_event(p, state, p.error or ""), self.d.topics)]
            self.d.publisher.finish.remote(sid, rec, state == "ended" and not p.error)

    def idle(self) -> bool:
        return not any(self.order.outstanding(s.source.id) for s in self.slots if s.source is not None) \
            or not any(s.source is not None for s in self.slots)

    def done(self) -> bool:
        return not self.waiting and not self.reads and len(self.finished) == len(self.d.sources)

    def dropped(self, chunks: list[Chunk]) -> list[Any]:  # the archive policy never drops
        raise AssertionError(f"archive policy dropped {len(chunks)} chunks")

    def close(self) -> None:
        for slot in self.slots:
            ray.kill(slot.actor, no_restart=True)
        self.slots = []

    def finish_all(self) -> None:
        pass

    # ---- events outside the model path ---------------------------------------------------
    def _status_event(self, p: SourceProgress, state: str, detail: str = "") -> StatusEvent:
        rid = self.d.run_id
        return StatusEvent(event_id=event_id(p.source.id, rid, "status", state), run_id=rid,
                           source_id=p.source.id, source_uri=p.source.display, emitted_at=time.time(),
                           state=state, frames=p.decoded, detail=detail)  # type: ignore[arg-type]

    def _status(self, p: SourceProgress, state: str) -> None:
        self.d.publisher.send.remote([to_record(self._status_event(p, state), self.d.topics)])

    def _error(self, p: SourceProgress, info: ChunkInfo) -> None:
        rid = self.d.run_id
        ev = ErrorEvent(event_id=event_id(p.source.id, info.error_pts or -1.0, "error", info.error_stage),
                        run_id=rid, source_id=p.source.id, source_uri=p.source.display,
                        emitted_at=time.time(), stage=info.error_stage or "decode",  # type: ignore[arg-type]
                        reason=info.error_reason or "", error_type=info.error_type or "Error",
                        frame_index=info.error_frame_index, pts=info.error_pts)
        self.d.publisher.send.remote([to_record(ev, self.d.topics)])
