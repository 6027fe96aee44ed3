"""The index commands through the real framewire app (typer's runner, no sockets): search, clip, summary."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.index.indexer import Indexer
from pipeline.index.store import IndexStore
from tests.support.index_events import as_records, scene


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory, bikes: Path) -> str:
    path = tmp_path_factory.mktemp("cli") / "db"
    ev = [(t, {**e, "source_uri": str(bikes)}) for t, e in scene("bikes-1")]
    Indexer(IndexStore(path), "unused:9092").write(as_records(ev))
    return str(path)


def test_search_json_then_clip_of_the_moment(db: str, tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["search", "bicycle", "--db", db, "--json", "--limit", "3"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    top = res["moments"][0]
    assert (top["source_id"], top["start_pts"], top["end_pts"]) == ("bikes-1", 4.0, 5.5)
    mfile = tmp_path / "m.json"
    mfile.write_text(json.dumps(top))
    out = tmp_path / "m.mp4"
    c = CliRunner().invoke(app, ["clip", "--moment", str(mfile), "--before", "0.5", "--after", "0.5", "--exact",
                                 "--db", db, "-o", str(out), "--json"])
    assert c.exit_code == 0, c.output
    info = json.loads(c.stdout)
    with av.open(str(out)) as f:
        s = f.streams.video[0]
        first = next(f.decode(s))
        assert float(first.pts * s.time_base) == 0.0 and f.duration / 1e6 == pytest.approx(2.5, abs=0.08)
    assert info["start"] == pytest.approx(3.5, abs=0.04) and info["mode"] == "exact"


def test_search_text_output_writes_thumbnails_and_bad_input_exits_2(db: str) -> None:
    r = CliRunner().invoke(app, ["search", "bicycle", "--db", db])
    assert r.exit_code == 0 and "bikes-1" in r.stdout and "thumbnail /" in r.stdout
    thumb = Path(r.stdout.split("thumbnail ", 1)[1].split()[0])
    assert thumb.read_bytes()[:2] == b"\xff\xd8"
    assert CliRunner().invoke(app, ["search", "x", "--db", db, "--source", "nope"]).exit_code == 2
    assert CliRunner().invoke(app, ["search", "x", "--db", "/nonexistent/db"]).exit_code == 2
    assert CliRunner().invoke(app, ["clip", "bikes-1", "--db", db]).exit_code == 2  # neither --at nor --moment


def test_summary_json(db: str) -> None:
    r = CliRunner().invoke(app, ["summary", "bikes", "--db", db, "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["source_id"] == "bikes-1" and s["derived_windows"] and any(
        e["text"] == "seen 'bicycle'" for e in s["timeline"])
