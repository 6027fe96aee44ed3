"""``framewire sources|queries add|rm|ls``: commands to running live pipelines over Kafka."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pipeline.cli.common import bootstrap as _bootstrap
from pipeline.cli.common import fail as _fail
from pipeline.cli.common import load as _spec

__all__ = ["queries_app", "sources_app"]

sources_app = typer.Typer(help="Cameras of running live pipelines: add, remove, list (live fps, latency, drops).",
                          no_args_is_help=True)
queries_app = typer.Typer(help="Standing queries of running live pipelines: add, remove, list.",
                          no_args_is_help=True)

out = Console()
EXIT_RUNTIME = 1
ConfigOpt = Annotated[list[Path] | None, typer.Option(
    "--config", "-c", help="YAML overlay(s) merged over configs/default.yaml (for kafka.*), in order.")]
RunOpt = Annotated[str | None, typer.Option(help="Only the run with this id (default: every live run).")]
TimeoutOpt = Annotated[float, typer.Option(help="Seconds to wait for replies.")]
ExpectOpt = Annotated[int, typer.Option(help="Stop waiting after this many replies (one per live run).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the replies as JSON.")]


def _send(config: Any, op: str, args: dict[str, Any], run_id: str | None, timeout: float,
          expect: int) -> list[Any]:
    from pipeline.kafka.control import send_command

    spec = _spec(config)
    bootstrap = _bootstrap(spec, start=False)
    try:
        replies = send_command(bootstrap, spec.kafka.topic_prefix, op, args, run_id=run_id, timeout_s=timeout,
                               expect=expect, spec=spec)
    except Exception as exc:  # noqa: BLE001 - a Kafka failure is one message and exit 1
        raise _fail(EXIT_RUNTIME, f"could not send {op} over Kafka {bootstrap}: {type(exc).__name__}: {exc}") from None
    if not replies:
        raise _fail(EXIT_RUNTIME, f"no live run answered within {timeout:.0f}s (is `framewire run rtsp://...` "
                                  "running against this Kafka, with live.control: true?)")
    failed = [r for r in replies if not r.ok]
    for r in failed:
        typer.echo(f"run {r.run_id}: {r.error}", err=True)
    if failed and len(failed) == len(replies):
        raise typer.Exit(EXIT_RUNTIME)
    return [r for r in replies if r.ok]


def _print_json(replies: list[Any]) -> None:
    typer.echo(json.dumps([{"run_id": r.run_id, "result": r.result} for r in replies], indent=2))


@sources_app.command("add")
def sources_add(uri: Annotated[str, typer.Argument(help="Stream URL or /dev/videoN.")], config: ConfigOpt = None,
                run_id: RunOpt = None, timeout: TimeoutOpt = 10.0, expect: ExpectOpt = 1,
                as_json: JsonOpt = False) -> None:
    """Start a camera in a running live pipeline."""
    replies = _send(config, "add_source", {"uri": uri}, run_id, timeout, expect)
    if as_json:
        return _print_json(replies)
    for r in replies:
        out.print(f"run {r.run_id}: added {r.result['source_id']} ({r.result['uri']})", highlight=False)


@sources_app.command("rm")
def sources_rm(source: Annotated[str, typer.Argument(help="Source id (from `sources ls`) or its URL.")],
               config: ConfigOpt = None, run_id: RunOpt = None, timeout: TimeoutOpt = 10.0,
               expect: ExpectOpt = 1) -> None:
    """Stop a camera; its open query matches end and its status becomes "removed"."""
    for r in _send(config, "remove_source", {"source": source}, run_id, timeout, expect):
        out.print(f"run {r.run_id}: removed {r.result['source_id']}", highlight=False)


@sources_app.command("ls")
def sources_ls(config: ConfigOpt = None, run_id: RunOpt = None, timeout: TimeoutOpt = 5.0, expect: ExpectOpt = 1,
               as_json: JsonOpt = False) -> None:
    """Cameras of running live pipelines with state, live fps, latency and drops."""
    replies = _send(config, "list_sources", {}, run_id, timeout, expect)
    if as_json:
        return _print_json(replies)
    t = Table()
    for col in ("run", "source", "state", "fps", "p50 ms", "p95 ms", "budget ms", "dropped", "frames"):
        t.add_column(col)
    for r in replies:
        for s in r.result:
            t.add_row(r.run_id, s["source_id"], s["state"], f"{s['fps']:.1f}", str(s["latency_p50_ms"] or "-"),
                      str(s["latency_p95_ms"] or "-"), f"{s['budget_ms']:.0f}", str(s["dropped"]), str(s["frames"]))
    out.print(t)


@queries_app.command("add")
def queries_add(text: Annotated[str, typer.Argument(help="Free-text query, e.g. 'a person riding a bicycle'.")],
                source: Annotated[list[str] | None, typer.Option(
                    "--source", help="Only on this source (repeatable; default: every source).")] = None,
                config: ConfigOpt = None, run_id: RunOpt = None, timeout: TimeoutOpt = 10.0,
                expect: ExpectOpt = 1) -> None:
    """Add a standing query; its matches start and end as query_match events."""
    for r in _send(config, "add_query", {"text": text, "sources": source or None}, run_id, timeout, expect):
        where = ", ".join(r.result["sources"]) if r.result["sources"] else "every source"
        out.print(f"run {r.run_id}: query {r.result['query']!r} on {where}", highlight=False)


@queries_app.command("rm")
def queries_rm(text: Annotated[str, typer.Argument(help="The query text, as listed by `queries ls`.")],
               config: ConfigOpt = None, run_id: RunOpt = None, timeout: TimeoutOpt = 10.0,
               expect: ExpectOpt = 1) -> None:
    """Remove a standing query; its open matches end."""
    for r in _send(config, "remove_query", {"text": text}, run_id, timeout, expect):
        out.print(f"run {r.run_id}: removed query {r.result['query']!r}", highlight=False)


@queries_app.command("ls")
def queries_ls(config: ConfigOpt = None, run_id: RunOpt = None, timeout: TimeoutOpt = 5.0, expect: ExpectOpt = 1,
               as_json: JsonOpt = False) -> None:
    """Standing queries of running live pipelines."""
    replies = _send(config, "list_queries", {}, run_id, timeout, expect)
    if as_json:
        return _print_json(replies)
    for r in replies:
        for q in r.result:
            where = ", ".join(q["sources"]) if q["sources"] else "every source"
            out.print(f"run {r.run_id}: {q['query']!r} on {where}", highlight=False)
