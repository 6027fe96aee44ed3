"""Every manifest in k8s/ against the vendored KubeRay 1.7 / Strimzi 1.2 CRD schemas, and wired consistently.

Validation is strict like `kubectl apply --validate=strict`: an unknown field fails, except where the CRD
preserves unknown fields. Overlays render with `kubectl kustomize` when kubectl is here, else with
tests/support/kustomize.py (the subset k8s/ uses); both renderings are compared when both exist.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from pipeline.kafka.acls import pipeline_acls, strimzi_acls
from pipeline.spec import CONFIG_DIR, load_spec
from tests.support.kustomize import containers, kubectl_kustomize, render

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "k8s"
CRDS = K8S / "crds"
OVERLAYS = ["small", "gpu"]
CRD_KINDS = {"RayCluster", "RayJob", "Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"}


def _strict(node: Any) -> Any:
    """additionalProperties: false on every object that lists its properties and does not preserve unknown ones."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


@cache
def _schemas() -> dict[str, dict[str, Any]]:
    return {kind: _strict(json.loads((CRDS / f"{kind}.json").read_text())) for kind in CRD_KINDS}


def validate(doc: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError (or AssertionError for a wrong apiVersion) when ``doc`` is invalid."""
    schemas = _schemas()
    schema = schemas[doc["kind"]]
    assert doc["apiVersion"] == schema["x-framewire-api-version"], (doc["kind"], doc["apiVersion"])
    registry = Registry().with_resources(
        (f"{kind}.json", Resource(contents=s, specification=DRAFT7)) for kind, s in schemas.items())
    jsonschema.Draft7Validator(schema, registry=registry).validate(doc)


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    docs = kubectl_kustomize(K8S / "overlays" / overlay)
    return tuple(docs if docs is not None else render(K8S / "overlays" / overlay))


def _one(docs: tuple[dict[str, Any], ...], kind: str, name: str | None = None) -> dict[str, Any]:
    hits = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(hits) == 1, (kind, name, len(hits))
    return hits[0]


def test_vendored_schemas_are_small_and_name_their_source() -> None:
    total = 0
    for kind in CRD_KINDS:
        schema = json.loads((CRDS / f"{kind}.json").read_text())
        assert schema["$comment"].startswith(("kuberay v1.7.0", "strimzi 1.2.0")), kind
        total += (CRDS / f"{kind}.json").stat().st_size
    assert total < 400_000


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_manifest_matches_its_crd_schema(overlay: str) -> None:
    docs = rendered(overlay)
    assert {d["kind"] for d in docs} >= CRD_KINDS
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            validate(doc)
        else:  # core kinds: ConfigMap, PersistentVolumeClaim
            assert doc["apiVersion"] == "v1" and doc["kind"] in ("ConfigMap", "PersistentVolumeClaim")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_fallback_renderer_agrees_with_kubectl(overlay: str) -> None:
    ours = render(K8S / "overlays" / overlay)
    theirs = kubectl_kustomize(K8S / "overlays" / overlay)
    if theirs is None:
        pytest.skip("kubectl is not installed; the fallback renderer is the only one")
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    assert sorted(ours, key=key) == sorted(theirs, key=key)


def test_schema_validation_catches_typos_and_wrong_types() -> None:
    job = copy.deepcopy(_one(rendered("small"), "RayJob", "framewire-archive"))
    job["spec"]["shutdownAfterJobFinish"] = True  # missing "s"
    with pytest.raises(jsonschema.ValidationError, match="shutdownAfterJobFinish"):
        validate(job)
    job = copy.deepcopy(_one(rendered("small"), "RayJob", "framewire-archive"))
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] = "two"  # through the $ref to RayCluster
    with pytest.raises(jsonschema.ValidationError, match="'two' is not of type 'integer'"):
        validate(job)
    user = copy.deepcopy(_one(rendered("small"), "KafkaUser"))
    user["spec"]["authentication"]["type"] = "scram-sha-256"
    with pytest.raises(jsonschema.ValidationError, match="scram-sha-256"):
        validate(user)
    with pytest.raises(AssertionError):
        validate({**user, "apiVersion": "kafka.strimzi.io/v1beta2"})


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_image_kafka_bootstrap_and_credentials_are_wired_the_same_everywhere(overlay: str) -> None:
    docs = rendered(overlay)
    kafka = _one(docs, "Kafka")
    cluster = kafka["metadata"]["name"]
    (listener,) = [li for li in kafka["spec"]["kafka"]["listeners"] if li["authentication"]["type"] == "scram-sha-512"]
    assert listener["tls"] is True and kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    assert _one(docs, "KafkaNodePool")["metadata"]["labels"]["strimzi.io/cluster"] == cluster
    user = _one(docs, "KafkaUser")
    assert user["metadata"]["labels"]["strimzi.io/cluster"] == cluster
    assert user["spec"]["authorization"]["acls"] == strimzi_acls(pipeline_acls("framewire"))
    topics = [d for d in docs if d["kind"] == "KafkaTopic"]
    assert topics and {t["metadata"]["labels"]["strimzi.io/cluster"] for t in topics} == {cluster}

    ray = [d for d in docs if d["kind"] in ("RayJob", "RayCluster")]
    all_containers = [c for d in ray for c in containers(d)]
    assert len(all_containers) >= 4
    images = {c["image"] for c in all_containers}
    assert images == {"ghcr.io/framewire/framewire:0.1.0" + ("-cuda" if overlay == "gpu" else "")}
    for c in all_containers:
        env = {e["name"]: e for e in c["env"]}
        assert env["FRAMEWIRE_KAFKA_BOOTSTRAP"]["value"] == f"{cluster}-kafka-bootstrap:{listener['port']}"
        assert env["FRAMEWIRE_KAFKA_USERNAME"]["value"] == user["metadata"]["name"]
        assert env["FRAMEWIRE_KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": user["metadata"]["name"], "key": "password"}  # the Secret Strimzi writes for the KafkaUser
        assert {"name": "kafka-ca", "mountPath": "/etc/framewire/kafka-ca", "readOnly": True} in c["volumeMounts"]
    for d in ray:
        spec = d["spec"].get("rayClusterSpec", d["spec"])
        for group in [spec.get("headGroupSpec"), *spec.get("workerGroupSpecs", [])]:
            if group is None:
                continue
            vols = {v["name"]: v for v in group["template"]["spec"]["volumes"]}
            assert vols["kafka-ca"]["secret"]["secretName"] == f"{cluster}-cluster-ca-cert"
    driver = _one(docs, "RayJob", "framewire-live-driver")
    assert driver["spec"]["clusterSelector"] == {"ray.io/cluster": _one(docs, "RayCluster")["metadata"]["name"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_entrypoints_name_configs_that_exist_and_load_with_the_manifests_env(overlay: str) -> None:
    docs = rendered(overlay)
    jobs = [d for d in docs if d["kind"] == "RayJob"]
    for job in jobs:
        words = job["spec"]["entrypoint"].split()
        assert words[:2] == ["framewire", "run"]
        configs = [words[i + 1] for i, w in enumerate(words) if w == "--config"]
        assert configs == ["/app/configs/cluster.yaml", "/app/configs/kubernetes.yaml"]
        env = {"FRAMEWIRE_KAFKA_BOOTSTRAP": "framewire-kafka-bootstrap:9094"}
        spec = load_spec([CONFIG_DIR / Path(c).name for c in configs], environ=env)
        assert spec.kafka.security.protocol == "SASL_SSL" and spec.kafka.security.sasl_mechanism == "SCRAM-SHA-512"
        assert spec.kafka.security.ssl_cafile == "/etc/framewire/kafka-ca/ca.crt"
        assert spec.kafka.security.password_env == "FRAMEWIRE_KAFKA_PASSWORD"
        assert spec.kafka.topics.replication_factor == 3 and spec.ray.address == "auto"
    archive = _one(docs, "RayJob", "framewire-archive")
    assert archive["spec"]["shutdownAfterJobFinishes"] is True
    claim = _one(docs, "PersistentVolumeClaim")["metadata"]["name"]
    spec = archive["spec"]["rayClusterSpec"]
    for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        vols = {v["name"]: v for v in group["template"]["spec"]["volumes"]}
        assert vols["archive"]["persistentVolumeClaim"]["claimName"] == claim


def test_gpu_overlay_asks_for_gpus_and_small_stays_on_cpus() -> None:
    def gpus(docs: tuple[dict[str, Any], ...]) -> int:
        return sum(int(c["resources"]["limits"].get("nvidia.com/gpu", 0))
                   for d in docs if d["kind"] in ("RayJob", "RayCluster") for c in containers(d))
    assert gpus(rendered("small")) == 0
    assert gpus(rendered("gpu")) == 2  # one GPU worker group in the archive job, one in the live cluster
    head = _one(rendered("gpu"), "RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {"name": "FRAMEWIRE__MODEL__GPUS", "value": "1"} in head["env"]


def test_committed_yaml_parses_and_base_lists_every_file() -> None:
    base = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    files = sorted(p.name for p in (K8S / "base").glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(base["resources"]) == files
