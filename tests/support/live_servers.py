"""Real live video servers on 127.0.0.1 for tests and benchmarks, fed from the sample clips looped.

- ``RtspCameras``: GStreamer's RTSP server (tests/support/rtsp_server.py) with one mount per
  camera, each fed by ``ffmpeg -re -stream_loop -1 ... -c copy -f mpegts udp://`` (no re-encode).
  ``kill()``/``start()`` take the server away and back on the same port; ``stall(cam)``
  freezes one camera's feeder (SIGSTOP) so the session stays open but no frame comes.
- ``HttpTsStream``: ``ffmpeg -listen 1`` serving an endless MPEG-TS over HTTP.

Needs Debian's ffmpeg, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-{base,good,bad},
python3-gi (scripts/system-deps.sh installs them). ``available()`` says what is missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["HlsStream", "HttpTsStream", "RtspCameras", "available", "camera_clip", "free_port"]

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def available() -> str | None:
    """None when the servers can run here, else what is missing and how to get it."""
    if not shutil.which("ffmpeg"):
        return "ffmpeg not installed (apt-get install ffmpeg; scripts/system-deps.sh does it)"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                            "from gi.repository import GstRtspServer"], capture_output=True)
    if probe.returncode != 0:
        return ("GStreamer RTSP server not installed (apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 "
                "gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)")
    return None


def camera_clip(clip: str | Path) -> Path:
    """The clip re-encoded like a camera streams (H.264, no B-frames, a keyframe every 0.5 s),
    cached beside the samples, so a viewer joining mid-stream starts within half a second."""
    from pipeline.samples import cache_dir

    src = Path(clip)
    out = cache_dir() / "live" / f"{src.stem}-camera.mp4"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".part.mp4")
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), "-an", "-c:v", "libx264",
                        "-preset", "veryfast", "-tune", "zerolatency", "-g", "12", "-bf", "0", "-pix_fmt", "yuv420p",
                        str(tmp)], check=True)
        tmp.rename(out)
    return out


def _wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    """Wait for a LISTEN socket without connecting (ffmpeg -listen 1 serves only its first client)."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        if any(c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
               for c in psutil.net_connections("tcp")):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGCONT)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


class RtspCameras:
    """``rtsp://127.0.0.1:PORT/camN`` cameras looping sample clips until closed."""

    def __init__(self, clips: dict[str, str | Path], port: int | None = None) -> None:
        self.clips = {k: str(camera_clip(v)) for k, v in clips.items()}
        self.port = port or free_port()
        self.udp = {cam: free_port(socket.SOCK_DGRAM) for cam in self.clips}
        self.server: subprocess.Popen[bytes] | None = None
        self.feeders: dict[str, subprocess.Popen[bytes]] = {}

    def url(self, cam: str, credentials: str = "") -> str:
        return f"rtsp://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}/{cam}"

    def _feed(self, cam: str) -> subprocess.Popen[bytes]:
        cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", self.clips[cam],
               "-an", "-c", "copy", "-f", "mpegts", f"udp://127.0.0.1:{self.udp[cam]}?pkt_size=1316"]
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def start(self) -> RtspCameras:
        """Start (or restart after kill) the server on the same port; feeders keep running."""
        for cam in self.clips:
            if cam not in self.feeders or self.feeders[cam].poll() is not None:
                self.feeders[cam] = self._feed(cam)
        cmd = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port)]
        for cam, udp in self.udp.items():
            cmd += ["--mount", f"{cam}={udp}"]
        self.server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                       start_new_session=True)
        _wait_port(self.port, 20, self.server)
        return self

    def kill(self) -> None:
        """The server dies (SIGKILL), as when a camera or its host goes away."""
        _stop(self.server)
        self.server = None

    def stall(self, cam: str) -> None:
        """The camera stops sending but the RTSP session stays open."""
        os.killpg(self.feeders[cam].pid, signal.SIGSTOP)

    def resume(self, cam: str) -> None:
        os.killpg(self.feeders[cam].pid, signal.SIGCONT)

    def close(self) -> None:
        self.kill()
        for p in self.feeders.values():
            _stop(p)
        self.feeders.clear()

    def __enter__(self) -> RtspCameras:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class HttpTsStream:
    """``http://127.0.0.1:PORT/stream.ts``: an endless MPEG-TS over HTTP (one client, as ffmpeg -listen 1)."""

    def __init__(self, clip: str | Path, port: int | None = None) -> None:
        self.clip = str(camera_clip(clip))
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.ts"

    def start(self) -> HttpTsStream:
        cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", self.clip, "-an",
               "-c", "copy", "-f", "mpegts", "-listen", "1", self.url]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        _wait_port(self.port, 20, self.proc)
        return self

    def close(self) -> None:
        _stop(self.proc)

    def __enter__(self) -> HttpTsStream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class HlsStream:
    """``http://127.0.0.1:PORT/index.m3u8``: a live HLS playlist (0.5 s segments, sliding window)
    written by ffmpeg and served by Python's http.server."""

    def __init__(self, clip: str | Path, workdir: str | Path, port: int | None = None) -> None:
        self.clip = str(camera_clip(clip))
        self.dir = Path(workdir)
        self.port = port or free_port()
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/index.m3u8"

    def start(self) -> HlsStream:
        import sys

        self.dir.mkdir(parents=True, exist_ok=True)
        self.procs.append(subprocess.Popen(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", self.clip, "-an",
             "-c", "copy", "-f", "hls", "-hls_time", "0.5", "-hls_list_size", "6", "-hls_flags", "delete_segments",
             str(self.dir / "index.m3u8")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True))
        server = subprocess.Popen([sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1",
                                   "--directory", str(self.dir)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(server)
        _wait_port(self.port, 20, server)
        deadline = time.monotonic() + 20
        while not (self.dir / "index.m3u8").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        return self

    def close(self) -> None:
        for p in self.procs:
            _stop(p)
        self.procs.clear()

    def __enter__(self) -> HlsStream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
