"""Kafka's jars, resolved once from Maven Central with `mvn` into a cache outside the repo.

The pom beside this module pins the Kafka version; `ensure_jars` copies every runtime jar
into `<cache>/<version>/libs` so the broker runs as `java -cp 'libs/*' kafka.Kafka`.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

from pipeline.broker.errors import BrokerError, MissingToolError

POM = Path(__file__).with_name("pom.xml")
MIN_JAVA = 17  # Kafka 4 brokers need Java 17+
MVN_TIMEOUT_S = 900.0

_INSTALL_JAVA = ("install a Java 17+ runtime (Debian/Ubuntu: apt-get install openjdk-17-jre-headless; "
                 "macOS: brew install openjdk@17) or set JAVA_HOME")
_INSTALL_MVN = "install Maven (Debian/Ubuntu: apt-get install maven; macOS: brew install maven)"


def default_cache_root() -> Path:
    """`$FRAMEWIRE_CACHE/kafka`, else `$XDG_CACHE_HOME/framewire/kafka` or `~/.cache/framewire/kafka`."""
    if os.environ.get("FRAMEWIRE_CACHE"):
        return Path(os.environ["FRAMEWIRE_CACHE"]) / "kafka"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "framewire" / "kafka"


@functools.cache
def kafka_version(pom: Path = POM) -> str:
    """The Kafka version pinned by the pom's `kafka.version` property, e.g. "4.4.0"."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(pom).getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not (node.text or "").strip():
        raise BrokerError(f"{pom} has no <kafka.version> property")
    return (node.text or "").strip()


def libs_dir(cache_dir: Path | str | None = None) -> Path:
    """Where the jars of the pinned version live (whether or not resolved yet)."""
    return Path(cache_dir or default_cache_root()).expanduser() / kafka_version() / "libs"


def has_kafka_jar(libs: Path) -> bool:
    """True when `libs` holds the broker jar (kafka_<scala>-<version>.jar) of the pinned version."""
    return libs.is_dir() and any(libs.glob(f"kafka_*-{kafka_version()}.jar"))


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path` so two processes don't resolve or start at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def find_mvn() -> str:
    """Path of `mvn`, or MissingToolError saying how to install it."""
    mvn = shutil.which("mvn")
    if not mvn:
        raise MissingToolError(f"`mvn` not found on PATH; it resolves Kafka's jars from Maven Central: {_INSTALL_MVN}")
    return mvn


@functools.cache
def find_java() -> str:
    """Path of a Java 17+ `java` ($JAVA_HOME first, then PATH), or MissingToolError."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home and (Path(home) / "bin" / "java").exists() else shutil.which("java")
    if not java:
        raise MissingToolError(f"`java` not found; the Kafka broker runs on the JVM: {_INSTALL_JAVA}")
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MissingToolError(f"`{java} -version` failed ({exc}): {_INSTALL_JAVA}") from exc
    major = java_major(out.stderr + out.stdout)
    if major is None or major < MIN_JAVA:
        raise MissingToolError(f"{java} is Java {major or 'unknown'}; Kafka {kafka_version()} needs Java "
                               f"{MIN_JAVA}+: {_INSTALL_JAVA}")
    return java


def java_major(version_output: str) -> int | None:
    """Major version from `java -version` output: 'version "17.0.15"' -> 17, '"1.8.0_392"' -> 8."""
    m = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def ensure_jars(cache_dir: Path | str | None = None) -> Path:
    """Resolve Kafka's runtime jars with `mvn` once and return the libs folder.

    `cache_dir` is the cache root (default `default_cache_root()`); jars land in
    `<cache_dir>/<version>/libs`. Idempotent and safe across processes: a lock file
    serialises resolution and the folder only appears, by rename, once complete.
    """
    libs = libs_dir(cache_dir)
    if has_kafka_jar(libs):
        return libs
    mvn = find_mvn()
    home = libs.parent
    with file_lock(home / ".lock"):
        if has_kafka_jar(libs):  # another process finished while we waited
            return libs
        tmp = home / f"libs.partial-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(POM), "dependency:copy-dependencies",
               f"-Dframewire.kafka.libs={tmp}", f"-Dframewire.kafka.build={home / 'mvn-build'}"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=MVN_TIMEOUT_S,
                                  stdin=subprocess.DEVNULL, cwd=home)
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise BrokerError(f"mvn did not resolve Kafka {kafka_version()} within {MVN_TIMEOUT_S:.0f} s") from exc
        if proc.returncode != 0 or not has_kafka_jar(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
            raise BrokerError(f"mvn could not resolve Kafka {kafka_version()} from Maven Central (exit "
                              f"{proc.returncode}); check network access or a mirror/proxy in ~/.m2/settings.xml. "
                              f"Command: {' '.join(cmd)}\n{tail}")
        shutil.rmtree(libs, ignore_errors=True)  # a half-copied folder from an older, killed run
        tmp.rename(libs)
    return libs
