"""The Grafana dashboard queries only series framewire exports (driver registry or the actors' Ray metrics)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pipeline.web.metrics import DriverMetrics

ROOT = Path(__file__).resolve().parents[4]


def test_every_dashboard_series_exists() -> None:
    dash = json.loads((ROOT / "k8s/grafana/framewire.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b(?:ray_)?framewire_[a-z_]+", e)}
    driver = {s.name for fam in DriverMetrics().registry.collect() for s in fam.samples} | {
        f.name for f in DriverMetrics().registry.collect()}
    src = (ROOT / "pipeline/runtime/actors/metrics.py").read_text()
    actor = set(re.findall(r'"(framewire_[a-z_]+)"', src))
    suffixes = ("_total", "_bucket", "_sum", "_count")
    for name in used:
        base = name
        for suf in suffixes:
            base = base.removesuffix(suf)
        if name.startswith("ray_"):
            assert base.removeprefix("ray_") in actor, name
        else:
            assert name in driver or base in driver, name
