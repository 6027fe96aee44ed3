"""The consumer library for subscribers: typed events back from Kafka, filtered, committed after handling.

    from pipeline.kafka.consumer import Subscriber
    with Subscriber("127.0.0.1:9092", group_id="alerts", types={"query"}) as sub:
        for rec in sub:
            handle(rec.event)          # the offset is committed only after this returns

Reads ``read_committed`` by default, so events of an unfinished archive transaction are
never seen. Values that are not framewire events are skipped and counted in ``skipped``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline.events import Topics, parse_event

__all__ = ["Received", "Subscriber", "parse_since", "subscribe"]


@dataclass(frozen=True)
class Received:
    topic: str
    partition: int
    offset: int
    key: str
    headers: dict[str, str]
    event: Any  # one of the pipeline.events event models


_REL = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")


def parse_since(value: str, now: float | None = None) -> float:
    """UNIX seconds from '90s', '10m', '2h', '1d' (ago), an ISO time, or UNIX seconds.

    >>> parse_since("10m", now=1000.0)
    400.0
    >>> parse_since("1970-01-01T00:01:00+00:00")
    60.0
    """
    now = time.time() if now is None else now
    m = _REL.match(value.strip())
    if m:
        return now - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise ValueError(f"--since {value!r}: give a duration ago (90s, 10m, 2h, 1d), an ISO time "
                         "(2026-11-22T10:00:00+00:00) or UNIX seconds") from None


class Subscriber:
    """Iterate framewire events. With ``group_id`` offsets are committed after each handled event
    (in groups of ``commit_every``, and on close), so a crash re-delivers at most the unhandled ones.

    Without ``group_id`` there is no group to join: the subscriber reads every partition of the topics
    that exist, by hand, and looks for new topics every ``REFRESH_S`` (read from their beginning). A group
    join made before the consumer has the topics' metadata can leave it with no partitions for a minute
    (seen once in CI: a check read nothing for 60 s), which a one-shot read cannot afford."""

    REFRESH_S = 3.0

    def __init__(
        self,
        bootstrap: str,
        topics: list[str] | None = None,
        *,
        prefix: str = "framewire",
        group_id: str | None = None,
        from_beginning: bool = False,
        since: float | None = None,
        sources: set[str] | None = None,
        types: set[str] | None = None,
        run_id: str | None = None,
        track_ids: set[int] | None = None,
        read_committed: bool = True,
        idle_timeout: float | None = None,
        commit_every: int = 100,
        security: Any = None,
    ) -> None:
        from kafka import KafkaConsumer

        from pipeline.kafka.client import check_connection, client_config

        check_connection(bootstrap, security)

        self.topics = topics or Topics(prefix).all()
        self.sources, self.types, self.run_id, self.since = sources, types, run_id, since
        self.track_ids = track_ids
        self.idle_timeout = idle_timeout
        self.group_id = group_id
        self.commit_every = commit_every
        self.skipped = 0
        self._handled: dict[Any, int] = {}
        self._since_commit = 0
        self.from_beginning = from_beginning
        self._assigned: set[Any] = set()
        self._refreshed, self._listed = 0.0, False  # when we last looked for topics; whether the broker answered
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group_id,
            auto_offset_reset="earliest" if (from_beginning or since is not None) else "latest",
            enable_auto_commit=False,
            isolation_level="read_committed" if read_committed else "read_uncommitted",
            consumer_timeout_ms=200,
            **client_config(security),
        )
        if group_id is None:
            self._assign_new(first=True)
        else:
            self.consumer.subscribe(self.topics)

    def _assign_new(self, *, first: bool = False) -> None:
        """Group-less: take the partitions of our topics that exist now and are not ours yet. The first
        time they start where asked (beginning, ``since`` or end); later ones (topics created since) start
        at their beginning, as everything in them is new."""
        from kafka import TopicPartition
        from kafka.errors import KafkaError

        self._refreshed = time.monotonic()
        try:
            existing = self.consumer.topics()  # always asks the broker, so new topics show up
            new = [TopicPartition(t, p) for t in self.topics if t in existing
                   for p in sorted(self.consumer.partitions_for_topic(t))]
        except KafkaError:  # the broker did not answer: try again at the next refresh
            return
        self._listed = True
        new = [tp for tp in new if tp not in self._assigned]
        if not new:
            return
        self._assigned.update(new)
        self.consumer.assign(sorted(self._assigned))  # keeps the positions of the partitions already ours
        if first and self.since is not None:
            offsets = self.consumer.offsets_for_times({tp: int(self.since * 1000) for tp in new})
            for tp in new:
                found = offsets.get(tp)
                if found is None:
                    self.consumer.seek_to_end(tp)
                else:
                    self.consumer.seek(tp, found.offset)
        elif first and not self.from_beginning:
            self.consumer.seek_to_end(*new)
        else:
            self.consumer.seek_to_beginning(*new)

    def _wanted(self, ev: Any) -> bool:
        if self.sources and not any(ev.source_id == s or ev.source_id.startswith(s + "-") for s in self.sources):
            return False
        if self.types and ev.type not in self.types:
            return False
        if self.run_id and ev.run_id != self.run_id:
            return False
        if self.track_ids is not None and not _has_track(ev, self.track_ids):
            return False
        t = getattr(ev, "capture_time", ev.emitted_at)
        return not (self.since is not None and t < self.since)

    def __iter__(self) -> Iterator[Received]:
        from kafka import TopicPartition

        last = started = time.monotonic()
        caught_up = False
        while True:
            got = False
            for msg in self.consumer:
                got = True
                last = time.monotonic()
                tp = TopicPartition(msg.topic, msg.partition)
                try:
                    ev = parse_event(msg.value)
                except ValueError:
                    self.skipped += 1
                    self._mark(tp, msg.offset)
                    continue
                if self._wanted(ev):
                    hdrs = {k: v.decode(errors="replace") for k, v in (msg.headers or [])}
                    yield Received(msg.topic, msg.partition, msg.offset, (msg.key or b"").decode(), hdrs, ev)
                self._mark(tp, msg.offset)  # reached only after the caller handled the event
            # on time even while events stream in: a topic created meanwhile must not wait for a quiet moment
            if self.group_id is None and time.monotonic() - self._refreshed > self.REFRESH_S:
                self._assign_new()
            if not got and not caught_up and self.idle_timeout is not None and time.monotonic() - started < 60:
                # Idle time counts once the partitions are ours and read to their end: joining the group,
                # learning a topic's metadata and resetting offsets can take seconds on a busy machine.
                caught_up = self._caught_up()
                last = time.monotonic()
            if not got and self.idle_timeout is not None and time.monotonic() - last > self.idle_timeout:
                return

    def _caught_up(self) -> bool:
        """Every assigned partition is read up to its end (the last stable offset under read_committed)."""
        from kafka.errors import KafkaError

        tps = list(self.consumer.assignment())
        if not tps:
            return self.group_id is None and self._listed  # group-less: none of our topics exists yet
        try:
            ends = self.consumer.end_offsets(tps, timeout_ms=2000)
            return all(self.consumer.position(tp, timeout_ms=2000) >= ends[tp] for tp in tps)
        except (KafkaError, KeyError, TypeError):  # no answer yet (or no position): not caught up
            return False

    def _mark(self, tp: Any, offset: int) -> None:
        if self.group_id is None:
            return
        self._handled[tp] = offset + 1
        self._since_commit += 1
        if self._since_commit >= self.commit_every:
            self.commit()

    def commit(self) -> None:
        """Commit the offsets of every event handled so far (group consumers only)."""
        if self.group_id is None or not self._handled:
            return
        from kafka.structs import OffsetAndMetadata

        self.consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in self._handled.items()})
        self._handled.clear()
        self._since_commit = 0

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self.consumer.close()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _has_track(ev: Any, ids: set[int]) -> bool:
    """The event is about one of these tracks: a track, zone or line event, or detections holding its box."""
    if getattr(ev, "track_id", None) in ids:
        return True
    return any(d.track_id in ids for d in getattr(ev, "detections", ()))


def subscribe(bootstrap: str, topics: list[str] | None = None, *, source: str | None = None,
              **kwargs: Any) -> Iterator[Received]:
    """Yield events until ``idle_timeout`` (a one-call form of Subscriber; closes itself)."""
    sub = Subscriber(bootstrap, topics, sources={source} if source else None, **kwargs)
    try:
        yield from sub
    finally:
        sub.close()
