"""A real two-node Ray cluster on this machine, and the whole system running on it.

`ray_cluster` starts a head node and a second node with `ray start`, both on the loopback
address 127.0.0.2 with one CPU each, the dashboard and usage reporting off, in a temp folder of
their own, and stops them after the session: each process whose command line names that
folder, and their children, so never another cluster on the machine. `system` is the suite's system fixture with
SWITCHBOARD_BACKEND=ray and RAY_ADDRESS set, so the runtime drives Ray Serve; the CLI's
`sb` fixtures work on top of it unchanged.

Without the ray extra installed these tests skip with that reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from tests.cli.conftest import sb, viewer  # noqa: F401 - the CLI fixtures, on the Ray system.
from tests.conftest import _stop, free_port
from tests.conftest import system as local_system

BIN = Path(sys.executable).parent
# Loopback, yet not the address `ray start` swaps for the machine's outward one (it does so
# for 127.0.0.1 and localhost): so every node, worker and replica talks over loopback only.
NODE_IP = "127.0.0.2"


def pytest_collection_modifyitems(config, items) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.ray)
            item.add_marker(pytest.mark.system)


def _need_ray() -> None:
    if shutil.which("ray", path=str(BIN)) is None:
        pytest.skip("the ray extra is not installed: pip install -e '.[ray]'")


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
        raise AssertionError(f"ray {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")


def _stop_cluster(temp_dir: Path, address: str) -> None:
    """End this cluster's processes only: every one whose command line names its folder
    or its address (the GCS, each node's raylet, agents and client server), and all they
    started (workers, replicas).

    Not `ray stop`: it ends every Ray process on the machine, another cluster's too.
    """
    mine = [
        p
        for p in psutil.process_iter(["cmdline"])
        if any(str(temp_dir) in part or address in part for part in p.info["cmdline"] or ())
    ]
    for process in list(mine):
        with contextlib.suppress(psutil.Error):
            mine.extend(process.children(recursive=True))
    for process in mine:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(mine, timeout=15)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=5)


class RayCluster:
    ip = NODE_IP

    def __init__(self, address: str, temp_dir: Path, env: dict[str, str], second_port: int):
        self.address = address
        self.temp_dir = temp_dir
        self.env = env
        self.second_port = second_port  # The second node's raylet (node manager) port.

    def kill_second_node(self) -> None:
        """SIGKILL the second node: its raylet, and all it started (its workers, the
        replicas among them, its agents), as when that machine is lost."""
        raylets = [
            p
            for p in psutil.process_iter(["cmdline"])
            if any(f"--node_manager_port={self.second_port}" == a for a in p.info["cmdline"] or ())
        ]
        assert raylets, "the second node's raylet is not running"
        doomed = []
        for raylet in raylets:
            with contextlib.suppress(psutil.Error):
                doomed += [raylet, *raylet.children(recursive=True)]
        for process in doomed:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(doomed, timeout=15)


@pytest.fixture(scope="session")
def ray_cluster():
    _need_ray()
    # A short path: Ray's socket names under it must fit in 107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="sbray-", dir="/tmp"))
    port = free_port()
    address = f"{NODE_IP}:{port}"
    env = {
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
    head = ["--head", "--port", str(port), "--include-dashboard", "false"]
    # Every port the node opens is picked free here, so it never takes one another
    # helper's cluster (or a demo) uses.
    ports = ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port())]
    try:
        _ray(
            "start",
            *head,
            *common,
            *ports,
            "--temp-dir",
            str(temp_dir),
            "--ray-client-server-port",
            str(free_port()),
            "--dashboard-agent-listen-port",
            str(free_port()),
            "--min-worker-port",
            "0",
            "--max-worker-port",
            "0",
            env=env,
        )
        second_port = free_port()
        second = [
            "--node-manager-port",
            str(second_port),
            "--object-manager-port",
            str(free_port()),
            "--dashboard-agent-listen-port",
            str(free_port()),
            "--min-worker-port",
            "0",
            "--max-worker-port",
            "0",
        ]
        _ray("start", "--address", address, *common, *second, env=env)
        yield RayCluster(address, temp_dir, env, second_port)
    finally:
        _stop_cluster(temp_dir, address)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_env(ray_cluster):
    """The runtime's environment for the Ray backend, set while the session's system starts."""
    values = {
        "SWITCHBOARD_BACKEND": "ray",
        "RAY_ADDRESS": ray_cluster.address,
        "SWITCHBOARD_RAY_SERVE_PORT": str(free_port()),
        "RAY_TMPDIR": str(ray_cluster.temp_dir),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    yield values
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def system(
    ray_env, django_db_setup, django_db_blocker, live_server, tmp_path_factory, redis_client
):
    """The suite's system, its runtime on the Ray backend (ray_env is set first)."""
    started = local_system.__wrapped__(
        django_db_setup, django_db_blocker, live_server, tmp_path_factory, redis_client
    )
    sys_ = next(started)
    first = sys_.runtime
    try:
        yield sys_
    finally:
        # A test that restarted the runtime left its new process here: stop that one too.
        if sys_.runtime is not first:
            _stop(sys_.runtime)
        started.close()
