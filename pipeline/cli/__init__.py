"""The ``framewire`` command line.

Exit codes: 0 ok; 1 runtime failure (broker, model, delivery); 2 bad usage or config;
3 the run finished but some sources failed (their error events are on framewire.errors).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pipeline.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_RUNTIME,
    EXIT_USAGE,
    ConfigOpt,
    QuietOpt,
    VerboseOpt,
    err,
    out,
)
from pipeline.cli.common import bootstrap as _bootstrap
from pipeline.cli.common import fail as _fail
from pipeline.cli.common import load as _spec
from pipeline.cli.common import setup_logging as _setup_logging
from pipeline.spec import ConfigError

app = typer.Typer(
    help="framewire: decode video, run vision models on Ray, publish versioned events to Kafka.\n\n"
    "Environment: FRAMEWIRE_KAFKA_BOOTSTRAP (use this Kafka, start nothing), FRAMEWIRE_RAY_ADDRESS, "
    "FRAMEWIRE__SECTION__KEY=value (any config key, e.g. FRAMEWIRE__MODEL__BATCH_SIZE=4).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
broker_app = typer.Typer(help="The local development Kafka broker (genuine Apache Kafka, KRaft, 127.0.0.1).",
                         no_args_is_help=True)
models_app = typer.Typer(help="Model families and their weights.", no_args_is_help=True)
app.add_typer(broker_app, name="broker")
app.add_typer(models_app, name="models")

@app.command()
def run(
    sources: Annotated[list[str] | None, typer.Argument(
        help="Video files, directories, globs (quote them) or stream URLs. Added to the config's sources.")] = None,
    config: ConfigOpt = None,
    fps: Annotated[float | None, typer.Option(
        help="Sample this many frames per second (overrides decode.fps).")] = None,
    query: Annotated[list[str] | None, typer.Option(
        "--query", help="A standing free-text query answered on every frame (repeatable).")] = None,
    model: Annotated[str | None, typer.Option(help="Model family name (see `framewire models list`).")] = None,
    model_path: Annotated[str | None, typer.Option(help="Local directory with the model's weights.")] = None,
    max_frames: Annotated[int | None, typer.Option(help="Stop each source after this many sampled frames.")] = None,
    summary_json: Annotated[Path | None, typer.Option(help="Also write the run summary as JSON here.")] = None,
    show: Annotated[int, typer.Option(help="Read back and print this many events per topic at the end.")] = 3,
    duration: Annotated[float | None, typer.Option(
        help="Live: stop after this many seconds (default: until Ctrl-C or SIGTERM).")] = None,
    index: Annotated[bool, typer.Option(
        "--index", help="Also index the events for `framewire search` as they are published (LanceDB at --db, "
                        "FRAMEWIRE_INDEX_DB or the framewire cache); waits until everything is indexed.")] = False,
    db: Annotated[str | None, typer.Option(help="With --index: the index's directory or object-store URI.")] = None,
    restart: Annotated[bool, typer.Option(
        "--restart", help="Archive: analyse the sources again from the start, even where this analysis "
                          "(same sources, model, tasks, queries, decode and analytics settings) is complete.")] = False,
    ui: Annotated[bool, typer.Option(
        "--ui", help="Serve the live view (frames with boxes, tracks, zones; state, fps, latency; cameras and "
                     "queries forms) with /metrics, /healthz, /readyz; turns thumbnails on (480 px). Needs the "
                     "token printed at start (or FRAMEWIRE_UI_TOKEN).")] = False,
    ui_port: Annotated[int, typer.Option(help="Port of --ui / --metrics-port's app (0: any free one).")] = 8321,
    ui_host: Annotated[str, typer.Option(help="Address the --ui app listens on.")] = "127.0.0.1",
    metrics_port: Annotated[int | None, typer.Option(
        help="Without --ui: serve only /metrics, /healthz and /readyz on this port (Prometheus, k8s probes).")] = None,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Run the pipeline over SOURCES and publish events to Kafka.

    Files, directories and globs run as an archive job to the end (exactly-once; a rerun
    resumes). Stream URLs (rtsp://, rtmp://, http(s)://, udp://) and webcams (/dev/videoN)
    run live until stopped, reconnecting dropped cameras; add and remove cameras and
    queries meanwhile with `framewire sources` and `framewire queries`.
    """
    _setup_logging(verbose, quiet)
    overrides: dict[str, Any] = {"decode.fps": fps, "model.name": model, "model.path": model_path,
                                 "decode.max_frames": max_frames, "live.duration_s": duration}
    spec = _spec(config, **overrides)
    if query:
        spec = spec.with_overrides(queries=list(spec.queries) + list(query))
    from pipeline.sources import expand_sources

    srcs = expand_sources(list(spec.sources) + list(sources or []))
    if not srcs and not (spec.mode == "live" and spec.live.control):
        raise _fail(EXIT_USAGE, "no sources: name video files, directories, globs or URLs, e.g. "
                                "`framewire run clip.mp4` (or set sources: in the config; a mode: live "
                                "run may start empty and take cameras from `framewire sources add`)")
    live = [s for s in srcs if s.is_live]
    if live and len(live) != len(srcs):
        files = ", ".join(s.display for s in srcs if not s.is_live)[:200]
        raise _fail(EXIT_USAGE, f"live streams and recorded files cannot share a run ({files}); "
                                "run the files as their own archive job")
    if live and spec.mode != "live":
        spec = spec.with_overrides(mode="live")
    if spec.mode == "live" and len(live) != len(srcs):
        raise _fail(EXIT_USAGE, "mode: live takes stream URLs (rtsp://, http(s)://, udp://, rtmp://) or "
                                "/dev/videoN; files run in mode: archive")
    bootstrap = _bootstrap(spec)
    if ui:
        from pipeline.web.server import ui_spec

        spec = ui_spec(spec)

    from pipeline.cli.progress import RunDisplay, print_summary
    from pipeline.runtime.driver import Driver

    display = RunDisplay(srcs, console=err, enabled=not quiet, live=spec.mode == "live")
    if spec.mode == "live":
        import signal
        import threading

        stop = threading.Event()

        def _stop(*_: Any) -> None:
            if stop.is_set():  # a second Ctrl-C does not wait for the graceful stop
                raise KeyboardInterrupt
            err.print("stopping: closing cameras, finishing in-flight batches (Ctrl-C again to abort)")
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        pipe: Any = Driver(spec, srcs, bootstrap=bootstrap, on_progress=display.update, stop=stop)
    else:
        pipe = Driver(spec, srcs, bootstrap=bootstrap, on_progress=display.update, restart=restart)
        if spec.kafka.exactly_once:
            try:
                plan = pipe.plan()  # reads the checkpoints only: before Ray and the model start
            except Exception as exc:  # noqa: BLE001
                raise _fail(EXIT_RUNTIME, f"reading checkpoints: {type(exc).__name__}: {exc}") from None
            err.print(plan.message, highlight=False)
            if plan.nothing_to_do:
                raise typer.Exit(EXIT_OK)
    stop_web = None
    if ui or metrics_port is not None:
        from pipeline.web.cli import attach_web

        try:
            stop_web = attach_web(pipe, bootstrap, ui=ui, host=ui_host, port=ui_port if ui else metrics_port,
                                  token=None, console=err)
        except OSError as exc:
            raise _fail(EXIT_USAGE, str(exc)) from None
    indexer = None
    if index:
        import os as _os

        from pipeline.index.indexer import start_indexer_in_background

        indexer = start_indexer_in_background(spec, bootstrap, db or _os.environ.get("FRAMEWIRE_INDEX_DB"))
    try:
        with display:
            summary = pipe.run()
    except KeyboardInterrupt:
        pipe.shutdown()
        if indexer is not None:
            indexer.stop(timeout=5)
        raise _fail(130, "interrupted") from None
    except Exception as exc:  # noqa: BLE001 - a runtime failure gets a message and exit 1, not a traceback
        cause = exc.__cause__ or exc
        if verbose:
            err.print_exception()
        pipe.shutdown()
        if indexer is not None:
            indexer.stop(timeout=5)
        raise _fail(EXIT_RUNTIME, f"{type(cause).__name__}: {cause}") from None
    finally:
        if stop_web is not None:
            stop_web.stop()
    print_summary(summary, spec, bootstrap, console=out, show=show if not quiet else 0)
    if indexer is not None:
        caught_up = indexer.wait_caught_up(120)
        stats = indexer.stop()
        err.print(f"index: {stats.events} events indexed" + ("" if caught_up else " (not caught up after 120 s)")
                  + "; try `framewire search \"a bicycle\"`", highlight=False)
    if summary_json:
        summary_json.write_text(json.dumps(display.summary_dict(summary), indent=2))
    if not summary.ok:
        raise typer.Exit(EXIT_RUNTIME)
    if any(p.error for p in summary.sources):
        raise typer.Exit(EXIT_PARTIAL)


@app.command()
def tail(
    topic: Annotated[list[str] | None, typer.Argument(
        help="Topics to follow (default: every framewire topic), e.g. framewire.detections")] = None,
    source: Annotated[str | None, typer.Option(help="Only events of this source id (or its name prefix).")] = None,
    type_: Annotated[list[str] | None, typer.Option(
        "--type", help="Only these event types (repeatable): caption, detections, query, query_match, track, zone, "
                       "line, window, embedding, thumbnail, status, error.")] = None,
    track: Annotated[list[int] | None, typer.Option(
        "--track", help="Only events about this track id (repeatable; with --source, since ids are per source): "
                        "its track, zone and line events and the detections holding its box.")] = None,
    run_id: Annotated[str | None, typer.Option(help="Only events of this run.")] = None,
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="Start at the oldest event.")] = False,
    since: Annotated[str | None, typer.Option(
        help="Only events captured since: a duration ago (90s, 10m, 2h), an ISO time or UNIX seconds.")] = None,
    group: Annotated[str | None, typer.Option(
        help="Consumer group: resume where the group left off; offsets committed after printing.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON event per line (for jq).")] = False,
    idle_timeout: Annotated[float | None, typer.Option(help="Exit after this many idle seconds.")] = None,
    max_events: Annotated[int | None, typer.Option("--max", help="Exit after this many events.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Print events as they arrive on framewire topics."""
    _setup_logging(0, False)
    spec = _spec(config)
    bootstrap = _bootstrap(spec, start=False)
    from pipeline.cli.progress import describe_event
    from pipeline.events import EVENT_TYPES
    from pipeline.kafka.consumer import parse_since, subscribe

    try:
        since_t = parse_since(since) if since else None
    except ValueError as exc:
        raise _fail(EXIT_USAGE, str(exc)) from None
    unknown = sorted(set(type_ or []) - set(EVENT_TYPES))
    if unknown:
        raise _fail(EXIT_USAGE, f"unknown event type(s) {', '.join(unknown)} for --type; one of: "
                                f"{', '.join(sorted(EVENT_TYPES))}")
    n = 0
    try:
        for rec in subscribe(bootstrap, topic or None, prefix=spec.kafka.topic_prefix, from_beginning=from_beginning,
                             source=source, types=set(type_) if type_ else None, run_id=run_id,
                             idle_timeout=idle_timeout, since=since_t, group_id=group,
                             track_ids=set(track) if track else None, security=spec.kafka.security):
            if as_json:
                sys.stdout.write(rec.event.model_dump_json() + "\n")  # type: ignore[attr-defined]
                sys.stdout.flush()
            else:
                out.print(describe_event(rec.event), highlight=False)
            n += 1
            if max_events is not None and n >= max_events:
                break
    except KeyboardInterrupt:
        pass


@broker_app.command("up")
def broker_up(port: Annotated[int, typer.Option(help="Client port on 127.0.0.1.")] = 9092) -> None:
    """Resolve Kafka's jars with mvn (once), format storage and start the broker."""
    from pipeline.broker import BrokerError, LocalBroker

    try:
        st = LocalBroker(port=port).start()
    except (BrokerError, OSError) as exc:
        raise _fail(EXIT_RUNTIME, str(exc)) from None
    out.print(f"Kafka running: bootstrap {st.bootstrap} (pid {st.pid}); log {st.log_file}")


@broker_app.command("down")
def broker_down(port: Annotated[int, typer.Option(help="Client port on 127.0.0.1.")] = 9092) -> None:
    """Stop the local broker."""
    from pipeline.broker import LocalBroker

    LocalBroker(port=port).stop()
    out.print("Kafka stopped")


@broker_app.command("status")
def broker_status(port: Annotated[int, typer.Option(help="Client port on 127.0.0.1.")] = 9092) -> None:
    """Say whether the local broker runs; exit 1 when it does not."""
    from pipeline.broker import LocalBroker

    st = LocalBroker(port=port).status()
    out.print(f"Kafka {'running' if st.running else 'not running'}: bootstrap {st.bootstrap}"
              + (f" (pid {st.pid})" if st.pid else "") + f"; data {st.data_dir}")
    if not st.running:
        raise typer.Exit(EXIT_RUNTIME)


@models_app.command("list")
def models_list(config: ConfigOpt = None) -> None:
    """Show model families, the tasks each runs and whether its weights resolve here (no download)."""
    from operators.models.registry import family_names, get
    from operators.models.weights import ModelNotFoundError

    spec = _spec(config)
    t = Table(show_header=True)
    for col in ("family", "tasks", "model", "weights here"):
        t.add_column(col)
    for name in family_names():
        try:
            cls = get(name)
        except ValueError as exc:
            t.add_row(name, "", "", f"[red]cannot import: {exc}[/]")
            continue
        configured = spec.model.name == name
        model_id = spec.model.id if configured else cls.default_id
        path = spec.model.path if configured else None
        try:
            where = f"[green]yes[/] {cls.locate(model_id, path)}"
        except ModelNotFoundError:
            where = f"[yellow]no[/]: framewire models fetch {model_id or 'ID'} --to DIR"
        label = name + (" (configured)" if configured else "")
        t.add_row(label, ", ".join(cls.supported_tasks), model_id or "-", where)
    out.print(t)


@models_app.command("fetch")
def models_fetch(
    model_id: Annotated[str, typer.Argument(help="Hugging Face model id, e.g. florence-community/Florence-2-base")],
    to: Annotated[Path, typer.Option("--to", help="Directory to download into; mount it and set model.path.")],
    revision: Annotated[str | None, typer.Option(help="Branch, tag or commit.")] = None,
) -> None:
    """Download a model's weights on a connected machine so an offline cluster can mount them."""
    try:
        from huggingface_hub import snapshot_download

        where = snapshot_download(model_id, revision=revision, local_dir=str(to))
    except Exception as exc:  # noqa: BLE001 - any hub failure becomes one message and exit 1
        raise _fail(EXIT_RUNTIME, f"could not download {model_id} ({type(exc).__name__}: {exc}); this needs "
                                  "the Hugging Face hub: run it on a connected machine and copy DIR") from None
    out.print(f"{model_id} is in {where}; set model.path: {where} (or --model-path) to use it")


from pipeline.cli.control import queries_app, sources_app  # noqa: E402
from pipeline.cli.topics import topics_app  # noqa: E402

app.add_typer(sources_app, name="sources")
app.add_typer(queries_app, name="queries")
app.add_typer(topics_app, name="topics")

from pipeline.index.cli import register as register_index  # noqa: E402  # index, search, clip, summary, api

register_index(app)

from pipeline.web.cli import register as register_web  # noqa: E402  # ui

register_web(app)


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except ConfigError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    main()
