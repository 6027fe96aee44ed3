"""Run ``framewire run`` in a subprocess and strike (kill a broker, a node) once it is publishing."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from tests.integration.test_exactly_once import CONFIG


def slow_config(tmp_path: Path) -> Path:
    """The crash test's scene with a slower model, so a fault lands mid-run."""
    config = tmp_path / "slow.yaml"
    config.write_text(CONFIG.read_text().replace("delay_s: 0.1", "delay_s: 0.35"))
    assert "delay_s: 0.35" in config.read_text()
    return config


def run_cli(videos: list[Path], config: Path, env: dict[str, str],
            fault: Callable[[], None] | None = None) -> tuple[int, str]:
    """``framewire run`` to the end; ``fault`` is called once its progress shows frames published."""
    cmd = [sys.executable, "-m", "pipeline.cli", "run", *map(str, videos), "--config", str(config), "--show", "0"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    publishing = threading.Event()

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            m = re.search(r"progress: (\d+) frames published", line)
            if m and int(m.group(1)) > 0:
                publishing.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if fault is not None:
            assert publishing.wait(180), "".join(lines)[-3000:]  # mid-run: some frames committed, most to come
            fault()
        proc.wait(timeout=300)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, "".join(lines)
