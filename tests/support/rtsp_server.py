"""A real RTSP server (GStreamer's gst-rtsp-server) for tests and benchmarks.

Run with the system Python, which has PyGObject (Debian: python3-gi,
gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-{base,good,bad}):

    /usr/bin/python3 tests/support/rtsp_server.py --port 8554 --mount cam1=5001 --mount cam2=5002

Each mount re-streams (no re-encoding) the MPEG-TS that a feeder sends to its UDP port
(``ffmpeg -re -stream_loop -1 -i clip.mp4 -c copy -f mpegts udp://127.0.0.1:5001``), so a
looped sample clip becomes an endless camera, and stopping the feeder (SIGSTOP) stalls
the camera without closing the RTSP session.
"""

from __future__ import annotations

import argparse
import sys


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mount", action="append", default=[], help="NAME=UDP_PORT (repeatable)")
    args = ap.parse_args()

    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for m in args.mount:
        name, _, udp = m.partition("=")
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(
            f'( udpsrc address=127.0.0.1 port={int(udp)} buffer-size=4194304 caps="video/mpegts,systemstream=true" '
            "! queue ! tsparse set-timestamps=true ! tsdemux latency=0 ! queue ! h264parse config-interval=-1 "
            "! rtph264pay name=pay0 pt=96 config-interval=-1 )")
        factory.set_shared(True)
        mounts.add_factory(f"/{name}", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        sys.exit(1)
    print(f"rtsp server on 127.0.0.1:{args.port}", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
