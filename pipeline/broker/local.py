"""The local development broker: genuine Apache Kafka, KRaft combined mode, one node on 127.0.0.1.

`LocalBroker(port).start()` resolves the jars (once), formats storage (once), launches
`java kafka.Kafka` detached in its own session and waits until it answers a metadata
request. A broker this code started is found again through its pid file, so `start()`
from any process reuses it and `stop()` from any process ends it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.broker.config import (
    DEFAULT_PORT,
    HOST,
    BrokerSecurity,
    PropValue,
    choose_bootstrap,
    local_bootstrap,
    log4j2_xml,
    new_cluster_id,
    render_properties,
    server_properties,
)
from pipeline.broker.errors import BrokerError
from pipeline.broker.jars import default_cache_root, ensure_jars, file_lock, find_java, kafka_version

# Run as `python -c _EXIT_WITH_PARENT <parent pid> java ...`: ask Linux to SIGTERM the broker when the
# launching process dies (a killed test session leaves no JVM behind), then become the JVM.
_EXIT_WITH_PARENT = ("import ctypes, os, signal, sys\n"
                     "ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG\n"
                     "if os.getppid() != int(sys.argv[1]): sys.exit(1)\n"
                     "os.execv(sys.argv[2], sys.argv[2:])\n")

# Children this process launched, so their exit is reaped (no zombies) and noticed at once.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_EXITED: dict[int, int] = {}  # exit status of children reaped by _pid_alive, for the error message


@dataclass(frozen=True)
class BrokerStatus:
    """What `LocalBroker.status()` reports: running means our process is alive and its port accepts connections."""

    running: bool
    pid: int | None
    bootstrap: str
    data_dir: Path
    log_file: Path
    run_dir: Path


class LocalBroker:
    """One local Kafka node. Its files live in `run_dir` (default `<cache>/run/<port>`):

    server.properties, log4j2.xml, broker.pid, broker.out (JVM stdout/stderr),
    logs/server.log (the broker log) and data/ (the topic and metadata logs).
    `exit_with_parent=True` (Linux) ends the broker with the process that started it: for tests,
    not for `framewire broker up`, whose broker outlives the command. `security` (BrokerSecurity) runs the
    client listener as SASL_SSL with SCRAM-SHA-512 users and ACLs enforced (for tests of secured clients).
    """

    def __init__(self, port: int = DEFAULT_PORT, *, controller_port: int | None = None,
                 run_dir: Path | str | None = None, cache_dir: Path | str | None = None,
                 heap: str = "512m", overrides: Mapping[str, PropValue] | None = None,
                 exit_with_parent: bool = False, security: BrokerSecurity | None = None) -> None:
        self.port = port
        self.controller_port = controller_port if controller_port is not None else port + 1
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_root()
        self.run_dir = Path(run_dir).expanduser() if run_dir else self.cache_dir / "run" / str(port)
        self.heap = heap
        self.overrides = dict(overrides or {})
        self.exit_with_parent = exit_with_parent
        self.security = security
        self._log_marks: dict[Path, int] = {}  # file sizes at launch: error tails show only this run

    # -- paths ---------------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return local_bootstrap(self.port)

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "logs" / "server.log"

    @property
    def out_file(self) -> Path:
        return self.run_dir / "broker.out"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "broker.pid"

    @property
    def properties_file(self) -> Path:
        return self.run_dir / "server.properties"

    def properties(self) -> dict[str, str]:
        """The server.properties this broker runs with."""
        return server_properties(port=self.port, controller_port=self.controller_port,
                                 data_dir=self.data_dir, overrides=self.overrides, security=self.security)

    # -- lifecycle -----------------------------------------------------------------------------
    def status(self) -> BrokerStatus:
        """Whether a broker we started runs here; cheap (a pid check and a TCP connect)."""
        pid = self._live_pid()
        running = pid is not None and _port_open(self.port)
        return BrokerStatus(running=running, pid=pid, bootstrap=self.bootstrap, data_dir=self.data_dir,
                            log_file=self.log_file, run_dir=self.run_dir)

    def start(self, timeout: float = 60.0) -> BrokerStatus:
        """Start the broker unless ours already runs, and wait until it answers (up to `timeout` s).

        Raises BrokerError (an OSError) when a port is taken by something else, the JVM
        exits, or the broker does not answer in time; the message carries the log's tail.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self.run_dir / ".lock"):
            pid = self._live_pid()
            if pid is not None:  # ours, already running (or still starting in another process)
                self._wait_ready(pid, timeout)
                return self.status()
            self.pid_file.unlink(missing_ok=True)
            for p, what in ((self.port, "broker"), (self.controller_port, "controller")):
                if not _port_free(p, wait_s=3.0):  # a broker killed a moment ago holds it while it dies
                    raise BrokerError(
                        f"{what} port {HOST}:{p} is in use by a process that is not a framewire broker of "
                        f"{self.run_dir}; stop it, choose another port, or point FRAMEWIRE_KAFKA_BOOTSTRAP at "
                        f"a running cluster")
            java, libs = find_java(), ensure_jars(self.cache_dir)
            self._write_config()
            self._format(java, libs)
            proc = self._launch(java, libs)
            try:
                self._wait_ready(proc.pid, timeout)
            except BaseException:
                self._kill(proc.pid, grace=5.0)
                raise
            return self.status()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop our broker: SIGTERM (a clean shutdown), then SIGKILL after `timeout` s. True if one was running."""
        with file_lock(self.run_dir / ".lock") if self.run_dir.exists() else contextlib.nullcontext():
            pid = self._live_pid()
            if pid is None:
                self.pid_file.unlink(missing_ok=True)
                return False
            self._kill(pid, grace=timeout)
            return True

    # -- internals -----------------------------------------------------------------------------
    def _write_config(self) -> None:
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        header = f"Written by framewire for Kafka {kafka_version()}; rewritten on every start, edit overrides instead."
        self.properties_file.write_text(render_properties(self.properties(), header=header))
        (self.run_dir / "log4j2.xml").write_text(log4j2_xml(self.log_file.parent))

    def _jvm(self, java: str, libs: Path, heap: str) -> list[str]:
        return [java, f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={self.run_dir / 'log4j2.xml'}",
                f"-Dkafka.logs.dir={self.log_file.parent}", "-cp", str(libs / "*")]

    def _format(self, java: str, libs: Path) -> None:
        """Format KRaft storage once; a data dir that holds meta.properties is kept as is."""
        if (self.data_dir / "meta.properties").exists():
            return
        cmd = [*self._jvm(java, libs, "256m"), "kafka.tools.StorageTool", "format", "--ignore-formatted",
               "--cluster-id", new_cluster_id(), "--config", str(self.properties_file),
               *(self.security.scram_args() if self.security else [])]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                              cwd=self.run_dir)
        if proc.returncode != 0:
            raise BrokerError(f"formatting Kafka storage in {self.data_dir} failed (exit {proc.returncode}):\n"
                              + _tail_text(proc.stdout + proc.stderr))

    def _launch(self, java: str, libs: Path) -> subprocess.Popen[bytes]:
        cmd = [*self._jvm(java, libs, self.heap), "kafka.Kafka", str(self.properties_file)]
        if self.exit_with_parent and sys.platform.startswith("linux"):
            cmd = [sys.executable, "-c", _EXIT_WITH_PARENT, str(os.getpid()), *cmd]
        self._log_marks = {f: f.stat().st_size if f.exists() else 0 for f in (self.out_file, self.log_file)}
        with open(self.out_file, "ab") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=self.run_dir, start_new_session=True, close_fds=True)
        _CHILDREN[proc.pid] = proc
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc

    def _wait_ready(self, pid: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not _pid_alive(pid):
                code = _EXITED.get(pid)
                how = "" if code is None else f" with {_exit_text(code)}"
                raise BrokerError(f"the Kafka broker (pid {pid}) exited during startup{how}; see {self.log_file}"
                                  f" and {self.out_file}:\n{self._log_tail()}")
            left = deadline - time.monotonic()
            client = self.security.client() if self.security else {}
            if _port_open(self.port) and _answers(self.bootstrap, timeout_s=max(1.0, min(10.0, left)), **client):
                return
            if time.monotonic() >= deadline:
                raise BrokerError(f"the Kafka broker (pid {pid}) did not answer on {self.bootstrap} within "
                                  f"{timeout:.0f} s; see {self.log_file}:\n{self._log_tail()}")
            time.sleep(0.25)

    def _kill(self, pid: int, grace: float) -> None:
        _signal(pid, signal.SIGTERM)
        if not _wait_dead(pid, grace):
            _signal(pid, signal.SIGKILL)
            _wait_dead(pid, 10.0)
        self.pid_file.unlink(missing_ok=True)

    def _live_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def _log_tail(self, lines: int = 30) -> str:
        parts = []
        for f in (self.out_file, self.log_file):
            with contextlib.suppress(OSError), open(f, "rb") as fh:
                fh.seek(self._log_marks.get(f, 0))
                text = fh.read().decode(errors="replace").strip()
                if text:
                    parts.append(f"--- {f} ---\n{_tail_text(text, lines)}")
        return "\n".join(parts) or "(no log output)"


def resolve_bootstrap(configured: str | None = None, *, start: bool = True, broker: LocalBroker | None = None,
                      environ: Mapping[str, str] | None = None, timeout: float = 60.0) -> str:
    """The bootstrap servers to use: `FRAMEWIRE_KAFKA_BOOTSTRAP`, else `configured`, else the local broker.

    An external cluster is returned as is and nothing starts. Otherwise the local broker
    (`broker`, default port 9092) is started when `start` is true (reused if it runs);
    with `start=False` its address is returned without starting or checking it.
    """
    chosen = choose_bootstrap(configured, os.environ if environ is None else environ)
    if chosen is not None:
        return chosen
    broker = broker or LocalBroker()
    return broker.start(timeout=timeout).bootstrap if start else broker.bootstrap


# -- process and socket helpers -------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    """Alive and, where /proc tells, a Kafka JVM (a recycled pid is not our broker).

    A child this process launched is judged by ``poll()`` alone: its pid cannot be recycled before we reap
    it, and its cmdline is not yet the JVM's while the exit-with-parent wrapper execs java (a read of
    /proc in that moment once called a starting broker dead, a CI failure)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _CHILDREN.pop(pid, None)
        _EXITED[pid] = child.returncode
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process took the pid
    proc = Path("/proc") / str(pid)
    if sys.platform.startswith("linux") and proc.exists():
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return False
            return b"kafka.Kafka" in (proc / "cmdline").read_bytes()
        except (OSError, IndexError):
            return False
    return True


def _exit_text(code: int) -> str:
    """Popen's returncode in words: ``exit 1``, or ``signal SIGKILL`` (the kernel's OOM killer sends that)."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"exit {code}"


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        child.wait()
    return True


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
        return True
    return False


def _port_free(port: int, wait_s: float = 0.0) -> bool:
    """Whether ``port`` can be bound, asking again for up to ``wait_s``: a JVM SIGKILLed a moment ago keeps
    its listening socket for about half a second while the kernel tears it down."""
    t_end = time.monotonic() + wait_s
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((HOST, port))
                return True
            except OSError:
                if time.monotonic() >= t_end:
                    return False
        time.sleep(0.1)


def _answers(bootstrap: str, timeout_s: float, **client: Any) -> bool:
    """True when the broker answers a metadata request and lists itself (registered and unfenced)."""
    from kafka import KafkaAdminClient  # imported late: `status()` and unit tests don't need it
    from kafka.errors import KafkaError

    ms = int(timeout_s * 1000)
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="framewire-broker-probe",
                                 request_timeout_ms=ms, bootstrap_timeout_ms=ms, **client)
    except (KafkaError, OSError):
        return False
    try:
        return bool(admin.describe_cluster().get("brokers"))
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def _tail_text(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
