"""CLI glue: ``framewire run --ui / --metrics-port`` (the app beside the driver) and ``framewire ui``
(the live view of a pipeline running elsewhere, over Kafka and the control topic)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

ConfigOpt = Annotated[list[Path] | None, typer.Option(
    "--config", "-c", help="YAML overlay(s) merged over configs/default.yaml, in order (repeatable).")]

__all__ = ["WebHandle", "attach_web", "register"]


@dataclass
class WebHandle:
    """The app serving beside a run: its server (``.url``), the live view (or None) and the metrics."""

    server: Any
    view: Any
    metrics: Any

    def stop(self) -> None:
        """Stop the view's consumers and the server (again: nothing)."""
        if self.view is not None:
            self.view.stop()
        if self.server.thread.is_alive():
            self.server.stop()


def attach_web(pipe: Any, bootstrap: str, *, ui: bool, host: str, port: int, token: str | None,
               console: Any) -> WebHandle:
    """Metrics on the driver's hooks and the app serving them (and the view when ``ui``), started now."""
    from pipeline.web.metrics import DriverMetrics
    from pipeline.web.server import for_driver, resolve_token

    metrics = DriverMetrics().attach(pipe)
    shown = pipe.on_progress

    def on_progress(progress: dict[str, Any]) -> None:
        metrics.observe_progress(progress)
        if shown:
            shown(progress)

    pipe.on_progress, pipe.on_publish = on_progress, metrics.observe_publish
    tok, generated = resolve_token(token) if ui else (None, False)
    server, view = for_driver(pipe, bootstrap=bootstrap, ui=ui, host=host, port=port, token=tok, metrics=metrics)
    if ui:
        shown_tok = tok if generated else "<FRAMEWIRE_UI_TOKEN>"
        console.print(f"live view: {server.url}/?token={shown_tok}  (metrics {server.url}/metrics, "
                      f"probes /healthz /readyz)", highlight=False)
    else:
        console.print(f"metrics: {server.url}/metrics (probes /healthz /readyz)", highlight=False)

    return WebHandle(server, view, metrics)


def register(app: typer.Typer) -> None:
    """Add ``framewire ui`` to the CLI."""

    @app.command("ui")
    def ui(
        port: Annotated[int, typer.Option("--port", help="Port to serve the live view on (0: any free one).")] = 8321,
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        run_id: Annotated[str | None, typer.Option(help="Only this run's events and commands (default: any).")] = None,
        token: Annotated[str | None, typer.Option(
            help="Access token (default: FRAMEWIRE_UI_TOKEN, else a random one printed here).")] = None,
        config: ConfigOpt = None,
    ) -> None:
        """Watch a running pipeline in the browser: every source's latest frame with its boxes, track ids,
        zones and lines, state, fps, latency, drops, latest events and matches; add and remove cameras and
        queries. Needs the run's ``thumbnails.enabled: true`` (``framewire run --ui`` turns it on)."""
        import threading

        from pipeline.cli.common import bootstrap as _bootstrap
        from pipeline.cli.common import err
        from pipeline.cli.common import load as _spec
        from pipeline.web.app import Health, create_app
        from pipeline.web.server import WebServer, resolve_token
        from pipeline.web.view import LiveView

        spec = _spec(config)
        bootstrap = _bootstrap(spec, start=False)
        tok, generated = resolve_token(token)
        view = LiveView(bootstrap, spec.kafka.topic_prefix, run_id=run_id, analytics=spec.analytics,
                        spec=spec).start()
        server = WebServer(create_app(health=Health(bootstrap), view=view, token=tok), host, port).start()
        err.print(f"live view: {server.url}/?token={tok if generated else '<FRAMEWIRE_UI_TOKEN>'}  "
                  f"(Kafka {bootstrap}, prefix {spec.kafka.topic_prefix}; Ctrl-C stops)", highlight=False)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            view.stop()
            server.stop()
