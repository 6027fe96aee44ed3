"""LiveDecodeActor: one per camera; wraps operators.cameras.LiveReader (reconnects, drops, states)."""

from __future__ import annotations

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


@ray.remote
class LiveDecodeActor:
    """Reads one live source in a background thread; ``next_chunk`` returns what arrived."""

    def __init__(self, source: Source, opts: LiveOptions) -> None:
        self.source = source
        self.reader = LiveReader(source.uri, source.id, opts)
        self.reader.start()
        self.seq = 0

    @ray.method(num_returns=2)
    def next_chunk(self, max_frames: int, timeout_s: float) -> tuple[LiveChunk, FrameBatch | None]:
        batch = self.reader.read(max_frames, timeout_s)
        states = [(c.state, c.reason, c.attempt) for c in self.reader.drain_changes()]
        final = self.reader.finished
        sid = self.source.id
        if batch is None or len(batch) == 0:
            return LiveChunk(sid, 0, states, self.reader.dropped, final), None
        seq, self.seq = self.seq, self.seq + 1
        return LiveChunk(sid, len(batch), states, self.reader.dropped, final, float(batch.wall_time.max()),
                         float(batch.pts[-1]), seq, float(batch.wall_time.min())), batch

    def stop(self) -> list[tuple[str, str, int]]:
        self.reader.close()
        return [(c.state, c.reason, c.attempt) for c in self.reader.drain_changes()]
