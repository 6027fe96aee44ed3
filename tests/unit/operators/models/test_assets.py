"""Offline weight assets: cache hits need no npm, misses without npm say what to install."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from operators.models.assets import MINILM_PIP, centernet_ok, ensure_centernet, ensure_minilm
from operators.models.weights import ModelNotFoundError


def _fake_centernet(folder: Path, nbytes: int = 8) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = [{"paths": ["centernet.bin"], "weights": [{"name": "w", "dtype": "float32", "shape": [2]}]}]
    (folder / "centernet.json").write_text(json.dumps({"modelTopology": {"node": []}, "weightsManifest": manifest}))
    (folder / "centernet.bin").write_bytes(np.zeros(nbytes, np.uint8).tobytes())


def test_cached_centernet_needs_no_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_centernet(tmp_path / "human-models-3.0.4")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert ensure_centernet(tmp_path) == tmp_path / "human-models-3.0.4"


def test_truncated_cache_is_refetched_and_missing_npm_says_what_to_install(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_centernet(tmp_path / "human-models-3.0.4", nbytes=5)
    assert not centernet_ok(tmp_path / "human-models-3.0.4")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(ModelNotFoundError, match="install Node.js and npm") as ei:
        ensure_centernet(tmp_path)
    assert isinstance(ei.value, OSError) and "model.path" in str(ei.value)


def test_minilm_location_and_missing_package() -> None:
    with pytest.raises(ModelNotFoundError, match=f"pip install {MINILM_PIP}"):
        ensure_minilm(package="framewire_no_such_package")
    try:
        folder = ensure_minilm()
    except ModelNotFoundError:
        pytest.skip(f"{MINILM_PIP} is not installed")
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
