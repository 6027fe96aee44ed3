"""The base of vision model operators: tasks, standing queries, decode size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from operators.base import Operator
from operators.geometry import ResizeMode
from operators.results import ModelOutput

__all__ = ["TASKS", "VisionModel"]

TASKS = ("caption", "detect", "query", "embed", "ocr", "ask")  # every task a family may support


class VisionModel(Operator[ModelOutput]):
    """A model that runs some of ``caption``, ``detect``, ``query``, ``embed`` and ``ask`` on a FrameBatch.

    ``queries`` are yes/no standing queries (task ``query``); ``questions`` are standing questions
    answered in free text on every frame (task ``ask``).

    Subclasses set ``family`` and ``supported_tasks`` and implement ``__call__``.
    ``input_size`` is the ``(height, width)`` frames should be resized to on decode, so
    the decoder does the resize once and the model gets what it needs; ``resize_mode`` is how
    (``stretch``, as Hugging Face image processors do, or ``letterbox``, keeping the aspect ratio).
    """

    family: ClassVar[str] = ""
    supported_tasks: ClassVar[tuple[str, ...]] = ("caption", "detect", "query")
    default_id: ClassVar[str] = ""  # what `framewire models list` checks when no id is given
    resize_mode: ClassVar[ResizeMode] = "stretch"  # how the decoder should fit frames to input_size()

    @classmethod
    def locate(cls, model_id: str, path: str | None = None) -> str:
        """Where the weights are on this machine, without downloading; raises ModelNotFoundError."""
        from operators.models.weights import resolve_weights

        return resolve_weights(model_id or cls.default_id, path, allow_hub=False)

    def __init__(
        self,
        *,
        model_id: str = "",
        path: str | None = None,
        tasks: Sequence[str] | None = None,  # None: every supported task
        queries: Sequence[str] = (),
        questions: Sequence[str] = (),
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int | None = None,
        **options: Any,
    ) -> None:
        tasks = self.supported_tasks if tasks is None else tasks
        bad = [t for t in tasks if t not in self.supported_tasks]
        if bad:
            raise ValueError(
                f"model family {self.family!r} cannot run task(s) {bad}; it supports {list(self.supported_tasks)}"
            )
        self.model_id = model_id
        self.path = path
        self.tasks = tuple(tasks)
        self.queries: list[str] = list(queries)
        self.questions: list[str] = list(questions)
        self.device = device
        self.dtype = dtype
        if batch_size is not None:
            if batch_size < 1:
                raise ValueError(f"batch_size must be >= 1, got {batch_size}")
            self.batch_size = batch_size  # type: ignore[misc]  # instance override of the class default
        self.options = options

    def input_size(self) -> tuple[int, int]:
        """(height, width) frames are resized to on decode."""
        return (768, 768)

    def set_queries(self, queries: Sequence[str]) -> None:
        """Replace the standing free-text queries answered on every frame."""
        self.queries = list(queries)

    def set_questions(self, questions: Sequence[str]) -> None:
        """Replace the standing free-form questions answered on every frame (task ``ask``)."""
        self.questions = list(questions)
