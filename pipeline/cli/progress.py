"""What the CLI shows: a progress row per source while running, a summary at the end."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from pipeline.runtime.summary import RunSummary, SourceProgress
from pipeline.sources import Source
from pipeline.spec import PipelineSpec

__all__ = ["RunDisplay", "describe_event", "print_summary"]


class RunDisplay:
    """A live table: per source state, frames published / sampled, frames/s, events."""

    def __init__(self, sources: list[Source], *, console: Console, enabled: bool = True, live: bool = False) -> None:
        self.live = live
        self.console = console
        self.enabled = enabled and console.is_terminal
        self.plain = enabled and not console.is_terminal
        self.sources = sources
        self._live: Live | None = None
        self._last_plain = 0.0
        self._progress: dict[str, SourceProgress] = {}

    def __enter__(self) -> RunDisplay:
        if self.enabled:
            self._live = Live(self._table(), console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(*exc)

    def _live_table(self) -> Table:
        from pipeline.runtime.summary import percentile

        t = Table(title="framewire live", expand=False)
        for col in ("source", "state", "frames", "fps", "p50 ms", "p95 ms", "dropped", "events", "note"):
            t.add_column(col, justify="left" if col in ("source", "state", "note") else "right")
        for p in self._progress.values():
            lat = sorted(p.latency_ms)
            p50, p95 = percentile(lat, 0.5), percentile(lat, 0.95)
            t.add_row(p.source.id, p.state, str(p.published), f"{p.live_fps:.1f}",
                      "-" if p50 is None else f"{p50:.0f}", "-" if p95 is None else f"{p95:.0f}",
                      str(p.dropped), str(p.events), (p.error or p.detail or "")[:50])
        return t

    def _table(self) -> Table:
        if self.live:
            return self._live_table()
        t = Table(title="framewire run", expand=False)
        for col in ("source", "state", "frames", "fps", "events", "note"):
            t.add_column(col, justify="right" if col in ("frames", "fps", "events") else "left")
        for s in self.sources:
            p = self._progress.get(s.id) or SourceProgress(s)
            t.add_row(s.id, p.state, f"{p.published}/{p.decoded}", f"{p.fps:.1f}", str(p.events),
                      (p.error or "")[:60])
        return t

    def update(self, progress: dict[str, SourceProgress]) -> None:
        self._progress = progress
        if self._live is not None:
            self._live.update(self._table())
        elif self.plain and time.monotonic() - self._last_plain > 5:
            self._last_plain = time.monotonic()
            if self.live:
                for p in progress.values():
                    self.console.print(f"{p.source.id}: {p.state}, {p.published} frames, {p.live_fps:.1f} fps, "
                                       f"dropped {p.dropped}", highlight=False)
                return
            done = sum(p.published for p in progress.values())
            # decoded to the end is not done: its last frames may still be in the model or the producer
            ended = sum(p.state == "failed" or (p.state == "ended" and p.published >= p.decoded)
                        for p in progress.values())
            self.console.print(f"progress: {done} frames published, {ended}/{len(progress)} sources done",
                               highlight=False)

    def summary_dict(self, s: RunSummary) -> dict[str, Any]:
        return {
            "run_id": s.run_id, "seconds": round(s.seconds, 3), "frames": s.frames, "batches": s.batches,
            "model_seconds": round(s.model_seconds, 3), "errors": s.errors,
            "delivery": {"sent": s.delivery.sent, "acked": s.delivery.acked, "failed": s.delivery.failed,
                         "per_topic": s.delivery.per_topic},
            "sources": [{"id": p.source.id, "uri": p.source.display, "state": p.state, "frames": p.published,
                         "events": p.events, "error": p.error} for p in s.sources],
        }


def describe_event(ev: Any) -> str:
    """One readable line for an event."""
    head = f"{ev.source_id} "
    if hasattr(ev, "pts"):
        head += f"t={ev.pts:7.2f}s "
    if ev.type == "caption":
        return head + f"caption ({ev.kind}): {ev.text}"
    if ev.type == "detections":
        items = ", ".join(f"{d.label}" + (f" #{d.track_id}" if d.track_id is not None else "")
                          + (f" {d.score:.2f}" if d.score is not None else "") for d in ev.detections[:8])
        more = f" (+{len(ev.detections) - 8})" if len(ev.detections) > 8 else ""
        return head + f"detections [{len(ev.detections)}]: {items}{more}"
    if ev.type == "query":
        sc = f" score {ev.score:.2f}" if ev.score is not None else ""
        return head + f"query {ev.query!r}: {'MATCH' if ev.matched else 'no match'}{sc}"
    if ev.type == "embedding":
        return head + f"embedding [dim {ev.dim}{', unit norm' if ev.normalized else ''}]"
    if ev.type == "status":
        extra = f" dropped={ev.dropped}" if getattr(ev, "dropped", 0) else ""
        return head + f"status {ev.state} frames={ev.frames}{extra} {ev.detail}".rstrip()
    if ev.type == "query_match":
        sc = f" max score {ev.max_score:.2f}" if ev.max_score is not None else ""
        return head + f"query {ev.query!r} match {ev.state} (since t={ev.started_pts:.2f}s, {ev.frames} frames{sc})"
    if ev.type == "error":
        return head + f"error at {ev.stage}: {ev.reason}"
    if ev.type == "ocr":
        texts = " | ".join(line.text for line in ev.lines[:8])
        more = f" (+{len(ev.lines) - 8})" if len(ev.lines) > 8 else ""
        return head + f"ocr [{len(ev.lines)} lines]: {texts}{more}"
    if ev.type == "thumbnail":
        return head + f"thumbnail {ev.width}x{ev.height} jpeg, {ev.size_bytes} bytes"
    if ev.type == "track":
        return head + (f"track {ev.label} #{ev.track_id} {ev.kind} ({ev.reason}; t={ev.first_pts:.2f}s.."
                       f"{ev.last_pts:.2f}s, {ev.frames} frames)")
    if ev.type == "zone":
        dwell = f" after {ev.dwell_s:.1f}s" if ev.dwell_s is not None else ""
        return head + f"zone {ev.zone!r}: {ev.label} #{ev.track_id} {ev.kind}{dwell} (occupancy {ev.occupancy})"
    if ev.type == "line":
        return head + (f"line {ev.line!r}: {ev.label} #{ev.track_id} crossed {ev.direction} "
                       f"(in {ev.in_count}, out {ev.out_count})")
    if ev.type == "window":
        counts = ", ".join(f"{lb} max {c.max}" for lb, c in sorted(ev.counts.items(), key=lambda kv: -kv[1].max)[:5])
        return head + f"window {ev.start:.1f}..{ev.end:.1f} ({ev.clock}): {ev.frames} frames, {ev.tracks} tracks" + (
            f"; {counts}" if counts else "")
    return head + ev.type


def print_summary(s: RunSummary, spec: PipelineSpec, bootstrap: str, *, console: Console, show: int = 3) -> None:
    fps = s.frames / s.seconds if s.seconds else 0.0
    console.print(f"\nrun {s.run_id}: {s.frames} frames in {s.seconds:.1f}s ({fps:.1f} frames/s), "
                  f"{s.batches} batches, model {s.extra.get('input_size')}; "
                  f"events sent {s.delivery.sent}, acknowledged {s.delivery.acked}, failed {s.delivery.failed} "
                  f"(Kafka {bootstrap})", highlight=False)
    if s.extra.get("mode") == "live":
        t = Table(show_header=True)
        for col in ("source", "state", "frames", "fps (last 10s)", "p50 ms", "p95 ms", "dropped"):
            t.add_column(col)
        for d in s.extra.get("live", []):
            t.add_row(d["source_id"], d["state"], str(d["frames"]), f"{d['fps']:.1f}",
                      str(d["latency_p50_ms"] or "-"), str(d["latency_p95_ms"] or "-"), str(d["dropped"]))
        console.print(t)
        return
    t = Table(show_header=True)
    for col in ("source", "state", "frames", "events", "error"):
        t.add_column(col)
    for p in s.sources:
        t.add_row(p.source.id, p.state, str(p.published), str(p.events), "see below" if p.error else "")
    console.print(t)
    if s.delivery.per_topic:
        console.print("per topic: " + ", ".join(f"{k}={v}" for k, v in sorted(s.delivery.per_topic.items())),
                      highlight=False)
    for p in s.sources:
        if p.error:
            console.print(f"[red]failed:[/] {p.source.display}: {p.error}", highlight=False, soft_wrap=True)
    for e in s.delivery.errors[:5]:
        console.print(f"[red]delivery error:[/] {e}", highlight=False)
    if show <= 0:
        return
    print_event_digest(s.run_id, spec, bootstrap, console=console, show=show)


def print_event_digest(run_id: str, spec: PipelineSpec, bootstrap: str, *, console: Console, show: int = 3) -> None:
    """Read the run's events back from Kafka and print what they say, per source."""
    from collections import Counter, defaultdict

    from pipeline.kafka.consumer import subscribe

    labels: dict[str, Counter[str]] = defaultdict(Counter)  # frames in which each label was seen
    captions: dict[str, list[tuple[float, str]]] = defaultdict(list)
    matches: dict[tuple[str, str], list[float]] = defaultdict(list)
    frames: Counter[str] = Counter()
    embedded: Counter[str] = Counter()  # frames with an embedding event
    errors: list[str] = []
    tracks: dict[str, list[Any]] = defaultdict(list)  # ended tracks
    crossings: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)  # (line, direction)
    visits: dict[str, list[Any]] = defaultdict(list)  # zone exits
    windows: dict[str, list[Any]] = defaultdict(list)
    texts: dict[str, dict[str, list[float]]] = defaultdict(dict)  # OCR: text -> pts it was read at
    for rec in subscribe(bootstrap, prefix=spec.kafka.topic_prefix, from_beginning=True, run_id=run_id,
                         idle_timeout=3.0, security=spec.kafka.security):
        ev: Any = rec.event
        if ev.type == "detections":
            frames[ev.source_id] += 1
            labels[ev.source_id].update({d.label for d in ev.detections})
        elif ev.type == "caption":
            captions[ev.source_id].append((ev.pts, ev.text))
        elif ev.type == "query":
            matches[(ev.source_id, ev.query)] += [ev.pts] if ev.matched else []
            matches.setdefault((ev.source_id, ev.query), [])
        elif ev.type == "embedding":
            embedded[ev.source_id] += 1
        elif ev.type == "error":
            errors.append(describe_event(ev))
        elif ev.type == "track" and ev.kind == "ended":
            tracks[ev.source_id].append(ev)
        elif ev.type == "line":
            crossings[ev.source_id][(ev.line, ev.direction)] += 1
        elif ev.type == "zone" and ev.kind == "exited":
            visits[ev.source_id].append(ev)
        elif ev.type == "window":
            windows[ev.source_id].append(ev)
        elif ev.type == "ocr":
            for line in ev.lines:
                texts[ev.source_id].setdefault(line.text, []).append(ev.pts)
    console.print(f"\nwhat the events say (read back from Kafka; `framewire tail --run-id {run_id} "
                  "--from-beginning` prints them all):", highlight=False)
    for sid in sorted(set(frames) | set(captions) | set(embedded) | set(texts)):
        n = frames[sid] or embedded[sid]
        if frames[sid] or not embedded[sid]:  # as before for runs without embeddings
            seen = ", ".join(f"{lbl} in {k}/{n} frames" for lbl, k in labels[sid].most_common(6)) or "nothing"
            console.print(f"  {sid}: detected {seen}", highlight=False)
        if embedded[sid]:
            console.print(f"  {sid}: embedded {embedded[sid]} frames", highlight=False)
        shown = 0
        last = None
        for pts, text in sorted(captions[sid]):
            if text != last and text != "no objects detected" and shown < show * 2:
                console.print(f"    t={pts:6.2f}s  {text}", highlight=False)
                shown += 1
            last = text
        for (src, q), ts in sorted(matches.items()):
            if src == sid:
                when = ", ".join(f"{t:.1f}s" for t in ts[:8]) + (" ..." if len(ts) > 8 else "")
                console.print(f"    query {q!r}: matched in {len(ts)}/{n} frames" + (f" (t={when})" if ts else ""),
                              highlight=False)
        for text, ts in sorted(texts[sid].items(), key=lambda kv: min(kv[1]))[: show * 2]:
            console.print(f"    text {text!r}: read in {len(ts)} frames (t={min(ts):.1f}s..{max(ts):.1f}s)",
                          highlight=False)
        _print_over_time(sid, tracks[sid], crossings[sid], visits[sid], windows[sid], console=console, show=show)
    for line in errors[: show * 3]:
        console.print(f"  [red]{line}[/]", highlight=False)


def _print_over_time(sid: str, tracks: list[Any], crossings: Any, visits: list[Any], windows: list[Any], *,
                     console: Console, show: int) -> None:
    """Tracks, line counts, zone visits and windows of one source, a few lines each."""
    from collections import Counter

    if tracks:
        per = Counter(t.label for t in tracks)
        console.print(f"    tracks: {len(tracks)} ({', '.join(f'{n} {lb}' for lb, n in per.most_common(6))})",
                      highlight=False)
        for t in sorted(tracks, key=lambda t: -t.frames)[:show]:
            console.print(f"      {t.label} #{t.track_id}: t={t.first_pts:.1f}s..{t.last_pts:.1f}s, "
                          f"{t.frames} frames", highlight=False)
    for (line, direction), n in sorted(crossings.items()):
        console.print(f"    line {line!r}: {n} crossed {direction}", highlight=False)
    for v in visits[:show]:
        console.print(f"    zone {v.zone!r}: {v.label} #{v.track_id} stayed {v.dwell_s or 0:.1f}s", highlight=False)
    for w in windows[: show * 2]:
        counts = ", ".join(f"{lb} max {c.max}" for lb, c in sorted(w.counts.items(), key=lambda kv: -kv[1].max)[:4])
        console.print(f"    window {w.start:.0f}-{w.end:.0f}s: {w.frames} frames, {w.tracks} tracks"
                      + (f"; {counts}" if counts else "") + (f"; \"{w.caption}\"" if w.caption else ""),
                      highlight=False)
