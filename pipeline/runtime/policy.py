"""Scheduling policies of the one driver loop: plain code, no Ray, no Kafka, testable on its own.

The driver hands every decoded chunk to a policy (``admit``), asks it which chunks to run
next when a model actor is free (``next_batch``) and which to give up on (``expire``).
``ArchivePolicy`` never drops: it waits for a full batch (or ``max_wait_ms``) and holds the
decoders back when enough is buffered (backpressure). ``LivePolicy`` keeps every camera
current: it sizes batches so a frame's whole trip fits its latency budget, drops the oldest
frames that no longer can, and shares the model fairly between cameras (round robin, the
camera served longest ago first). ``FifoLivePolicy`` is the earlier live behaviour, kept as
the benchmark's baseline.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ArchivePolicy", "BatchTimer", "Chunk", "FifoLivePolicy", "InOrder", "LivePolicy", "Policy"]


@dataclass
class Chunk:
    """One decoded chunk the driver holds a reference to (never its pixels)."""

    source_id: str
    seq: int  # per-source sequence number given by the decoder: the stateful stage re-orders by it
    n: int  # frames in it
    ref: Any  # the object ref of its FrameBatch (opaque here)
    ready_at: float  # monotonic time it reached the driver
    oldest_capture: float = 0.0  # wall time of its oldest / newest frame (live)
    newest_capture: float = 0.0


class BatchTimer:
    """Moving estimate of a model call's duration as ``fixed + per_frame * n`` (seconds).

    >>> t = BatchTimer()
    >>> for n, s in [(8, 0.9), (4, 0.5), (8, 0.9), (2, 0.3)]:
    ...     t.observe(n, s)
    >>> round(t.estimate(8), 2), round(t.estimate(1), 2)
    (0.9, 0.17)
    """

    def __init__(self, alpha: float = 0.3) -> None:
        self.alpha = alpha
        self.per_frame: float | None = None
        self.fixed = 0.0
        self._last: tuple[int, float] | None = None

    def observe(self, n: int, seconds: float) -> None:
        if n <= 0 or seconds <= 0:
            return
        if self._last is not None and self._last[0] != n:  # two sizes: solve for the slope and intercept
            (n0, s0) = self._last
            slope = max(0.0, (seconds - s0) / (n - n0))
            fixed = max(0.0, seconds - slope * n)
            self.per_frame = slope if self.per_frame is None else (1 - self.alpha) * self.per_frame + self.alpha * slope
            self.fixed = (1 - self.alpha) * self.fixed + self.alpha * fixed
        elif self.per_frame is None:
            self.per_frame = seconds / n
        else:
            pred = self.estimate(n)
            if seconds < pred / 2:  # far faster than thought (a slow first call, a busy spell over): start over
                self.per_frame, self.fixed = seconds / n, 0.0
            else:
                self.per_frame = max(0.0, self.per_frame + self.alpha * (seconds - pred) / n)
        self._last = (n, seconds)

    def estimate(self, n: int) -> float:
        return 0.0 if self.per_frame is None else self.fixed + self.per_frame * n

    def largest_within(self, seconds: float, cap: int) -> int:
        """The largest batch (1..cap) whose call is expected to take at most ``seconds``."""
        if self.per_frame is None or self.per_frame <= 0:
            return cap
        return max(1, min(cap, int((seconds - self.fixed) / self.per_frame)))


class InOrder:
    """Handles a source's replies in the order they were requested, whatever order they arrive in.

    >>> io = InOrder()
    >>> a, b = io.ask("s"), io.ask("s")
    >>> io.arrive("s", b, "second"), io.arrive("s", a, "first")
    ([], ['first', 'second'])
    """

    def __init__(self) -> None:
        self._next_ask: dict[str, int] = {}
        self._next_take: dict[str, int] = {}
        self._held: dict[str, dict[int, Any]] = {}

    def ask(self, source_id: str) -> int:
        n = self._next_ask.get(source_id, 0)
        self._next_ask[source_id] = n + 1
        return n

    def arrive(self, source_id: str, n: int, reply: Any) -> list[Any]:
        held = self._held.setdefault(source_id, {})
        held[n] = reply
        out = []
        nxt = self._next_take.get(source_id, 0)
        while nxt in held:
            out.append(held.pop(nxt))
            nxt += 1
        self._next_take[source_id] = nxt
        return out

    def outstanding(self, source_id: str) -> int:
        return self._next_ask.get(source_id, 0) - self._next_take.get(source_id, 0)

    def forget(self, source_id: str) -> None:
        for d in (self._next_ask, self._next_take, self._held):
            d.pop(source_id, None)


class Policy:
    """What every policy answers; the driver calls these and only moves refs."""

    def __init__(self, max_batch: int, inflight_per_model: int) -> None:
        self.max_batch = max_batch
        self.inflight_per_model = inflight_per_model
        self.timer = BatchTimer()
        self.dropped: dict[str, int] = {}  # frames given up per source
        self._gone: list[Chunk] = []  # dropped since the last take_dropped()

    def admit(self, chunk: Chunk) -> None:
        raise NotImplementedError

    def next_batch(self, now_mono: float, now_wall: float, force: bool) -> list[Chunk]:
        raise NotImplementedError

    def expire(self, now_wall: float) -> list[Chunk]:
        return []

    def buffered(self) -> int:
        raise NotImplementedError

    def observe(self, n: int, seconds: float) -> None:
        self.timer.observe(n, seconds)

    def _drop(self, c: Chunk) -> Chunk:
        self.dropped[c.source_id] = self.dropped.get(c.source_id, 0) + c.n
        self._gone.append(c)
        return c

    def take_dropped(self) -> list[Chunk]:
        """Chunks dropped since the last call (the stage is told to skip them)."""
        out, self._gone = self._gone, []
        return out


class ArchivePolicy(Policy):
    """Throughput and nothing lost: full batches across sources, waiting at most ``max_wait_ms``
    for one; ``want_more`` holds decoders back once ``buffer_limit`` frames wait."""

    def __init__(self, max_batch: int, max_wait_ms: float, inflight_per_model: int, buffer_limit: int) -> None:
        super().__init__(max_batch, inflight_per_model)
        self.max_wait_s = max_wait_ms / 1000
        self.buffer_limit = buffer_limit
        self.pending: deque[Chunk] = deque()

    def admit(self, chunk: Chunk) -> None:
        self.pending.append(chunk)

    def buffered(self) -> int:
        return sum(c.n for c in self.pending)

    def want_more(self, extra: int = 0) -> bool:
        return self.buffered() + extra < self.buffer_limit

    def next_batch(self, now_mono: float, now_wall: float, force: bool) -> list[Chunk]:
        if not self.pending:
            return []
        total, take = 0, 0
        for c in self.pending:
            if take and total + c.n > self.max_batch:
                break
            total += c.n
            take += 1
        waited = now_mono - self.pending[0].ready_at
        if total < self.max_batch and not force and waited < self.max_wait_s:
            return []
        return [self.pending.popleft() for _ in range(take)]

    def wait_hint(self, now_mono: float) -> float:
        """Seconds until the oldest chunk has waited ``max_wait_ms`` (the loop's wake-up)."""
        if not self.pending:
            return 1.0
        return max(0.0, self.max_wait_s - (now_mono - self.pending[0].ready_at))


@dataclass
class _Cam:
    chunks: deque[Chunk] = field(default_factory=deque)
    served_at: float = -math.inf  # turn number of its last dispatch (strictly increasing: no ties)


class LivePolicy(Policy):
    """Bounded latency under any load: a frame is dispatched only if it can still be published inside
    its budget, batches are sized so waiting plus running fits the budget, and cameras take turns."""

    def __init__(self, max_batch: int, budgets_ms: dict[str, float], default_budget_ms: float,
                 margin: float = 0.15, models: int = 1) -> None:
        super().__init__(max_batch, inflight_per_model=1)  # a queued batch only waits: run one at a time
        self.models = max(1, models)
        self._last_dispatch = -math.inf  # wall time of the last batch handed out
        self.budgets_ms = budgets_ms
        self.default_budget_ms = default_budget_ms
        self.margin = margin  # share of the budget kept for decode, transfer and publishing
        self.cams: dict[str, _Cam] = {}
        self._turn = 0

    def budget_s(self, source_id: str) -> float:
        return self.budgets_ms.get(source_id, self.default_budget_ms) / 1000

    def admit(self, chunk: Chunk) -> None:
        self.cams.setdefault(chunk.source_id, _Cam()).chunks.append(chunk)

    def buffered(self) -> int:
        return sum(c.n for cam in self.cams.values() for c in cam.chunks)

    def forget(self, source_id: str) -> list[Chunk]:
        cam = self.cams.pop(source_id, None)
        return list(cam.chunks) if cam else []

    def _tightest_s(self) -> float:
        return min((self.budget_s(s) for s in self.cams), default=self.default_budget_ms / 1000)

    def _batch_cap(self) -> int:
        # A frame may arrive just as a batch starts: it waits for the next free model, then runs. With R
        # models taking batches in turn one frees up every T/R, so waiting plus running is T * (1 + 1/R):
        # two replicas may run batches of 0.57 budget instead of 0.43 (larger batches, more frames/s).
        return self.timer.largest_within(self._tightest_s() * (1 - self.margin) / (1 + 1 / self.models),
                                         self.max_batch)

    def _probe_due(self, now_wall: float) -> bool:
        """Nothing handed out for a whole budget: the estimate may be stale (one slow call, e.g. the first,
        can teach it that no frame makes its budget; then nothing is dispatched and it never learns again)."""
        return now_wall - self._last_dispatch >= self._tightest_s()

    def _late(self, c: Chunk, now_wall: float, run: float) -> bool:
        """``c`` would be published past its camera's budget by a call taking ``run`` seconds from now."""
        return (now_wall - c.oldest_capture) + run > self.budget_s(c.source_id) * (1 - self.margin)

    def _take_newest(self, sid: str) -> Chunk:
        """The camera's newest chunk, its turn taken; anything older would be published after it: dropped."""
        cam = self.cams[sid]
        c = cam.chunks.pop()
        for old in cam.chunks:
            self._drop(old)
        cam.chunks.clear()
        self._turn += 1
        cam.served_at = self._turn
        return c

    def expire(self, now_wall: float) -> list[Chunk]:
        """Chunks that cannot make their budget any more, even if dispatched now in a batch of one (each
        camera's newest is kept while a probe is due: ``next_batch`` may send it to re-learn the timing)."""
        run = self.timer.estimate(1)
        keep = 1 if self._probe_due(now_wall) else 0
        out = []
        for cam in self.cams.values():
            while len(cam.chunks) > keep and self._late(cam.chunks[0], now_wall, run):
                out.append(self._drop(cam.chunks.popleft()))
        return out

    def next_batch(self, now_mono: float, now_wall: float, force: bool) -> list[Chunk]:
        cap = self._batch_cap()
        run = self.timer.estimate(cap)
        batch: list[Chunk] = []
        total = 0
        # round robin: the camera served longest ago first, its newest chunk that still fits the budget
        order = sorted((cam.served_at, sid) for sid, cam in self.cams.items() if cam.chunks)
        probe = self._probe_due(now_wall)
        keep = 1 if probe else 0  # each camera's newest, for a probe
        progressed = True
        while total < cap and progressed:
            progressed = False
            for _, sid in order:
                cam = self.cams[sid]
                while len(cam.chunks) > keep and self._late(cam.chunks[0], now_wall, run):
                    self._drop(cam.chunks.popleft())  # too old for a batch this size: newer frames go first
                if (not cam.chunks or self._late(cam.chunks[-1], now_wall, run)
                        or total + cam.chunks[-1].n > cap and batch):
                    continue
                c = self._take_newest(sid)  # newest first: the freshest view of each camera
                batch.append(c)
                total += c.n
                progressed = True
                if total >= cap:
                    break
        if not batch and probe:
            waiting = [sid for _, sid in order if self.cams[sid].chunks]  # still longest-served-ago first
            if waiting:  # a probe: the newest frame of the camera served longest ago, alone
                batch = [self._take_newest(waiting[0])]
        if batch:
            self._last_dispatch = now_wall
        return batch


class FifoLivePolicy(Policy):
    """The earlier live behaviour (drop what is past its budget, full batches oldest-first, two batches
    queued per model, the model actor dropping late frames): the baseline of ``make bench-live``."""

    def __init__(self, max_batch: int, budgets_ms: dict[str, float], default_budget_ms: float,
                 cap_frames: int, inflight_per_model: int = 2) -> None:
        super().__init__(max_batch, inflight_per_model)
        self.budgets_ms = budgets_ms
        self.default_budget_ms = default_budget_ms
        self.cap_frames = cap_frames
        self.pending: deque[Chunk] = deque()

    def admit(self, chunk: Chunk) -> None:
        self.pending.append(chunk)

    def buffered(self) -> int:
        return sum(c.n for c in self.pending)

    def forget(self, source_id: str) -> list[Chunk]:
        gone = [c for c in self.pending if c.source_id == source_id]
        self.pending = deque(c for c in self.pending if c.source_id != source_id)
        return gone

    def expire(self, now_wall: float) -> list[Chunk]:
        out, kept = [], deque()
        for c in self.pending:
            budget = self.budgets_ms.get(c.source_id, self.default_budget_ms)
            if (now_wall - c.newest_capture) * 1000 > budget:
                out.append(self._drop(c))
            else:
                kept.append(c)
        while sum(c.n for c in kept) > self.cap_frames and len(kept) > 1:
            out.append(self._drop(kept.popleft()))
        self.pending = kept
        return out

    def next_batch(self, now_mono: float, now_wall: float, force: bool) -> list[Chunk]:
        batch: list[Chunk] = []
        total = 0
        while self.pending and (not batch or total + self.pending[0].n <= self.max_batch):
            c = self.pending.popleft()
            batch.append(c)
            total += c.n
        return batch
