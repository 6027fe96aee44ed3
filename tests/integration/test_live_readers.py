"""A reader process's one read for all its cameras (``LiveDecodeActor.next_chunks``), on a real Ray."""

from __future__ import annotations

import time
from pathlib import Path

import ray

from operators.cameras import LiveOptions
from pipeline.runtime.actors.camera import LiveDecodeActor
from pipeline.sources import expand_sources
from tests.support.videos import make_video


def test_one_read_returns_every_camera_and_never_waits_on_a_dead_one(ray_local: None, tmp_path: Path) -> None:
    """A file camera and a camera nobody serves share a reader process: one call returns a chunk for each
    (the dead one empty, with its state changes) and a separate pixel object per camera, as soon as any
    camera has a frame, not after the dead one's timeout; a stopped camera's read reopens nothing."""
    clip = make_video(tmp_path / "c.mp4", frames=20, size=(64, 96))
    live, dead = expand_sources([str(clip), "rtsp://127.0.0.1:9/nobody"])
    opts = LiveOptions(fps=1000, size=(32, 48), buffer_frames=64, reconnect_on_end=False, open_timeout_s=1,
                       initial_backoff_s=5.0)
    actor = LiveDecodeActor.options(max_concurrency=4).remote(opts)  # type: ignore[attr-defined]
    try:
        t0 = time.monotonic()
        meta, b_live, b_dead = actor.next_chunks.options(num_returns=3).remote([(live, 1), (dead, 1)], 8, 30.0)
        chunks = ray.get(meta, timeout=60)
        assert time.monotonic() - t0 < 15, "the read waited for the dead camera"
        assert [c.source_id for c in chunks] == [live.id, dead.id]
        assert chunks[1].n == 0 and ray.get(b_dead) is None and not chunks[1].final
        batch = ray.get(b_live)
        assert chunks[0].n == len(batch) > 0 and set(batch.source_id) == {live.id}
        assert batch.pixels.shape[1:] == (32, 48, 3)
        index = list(batch.frame_index)
        c = chunks[0]
        final = c.final
        states = [s for s, _, _ in chunks[0].states]
        while not final:  # the file ends: its camera says so, every sampled frame handed out once, in order
            meta, b_live = actor.next_chunks.options(num_returns=2).remote([(live, 1)], 8, 5.0)
            (c,) = ray.get(meta, timeout=60)
            if c.n:
                index += list(ray.get(b_live).frame_index)
            final = c.final
            states += [s for s, _, _ in c.states]
        assert index == list(range(len(index))) and c.dropped == 0, index
        assert states == ["connecting", "live", "ended"], states
        assert isinstance(ray.get(actor.stop.remote(dead.id, 1), timeout=30), list)
        meta, _ = actor.next_chunks.options(num_returns=2).remote([(dead, 1)], 8, 5.0)
        (c,) = ray.get(meta, timeout=30)
        assert c.final and c.n == 0 and dead.id not in ray.get(actor.cameras.remote())
    finally:
        ray.kill(actor)
