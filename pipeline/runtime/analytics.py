"""Builds each source's analytics operators from the spec (``operators.analytics``) for the stage host.

Until a spec asks for analytics (``analytics`` section), sources have none and the stage
only publishes detections and standing-query intervals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.runtime.stage_host import SourceAnalytics

__all__ = ["analytics_factory"]


def analytics_factory(config: dict[str, Any] | None, *, clock: str, run_id: str,
                      topic_prefix: str) -> Callable[[str], SourceAnalytics | None]:
    if not config:
        return lambda _sid: None
    raise NotImplementedError("analytics operators are wired in with operators.analytics")
