"""The driver: one loop for archive and live runs; a feed brings chunks, a policy decides.

Pixels never pass through the driver: decode actors return (info, FrameBatch) pairs, the
driver reads only the small info, hands chunk refs to the policy, and sends the batches
the policy picks to the least-loaded ModelActor, whose result ref goes straight to the
PublisherActor (the stateful stage and the Kafka producer). The archive feed decodes files
through a reusable pool of DecodeActors; the live feed keeps one read outstanding per
camera and takes commands from the control topic.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import ray

from pipeline.runtime.actors.model import ModelActor
from pipeline.runtime.actors.publish import DeliveryReport, PublisherActor, PublishResult
from pipeline.runtime.feed import Feed
from pipeline.runtime.policy import Chunk, Policy
from pipeline.runtime.summary import RunSummary, SourceProgress
from pipeline.sources import Source
from pipeline.spec import PipelineSpec

__all__ = ["Driver", "init_ray", "model_replicas", "model_threads", "model_weights_bytes", "REPO_ROOT"]

log = logging.getLogger(__name__)
FEED_POLL_S = 0.25  # live: how long the cameras' replies may wait while every model is busy
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


def model_replicas(spec: PipelineSpec, cores: int | None = None, gpu: bool = False,
                   weights_bytes: int = -1, available_bytes: int | None = None) -> int:
    """ModelActors to start: ``model.replicas``, or for ``auto`` two side by side on a CPU with two or more
    cores (one on a GPU or a single core), sharing the cores between them (``model_threads``).

    Why two: on a CPU, one replica on every thread leaves cores idle: a small batch scales poorly across
    intra-op threads (CenterNet on 2 cores: 18.5 frames/s on one thread, 23.3 on two), and a generative
    model's token loop is Python between small matmuls (tiny Florence-2 with OCR: 3.3 frames/s on one
    thread, 4.3 on two, two one-thread replicas side by side 6.1). The stateful stage puts one source's
    batches back in pts order whichever replica finishes first, so an archive of one file gains too.
    Two copies of the weights must fit: when the weights on disk (``weights_bytes``; -1: look them up)
    times 2, with as much again for activations, exceed half the available memory, one replica it is.

    >>> from pipeline.spec import PipelineSpec
    >>> live = PipelineSpec(mode="live")
    >>> model_replicas(PipelineSpec(), cores=2, weights_bytes=0), model_replicas(live, 2, weights_bytes=0)
    (2, 2)
    >>> model_replicas(live, 2, gpu=True), model_replicas(live, cores=1)
    (1, 1)
    >>> model_replicas(PipelineSpec(), cores=2, weights_bytes=8 << 30, available_bytes=24 << 30)
    1
    """
    if spec.model.replicas != "auto":
        return int(spec.model.replicas)
    cores = cores or os.cpu_count() or 1
    on_cpu = spec.model.device == "cpu" or not gpu
    if not on_cpu or cores < 2:
        return 1
    size = model_weights_bytes(spec) if weights_bytes == -1 else weights_bytes
    if size:
        if available_bytes is None:
            import psutil

            available_bytes = psutil.virtual_memory().available
        if 2 * 2 * size > available_bytes / 2:
            return 1
    return 2


def model_weights_bytes(spec: PipelineSpec) -> int:
    """Size on disk of the model's weights when they are in a local directory (``model.path``, a directory
    id or the Hugging Face cache); 0 when not found there (an offline default, or weights yet to fetch)."""
    return _weights_bytes(spec.model.id or "", spec.model.path)


@functools.lru_cache(maxsize=8)
def _weights_bytes(model_id: str, path: str | None) -> int:
    from operators.models.weights import ModelNotFoundError, resolve_weights

    if not (path or os.path.isdir(os.path.expanduser(model_id)) or ("/" in model_id and ":" not in model_id)):
        return 0
    try:
        where = resolve_weights(model_id, path, allow_hub=False)
    except (ModelNotFoundError, OSError, ValueError):
        return 0
    total = 0
    for root, _dirs, files in os.walk(where):
        for f in files:
            if f.endswith((".safetensors", ".bin", ".pt", ".pth", ".onnx", ".gguf")):
                try:
                    total += os.path.getsize(os.path.join(root, f))  # follows the cache's symlinks
                except OSError:
                    pass
    return total


def model_threads(spec: PipelineSpec, cores: int | None = None, replicas: int | None = None) -> int:
    """Torch threads of one ModelActor: what the plan leaves free on the machine, shared by the replicas.

    Decoding sampled frames costs a small share of a core per source, so the model gets every core but
    that share (at least one thread); ``model.options.threads`` wins when set.

    >>> from pipeline.spec import PipelineSpec
    >>> model_threads(PipelineSpec(), cores=2), model_threads(PipelineSpec(), cores=16)
    (1, 8)
    >>> model_threads(PipelineSpec(), cores=2, replicas=1)
    2
    >>> model_threads(PipelineSpec(mode="live"), cores=2)
    1
    """
    cores = cores or os.cpu_count() or 1
    replicas = replicas or model_replicas(spec, cores)
    decode_share = 0.1 * spec.decode.concurrent_sources if spec.mode == "archive" else 0.1 * max(1, len(spec.sources))
    free = cores - (math.floor(decode_share + 0.5) if cores > 4 else 0)
    return max(1, int(free // replicas))


def check_analytics_sources(spec: PipelineSpec, sources: list[Source]) -> None:
    """A zone or line whose ``source`` names no source of the run is a config error, before anything starts."""
    from fnmatch import fnmatchcase

    from pipeline.spec import ConfigError

    if not sources:
        return
    for kind, items in (("zones", spec.analytics.zones), ("lines", spec.analytics.lines)):
        for i, it in enumerate(items):
            if not any(it.source in (s.id, s.uri, s.display) or fnmatchcase(s.id, it.source)
                       or fnmatchcase(s.uri, it.source) for s in sources):
                names = ", ".join(s.id for s in sources[:5])
                raise ConfigError(f"analytics.{kind}[{i}] ({it.name!r}): source {it.source!r} names no source of "
                                  f"this run ({names}{', ...' if len(sources) > 5 else ''}); use a source id, a "
                                  "URI, or a glob such as 'cam1*' or '*'")


class Driver:
    """Runs one spec over sources: to completion (archive) or until stopped (live)."""

    def __init__(self, spec: PipelineSpec, sources: list[Source], *, bootstrap: str, run_id: str | None = None,
                 on_progress: Callable[[dict[str, SourceProgress]], None] | None = None,
                 stop: threading.Event | None = None, restart: bool = False, policy: str | None = None,
                 allow_empty: bool = False, on_publish: Callable[[PublishResult], None] | None = None) -> None:
        if not sources and not allow_empty and spec.mode == "archive":
            raise ValueError("no sources to run; name files, directories, globs or URLs")
        check_analytics_sources(spec, list(sources))
        self.spec = spec
        self.sources = list(sources)
        self.bootstrap = bootstrap
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.on_progress = on_progress
        self.on_publish = on_publish  # each PublishResult as it comes back (metrics: latencies, model calls)
        self.stop_event = stop or threading.Event()
        self.restart = restart
        self.policy_name = policy
        self.progress = {s.id: SourceProgress(s) for s in sources}
        from pipeline.events import Topics

        self.topics = Topics(spec.kafka.topic_prefix)
        self.models: list[Any] = []
        self.replicas = model_replicas(spec)  # settled in start_actors, once Ray says whether it has a GPU
        self.publisher: Any = None
        self.resume_plan: Any = None

    # ---- setup ---------------------------------------------------------------------------
    def _model_kwargs(self) -> dict[str, Any]:
        m = self.spec.model
        opts = dict(m.options)
        opts.setdefault("threads", model_threads(self.spec, replicas=self.replicas))
        return dict(model_id=m.id, path=m.path, tasks=list(m.tasks), queries=list(self.spec.queries),
                    questions=list(self.spec.questions),
                    device=m.device, dtype=m.dtype, batch_size=m.batch_size, **opts)

    def plan(self) -> Any:
        """Archive: which sources resume, which are done (reads the checkpoints; starts nothing heavy)."""
        from pipeline.runtime.archive import plan_archive

        if self.resume_plan is None and self.spec.mode == "archive":
            self.resume_plan = plan_archive(self)
        return self.resume_plan

    def start_actors(self, feed: Feed) -> None:
        from pipeline.kafka.topics import ensure_for_run

        spec = self.spec
        self.topic_report = ensure_for_run(spec, self.bootstrap)  # before Ray: a bad topic fails in seconds
        live = spec.mode == "live"
        concurrent = len(self.sources) if live else min(len(self.sources), spec.decode.concurrent_sources)
        init_ray(spec, spec.decode.cpus * concurrent + spec.model.cpus * model_replicas(spec) + 0.5)
        has_gpu = ray.cluster_resources().get("GPU", 0) > 0
        self.replicas = model_replicas(spec, gpu=has_gpu)
        gpus = spec.model.gpus if (has_gpu and spec.model.device != "cpu") else 0
        uris = {s.id: s.display for s in self.sources}
        thumbs = spec.thumbnails.model_dump(exclude={"enabled"}) if spec.thumbnails.enabled else None
        if thumbs is not None and spec.decode.fps:
            thumbs["step_s"] = 1 / spec.decode.fps  # the sampling step: thumbnails.every_s keeps one per slot
        self.models = [
            # live: a model process that dies is restarted by Ray (its batch in flight is dropped, not retried:
            # those frames are past their budget); archive: the run fails and a rerun resumes exactly once
            ModelActor.options(num_cpus=spec.model.cpus, num_gpus=gpus,  # type: ignore[attr-defined]
                               resources=dict(spec.model.resources), max_restarts=5 if live else 0).remote(
                spec.model.name, self._model_kwargs(), self.run_id, uris, spec.kafka.topic_prefix, live,
                thumbnails=thumbs, per_frame_queries=True)
            for _ in range(self.replicas)
        ]
        self.publisher = PublisherActor.options(num_cpus=0.1).remote(  # type: ignore[attr-defined]
            self.bootstrap, spec.kafka.producer, run_id=self.run_id, outage_s=spec.kafka.outage_s,
            stall_s=max(1.0, spec.live.latency_budget_ms / 1000),
            topic_prefix=spec.kafka.topic_prefix, hysteresis=(spec.live.query_on_frames, spec.live.query_off_frames),
            per_frame_queries=spec.live.per_frame_queries, clock="wall" if live else "pts",
            analytics=_analytics_config(spec), frame_rate=spec.decode.fps, security=spec.kafka.security,
            **feed.publisher_options())
        ray.get(self.publisher.ready.remote())  # init_transactions done: a crashed predecessor is fenced
        ray.get(self.publisher.set_uris.remote(uris))
        infos = ray.get([m.info.remote() for m in self.models])
        self.input_size = tuple(infos[0]["input_size"])
        self.resize_mode = infos[0].get("resize_mode", "stretch")
        self.model_info = infos[0]

    def make_policy(self, feed: Feed) -> Policy:
        return feed.make_policy()

    # ---- the loop ------------------------------------------------------------------------
    def run(self) -> RunSummary:
        from pipeline.runtime.archive import ArchiveFeed
        from pipeline.runtime.cameras import LiveFeed

        t_start = time.perf_counter()
        feed: Feed = LiveFeed(self) if self.spec.mode == "live" else ArchiveFeed(self)
        self.feed = feed
        self.start_actors(feed)
        startup_s = time.perf_counter() - t_start
        policy = self.policy = self.make_policy(feed)
        model_load = [0] * len(self.models)
        model_refs: dict[Any, int] = {}
        frames = batches = errors = 0
        model_s = 0.0
        deadline = time.monotonic() + self.spec.live.duration_s if (
            self.spec.mode == "live" and self.spec.live.duration_s) else None

        live = self.spec.mode == "live"
        next_feed_poll = 0.0
        sent: dict[Any, tuple[float, int]] = {}  # publish ref -> (dispatched at, frames)
        # live: a model is free again as soon as its own call returns, while the publisher still works on the
        # last batch (the model never waits for the stage and the producer); archive: when the batch is published
        running: dict[Any, int] = {}  # model result ref -> model index (live only)
        skips: set[Any] = set()  # refs of PublishResults of dropped chunks (they release what waited behind)
        batch_of: dict[Any, list[Chunk]] = {}  # live: publish ref -> its chunks (dropped if the batch is lost)

        def on_published(res: PublishResult, trip: tuple[float, int] | None = None) -> None:
            nonlocal frames, model_s, errors
            frames += res.model_frames
            model_s += res.model_s
            errors += res.failed
            if live and trip is not None:  # live budgets cover the whole trip: transfer, model, stage, producer
                policy.observe(trip[1], time.monotonic() - trip[0])
            elif res.model_frames and res.model_s:
                policy.observe(res.model_frames, res.model_s)
            feed.on_published(res)
            if self.on_publish:
                self.on_publish(res)

        feed.start()
        try:
            while not self.stop_event.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if feed.done() and not policy.buffered() and not model_refs and not skips:
                    break
                free = min(model_load) < policy.inflight_per_model
                # live, every model busy: the cameras' replies wait until one frees (or FEED_POLL_S passed) and
                # are then taken together. Waking for each (40 a second at 4 cameras x 10 fps) cost the driver
                # CPU the models lacked, and their frames could only wait for a free model anyway
                poll_feed = not live or free or time.monotonic() >= next_feed_poll
                if poll_feed and live:
                    next_feed_poll = time.monotonic() + FEED_POLL_S
                wait_on = (feed.refs() if poll_feed else []) + list(model_refs) + list(running) + list(skips)
                # sleep until a reply, or until a waiting partial batch is due (only if a model could take it:
                # a zero timeout with every model busy would spin the driver on a core the model needs)
                cap = 0.05 if self.spec.mode == "live" else 1.0
                hint = getattr(policy, "wait_hint", None)
                timeout = min(hint(time.monotonic()), cap) if (free and hint is not None) else cap
                if live and not free:  # nothing to dispatch before a model frees: wake for that, or the feed
                    timeout = min(FEED_POLL_S, max(0.0, next_feed_poll - time.monotonic()))
                ready, _ = (ray.wait(wait_on, num_returns=1, timeout=timeout, fetch_local=False) if wait_on
                            else ([], []))
                if not wait_on:
                    time.sleep(0.05)
                if ready:  # take everything else already done too
                    more, _ = ray.wait(wait_on, num_returns=len(wait_on), timeout=0, fetch_local=False)
                    ready = list(dict.fromkeys(ready + more))
                for ref in ready:
                    if ref in running:
                        model_load[running.pop(ref)] -= 1
                    elif ref in model_refs:
                        idx = model_refs.pop(ref)
                        chunks = batch_of.pop(ref, [])
                        if not live:
                            model_load[idx] -= 1
                            on_published(ray.get(ref), sent.pop(ref, None))
                            continue
                        try:
                            res = ray.get(ref)
                        except ray.exceptions.RayError as exc:  # a model process died (Ray restarts it): drop
                            log.warning("a batch of %d frames was lost with its model actor (%s); dropped, the "
                                        "cameras go on", sum(c.n for c in chunks), type(exc).__name__)
                            sent.pop(ref, None)
                            for c in chunks:
                                policy._drop(c)
                            continue
                        on_published(res, sent.pop(ref, None))
                    elif ref in skips:
                        skips.discard(ref)
                        on_published(ray.get(ref))
                    else:
                        feed.on_reply(ref)
                waited = feed.refs() if not poll_feed and min(model_load) < policy.inflight_per_model else []
                if waited:  # a model just freed: the cameras' replies that waited go to the policy before it picks
                    done, _ = ray.wait(waited, num_returns=len(waited), timeout=0, fetch_local=False)
                    for ref in done:
                        feed.on_reply(ref)
                policy.expire(time.time())
                while True:
                    idx = min(range(len(self.models)), key=lambda i: model_load[i])
                    if model_load[idx] >= policy.inflight_per_model:
                        break
                    batch = policy.next_batch(time.monotonic(), time.time(), force=feed.idle())
                    if not batch:
                        break
                    result, pub = self._dispatch(idx, batch, feed)
                    if live:
                        running[result] = idx
                    sent[pub] = (time.monotonic(), sum(c.n for c in batch))
                    if live:
                        batch_of[pub] = batch
                    model_refs[pub] = idx
                    model_load[idx] += 1
                    batches += 1
                gone = policy.take_dropped()
                if gone:
                    skips.update(feed.dropped(gone))
                feed.request_more()
                feed.tick()
                if self.on_progress:
                    self.on_progress(self.progress)
        finally:
            feed.close()
            for ref in [*model_refs, *skips]:  # let batches already sent to the models finish
                try:
                    on_published(ray.get(ref, timeout=120))
                except Exception:  # noqa: BLE001 - reported by the caller's summary
                    if self.spec.mode == "archive":
                        raise
            feed.finish_all()
        delivery: DeliveryReport = ray.get(self.publisher.close.remote())
        ray.get([m.teardown.remote() for m in self.models])
        self.shutdown()  # free the actors' CPUs: a second run in this process (or Ray cluster) needs them
        if self.on_progress:
            self.on_progress(self.progress)
        extra = {"input_size": self.input_size, "startup_s": startup_s, "mode": self.spec.mode,
                 **feed.summary_extra(), **self.model_info}
        return RunSummary(self.run_id, list(self.progress.values()), delivery, time.perf_counter() - t_start,
                          frames, model_s, batches, errors, extra)

    def _dispatch(self, idx: int, batch: list[Chunk], feed: Feed) -> tuple[Any, Any]:
        """Send a batch to model ``idx``; returns (its result ref, the ref of its publication)."""
        refs = [c.ref for c in batch]
        ids = [(c.source_id, c.seq) for c in batch]
        budgets = feed.budgets({c.source_id for c in batch})
        result = self.models[idx].process.remote(*refs, ids=ids, budgets_ms=budgets)
        return result, self.publisher.publish.remote(result)

    def shutdown(self) -> None:
        for a in [*self.models, self.publisher]:
            if a is not None:
                ray.kill(a, no_restart=True)


def _analytics_config(spec: PipelineSpec) -> dict[str, Any] | None:
    a = getattr(spec, "analytics", None)
    return a.model_dump(mode="json") if a is not None else None
