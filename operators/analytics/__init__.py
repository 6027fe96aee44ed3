"""Stateful per-source analytics over ``SourceFrames``: tracks, zones, lines, query intervals, window summaries.

Each operator sees ONE source's frames in pts order, has ``update(...) -> events``, ``end(pts)`` for end
of stream, and ``snapshot()`` (a JSON-able dict) / ``restore(state)`` so that a fresh object restored
from a snapshot continues with exactly the ids and events of an uninterrupted run. ``SourceStage``
composes them from an ``AnalyticsSpec`` behind a reorder buffer keyed by the decoder's chunk seq.
Nothing here imports Ray, Kafka or ``pipeline``.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module; imported on first use, so ``pipeline.query_tracker`` does not pull in trackers/supervision/cv2
_EXPORTS = {
    **dict.fromkeys(["AnalyticsSpec", "LineSpec", "QueryIntervalSpec", "TrackerSpec", "WindowSpec", "ZoneSpec"],
                    "config"),
    **dict.fromkeys(["AnalyticsEvent", "LineEvent", "QueryInterval", "TrackEvent", "WindowSummary", "ZoneEvent"],
                    "events"),
    "SourceFrames": "frames", "LineCounter": "lines", "QueryIntervals": "queries", "QueryTracker": "queries",
    "ReleasedChunk": "stage", "SourceStage": "stage", "StageOutput": "stage", "Tracker": "tracker",
    "WindowSummarizer": "windows", "ZoneCounter": "zones",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'operators.analytics' has no attribute {name!r}")
    return getattr(importlib.import_module(f"operators.analytics.{_EXPORTS[name]}"), name)
