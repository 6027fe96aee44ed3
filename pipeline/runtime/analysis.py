"""What an archive run analyses, as an id: reruns mean what the user meant.

Checkpoints are scoped to the analysis: the sources plus everything that changes the
events (model, tasks, queries, decode settings, analytics). The same command again
resumes (or has nothing to do); a changed analysis starts fresh under its own id; and
``--restart`` starts the same analysis again from the beginning. ``plan_resume`` decides
which, before anything heavy starts, and says why in one line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from pipeline.kafka.checkpoints import Checkpoint
from pipeline.sources import Source
from pipeline.spec import PipelineSpec

__all__ = ["ResumePlan", "analysis_description", "analysis_id", "plan_resume"]


def analysis_description(spec: PipelineSpec) -> dict[str, Any]:
    """The settings that change a source's events (not where they go, how fast, or with how many actors)."""
    m, d = spec.model, spec.decode
    desc: dict[str, Any] = {
        "model": {"name": m.name, "id": m.id, "path": m.path, "tasks": sorted(m.tasks), "options": m.options,
                  "dtype": m.dtype},
        "queries": sorted(spec.queries),
        "questions": sorted(spec.questions),
        "decode": {"fps": d.fps, "keyframes_only": d.keyframes_only, "max_frames": d.max_frames},
        "thumbnails": spec.thumbnails.model_dump() if spec.thumbnails.enabled else None,
    }
    analytics = getattr(spec, "analytics", None)
    if analytics is not None:
        desc["analytics"] = analytics.model_dump(mode="json")
    return json.loads(json.dumps(desc, sort_keys=True, default=str))


def analysis_id(spec: PipelineSpec) -> str:
    """12 hex digits naming the analysis (the same config -> the same id).

    >>> a = analysis_id(PipelineSpec()); a == analysis_id(PipelineSpec()), len(a)
    (True, 12)
    >>> a == analysis_id(PipelineSpec().with_overrides(**{"decode.fps": 4}))
    False
    """
    blob = json.dumps(analysis_description(spec), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k} {json.dumps(a)} -> {json.dumps(b)}")
    return out


@dataclass
class ResumePlan:
    analysis: str
    epoch: int
    resume: dict[str, Checkpoint] = field(default_factory=dict)  # source id -> checkpoint to continue from
    done: list[str] = field(default_factory=list)  # sources already complete in this analysis
    message: str = ""

    @property
    def nothing_to_do(self) -> bool:
        return bool(self.done) and not self.todo

    todo: list[str] = field(default_factory=list)


def plan_resume(spec: PipelineSpec, sources: list[Source], checkpoints: dict[str, Checkpoint], *,
                restart: bool = False) -> ResumePlan:
    """Which sources resume, which are done and which start fresh, with the one line that says why."""
    aid = analysis_id(spec)
    ids = {s.id for s in sources}
    mine = [cp for cp in checkpoints.values() if cp.analysis == aid and cp.source_id in ids]
    epoch = max((cp.epoch for cp in mine), default=0)
    if restart:
        epoch += 1 if mine else 0
        plan = ResumePlan(aid, epoch, todo=sorted(ids))
        plan.message = (f"analysis {aid}: starting again from the beginning (--restart)" if mine
                        else f"analysis {aid}: new, nothing to restart")
        return plan
    current = {cp.source_id: cp for cp in mine if cp.epoch == epoch}
    plan = ResumePlan(aid, epoch)
    for s in sources:
        cp = current.get(s.id)
        if cp is not None and cp.done:
            plan.done.append(s.id)
        else:
            plan.todo.append(s.id)
            if cp is not None:
                plan.resume[s.id] = cp
    n = len(sources)
    if plan.done and not plan.todo:
        plan.message = (f"analysis {aid}: all {n} source(s) already complete (run {current[plan.done[0]].run_id}); "
                        "nothing to publish. --restart analyses them again")
    elif plan.done or plan.resume:
        plan.message = (f"analysis {aid}: resuming: {len(plan.done)} of {n} source(s) complete, "
                        f"{len(plan.resume)} continue from their checkpoint")
    else:
        others = [cp for cp in checkpoints.values() if cp.source_id in ids and cp.analysis != aid and cp.describe]
        if others:
            newest = max(others, key=lambda c: c.frames)
            changes = _diff(newest.describe, analysis_description(spec))
            plan.message = (f"analysis {aid}: new (earlier analysis {newest.analysis} of these sources differs: "
                            f"{'; '.join(changes[:4]) or 'settings'}); starting fresh")
        else:
            plan.message = f"analysis {aid}: new; {n} source(s) to analyse"
    return plan
