"""CompositeModel: one family plus companion families that run the tasks it lacks (e.g. CenterNet + OCR).

A config asks for tasks, not for a stack of models: ``tasks: [caption, detect, query, ocr]`` on
``centernet`` (which has no OCR) makes the registry compose CenterNet with the family that
``COMPANIONS`` names for ``ocr`` (``rapidocr``). Each member runs only its own tasks on the same
batch and their outputs are merged (tasks never overlap). Frames are decoded at the largest
member's input size; the others resize from it (every family accepts frames of another size).
A companion's options sit under the task's name in the primary's options:
``options: {score_threshold: 0.35, ocr: {input_size: [544, 960]}}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any, ClassVar

from operators.frames import FrameBatch
from operators.models.base import VisionModel
from operators.results import ModelOutput

__all__ = ["COMPANIONS", "CompositeModel"]

COMPANIONS: dict[str, str] = {"ocr": "rapidocr"}  # task -> family that runs it beside another family
_SHARED = ("device", "dtype")  # constructor arguments every member gets
_SHARED_OPTIONS = ("threads",)  # options every member gets (the planner sets threads from model.cpus)


class CompositeModel(VisionModel):
    """Members run in order on every batch; ``members[0]`` is the configured family."""

    family: ClassVar[str] = "composite"
    supported_tasks: ClassVar[tuple[str, ...]] = ("caption", "detect", "query", "embed", "ocr")

    def __init__(self, members: Sequence[VisionModel]) -> None:
        if not members:
            raise ValueError("CompositeModel needs at least one member")
        tasks = [t for m in members for t in m.tasks]
        if len(tasks) != len(set(tasks)):
            raise ValueError(f"composite members run overlapping tasks {tasks}; each task needs one member")
        first = members[0]
        super().__init__(model_id=first.model_id, path=first.path, tasks=tasks, queries=first.queries,
                         device=first.device, dtype=first.dtype)
        self.members = list(members)
        self.batch_size = min(m.batch_size for m in members)  # type: ignore[misc]
        # frames are decoded once for all members: keep the aspect ratio when any member wants it (a detector);
        # every member maps its boxes back through the batch's recorded resize mode
        modes = {getattr(m, "resize_mode", "stretch") for m in members}
        self.resize_mode = "letterbox" if "letterbox" in modes else "stretch"  # type: ignore[misc]

    @classmethod
    def build(cls, primary: type[VisionModel], companions: dict[str, type[VisionModel]], **kwargs: Any) -> VisionModel:
        """``primary`` for its tasks plus one companion per task it lacks; a plain ``primary`` when it lacks none."""
        tasks = list(kwargs.pop("tasks", None) or primary.supported_tasks)
        extra = [t for t in tasks if t not in primary.supported_tasks]
        missing = [t for t in extra if t not in companions]
        if missing or not extra:
            return primary(tasks=tasks, **{k: v for k, v in kwargs.items() if k not in companions})
        sub = {t: kwargs.pop(t, None) or {} for t in companions}
        for t, opts in sub.items():
            if not isinstance(opts, dict):
                raise ValueError(f"model option {t!r} configures the {companions[t].family} companion that runs "
                                 f"task {t}: give a mapping of its options, got {opts!r}")
        own = [t for t in tasks if t in primary.supported_tasks]
        members: list[VisionModel] = [primary(tasks=own, **kwargs)] if own else []
        shared = {k: kwargs[k] for k in (*_SHARED, *_SHARED_OPTIONS) if k in kwargs}
        by_family: dict[type[VisionModel], list[str]] = {}
        for t in extra:
            by_family.setdefault(companions[t], []).append(t)
        for comp, comp_tasks in by_family.items():
            opts = {k: v for t in comp_tasks for k, v in sub[t].items()}
            members.append(comp(tasks=comp_tasks, queries=kwargs.get("queries", ()), **{**shared, **opts}))
        return members[0] if len(members) == 1 else cls(members)

    def setup(self) -> None:
        for m in self.members:
            m.setup()

    def teardown(self) -> None:
        for m in self.members:
            m.teardown()

    def input_size(self) -> tuple[int, int]:
        """The largest member input (by area): nobody's frames are upscaled from a smaller decode."""
        return max((m.input_size() for m in self.members), key=lambda hw: hw[0] * hw[1])

    def set_queries(self, queries: Sequence[str]) -> None:
        super().set_queries(queries)
        for m in self.members:
            m.set_queries(queries)

    def __call__(self, batch: FrameBatch) -> ModelOutput:
        out = ModelOutput(n_frames=len(batch))
        for m in self.members:
            part = m(batch)
            for f in fields(ModelOutput):
                if f.name not in ("n_frames", "models") and getattr(part, f.name) is not None:
                    setattr(out, f.name, getattr(part, f.name))
            out.models.update(part.models)
        return out
