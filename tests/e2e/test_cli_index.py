"""The README's three commands after a run, as a user types them: run, index, search, then clip the moment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import av
import pytest

pytestmark = [pytest.mark.e2e]


def fw(args: list[str], env: dict[str, str], timeout: float = 240, stdin: str | None = None
       ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=timeout, input=stdin)


def test_run_index_search_clip(kafka_bootstrap: str, bikes: Path, tmp_path: Path) -> None:
    env = {"FRAMEWIRE_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "FRAMEWIRE__KAFKA__TOPIC_PREFIX": f"e2ei{uuid.uuid4().hex[:8]}", "FRAMEWIRE__RAY__NUM_CPUS": "4",
           "FRAMEWIRE_INDEX_DB": str(tmp_path / "db"),
           "FRAMEWIRE__THUMBNAILS__ENABLED": "true"}
    r = fw(["run", str(bikes), "-q", "--show", "0"], env)
    assert r.returncode == 0, r.stderr[-3000:]
    ix = fw(["index", "--idle-timeout", "4"], env)
    assert ix.returncode == 0 and "indexed" in ix.stderr, ix.stderr[-3000:]
    s = fw(["search", "bicycle", "--json"], env)
    assert s.returncode == 0, s.stderr[-3000:]
    top = json.loads(s.stdout)["moments"][0]
    assert any("bicycle" in e["text"] for e in top["evidence"]) and top["thumbnail_base64"]
    c = fw(["clip", "--moment", "-", "--json", "-o", str(tmp_path / "m.mp4")], env, stdin=json.dumps(top))
    assert c.returncode == 0, c.stderr[-3000:]
    with av.open(str(tmp_path / "m.mp4")) as f:
        assert f.duration / 1e6 >= 4.0  # the moment plus 2 s either side, from the keyframe before
    assert json.loads(c.stdout)["start"] <= top["start_pts"] - 2.0 + 1e-6
