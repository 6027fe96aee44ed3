"""The operator interface: a small class hosted by a runtime (a Ray actor, a test, a loop).

An operator declares what it needs (``resources``) and how many frames it wants at
once (``batch_size``), loads weights once in ``setup()``, handles a whole
``FrameBatch`` per ``__call__`` and frees what it holds in ``teardown()``.
Nothing under ``operators/`` imports Ray or Kafka.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from operators.frames import FrameBatch

__all__ = ["Operator", "Resources"]

R = TypeVar("R")


@dataclass(frozen=True)
class Resources:
    """What one instance of an operator needs from its host."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory_mb: int = 0


class Operator(ABC, Generic[R]):
    """Base class of per-batch work. Subclasses set ``resources`` and ``batch_size``."""

    resources: ClassVar[Resources] = Resources()
    batch_size: ClassVar[int] = 8

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Load weights and allocate once per host process."""

    @abstractmethod
    def __call__(self, batch: FrameBatch) -> R:
        """Process every frame of ``batch`` and return columnar results."""

    def teardown(self) -> None:  # noqa: B027 - optional hook
        """Release what ``setup`` took."""
