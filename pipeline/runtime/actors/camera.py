"""LiveDecodeActor: one reader process for up to ``live.cameras_per_reader`` cameras.

Each camera is an ``operators.cameras.LiveReader`` (its own thread: reconnects, drops, states).
Several cameras share one process because a process costs a small machine more than the
decoding it hosts: 16 cameras at 2 fps on 2 cores took 61% of a core in 16 reader processes
and 32% in one, CPU the model then lacked (``make bench-live``). A reader is opened by the
first ``next_chunks`` that names its camera, so a process that Ray restarts after a crash reopens its
cameras when the driver's reads are retried: they reconnect, no operator needed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import ray

from operators.cameras import LiveOptions, LiveReader
from operators.frames import FrameBatch
from pipeline.sources import Source

__all__ = ["LiveChunk", "LiveDecodeActor"]


@dataclass(frozen=True)
class LiveChunk:
    """What the driver sees of one read: frame count, state changes, drops; never pixels."""

    source_id: str
    n: int
    states: list[tuple[str, str, int]] = field(default_factory=list)  # (state, detail, attempt)
    dropped: int = 0  # frames the reader dropped so far (oldest first, to stay current)
    final: bool = False  # ended or failed: no more frames will come
    newest_capture: float | None = None
    last_pts: float | None = None
    seq: int = -1  # per-camera chunk number (chunks with frames only): the stateful stage re-orders by it
    oldest_capture: float | None = None


def _changes(reader: LiveReader) -> list[tuple[str, str, int]]:
    """The reader's state changes not yet read, as (state, detail, attempt)."""
    return [(c.state, c.reason, c.attempt) for c in reader.drain_changes()]


@ray.remote
class LiveDecodeActor:
    """Reads its cameras in background threads; ``next_chunks(cameras, ...)`` returns what arrived for them.

    One call reads every camera the driver asks about at once (a Ray task per camera per frame cost the
    2-core machine CPU its models lacked). A threaded actor (``max_concurrency`` >= cameras + 2): a camera
    added while a read is in flight gets a read of its own. ``token`` names one attachment of a camera: a
    read that arrives after ``stop`` for that token (Ray does not order calls of a threaded actor) reopens
    nothing.
    """

    def __init__(self, opts: LiveOptions) -> None:
        self.opts = opts
        self.readers: dict[str, tuple[int, LiveReader]] = {}
        self.stopped: set[tuple[str, int]] = set()
        self.seq: dict[str, int] = {}
        self.lock = threading.Lock()
        self.arrived = threading.Condition()  # a camera got a frame or ended: a waiting read looks again

    def _notify(self) -> None:
        with self.arrived:
            self.arrived.notify_all()

    def _reader(self, source: Source, token: int) -> LiveReader | None:
        with self.lock:
            if (source.id, token) in self.stopped:
                return None
            have = self.readers.get(source.id)
            if have is None or have[0] != token:
                if have is not None:  # re-attached under a new token: the old reader goes
                    have[1].close(timeout=0.0)
                reader = LiveReader(source.uri, source.id, self.opts, notify=self._notify)
                have = self.readers[source.id] = (token, reader.start())
            return have[1]

    def next_chunks(self, cameras: list[tuple[Source, int]], max_frames: int,
                    timeout_s: float) -> tuple[list[LiveChunk] | FrameBatch | None, ...]:
        """Waits up to ``timeout_s`` for a frame (or the end) of any of ``cameras`` ((source, token) pairs),
        then takes up to ``max_frames`` of each. Returns the list of their LiveChunks, then each camera's
        FrameBatch (None if it had none), as separate objects (call it with ``num_returns=1 + cameras``):
        the driver hands a batch to a model without fetching its pixels."""
        readers = [(src.id, self._reader(src, token)) for src, token in cameras]
        deadline = time.monotonic() + timeout_s
        with self.arrived:
            while not any(r is None or r.ready for _, r in readers):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.arrived.wait(left)
        chunks: list[LiveChunk] = []
        batches: list[FrameBatch | None] = []
        for sid, reader in readers:
            chunk, batch = self._take(sid, reader, max_frames)
            chunks.append(chunk)
            batches.append(batch)
        return (chunks, *batches)

    def _take(self, sid: str, reader: LiveReader | None, max_frames: int) -> tuple[LiveChunk, FrameBatch | None]:
        if reader is None:
            return LiveChunk(sid, 0, [], 0, True), None
        batch = reader.read(max_frames, 0.0)
        states = _changes(reader)
        final = reader.finished
        if batch is None or len(batch) == 0:
            return LiveChunk(sid, 0, states, reader.dropped, final), None
        seq = self.seq.get(sid, 0)
        self.seq[sid] = seq + 1
        return LiveChunk(sid, len(batch), states, reader.dropped, final, float(batch.wall_time.max()),
                         float(batch.pts[-1]), seq, float(batch.wall_time.min())), batch

    def stop(self, source_id: str, token: int) -> list[tuple[str, str, int]]:
        """Close one camera's reader; its state changes not yet read come back."""
        with self.lock:
            self.stopped.add((source_id, token))
            have = self.readers.get(source_id)
            if have is None or have[0] != token:
                return []
            del self.readers[source_id]
        have[1].close()
        self._notify()  # a read waiting on it looks again (and finds it stopped on its next call)
        return _changes(have[1])

    def cameras(self) -> list[str]:
        return sorted(self.readers)
