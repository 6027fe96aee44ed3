"""The CLI's plain progress line (no terminal: CI logs, pipes) counts a source done only once published."""

from __future__ import annotations

import io

from rich.console import Console

from pipeline.cli.progress import RunDisplay
from pipeline.runtime.summary import SourceProgress
from pipeline.sources import Source


def test_a_source_decoded_to_the_end_is_not_done_until_its_frames_are_published() -> None:
    out = io.StringIO()
    a, b = Source("a", "/v/a.mp4"), Source("b", "/v/b.mp4")
    display = RunDisplay([a, b], console=Console(file=out, force_terminal=False, width=200))
    waiting = SourceProgress(a, state="ended", decoded=20, published=0)  # its batches are still in the models
    failed = SourceProgress(b, state="failed", decoded=3, published=0)
    display.update({"a": waiting, "b": failed})
    assert out.getvalue().strip() == "progress: 0 frames published, 1/2 sources done"
    display._last_plain = 0.0  # the next line is due
    display.update({"a": SourceProgress(a, state="ended", decoded=20, published=20), "b": failed})
    assert out.getvalue().strip().splitlines()[-1] == "progress: 20 frames published, 2/2 sources done"
