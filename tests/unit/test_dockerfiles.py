"""The Dockerfiles run the same install steps as `make`, and every file a step uses was copied in before it."""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = ["Dockerfile", "Dockerfile.cuda"]
# (in the Dockerfile, in the Makefile): make installs the package editable with its test extras, the image without
MAKE_STEPS = [("bash scripts/system-deps.sh", "bash scripts/system-deps.sh"), ("pip install", "pip install"),
              ("-e .", '-e ".[test]"'), ("python -m pipeline.assets", "-m pipeline.assets")]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in path.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    assert not buf, f"{path}: a line continuation runs off the end"
    return out


def _ignored(rel: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel.split("/")[0], p) for p in patterns)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_copy_sources_exist_and_are_not_dockerignored(name: str) -> None:
    ignore = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
              if ln.strip() and not ln.startswith("#")]
    copies = [args for ins, args in instructions(ROOT / name) if ins == "COPY"]
    assert copies
    for args in copies:
        *sources, _dest = shlex.split(args)
        for src in sources:
            assert (ROOT / src).exists(), f"{name}: COPY {src}: no such file in the repo"
            assert not _ignored(src, ignore), f"{name}: COPY {src} is excluded by .dockerignore"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_run_steps_use_only_files_copied_before_them(name: str) -> None:
    copied: list[str] = []
    runs = 0
    for ins, args in instructions(ROOT / name):
        if ins == "COPY":
            *sources, dest = shlex.split(args)
            copied += [dest.rstrip("/") if len(sources) == 1 and not dest.endswith("/") else
                       f"{dest.rstrip('/')}/{Path(s).name}".lstrip("./") for s in sources]
            copied += [s for s in sources]
        if ins != "RUN":
            continue
        runs += 1
        for path in re.findall(r"(?<![\w/.-])((?:scripts|pipeline|operators|configs|schemas)/[\w./-]+)", args):
            assert (ROOT / path).exists(), f"{name}: RUN uses {path}, which is not in the repo"
            assert any(path == c or path.startswith(c.rstrip("/") + "/") for c in copied), \
                f"{name}: RUN uses {path} before any COPY brings it into the image"
        for module in re.findall(r"python3? -m ([\w.]+)", args):
            if module.split(".")[0] in ("pipeline", "operators"):
                mod = ROOT / Path(*module.split("."))
                assert mod.with_suffix(".py").exists() or (mod / "__main__.py").exists(), (name, module)
                assert any(c in ("pipeline", "operators") for c in copied), f"{name}: {module} not copied yet"
        if "-e ." in args:
            assert {"pyproject.toml", "pipeline", "operators"} <= {Path(c).name for c in copied}, \
                f"{name}: pip install -e . before the package is copied in"
    assert runs >= 3


@pytest.mark.parametrize("name", DOCKERFILES)
def test_the_same_install_steps_as_make(name: str) -> None:
    runs = " && ".join(args for ins, args in instructions(ROOT / name) if ins == "RUN")
    make = (ROOT / "Makefile").read_text()
    for step, in_make in MAKE_STEPS:
        assert step in runs, f"{name} lacks the make step {step!r}"
        assert in_make in make, f"the Makefile no longer runs {in_make!r}: update the Dockerfiles with it"
    assert runs.index("system-deps.sh") < runs.index("pip install") < runs.index("pipeline.assets")


def test_images_are_the_ones_the_manifests_run() -> None:
    import yaml

    image = "ghcr.io/framewire/framewire"
    tags = {"Dockerfile": f"{image}:0.1.0", "Dockerfile.cuda": f"{image}:0.1.0-cuda"}
    for name, tag in tags.items():
        assert f"-t {tag} " in (ROOT / name).read_text() + " ", f"{name}'s build line should tag {tag}"
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version and tags["Dockerfile"].endswith(":" + version.group(1))
    gpu = yaml.safe_load((ROOT / "k8s" / "overlays" / "gpu" / "kustomization.yaml").read_text())
    assert gpu["images"] == [{"name": "ghcr.io/framewire/framewire", "newTag": "0.1.0-cuda"}]
