#!/usr/bin/env bash
# Install the system tools framewire needs when they are missing (Debian): Java 17 and Maven
# for the Kafka broker's jars, Node.js/npm for the offline detector weights, ffmpeg and
# GStreamer's RTSP server for the live-camera tests, Chromium for the web view's browser tests.
set -euo pipefail
need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn  >/dev/null 2>&1 || need+=(maven)
command -v npm  >/dev/null 2>&1 || need+=(npm)
# live-source tests and benchmarks: real RTSP (GStreamer's server) and HTTP (ffmpeg -listen) servers
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer" \
  >/dev/null 2>&1 || need+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
                            gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)
# OpenCV (opencv-python) needs libGL and glib at import; opencv-doc carries vtest.avi (pedestrians) for tests
[ -e /usr/lib/x86_64-linux-gnu/libGL.so.1 ] || [ -e /usr/lib/aarch64-linux-gnu/libGL.so.1 ] || need+=(libgl1)
[ -e /usr/lib/x86_64-linux-gnu/libgthread-2.0.so.0 ] || [ -e /usr/lib/aarch64-linux-gnu/libgthread-2.0.so.0 ] \
  || need+=(libglib2.0-0)
# the live view's browser tests (tests/integration/test_web_ui.py): headless Chromium driven over CDP
command -v chromium >/dev/null 2>&1 || need+=(chromium)
ls /usr/share/doc/opencv-doc/examples/data/vtest.avi* >/dev/null 2>&1 || need+=(opencv-doc)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing system packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
