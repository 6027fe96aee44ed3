"""``framewire topics create|describe``: the Kafka topics a config needs, created and checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pipeline.cli.common import bootstrap as _bootstrap
from pipeline.cli.common import load as _spec

__all__ = ["topics_app"]

topics_app = typer.Typer(help="Kafka topics of a config: create them with partitions, replication, retention and "
                              "compaction; describe and check what the cluster has.", no_args_is_help=True)
out = Console()
EXIT_RUNTIME = 1
ConfigOpt = Annotated[list[Path] | None, typer.Option(
    "--config", "-c", help="YAML overlay(s) merged over configs/default.yaml (kafka.topic_prefix, kafka.topics).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (one object per topic) for scripts.")]


def _plans(config: Any, start: bool) -> tuple[str, list[Any]]:
    from pipeline.kafka.topics import plan_topics

    spec = _spec(config)
    return _bootstrap(spec, start=start), plan_topics(spec)


def _ms(v: str) -> str:
    ms = int(v)
    if ms < 0:
        return "forever"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _settings(configs: dict[str, str]) -> str:
    policy = configs.get("cleanup.policy", "delete")
    text = policy
    if "delete" in policy and "retention.ms" in configs:
        text += f" {_ms(configs['retention.ms'])}"
    if "min.insync.replicas" in configs and configs["min.insync.replicas"] != "1":
        text += f" isr>={configs['min.insync.replicas']}"
    return text


def _print_problems(problems: list[Any]) -> None:
    missing = [p.topic for p in problems if p.setting == "topic"]
    if len(missing) > 1:
        out.print(f"[red]error[/]: {len(missing)} topics missing ({', '.join(missing)}); fix: framewire topics "
                  "create (a run creates them too while kafka.topics.create_missing is true)", highlight=False)
        problems = [p for p in problems if p.setting != "topic"]
    for p in problems:
        colour = "red" if p.severity == "error" else "yellow"
        out.print(f"[{colour}]{p.severity}[/]: {p}", highlight=False)


@topics_app.command("create")
def topics_create(config: ConfigOpt = None,
                  fix: Annotated[bool, typer.Option(
                      "--fix", help="Also bring existing topics to the config: set cleanup.policy and retention.ms, "
                                    "add partitions (never removes any).")] = False,
                  as_json: JsonOpt = False) -> None:
    """Create every topic the config writes (events, status, checkpoints, control) that is missing.

    Events topics get kafka.topics.partitions and retention_ms with cleanup.policy=delete; the
    status and checkpoints topics are compacted (the latest record per source is kept); control
    topics have one partition. Exit 1 when a topic is still set up to lose events.
    """
    from pipeline.kafka.topics import ensure

    bootstrap, plans = _plans(config, start=True)
    try:
        report = ensure(bootstrap, plans, create=True, fix=fix, security=_spec(config).kafka.security)
    except Exception as exc:  # noqa: BLE001 - one message and exit 1
        out.print(f"[bold red]error:[/] Kafka {bootstrap}: {type(exc).__name__}: {exc}", highlight=False)
        raise typer.Exit(EXIT_RUNTIME) from None
    if as_json:
        typer.echo(json.dumps({"created": report.created, "fixed": report.fixed,
                               "problems": [p.__dict__ for p in report.problems]}, indent=2))
    else:
        for name in report.created:
            out.print(f"created {name}", highlight=False)
        for name in report.fixed:
            out.print(f"fixed {name}", highlight=False)
        if not report.created and not report.fixed:
            out.print(f"all {len(plans)} topics exist", highlight=False)
        _print_problems(report.problems)
    if report.errors:
        raise typer.Exit(EXIT_RUNTIME)


@topics_app.command("describe")
def topics_describe(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Show each topic's partitions, replication, retention and compaction next to what the config
    wants, with every problem and its fix. Exit 1 when a topic is missing or set up to lose events."""
    from pipeline.kafka.topics import check, describe, state_dict

    bootstrap, plans = _plans(config, start=False)
    try:
        states = describe(bootstrap, [p.name for p in plans], security=_spec(config).kafka.security)
    except Exception as exc:  # noqa: BLE001 - one message and exit 1
        out.print(f"[bold red]error:[/] Kafka {bootstrap}: {type(exc).__name__}: {exc}", highlight=False)
        raise typer.Exit(EXIT_RUNTIME) from None
    problems = check(plans, states)
    if as_json:
        by_topic: dict[str, list[dict[str, str]]] = {}
        for p in problems:
            by_topic.setdefault(p.topic, []).append(p.__dict__)
        typer.echo(json.dumps([{**state_dict(states[p.name], p), "problems": by_topic.get(p.name, [])}
                               for p in plans], indent=2))
    else:
        t = Table(title=f"topics on {bootstrap}")
        for col in ("topic", "role", "partitions", "replicas", "settings", "wanted"):
            t.add_column(col)
        for p in plans:
            st = states[p.name]
            if not st.exists:
                t.add_row(p.name, p.role, "-", "-", "[red]missing[/]", _settings(p.configs))
                continue
            t.add_row(p.name, p.role, f"{st.partitions}/{p.partitions}", f"{st.replication_factor}/"
                      f"{p.replication_factor}", _settings(st.configs), _settings(p.configs))
        out.print(t)
        _print_problems(problems)
    if any(p.severity == "error" for p in problems):
        raise typer.Exit(EXIT_RUNTIME)


@topics_app.command("manifest")
def topics_manifest(config: ConfigOpt = None,
                    cluster: Annotated[str, typer.Option(help="Strimzi Kafka cluster name (strimzi.io/cluster).")]
                    = "framewire",
                    namespace: Annotated[str | None, typer.Option(help="Namespace of the KafkaTopic resources.")]
                    = None) -> None:
    """Print the config's topics as Strimzi KafkaTopic resources (YAML), for clusters whose topics
    the Strimzi Topic Operator manages: `framewire topics manifest | kubectl apply -f -`."""
    import yaml

    from pipeline.kafka.topics import plan_topics, strimzi_manifests

    docs = strimzi_manifests(plan_topics(_spec(config)), cluster=cluster, namespace=namespace)
    typer.echo(yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True), nl=False)
