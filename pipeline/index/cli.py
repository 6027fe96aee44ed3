"""``framewire index|search|clip|summary|api``: the index's commands, added to the CLI by ``register(app)``."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["register", "DB_ENV"]

DB_ENV = "FRAMEWIRE_INDEX_DB"
EXIT_RUNTIME, EXIT_USAGE = 1, 2
err = Console(stderr=True)

DbOpt = Annotated[str | None, typer.Option(
    "--db", help=f"Index location: a directory or a LanceDB URI (s3://...). Default ${DB_ENV}, else "
                 "$FRAMEWIRE_CACHE/index (~/.cache/framewire/index).")]
ConfigOpt = Annotated[list[Path] | None, typer.Option(
    "--config", "-c", help="YAML overlay(s) merged over configs/default.yaml (kafka.* settings), in order.")]
SinceOpt = Annotated[str | None, typer.Option(help="Only events captured at or after: 10m, 2h, ISO time, UNIX s.")]
UntilOpt = Annotated[str | None, typer.Option(help="Only events captured at or before (same forms as --since).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _fail(code: int, message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _db(db: str | None) -> str:
    from pipeline.index.store import default_db

    return db or os.environ.get(DB_ENV) or default_db()


def _store(db: str | None, *, create: bool = False) -> Any:
    from pipeline.index.store import IndexStore

    try:
        return IndexStore(_db(db), create=create)
    except FileNotFoundError as exc:
        raise _fail(EXIT_USAGE, str(exc)) from None


def _time(value: str | None, flag: str) -> float | None:
    from pipeline.kafka.consumer import parse_since

    if value is None:
        return None
    try:
        return parse_since(value)
    except ValueError as exc:
        raise _fail(EXIT_USAGE, str(exc).replace("--since", flag)) from None


def index(
    config: ConfigOpt = None, db: DbOpt = None,
    group: Annotated[str, typer.Option(help="Kafka consumer group of the indexer.")] = "framewire-index",
    topic: Annotated[list[str] | None, typer.Option(
        help="Index only these topics (default: every event topic under kafka.topic_prefix, new ones too).")] = None,
    batch: Annotated[int, typer.Option(help="Records per write.")] = 500,
    idle_timeout: Annotated[float | None, typer.Option(
        help="Exit after this many seconds with nothing new (default: run until Ctrl-C).")] = None,
    no_text_vectors: Annotated[bool, typer.Option("--no-text-vectors", help="Skip MiniLM text embeddings.")] = False,
) -> None:
    """Subscribe to the event topics (read_committed) and write every event into the index; resumable."""
    import logging
    import signal
    import threading

    from pipeline.broker import BrokerError, resolve_bootstrap
    from pipeline.index.indexer import Indexer
    from pipeline.spec import ConfigError, load_spec

    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    try:
        spec = load_spec(list(config or []))
    except ConfigError as exc:
        raise _fail(EXIT_USAGE, str(exc)) from None
    try:
        bootstrap = resolve_bootstrap(spec.kafka.bootstrap_servers, start=False)
    except (BrokerError, OSError) as exc:
        raise _fail(EXIT_RUNTIME, f"Kafka: {exc}") from None
    store = _store(db, create=True)
    ix = Indexer(store, bootstrap, prefix=spec.kafka.topic_prefix, topics=topic, group_id=group, batch_size=batch,
                 text_vectors=not no_text_vectors, security=spec.kafka.security)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    err.print(f"indexing {spec.kafka.topic_prefix}.* from {bootstrap} into {store.uri} (group {group})",
              highlight=False)
    try:
        stats = ix.run(stop, idle_timeout=idle_timeout)
    except Exception as exc:  # noqa: BLE001 - one line and exit 1
        raise _fail(EXIT_RUNTIME, f"indexer: {type(exc).__name__}: {exc}") from None
    err.print(f"indexed {stats.events} events in {stats.batches} batches ({stats.rate():.0f}/s); "
              f"{store.count()} rows in {store.uri}", highlight=False)


def search(
    text: Annotated[str | None, typer.Argument(help="What to look for, e.g. 'a bicycle' or words seen in the video.")]
    = None,
    db: DbOpt = None, source: Annotated[str | None, typer.Option(help="Only this source (id or name).")] = None,
    since: SinceOpt = None, until: UntilOpt = None,
    label: Annotated[str | None, typer.Option(help="Only frames where the detector saw this label.")] = None,
    limit: Annotated[int, typer.Option(help="Most moments to return.")] = 10,
    image: Annotated[Path | None, typer.Option(help="Search by example: frames like this image.")] = None,
    embedding_model: Annotated[list[str] | None, typer.Option(
        help="ID=PATH: a local copy of the image-embedding model whose vectors are indexed.")] = None,
    gap: Annotated[float | None, typer.Option(
        help="Merge matching frames at most this many seconds apart (default 1.5 x sampling step).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Moments (time ranges of one source) matching TEXT, best first, with evidence and a thumbnail."""
    from pipeline.index.search import search as run_search

    store = _store(db)
    paths = dict(p.split("=", 1) for p in embedding_model or [] if "=" in p)
    pixels = None
    if image is not None:
        import numpy as np
        from PIL import Image

        try:
            pixels = np.asarray(Image.open(image).convert("RGB"))
        except OSError as exc:
            raise _fail(EXIT_USAGE, f"--image {image}: {exc}") from None
    try:
        res = run_search(store, text, image=pixels, source=source, since=_time(since, "--since"),
                         until=_time(until, "--until"), label=label, limit=limit, gap=gap, image_model_paths=paths)
    except ValueError as exc:
        raise _fail(EXIT_USAGE, str(exc)) from None
    if as_json:
        print(json.dumps(res.to_dict()))
        return
    thumbs = Path(tempfile.mkdtemp(prefix="framewire-search-"))
    d = res.to_dict(thumbnail_dir=thumbs)
    notes = ", ".join(f"{k}: {v}" for k, v in res.signals.items())
    print(f"{len(res.moments)} moment(s) for {text or str(image)!r}  [{notes}]")
    for m in d["moments"]:
        ev = "; ".join(f"{e['field']} {e['text']!r} ({e['signal']})" for e in m["evidence"][:3])
        print(f"  {m['score']:.3f}  {m['source_id']}  {m['start_pts']:.2f}-{m['end_pts']:.2f}s "
                  f"({m['frames']} frames)  {ev}")
        if m["thumbnail_path"]:
            print(f"         thumbnail {m['thumbnail_path']}")


def clip(
    source: Annotated[str | None, typer.Argument(help="Source id/name in the index, or the video file.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The mp4 to write.")] = Path("clip.mp4"),
    at: Annotated[float | None, typer.Option(help="Centre of the clip, seconds into the source.")] = None,
    before: Annotated[float, typer.Option(help="Seconds before --at (or before the moment).")] = 2.0,
    after: Annotated[float, typer.Option(help="Seconds after --at (or after the moment).")] = 2.0,
    moment: Annotated[str | None, typer.Option(
        help="A moment from `search --json` (JSON text, a file, or - for stdin); its source and span.")] = None,
    exact: Annotated[bool, typer.Option(help="Re-encode the cut so it starts and ends on the requested frames.")]
    = False,
    boxes: Annotated[bool, typer.Option(help="Draw the indexed detections (labels, track ids); re-encodes.")]
    = False,
    db: DbOpt = None, as_json: JsonOpt = False,
) -> None:
    """Cut a clip from the archive file: remux from the keyframe before the start, or re-encode (--exact, --boxes)."""
    from pipeline.index.clips import cut_clip, detections_for, source_file

    if moment is not None:
        raw = sys.stdin.read() if moment == "-" else (Path(moment).read_text() if Path(moment).is_file() else moment)
        m = json.loads(raw)
        m = m["moments"][0] if "moments" in m else m
        source = source or m["source_id"]
        start, end = float(m["start_pts"]) - before, float(m["end_pts"]) + after
    elif at is not None:
        start, end = at - before, at + after
    else:
        raise _fail(EXIT_USAGE, "give --at SECONDS (with --before/--after) or --moment JSON")
    if source is None:
        raise _fail(EXIT_USAGE, "give the SOURCE (an indexed source id or the video file)")
    store = None if Path(source).is_file() and not boxes else _store(db)
    try:
        path = source_file(store, source)
        dets = detections_for(store, source, start, end) if boxes and store is not None else None
        info = cut_clip(path, output, start, end, exact=exact, boxes=dets)
    except (ValueError, FileNotFoundError) as exc:
        raise _fail(EXIT_USAGE, str(exc)) from None
    if as_json:
        print(json.dumps(info.to_dict()))
    else:
        print(f"wrote {info.path}: {info.frames} frames, {info.duration:.2f}s from {info.start:.2f}s of {path} "
                  f"({info.mode})")


def summary(
    source: Annotated[str, typer.Argument(help="Source id/name in the index.")],
    db: DbOpt = None, since: SinceOpt = None, until: UntilOpt = None,
    window: Annotated[float, typer.Option(help="Seconds per derived window (sources without window events).")]
    = 10.0,
    llm: Annotated[str | None, typer.Option(
        help="A local causal LM directory: also write a paragraph from the timeline (default "
             "$FRAMEWIRE_SUMMARY_MODEL; none: the timeline only).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """A timeline of what happened in SOURCE (windows, tracks, zones, lines, queries, text) from the index."""
    from pipeline.index.summary import summarize

    store = _store(db)
    try:
        s = summarize(store, source, since=_time(since, "--since"), until=_time(until, "--until"), window_s=window,
                      llm_path=llm or os.environ.get("FRAMEWIRE_SUMMARY_MODEL") or None)
    except (ValueError, OSError) as exc:
        raise _fail(EXIT_USAGE, str(exc)) from None
    if as_json:
        print(json.dumps(s.to_dict()))
    else:
        print(s.text())


def api(
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8710,
    token: Annotated[str | None, typer.Option(
        help="Access token (default $FRAMEWIRE_API_TOKEN, else a random one printed at start).")] = None,
    llm: Annotated[str | None, typer.Option(help="Local causal LM for /summary paragraphs.")] = None,
) -> None:
    """HTTP API: /search?q=, /clip?source=&at= (mp4), /summary?source=, /sources; bearer token or ?token=."""
    from pipeline.index.api import serve

    serve(_store(db).uri, host=host, port=port, token=token, llm_path=llm)


def register(app: typer.Typer) -> None:
    """Add the index commands to the ``framewire`` app."""
    for fn in (index, search, clip, summary, api):
        app.command(fn.__name__)(fn)
