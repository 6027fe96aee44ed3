"""The framewire CLI as a user runs it: real video, the real broker, exit codes, tail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.videos import not_a_video

pytestmark = [pytest.mark.e2e]


def fw(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=timeout)


@pytest.fixture
def env(kafka_bootstrap: str) -> dict[str, str]:
    return {"FRAMEWIRE_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "FRAMEWIRE__KAFKA__TOPIC_PREFIX": f"e2e{uuid.uuid4().hex[:8]}",
            "FRAMEWIRE__RAY__NUM_CPUS": "4"}


def test_run_default_profile_on_real_clip_then_tail(env: dict[str, str], bikes: Path, tmp_path: Path) -> None:
    summary = tmp_path / "s.json"
    r = fw(["run", str(bikes), "--max-frames", "6", "-q", "--summary-json", str(summary)], env)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads(summary.read_text())
    assert s["frames"] == 6 and s["delivery"]["failed"] == 0
    prefix = env["FRAMEWIRE__KAFKA__TOPIC_PREFIX"]
    assert s["delivery"]["per_topic"][f"{prefix}.detections"] == 6
    assert "acknowledged" in r.stdout
    t = fw(["tail", f"{prefix}.detections", "--from-beginning", "--json", "--max", "6", "--idle-timeout", "10"], env)
    assert t.returncode == 0, t.stderr[-2000:]
    events = [json.loads(line) for line in t.stdout.splitlines()]
    assert len(events) == 6 and all(e["type"] == "detections" and e["run_id"] == s["run_id"] for e in events)
    assert [e["pts"] for e in events] == sorted(e["pts"] for e in events)
    assert s["delivery"]["per_topic"][f"{prefix}.ocr"] == 6  # the default profile reads text beside CenterNet
    o = fw(["tail", "--type", "ocr", "--from-beginning", "--json", "--max", "6", "--idle-timeout", "10"], env)
    assert o.returncode == 0, o.stderr[-2000:]
    ocr = [json.loads(line) for line in o.stdout.splitlines()]
    assert len(ocr) == 6 and all(e["type"] == "ocr" and e["model"].startswith("rapidocr") for e in ocr)


def test_bad_input_exit_3_and_others_complete(env: dict[str, str], ramp_video: Path, tmp_path: Path) -> None:
    bad = not_a_video(tmp_path / "bad.mp4")
    r = fw(["run", str(bad), str(ramp_video), "--max-frames", "3", "-q",
            "--config", str(Path(__file__).parent / "fake.yaml")], env)
    assert r.returncode == 3, r.stderr[-3000:]
    assert "bad.mp4" in r.stdout and "not a video" in r.stdout


def test_bad_config_exit_2_names_key(env: dict[str, str], tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  batchsize: 4\n")
    r = fw(["run", "x.mp4", "--config", str(cfg)], env, timeout=60)
    assert r.returncode == 2
    assert "model.batchsize" in r.stderr and "c.yaml" in r.stderr


def test_help_explains() -> None:
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--config" in r.stdout and "--query" in r.stdout


def test_models_list_says_where_weights_are() -> None:
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "models", "list"], capture_output=True, text=True,
                       env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if "centernet" in x)
    assert "yes" in line  # the offline default is fetched by `make` before the tests
    assert "florence2" in r.stdout and "framewire models fetch" in r.stdout


def test_models_fetch_offline_fails_clearly(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "models", "fetch", "org/none", "--to", str(tmp_path)],
                       capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 1 and "org/none" in r.stderr and "connected machine" in r.stderr


def test_live_run_with_duration_and_sources_ls(env: dict[str, str], bikes: Path, tmp_path: Path) -> None:
    from tests.support.live_servers import RtspCameras, available

    if available():
        pytest.skip(str(available()))
    cfg = str(Path(__file__).parent / "fake.yaml")
    with RtspCameras({"cam1": bikes}) as cams:
        summary = tmp_path / "s.json"
        run = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", cams.url("cam1", "op:pw123"), "--fps", "2",
                                "--duration", "25", "--config", cfg, "--summary-json", str(summary)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
        try:
            ls = None
            for _ in range(20):  # the run starts Ray and the camera first
                ls = fw(["sources", "ls", "--json", "--timeout", "3"], env, timeout=60)
                if ls.returncode == 0 and json.loads(ls.stdout)[0]["result"][0]["frames"] > 0:
                    break
            assert ls is not None and ls.returncode == 0, ls.stderr if ls else ""
            (listed,) = json.loads(ls.stdout)[0]["result"]
            assert listed["state"] == "live" and "pw123" not in listed["uri"]
            out, errs = run.communicate(timeout=120)
        finally:
            run.kill()
    assert run.returncode == 0, errs[-3000:]
    s = json.loads(summary.read_text())
    assert s["frames"] >= 10 and s["delivery"]["failed"] == 0
    assert "pw123" not in out + errs


def test_live_usage_errors(env: dict[str, str], bikes: Path) -> None:
    r = fw(["run", "rtsp://127.0.0.1:9/cam", str(bikes)], env, timeout=60)
    assert r.returncode == 2 and "cannot share a run" in r.stderr
    r = fw(["sources", "ls", "--timeout", "1"], env, timeout=60)
    assert r.returncode == 1 and "no live run answered" in r.stderr
