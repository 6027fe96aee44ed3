"""What every ``framewire`` subcommand shares: exit codes, consoles, common options, config and Kafka lookup."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from pipeline.spec import ConfigError, PipelineSpec, load_spec

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3

err = Console(stderr=True)
out = Console()

ConfigOpt = Annotated[list[Path] | None, typer.Option(
    "--config", "-c", help="YAML overlay(s) merged over configs/default.yaml, in order.")]
VerboseOpt = Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging (-vv for debug).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display; errors and the summary only.")]


def setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if verbose < 2:  # kafka-python logs metadata misses (a topic not created yet) as errors
        logging.getLogger("kafka").setLevel(logging.CRITICAL)


def fail(code: int, message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def load(config: list[Path] | None, **overrides: Any) -> PipelineSpec:
    try:
        spec = load_spec(list(config or []))
        changes = {k: v for k, v in overrides.items() if v is not None}
        return spec.with_overrides(**changes) if changes else spec
    except ConfigError as exc:
        raise fail(EXIT_USAGE, str(exc)) from None


def bootstrap(spec: PipelineSpec, *, start: bool = True) -> str:
    from pipeline.broker import BrokerError, resolve_bootstrap

    try:
        return resolve_bootstrap(spec.kafka.bootstrap_servers, start=start)
    except (BrokerError, OSError) as exc:
        raise fail(EXIT_RUNTIME, f"Kafka: {exc}") from None
