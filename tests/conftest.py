"""Shared fixtures: sample clips, generated videos and a local Ray for integration tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["tests.support.kafka_fixtures"]

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    from pipeline.samples import ensure_samples

    return ensure_samples()


@pytest.fixture(scope="session")
def bikes(samples_dir: Path) -> Path:
    return samples_dir / "bikes.mp4"


@pytest.fixture(scope="session")
def ramp_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.videos import make_video

    return make_video(tmp_path_factory.mktemp("videos") / "ramp.mp4", frames=50, fps=25, size=(96, 128))


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One local Ray for the session (tests never ray.init themselves)."""
    import ray

    from pipeline.runtime.driver import REPO_ROOT

    ray.init(num_cpus=4, object_store_memory=512 * 1024 * 1024, include_dashboard=False,
             runtime_env={"env_vars": {"PYTHONPATH": REPO_ROOT, "TOKENIZERS_PARALLELISM": "false",
                                       "HF_HUB_OFFLINE": "1"}},
             logging_level="WARNING")
    yield
    ray.shutdown()
