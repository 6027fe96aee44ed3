"""The scheduling policies on their own: no Ray, no broker, no sleep (time is passed in)."""

from __future__ import annotations

from collections import Counter

from pipeline.runtime.policy import ArchivePolicy, BatchTimer, Chunk, FifoLivePolicy, InOrder, LivePolicy


def chunk(sid: str, seq: int, n: int = 1, ready: float = 0.0, cap: float = 0.0) -> Chunk:
    return Chunk(sid, seq, n, f"{sid}/{seq}", ready, cap, cap)


def test_archive_waits_for_a_full_batch_then_max_wait_and_never_drops() -> None:
    p = ArchivePolicy(max_batch=8, max_wait_ms=50, inflight_per_model=2, buffer_limit=32)
    p.admit(chunk("a", 0, 4, ready=0.0))
    assert p.next_batch(0.01, 0.0, force=False) == []  # 4 of 8, waited 10 ms
    p.admit(chunk("b", 0, 4, ready=0.01))
    assert [c.ref for c in p.next_batch(0.02, 0.0, force=False)] == ["a/0", "b/0"]  # full
    p.admit(chunk("a", 1, 3, ready=0.1))
    assert p.next_batch(0.12, 0.0, force=False) == []
    assert [c.ref for c in p.next_batch(0.16, 0.0, force=False)] == ["a/1"]  # waited past 50 ms
    p.admit(chunk("a", 2, 3, ready=1.0))
    assert [c.ref for c in p.next_batch(1.0, 0.0, force=True)] == ["a/2"]  # nothing more is coming
    assert p.expire(1e9) == [] and p.take_dropped() == [] and p.dropped == {}


def test_archive_backpressure_holds_decoders_back() -> None:
    p = ArchivePolicy(max_batch=8, max_wait_ms=50, inflight_per_model=2, buffer_limit=16)
    assert p.want_more()
    for i in range(4):
        p.admit(chunk("a", i, 4))
    assert not p.want_more()
    p.next_batch(0.0, 0.0, force=True)
    assert p.want_more()


def test_archive_batches_never_split_a_chunk_and_keep_arrival_order() -> None:
    p = ArchivePolicy(max_batch=5, max_wait_ms=0, inflight_per_model=2, buffer_limit=100)
    for i in range(4):
        p.admit(chunk("a", i, 3))
    sizes = []
    while p.buffered():
        sizes.append([c.seq for c in p.next_batch(0.0, 0.0, force=True)])
    assert sizes == [[0], [1], [2], [3]]  # 3 + 3 > 5: one chunk a batch


def test_in_order_releases_a_sources_replies_in_request_order() -> None:
    io = InOrder()
    asks = [io.ask("s") for _ in range(3)]
    assert io.arrive("s", asks[2], "eos") == []
    assert io.arrive("s", asks[0], "error") == ["error"]
    assert io.arrive("s", asks[1], "more eos") == ["more eos", "eos"]
    assert io.outstanding("s") == 0


def test_batch_timer_learns_fixed_and_per_frame_cost() -> None:
    t = BatchTimer()
    for _ in range(20):
        t.observe(8, 0.1 + 8 * 0.1)
        t.observe(2, 0.1 + 2 * 0.1)
    assert abs(t.estimate(8) - 0.9) < 0.05 and abs(t.estimate(1) - 0.2) < 0.05
    assert t.largest_within(0.5, 8) == 4


def _overload(policy: LivePolicy | FifoLivePolicy, cams: int, fps: float, model_per_frame: float,
              seconds: float = 60.0, budget: float = 2.0, models: int = 1) -> tuple[float, float, Counter[str]]:
    """Simulate cameras at ``fps`` and ``models`` replicas (each ``model_per_frame`` s/frame + 50 ms a call) on
    virtual time: frames delivered per second, worst latency, and delivered frames per camera."""
    now, seq, next_cap = 0.0, Counter[str](), {f"c{i}": i / (cams * fps) for i in range(cams)}
    busy_until = [0.0] * models
    inflight: list[tuple[float, list[Chunk], int]] = []
    latencies: list[float] = []
    delivered = Counter[str]()
    while now < seconds:
        for sid, t in next_cap.items():
            while t <= now:
                policy.admit(Chunk(sid, seq[sid], 1, None, t, t, t))
                seq[sid] += 1
                t += 1 / fps
            next_cap[sid] = t
        policy.expire(now)
        for item in [b for b in inflight if b[0] <= now]:
            inflight.remove(item)
            for c in item[1]:
                latencies.append(item[0] - c.oldest_capture)
                delivered[c.source_id] += 1
        for m in range(models):
            if sum(1 for b in inflight if b[2] == m) < policy.inflight_per_model:
                batch = policy.next_batch(now, now, force=True)
                if batch:
                    start = max(now, busy_until[m])
                    took = 0.05 + model_per_frame * len(batch)
                    busy_until[m] = start + took
                    policy.observe(len(batch), took)
                    inflight.append((busy_until[m], batch, m))
        now += 0.01
    return sum(delivered.values()) / seconds, max(latencies), delivered


def test_live_policy_keeps_latency_inside_the_budget_under_overload_and_is_fair() -> None:
    capacity = 1 / 0.125  # 8 frames/s at the best batch
    live = LivePolicy(max_batch=8, budgets_ms={}, default_budget_ms=2000)
    rate, worst, per_cam = _overload(live, cams=8, fps=2.0, model_per_frame=0.12)
    assert worst <= 2.0
    assert rate >= 0.85 * capacity
    assert max(per_cam.values()) - min(per_cam.values()) <= 0.1 * max(per_cam.values())


def test_two_replicas_run_larger_batches_and_keep_the_budget() -> None:
    # with two models one frees up every half batch, so batches may be longer: 8 frames, not 6
    capacity = 2 * 8 / (0.05 + 8 * 0.12)
    live = LivePolicy(max_batch=8, budgets_ms={}, default_budget_ms=2000, models=2)
    rate, worst, per_cam = _overload(live, cams=16, fps=2.0, model_per_frame=0.12, models=2)
    assert worst <= 2.0
    assert rate >= 0.9 * capacity
    assert max(per_cam.values()) - min(per_cam.values()) <= 0.1 * max(per_cam.values())
    assert live._batch_cap() == 8
    assert LivePolicy(max_batch=8, budgets_ms={}, default_budget_ms=2000, models=1)._batch_cap() == 8  # untrained
    one = LivePolicy(max_batch=8, budgets_ms={}, default_budget_ms=2000, models=1)
    one.timer = live.timer
    assert one._batch_cap() == 6  # one model: waiting a whole batch, then running, must fit


def test_one_slow_call_does_not_stop_the_live_policy_for_good() -> None:
    # a first trip of 5 s (cold model, producer start) says no frame can make a 2 s budget; without a probe
    # nothing would be dispatched again, nothing re-learnt, and every frame dropped for the rest of the run
    capacity = 1 / 0.125
    live = LivePolicy(max_batch=8, budgets_ms={}, default_budget_ms=2000)
    live.timer.observe(1, 5.0)
    rate, worst, per_cam = _overload(live, cams=8, fps=2.0, model_per_frame=0.12)
    assert rate >= 0.85 * capacity
    assert worst <= 2.0
    assert min(per_cam.values()) > 0


def test_fifo_baseline_misses_the_budget_that_the_live_policy_keeps() -> None:
    fifo = FifoLivePolicy(max_batch=8, budgets_ms={}, default_budget_ms=2000, cap_frames=8, inflight_per_model=2)
    _, worst, _ = _overload(fifo, cams=8, fps=2.0, model_per_frame=0.12)
    assert worst > 2.0  # queued batches wait a whole batch time: what the live policy fixes


def test_live_policy_drops_what_cannot_make_it_and_reports_the_chunks() -> None:
    p = LivePolicy(max_batch=4, budgets_ms={"a": 1000}, default_budget_ms=2000)
    p.observe(1, 0.2)
    p.admit(Chunk("a", 0, 1, None, 0.0, 0.0, 0.0))
    p.admit(Chunk("a", 1, 1, None, 0.0, 0.9, 0.9))
    p.expire(1.0)  # seq 0 is 1.0 s old: past 85% of 1 s even before running
    gone = p.take_dropped()
    assert [(c.source_id, c.seq) for c in gone] == [("a", 0)]
    batch = p.next_batch(0.0, 1.0, force=True)
    assert [c.seq for c in batch] == [1] and p.dropped == {"a": 1}
