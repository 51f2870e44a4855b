"""A real two-node Ray cluster on this machine, for tests/ray and the bench's `ray` group.

`start()` starts a head node and a second node with `ray start`, both on the loopback
address 127.0.0.2 with one CPU each, the dashboard and usage reporting off, a small object
store, every port picked free, in a temp folder of their own. `RayCluster.stop()` ends
each process whose command line names that folder or the cluster's address, and their
children: never another cluster on the machine (`ray stop` would end them all).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent
# Loopback, yet not the address `ray start` swaps for the machine's outward one (it does so
# for 127.0.0.1 and localhost): so every node, worker and replica talks over loopback only.
NODE_IP = "127.0.0.2"


def installed() -> bool:
    return shutil.which("ray", path=str(BIN)) is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray(*args: str, env: dict[str, str], timeout: float = 180) -> None:
    result = subprocess.run(
        [str(BIN / "ray"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"ray {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")


def _node_ports() -> list[str]:
    return [
        "--node-manager-port",
        str(free_port()),
        "--object-manager-port",
        str(free_port()),
        "--dashboard-agent-listen-port",
        str(free_port()),
        "--min-worker-port",
        "0",
        "--max-worker-port",
        "0",
    ]


class RayCluster:
    ip = NODE_IP

    def __init__(self, temp_dir: Path) -> None:
        self.temp_dir = temp_dir
        self.address = f"{NODE_IP}:{free_port()}"
        self.second_port = 0  # The second node's raylet (node manager) port.
        self.env = {
            **os.environ,
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_TMPDIR": str(temp_dir),
            # Keep the idle cluster light on a small shared machine.
            "RAY_enable_metrics_collection": "0",
            # A node whose processes were killed is declared dead within seconds, not 30 s.
            "RAY_health_check_initial_delay_ms": "1000",
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_timeout_ms": "1000",
            "RAY_health_check_failure_threshold": "3",
        }

    def start(self) -> None:
        common = [
            "--node-ip-address",
            NODE_IP,
            "--num-cpus",
            "1",
            "--disable-usage-stats",
            # The smallest object store Ray takes: replicas pass only small requests.
            "--object-store-memory",
            str(80 * 1024 * 1024),
        ]
        port = self.address.rpartition(":")[2]
        head = ["--head", "--port", port, "--include-dashboard", "false"]
        head += ["--temp-dir", str(self.temp_dir), "--ray-client-server-port", str(free_port())]
        _ray("start", *head, *common, *_node_ports(), env=self.env)
        second = _node_ports()
        self.second_port = int(second[1])
        _ray("start", "--address", self.address, *common, *second, env=self.env)

    def stop(self) -> None:
        """End this cluster's processes only: every one whose command line names its folder
        or its address (the GCS, each node's raylet, agents and client server), and all
        they started (workers, replicas)."""
        mine = [
            p
            for p in psutil.process_iter(["cmdline"])
            if any(
                str(self.temp_dir) in part or self.address in part
                for part in p.info["cmdline"] or ()
            )
        ]
        for process in list(mine):
            with contextlib.suppress(psutil.Error):
                mine.extend(process.children(recursive=True))
        for process in mine:
            with contextlib.suppress(psutil.Error):
                process.terminate()
        _, alive = psutil.wait_procs(mine, timeout=5)
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(alive, timeout=5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def kill_second_node(self) -> None:
        """SIGKILL the second node: its raylet, and all it started (its workers, the
        replicas among them, its agents), as when that machine is lost."""
        flag = f"--node_manager_port={self.second_port}"
        raylets = [p for p in psutil.process_iter(["cmdline"]) if flag in (p.info["cmdline"] or ())]
        assert raylets, "the second node's raylet is not running"
        doomed = []
        for raylet in raylets:
            with contextlib.suppress(psutil.Error):
                doomed += [raylet, *raylet.children(recursive=True)]
        for process in doomed:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(doomed, timeout=15)


@contextlib.contextmanager
def running_cluster():
    """A started cluster, stopped on the way out."""
    # A short path: Ray's socket names under it must fit in 107 bytes.
    cluster = RayCluster(Path(tempfile.mkdtemp(prefix="sbray-", dir="/tmp")))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
