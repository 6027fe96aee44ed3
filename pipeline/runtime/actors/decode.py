"""DecodeActor: decodes archive files one after another; a thread decodes ahead into a small buffer.

One actor serves many files (``open`` per file), so a run over thousands of short clips
pays for an actor start once per decode slot, not once per file. Every chunk with frames
carries the next ``seq`` of its source, which the stateful stage re-orders by.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

import ray

from operators.decode import DecodeError, DecodeOptions, decode
from operators.frames import FrameBatch
from pipeline.sources import Source

__all__ = ["ChunkInfo", "DecodeActor"]


@dataclass(frozen=True)
class ChunkInfo:
    """Small metadata returned beside each chunk so the driver never touches pixels."""

    source_id: str
    n: int
    eos: bool = False
    seq: int = -1  # per-source chunk number (chunks with frames only)
    error_stage: str | None = None
    error_reason: str | None = None
    error_type: str | None = None
    error_frame_index: int | None = None
    error_pts: float | None = None
    first_pts: float | None = None
    last_pts: float | None = None


_EOS = "framewire:end-of-stream"  # a value, not an identity: Ray may copy this module's globals


class _Job:
    """One file being decoded ahead of demand into a bounded queue."""

    def __init__(self, source: Source, opts: DecodeOptions, prefetch: int, seq_start: int) -> None:
        self.source = source
        self.opts = opts
        self.seq = seq_start
        self.q: queue.Queue[object] = queue.Queue(maxsize=prefetch)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"decode-{source.id}", daemon=True)
        self.thread.start()

    def _put(self, item: object) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for batch in decode(self.source.uri, self.source.id, self.opts):
                if not self._put(batch):
                    return
            self._put(_EOS)
        except DecodeError as exc:
            self._put(exc)
            self._put(_EOS)  # later requests get end of stream, never a blocked get()
        except Exception as exc:  # noqa: BLE001 - any failure becomes an error event, never a hang
            self._put(DecodeError(self.source.display, "decode", f"{type(exc).__name__}: {exc}"))
            self._put(_EOS)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


@ray.remote
class DecodeActor:
    """Decodes the file given to ``open`` ahead of demand; ``next_chunk`` hands out (info, batch) pairs."""

    def __init__(self, prefetch: int = 2) -> None:
        self.prefetch = prefetch
        self.job: _Job | None = None

    def open(self, source: Source, opts: DecodeOptions, seq_start: int = 0) -> None:
        """Start on a file (ending the previous one): its chunks count from ``seq_start``."""
        if self.job is not None:
            self.job.close()
        self.job = _Job(source, opts, self.prefetch, seq_start)

    @ray.method(num_returns=2)
    def next_chunk(self) -> tuple[ChunkInfo, FrameBatch | None]:
        job = self.job
        assert job is not None, "open() a source first"
        item = job.q.get()
        sid = job.source.id
        if isinstance(item, str) and item == _EOS:
            job.q.put(_EOS)  # stay at end of stream for any further call
            return ChunkInfo(sid, 0, eos=True), None
        if isinstance(item, DecodeError):
            reason = item.reason if item.source == job.source.uri else str(item)
            return ChunkInfo(sid, 0, eos=True, error_stage=item.stage, error_reason=reason,
                             error_type=type(item.__cause__ or item).__name__,
                             error_frame_index=item.frame_index, error_pts=item.pts), None
        assert isinstance(item, FrameBatch), f"unexpected {type(item)!r} {item!r:.200}"
        seq, job.seq = job.seq, job.seq + 1
        return ChunkInfo(sid, len(item), seq=seq, first_pts=float(item.pts[0]), last_pts=float(item.pts[-1])), item

    def stop(self) -> None:
        if self.job is not None:
            self.job.close()
