"""PipelineSpec: a YAML config (default.yaml plus overlays plus env overrides) as typed, validated data.

Nothing here starts anything; the planner turns a spec into actors.
A bad key or value fails at load with the file, the key path and the fix.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from operators.analytics.config import AnalyticsSpec

__all__ = ["ConfigError", "PipelineSpec", "load_spec", "DEFAULT_CONFIG"]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"
ENV_PREFIX = "FRAMEWIRE__"


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message says where and how to fix it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DecodeSpec(_Strict):
    fps: float | None = Field(2.0, description="sample frames per second of video; null keeps every frame")
    keyframes_only: bool = False
    chunk: int = Field(8, ge=1, description="frames per FrameBatch leaving a decoder")
    threads: int = Field(0, ge=0, description="FFmpeg decode threads per source (0 = auto)")
    max_frames: int | None = Field(None, ge=1, description="stop each source after this many sampled frames")
    cpus: float = Field(0.5, gt=0, description="Ray CPU share of one DecodeActor")
    concurrent_sources: int = Field(4, ge=1, description="archive sources decoded at the same time")
    resources: dict[str, float] = Field(default_factory=dict, description="custom Ray resources each decode actor "
                                        "needs, e.g. {decode_node: 1}: it runs only on nodes that offer them")

    @field_validator("fps")
    @classmethod
    def _fps(cls, v: float | None) -> float | None:
        if v is not None and v <= 0:
            raise ValueError("fps must be > 0, or null to keep every frame")
        return v


class ModelSpec(_Strict):
    name: str = Field("centernet", description="model family (framewire models list) or module:Class")
    id: str = Field("", description="model id (hub id or local dir)")
    path: str | None = Field(None, description="local directory with the weights (wins over id)")
    tasks: list[Literal["caption", "detect", "query", "embed", "ocr", "ask"]] = ["caption", "detect", "query"]
    batch_size: int = Field(8, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    replicas: int | Literal["auto"] = Field(
        "auto", description="ModelActor pool size; auto: 2 replicas sharing the cores on a CPU with 2+ cores "
                            "(onnxruntime and torch scale poorly across threads on small batches, a generative "
                            "model's token loop is mostly Python), unless two copies of the weights would not fit "
                            "in memory; 1 on a GPU")
    cpus: float = Field(1.0, gt=0, description="Ray CPU share of one ModelActor (also its torch threads)")
    gpus: float = Field(0.0, ge=0, description="GPUs per ModelActor; used only when a GPU is present")
    resources: dict[str, float] = Field(default_factory=dict, description="custom Ray resources each ModelActor "
                                        "needs, e.g. {model_node: 1}: it runs only on nodes that offer them")
    options: dict[str, Any] = Field(default_factory=dict, description="family-specific options")


class BatchingSpec(_Strict):
    max_batch: int = Field(8, ge=1, description="frames per model call, across sources")
    max_wait_ms: float = Field(50.0, ge=0, description="wait this long for a fuller batch")
    inflight_per_model: int = Field(2, ge=1, description="batches queued at each ModelActor")
    inflight_per_source: int = Field(2, ge=1, description="decoded chunks buffered per source")


class TopicOverride(_Strict):
    partitions: int | None = Field(None, ge=1)
    replication_factor: int | None = Field(None, ge=1)
    retention_ms: int | None = Field(None, ge=-1, description="-1 keeps events for ever")
    configs: dict[str, str | int] = Field(default_factory=dict, description="other topic configs, set as given")


TOPIC_NAMES = Literal["captions", "detections", "queries", "errors", "embeddings", "thumbnails", "ocr", "tracks",
                      "zones", "windows", "status", "checkpoints", "control", "control.replies"]


class TopicsSpec(_Strict):
    create_missing: bool = Field(True, description="create missing topics at start with these settings")
    check: Literal["fail", "warn"] = Field("fail", description="a topic set up to lose events stops the run "
                                                               "(fail) or only logs (warn)")
    partitions: int = Field(3, ge=1, description="partitions of each events topic (key = source id)")
    replication_factor: int = Field(1, ge=1)
    retention_ms: int = Field(7 * 24 * 3600 * 1000, ge=-1, description="events topics; -1 keeps for ever")
    control_retention_ms: int = Field(24 * 3600 * 1000, ge=1, description="control commands and replies")
    overrides: dict[TOPIC_NAMES, TopicOverride] = Field(
        default_factory=dict, description="per topic (name without the prefix): partitions, retention_ms, ...")


class KafkaSecuritySpec(_Strict):
    """TLS and SASL for every Kafka client (pipeline/kafka/client.py); secrets come from env vars or files only."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="security.protocol of every producer, consumer and admin client")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="with SASL_*: Strimzi KafkaUser authentication scram-sha-512")
    username: str | None = Field(None, description="SASL user (not secret); else username_env / username_file")
    username_env: str | None = Field("FRAMEWIRE_KAFKA_USERNAME", description="environment variable holding the user")
    username_file: str | None = Field(None, description="file holding the user")
    password_env: str | None = Field("FRAMEWIRE_KAFKA_PASSWORD", description="environment variable holding the "
                                     "password (e.g. from the KafkaUser's Secret, key password)")
    password_file: str | None = Field(None, description="file holding the password (wins over password_env)")
    ssl_cafile: str | None = Field(None, description="PEM CA bundle that signed the brokers' certificates "
                                   "(Strimzi: <cluster>-cluster-ca-cert, key ca.crt); null: the system CAs")
    ssl_certfile: str | None = Field(None, description="PEM client certificate (mutual TLS)")
    ssl_keyfile: str | None = Field(None, description="PEM client private key (mutual TLS)")
    ssl_key_password_env: str | None = Field(None, description="environment variable holding ssl_keyfile's password")
    ssl_check_hostname: bool = Field(True, description="check the broker certificate names the host dialled")


class KafkaSpec(_Strict):
    bootstrap_servers: str | None = Field(None, description="null starts the local dev broker")
    topic_prefix: str = "framewire"
    producer: dict[str, Any] = Field(default_factory=dict, description="passed to KafkaProducer unchanged")
    exactly_once: bool = Field(True, description="archive runs: events and checkpoints in one transaction; "
                                                 "a rerun resumes with no duplicate and no gap")
    transactional_id: str | None = Field(None, description="null derives a stable id from the sources")
    outage_s: float = Field(120.0, gt=0, description="ride through a broker that is unreachable this long: an "
                                                     "archive run pauses and resumes exactly once, a live run "
                                                     "drops by its budget; longer fails an archive run")
    topics: TopicsSpec = TopicsSpec()
    security: KafkaSecuritySpec = Field(default_factory=KafkaSecuritySpec,
                                        description="TLS/SASL of every client; secrets from env vars or files")


class ReconnectSpec(_Strict):
    initial_backoff_s: float = Field(0.5, gt=0, description="first wait before reconnecting")
    max_backoff_s: float = Field(30.0, gt=0, description="the wait doubles up to this")
    multiplier: float = Field(2.0, ge=1)
    jitter: float = Field(0.2, ge=0, le=1, description="each wait is randomised by +- this fraction")
    max_attempts: int | None = Field(None, ge=1, description="null: reconnect for ever")


class LiveSpec(_Strict):
    latency_budget_ms: float = Field(2000.0, gt=0, description="frames older than this when a model is free "
                                                                "are dropped (counted), never queued")
    budgets: dict[str, float] = Field(default_factory=dict, description="per-source budget: source id or URI -> ms")
    open_timeout_s: float = Field(10.0, gt=0, description="a camera that does not open in this long is retried")
    read_timeout_s: float = Field(5.0, gt=0, description="no frame for this long: stalled, then reconnect")
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    buffer_frames: int = Field(4, ge=1, description="sampled frames kept per source; older ones are dropped")
    reconnect: ReconnectSpec = ReconnectSpec()
    query_on_frames: int = Field(3, ge=1, description="consecutive matching frames that start a match")
    query_off_frames: int = Field(3, ge=1, description="consecutive non-matching frames that end it")
    per_frame_queries: bool = Field(False, description="also publish every per-frame query answer")
    control: bool = Field(True, description="accept commands on <prefix>.control (sources/queries add|rm|ls)")
    cameras_per_reader: int = Field(8, ge=1, description="cameras decoded in one reader process: fewer processes "
                                    "leave the model more of a small machine; a reader process that crashes takes "
                                    "its cameras with it until Ray restarts it (then they reconnect)")
    duration_s: float | None = Field(None, gt=0, description="stop after this long; null: until Ctrl-C/SIGTERM")


class ThumbnailSpec(_Strict):
    enabled: bool = Field(False, description="publish a small JPEG of every sampled frame on <prefix>.thumbnails")
    max_side: int = Field(160, ge=16, le=1024, description="longest side in pixels (aspect ratio kept)")
    quality: int = Field(70, ge=30, le=95, description="JPEG quality to start from")
    max_bytes: int = Field(16384, ge=512, le=262144, description="size cap of one JPEG; quality then size step "
                                                                 "down until it fits")
    every_s: float = Field(0.0, ge=0, description="at most one thumbnail per this many seconds of each source "
                                                  "(0: every sampled frame; framewire run --ui uses 0.5)")


class RaySpec(_Strict):
    address: str | None = Field(None, description="null runs a local Ray; 'auto' or ray://host:10001 joins a cluster")
    num_cpus: int | None = None
    object_store_mb: int = Field(1024, ge=64)


class PipelineSpec(_Strict):
    mode: Literal["archive", "live"] = "archive"
    sources: list[str] = Field(default_factory=list)
    decode: DecodeSpec = DecodeSpec()
    model: ModelSpec = ModelSpec()
    queries: list[str] = Field(default_factory=list, description="standing free-text queries")
    questions: list[str] = Field(default_factory=list, description="standing questions answered in free text "
                                 "on every frame (task ask), e.g. 'how many people are waiting?'")
    batching: BatchingSpec = BatchingSpec()
    live: LiveSpec = LiveSpec()
    thumbnails: ThumbnailSpec = ThumbnailSpec()
    analytics: AnalyticsSpec = Field(default_factory=AnalyticsSpec, description=(
        "per-source stateful stage: tracker, zones, lines, window summaries"))
    kafka: KafkaSpec = KafkaSpec()
    ray: RaySpec = RaySpec()

    def with_overrides(self, **changes: Any) -> PipelineSpec:
        """A copy with dotted-key overrides applied, validated again (``{"decode.fps": 4}``)."""
        data = self.model_dump()
        for key, value in changes.items():
            _set_path(data, key.split("."), value)
        return _validate(data, {}, ["<overrides>"])


def _set_path(data: dict[str, Any], path: list[str], value: Any) -> None:
    cur = data
    for part in path[:-1]:
        cur = cur.setdefault(part, {})
        if not isinstance(cur, dict):
            raise ConfigError(f"cannot set {'.'.join(path)}: {part} is not a section")
    cur[path[-1]] = value


def _merge(base: dict[str, Any], over: dict[str, Any], origin: str, prov: dict[str, str], prefix: str = "") -> None:
    for k, v in over.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and isinstance(base.get(k), dict) and k not in ("options", "producer"):
            _merge(base[k], v, origin, prov, key + ".")
        else:
            base[k] = copy.deepcopy(v)
            prov[key] = origin


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} not found; pass an existing file to --config") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (mode, sources, model, ...)")
    return data


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """FRAMEWIRE__MODEL__BATCH_SIZE=4 -> {"model": {"batch_size": 4}}; values parse as YAML."""
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX):].split("__") if p]
        if path:
            _set_path(out, path, yaml.safe_load(raw) if raw != "" else None)
    if environ.get("FRAMEWIRE_KAFKA_BOOTSTRAP"):
        _set_path(out, ["kafka", "bootstrap_servers"], environ["FRAMEWIRE_KAFKA_BOOTSTRAP"])
    if environ.get("FRAMEWIRE_RAY_ADDRESS"):
        _set_path(out, ["ray", "address"], environ["FRAMEWIRE_RAY_ADDRESS"])
    return out


def _validate(data: dict[str, Any], prov: dict[str, str], files: list[str]) -> PipelineSpec:
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            where = prov.get(key) or next((prov[k] for k in prov if key.startswith(k + ".")), None)
            origin = where or " + ".join(files)
            if err["type"] == "extra_forbidden":
                section = ".".join(str(p) for p in err["loc"][:-1]) or "the top level"
                allowed = _allowed_keys(err["loc"][:-1])
                fix = f"remove it or use one of: {', '.join(allowed)}" if allowed else "remove it"
                lines.append(f"{origin}: unknown key {key!r} in {section}; {fix}")
            else:
                lines.append(f"{origin}: {key}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines)) from None


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: Any = PipelineSpec
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return sorted(getattr(model, "model_fields", {}))


def load_spec(
    configs: list[str | Path] | None = None,
    *,
    environ: dict[str, str] | None = None,
    use_default: bool = True,
) -> PipelineSpec:
    """Load ``configs/default.yaml``, merge each overlay in order, then env overrides.

    Env: ``FRAMEWIRE_KAFKA_BOOTSTRAP``, ``FRAMEWIRE_RAY_ADDRESS`` and any key as
    ``FRAMEWIRE__SECTION__KEY=value`` (value parsed as YAML).
    """
    data: dict[str, Any] = {}
    prov: dict[str, str] = {}
    files: list[str] = []
    paths = [Path(p) for p in (configs or [])]
    if use_default and DEFAULT_CONFIG.exists() and all(p.resolve() != DEFAULT_CONFIG for p in paths):
        paths.insert(0, DEFAULT_CONFIG)
    for p in paths:
        _merge(data, _read_yaml(p), str(p), prov)
        files.append(str(p))
    env = _env_overrides(dict(os.environ if environ is None else environ))
    _merge(data, env, "environment (FRAMEWIRE_*)", prov)
    return _validate(data, prov, files or ["<defaults>"])
