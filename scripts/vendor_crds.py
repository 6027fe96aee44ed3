"""Vendor the openAPIV3Schema of the CRDs framewire's manifests use into k8s/crds/ (small JSON files).

    python scripts/vendor_crds.py KUBERAY_GIT_DIR STRIMZI_GIT_DIR

reads the CRD YAML at the release tags below from local git clones, keeps the served storage
version's schema without descriptions, and stores RayJob's embedded RayCluster spec as a $ref to
the RayCluster schema when the two are identical. tests/unit/k8s validates every manifest against them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

OUT = Path(__file__).resolve().parent.parent / "k8s" / "crds"
KUBERAY_TAG = "v1.7.0"
STRIMZI_TAG = "1.2.0"
SOURCES = {
    "kuberay": (KUBERAY_TAG, {
        "RayCluster": "ray-operator/config/crd/bases/ray.io_rayclusters.yaml",
        "RayJob": "ray-operator/config/crd/bases/ray.io_rayjobs.yaml",
    }),
    "strimzi": (STRIMZI_TAG, {
        "Kafka": "packaging/install/cluster-operator/040-Crd-kafka.yaml",
        "KafkaTopic": "packaging/install/cluster-operator/043-Crd-kafkatopic.yaml",
        "KafkaUser": "packaging/install/cluster-operator/044-Crd-kafkauser.yaml",
        "KafkaNodePool": "packaging/install/cluster-operator/045-Crd-kafkanodepool.yaml",
    }),
}


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def vendor(project: str, repo: Path) -> None:
    tag, kinds = SOURCES[project]
    commit = _git(repo, "rev-parse", f"{tag}^{{commit}}").strip()
    schemas: dict[str, dict[str, Any]] = {}
    for kind, path in kinds.items():
        crd = yaml.safe_load(_git(repo, "show", f"{tag}:{path}"))
        version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
        schemas[kind] = {"$comment": f"{project} {tag} ({commit}) {path}: {crd['spec']['group']}/{version['name']} "
                                     f"{kind} openAPIV3Schema, descriptions removed (scripts/vendor_crds.py)",
                         "x-framewire-api-version": f"{crd['spec']['group']}/{version['name']}",
                         **_strip(version["schema"]["openAPIV3Schema"])}
    job = schemas.get("RayJob")
    job_spec = job["properties"]["spec"]["properties"] if job else {}
    if job and job_spec.get("rayClusterSpec") == schemas["RayCluster"]["properties"]["spec"]:
        job_spec["rayClusterSpec"] = {"$ref": "RayCluster.json#/properties/spec"}
    for kind, schema in schemas.items():
        (OUT / f"{kind}.json").write_text(json.dumps(schema, separators=(",", ":"), sort_keys=True) + "\n")


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    vendor("kuberay", Path(sys.argv[1]))
    vendor("strimzi", Path(sys.argv[2]))
