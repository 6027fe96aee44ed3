"""The mode-specific half of the driver: where chunks come from (archive files or live cameras)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.runtime.actors.publish import PublishResult
from pipeline.runtime.policy import Chunk, Policy

if TYPE_CHECKING:
    from pipeline.runtime.driver import Driver

__all__ = ["Feed"]


class Feed:
    """Where chunks come from (archive files or live cameras): the driver's mode-specific half."""

    def __init__(self, driver: Driver) -> None:
        self.d = driver

    def start(self) -> None: ...

    def publisher_options(self) -> dict[str, Any]:
        return {}

    def make_policy(self) -> Policy:
        raise NotImplementedError

    def dropped(self, chunks: list[Chunk]) -> list[Any]:
        """The policy gave these up; returns refs of PublishResults the driver counts like publications
        (a skipped chunk releases the later chunks of its source held behind it)."""
        return []

    def finish_all(self) -> None: ...

    def refs(self) -> list[Any]:
        raise NotImplementedError

    def on_reply(self, ref: Any) -> None:
        raise NotImplementedError

    def on_published(self, res: PublishResult) -> None: ...

    def request_more(self) -> None: ...

    def tick(self) -> None: ...

    def idle(self) -> bool:
        """Nothing more is coming soon: dispatch partial batches now."""
        return True

    def done(self) -> bool:
        raise NotImplementedError

    def close(self) -> None: ...

    def budgets(self, source_ids: set[str]) -> dict[str, float] | None:
        return None

    def summary_extra(self) -> dict[str, Any]:
        return {}
