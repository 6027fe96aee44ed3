"""A real multi-node Ray cluster on this machine: a head and worker nodes started with ``ray start``,
each its own raylet and object store, with custom resources so actors land on the node meant for them.

Everything binds 127.0.0.1 and lives in a temp dir of its own; ``kill_node`` SIGKILLs one node's raylet
and its workers (as a lost machine), ``close`` the whole cluster, without touching any other Ray.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from tests.support.kafka_fixtures import _free_port

RAY = str(Path(sys.executable).with_name("ray"))


class RayCluster:
    def __init__(self) -> None:
        # a short path: Ray's unix sockets live under it (108-byte limit)
        self.root = Path(tempfile.mkdtemp(prefix="fwray", dir="/tmp"))
        self.port = _free_port()
        self.nodes: dict[str, int] = {}  # name -> node manager port
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
        self.env.pop("RAY_ADDRESS", None)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start(self, name: str, args: list[str]) -> None:
        nmp, omp = _free_port(), _free_port()
        cmd = [RAY, "start", "--node-ip-address", "127.0.0.1", "--node-manager-port", str(nmp),
               "--object-manager-port", str(omp), "--disable-usage-stats", *args]
        done = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"ray start ({name}) failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        self.nodes[name] = nmp

    def start_head(self, cpus: float = 1, resources: dict[str, float] | None = None) -> RayCluster:
        self._start("head", ["--head", "--port", str(self.port), "--num-cpus", str(cpus), "--include-dashboard",
                             "false", "--temp-dir", str(self.root), "--resources",
                             json.dumps(resources or {"head_node": 1})])
        return self

    def add_node(self, name: str, cpus: float, resources: dict[str, float]) -> None:
        self._start(name, ["--address", self.address, "--num-cpus", str(cpus), "--resources", json.dumps(resources)])
        self.wait_nodes(len(self.nodes))

    def alive(self) -> int:
        """Live nodes as the head sees them, -1 when it cannot be asked. Ray prints its own warnings to stdout
        (e.g. "raylet has lagging heartbeats" on a busy machine), so the answer comes on a marked line."""
        code = (f"import ray; ray.init(address={self.address!r}, logging_level='ERROR'); "
                "print('ALIVE_NODES', sum(1 for n in ray.nodes() if n['Alive']))")
        try:
            out = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True,
                                 timeout=60)
        except subprocess.TimeoutExpired:  # a head too busy to answer now: ask again
            return -1
        if out.returncode != 0:
            return -1
        answers = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("ALIVE_NODES ")]
        return int(answers[-1]) if answers else -1

    def wait_nodes(self, n: int, timeout: float = 60) -> None:
        t_end = time.monotonic() + timeout
        while self.alive() != n:
            if time.monotonic() > t_end:
                raise RuntimeError(f"the Ray cluster never had {n} live nodes")
            time.sleep(1)

    def _raylet(self, name: str) -> psutil.Process | None:
        flag = f"--node_manager_port={self.nodes[name]}"
        for p in psutil.process_iter(["cmdline"]):
            cmd = p.info["cmdline"] or []
            if any(c == flag for c in cmd) and any("raylet" in c for c in cmd[:1]):
                return p
        return None

    def kill_node(self, name: str) -> None:
        """SIGKILL the node's raylet and every process under it, as a machine that is gone."""
        raylet = self._raylet(name)
        assert raylet is not None, f"no raylet for node {name}"
        _kill_tree(raylet)
        self.nodes.pop(name)

    def close(self) -> None:
        procs: list[psutil.Process] = []
        for p in psutil.process_iter(["cmdline"]):
            if any(str(self.root) in c for c in (p.info["cmdline"] or [])):
                procs.append(p)
        for p in procs:
            _kill_tree(p)


def _kill_tree(proc: psutil.Process) -> None:
    try:
        victims: list[Any] = [*proc.children(recursive=True), proc]
    except psutil.NoSuchProcess:
        return
    for v in victims:
        try:
            v.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=10)
