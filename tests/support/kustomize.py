"""Render a kustomize overlay: `kubectl kustomize` when kubectl is installed, else the subset k8s/ uses.

The subset: `resources` (files and directories with a kustomization.yaml), `images` (newName/newTag)
and `patches` with a `target` (kind, name) and an inline JSON 6902 patch of add/replace/remove ops.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "images", "patches"}


def kubectl_kustomize(path: Path) -> list[dict[str, Any]] | None:
    """The overlay as kubectl renders it; None without kubectl."""
    exe = shutil.which("kubectl")
    if exe is None:
        return None
    out = subprocess.run([exe, "kustomize", str(path)], check=True, capture_output=True, text=True, timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def render(path: Path) -> list[dict[str, Any]]:
    """The overlay rendered by this module's subset (no kubectl needed)."""
    kust = yaml.safe_load((path / "kustomization.yaml").read_text())
    unknown = set(kust) - SUPPORTED
    if unknown:
        raise ValueError(f"{path}/kustomization.yaml uses {sorted(unknown)}; tests/support/kustomize.py supports "
                         f"only {sorted(SUPPORTED)}")
    docs: list[dict[str, Any]] = []
    for res in kust.get("resources", []):
        target = path / res
        if target.is_dir():
            docs += render(target)
        else:
            docs += [d for d in yaml.safe_load_all(target.read_text()) if d]
    for p in kust.get("patches", []):
        hits = [d for d in docs if d["kind"] == p["target"]["kind"] and d["metadata"]["name"] == p["target"]["name"]]
        if not hits:
            raise ValueError(f"{path}: patch target {p['target']} matches no resource")
        for doc in hits:
            for op in yaml.safe_load(p["patch"]):
                _apply(doc, op)
    for img in kust.get("images", []):
        for doc in docs:
            for c in _containers(doc):
                name, _, tag = c["image"].rpartition(":")
                if name == img["name"]:
                    c["image"] = f"{img.get('newName', name)}:{img.get('newTag', tag)}"
    return docs


def _apply(doc: dict[str, Any], op: dict[str, Any]) -> None:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
    parent: Any = doc
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    value = copy.deepcopy(op.get("value"))
    if op["op"] == "add" and isinstance(parent, list):
        parent.insert(len(parent) if last == "-" else int(last), value)
    elif op["op"] in ("add", "replace"):
        if isinstance(parent, list):
            parent[int(last)] = value
        else:
            if op["op"] == "replace" and last not in parent:
                raise KeyError(f"replace {op['path']}: no such field")
            parent[last] = value
    elif op["op"] == "remove":
        del parent[int(last) if isinstance(parent, list) else last]
    else:
        raise ValueError(f"JSON patch op {op['op']!r} is not supported here")


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every container of a RayCluster or RayJob (head and worker groups)."""
    spec = doc.get("spec", {})
    spec = spec.get("rayClusterSpec", spec) if doc["kind"] == "RayJob" else spec
    if doc["kind"] not in ("RayJob", "RayCluster") or "headGroupSpec" not in spec:
        return []
    groups = [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


containers = _containers
