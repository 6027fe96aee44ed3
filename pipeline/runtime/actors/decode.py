"""DecodeActor: one per source; a thread decodes ahead into a small bounded buffer."""

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
    error_stage: str | None = None
    error_reason: str | None = None
    error_type: str | None = None
    error_frame_index: int | None = None
    error_pts: float | None = None
    first_pts: float | None = None
    last_pts: float | None = None


_EOS = object()


@ray.remote
class DecodeActor:
    """Decodes one source ahead of demand; ``next_chunk`` hands out (info, batch) pairs."""

    def __init__(self, source: Source, opts: DecodeOptions, prefetch: int = 2) -> None:
        self.source = source
        self.opts = opts
        self._q: queue.Queue[object] = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"decode-{source.id}", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.2)
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

    @ray.method(num_returns=2)
    def next_chunk(self) -> tuple[ChunkInfo, FrameBatch | None]:
        item = self._q.get()
        sid = self.source.id
        if item is _EOS:
            self._q.put(_EOS)  # stay at end of stream for any further call
            return ChunkInfo(sid, 0, eos=True), None
        if isinstance(item, DecodeError):
            reason = item.reason if item.source == self.source.uri else str(item)
            return ChunkInfo(sid, 0, eos=True, error_stage=item.stage, error_reason=reason,
                             error_type=type(item.__cause__ or item).__name__,
                             error_frame_index=item.frame_index, error_pts=item.pts), None
        assert isinstance(item, FrameBatch)
        return ChunkInfo(sid, len(item), first_pts=float(item.pts[0]), last_pts=float(item.pts[-1])), item

    def stop(self) -> None:
        self._stop.set()
