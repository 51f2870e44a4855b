"""A Ray replica runs the app's code in the runner sandbox on its node, as a local runner
does: the probe app of tests/security, deployed on the Ray backend, tries every escape and
must reach nothing — the control plane's Redis and PostgreSQL on 127.0.0.1, the var dir,
the Ray cluster itself (its GCS would run any code on any node), the replica's own worker
process — and runs as a uid of its own. With the app's network `outbound` (after a
rollout, which gives its replicas the app's network now) it reaches another machine
(tests/security/test_network.py's peer) and still none of those. A setup() that raises
still ends the deploy Failed, with its error and the runner's output in the log tail."""

from __future__ import annotations

import os
import shutil

import httpx
import pytest

from dashboard.controlplane.models import Revision
from dashboard.runtime import sandbox, sandboxed
from tests.ray.test_ray_backend import replicas, running
from tests.security.test_network import _services, peer  # noqa: F401 - its fixture.
from tests.security.test_sandbox import PROBE, targets

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]


@pytest.mark.skipif(not sandbox.enabled(), reason="SWITCHBOARD_SANDBOX=none")
def test_a_ray_replica_runs_the_app_in_the_sandbox_and_it_reaches_nothing(sb, system, ray_cluster):
    sb("deploy", f"{PROBE / 'app.py'}::Probe", "--app-name", "rayprobe", "--auth", "public")
    [replica] = running(sb, "rayprobe", 1)
    host, _, port = ray_cluster.address.rpartition(":")
    aimed = targets(system, [replica["pid"], system.runtime.pid, system.worker.pid, os.getpid()])
    aimed["ports"].append(int(os.environ["SWITCHBOARD_RAY_SERVE_PORT"]))
    aimed["tcp"] = [[host, int(port)]]  # The cluster's GCS.
    aimed["list"].append(str(ray_cluster.temp_dir))  # Every node's logs and sockets.
    aimed["write"].append(str(ray_cluster.temp_dir))

    response = httpx.post(f"{system.gateway_url}/rayprobe/escape", json=aimed, timeout=120)

    log = sb("logs", "rayprobe", "--runner", replica["id"]).stdout
    assert response.status_code == 200, response.text + log[-3000:]
    report = response.json()
    assert report["reached"] == []
    assert report["scratch_works"]
    assert report["uid"] >= sandboxed.UID_BASE
    # A PID namespace of its own: bwrap's init and the runner are all it sees.
    assert report["processes"] == [1, 2]
    # The runner's requests go through the replica: it is listed, and its log is the
    # runner's output.
    assert [r["id"] for r in replicas(sb, "rayprobe")] == [replica["id"]]
    assert "setup() finished; serving /connect, /escape" in log


def test_a_failed_setup_on_ray_keeps_its_error_and_the_runners_output(sb):
    sb.deploy("rayfragile", "v1")
    broken = sb.source("x", example="broken_setup")

    result = sb("deploy", broken, "--app-name", "rayfragile", ok=False)

    assert result.returncode == 1
    failed = Revision.objects.get(app__name="rayfragile", status="failed")
    assert failed.error.endswith("setup() raised RuntimeError: model file weights.bin is missing")
    # The runner's own output, before setup() raised, with its traceback.
    assert "loading the model..." in failed.log_tail, failed.log_tail
    assert 'raise RuntimeError("model file weights.bin is missing")' in failed.log_tail
    # Unsandboxed (development only), the replica says so there too.
    assert ("UNSANDBOXED" in failed.log_tail) == (not sandbox.enabled())
    assert sb.served_version("rayfragile") == "v1"


@pytest.mark.skipif(not sandbox.enabled(), reason="SWITCHBOARD_SANDBOX=none")
@pytest.mark.skipif(not os.access(sandboxed.PASTA, os.X_OK), reason="pasta is not installed")
@pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 is not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_an_outbound_ray_app_reaches_another_machine_after_a_rollout_and_no_loopback_service(
    sb,
    system,
    ray_cluster,
    peer,  # noqa: F811 - the fixture imported above.
):
    host, _, port = ray_cluster.address.rpartition(":")
    loopback = [[h, p] for h in ("127.0.0.1", "::1") for p in _services(system)]
    loopback.append([host, int(port)])  # The cluster's GCS, on another loopback address.
    echo = [peer.address, peer.port]

    def connect() -> dict:
        answer = httpx.post(
            f"{system.gateway_url}/rayout/connect",
            json={"tcp": loopback, "echo": echo},
            timeout=180,
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    sb("deploy", f"{PROBE / 'app.py'}::Probe", "--app-name", "rayout", "--auth", "public")
    off = connect()
    assert off["reached"] == []
    assert off["echo"].startswith("failed:")

    sb("apps", "network", "rayout", "outbound")
    # The replicas keep the network they started with; a rollout replaces them with the
    # app's network now.
    sb("apps", "rollout", "rayout")

    on = connect()
    assert on["echo"] == "ping from the sandbox\n"  # The other machine answers...
    assert on["reached"] == []  # ...and no loopback service, the cluster's included.
