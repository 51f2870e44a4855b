"""What only the Ray backend does: replicas spread over the cluster's nodes, and a runtime
restart that adopts the Serve applications Ray still runs instead of deploying again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from dashboard import runner_states
from dashboard.system.supervisor import runtime_command
from tests.conftest import _start, wait_until

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]


def deploy_with(sb, app: str, version: str, **settings) -> None:
    """Deploy the demo with these settings written into its class."""
    source = sb.source(version)
    path, _, _ = source.partition("::")
    lines = "".join(f"    {k} = {v!r}\n" for k, v in settings.items())
    app_py = Path(path)
    app_py.write_text(
        app_py.read_text().replace("class Demo(App):\n", "class Demo(App):\n" + lines)
    )
    sb("deploy", source, "--app-name", app, "--auth", "public", "-m", version)


def replicas(sb, app: str) -> list[dict]:
    runners = json.loads(sb("apps", "runners", app, "--json").stdout)["runners"]
    return [
        rep
        for r in runners
        if r["state"] not in runner_states.GONE
        for rep in r.get("replicas") or []
    ]


def serve_applications(ray_cluster) -> dict:
    """Serve's own account of its applications, read by a separate Ray driver."""
    code = (
        "import json, ray; from ray import serve; "
        f"ray.init(address={ray_cluster.address!r}, namespace='switchboard', log_to_driver=False); "
        "print(json.dumps({n: (a.status, a.last_deployed_time_s) "
        "for n, a in serve.status().applications.items()}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=ray_cluster.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_min_concurrency_2_puts_a_replica_on_each_node(sb):
    deploy_with(sb, "spread", "v1", min_concurrency=2, max_concurrency=2)
    assert sb.served_version("spread") == "v1"

    running = wait_until(
        lambda: (
            [r for r in replicas(sb, "spread") if r["state"] == "RUNNING"]
            if len([r for r in replicas(sb, "spread") if r["state"] == "RUNNING"]) == 2
            else None
        ),
        timeout=60,
        what="two RUNNING replicas listed with the runner",
    )
    assert len({r["node_id"] for r in running}) == 2
    assert all(r["pid"] and r["started_at"] for r in running)


def restart_runtime(system, while_down=None) -> None:
    """SIGKILL the runtime (no shutdown: Ray keeps its applications), then start it again."""
    system.runtime.kill()
    system.runtime.wait(15)
    if while_down is not None:
        while_down()
    system.runtime = _start(runtime_command(), system.env, system.var_dir / "runtime.log")
    wait_until(
        lambda: httpx.get(system.runtime_url + "/health").status_code == 200,
        what="the restarted runtime",
        timeout=60,
    )


def test_a_runtime_restart_adopts_what_runs_and_removes_what_is_not_current(
    sb, system, ray_cluster
):
    sb.deploy("adopted", "v1")
    sb.deploy("adopted", "v2")
    assert sb.served_version("adopted") == "v2"
    v2, v1 = sb.revisions("adopted")
    name_v1, name_v2 = (f"sb--adopted--{v['id']}" for v in (v1, v2))
    before = serve_applications(ray_cluster)
    assert before[name_v2][0] == "RUNNING"

    try:
        restart_runtime(system)
        assert sb.served_version("adopted") == "v2"
        # Adopted: the same deployment, not deployed again.
        assert serve_applications(ray_cluster)[name_v2] == before[name_v2]

        # The alias moves while the runtime is down: on its return, v1 is deployed and
        # v2's application, no longer Current, is removed from Ray.
        restart_runtime(
            system,
            while_down=lambda: sb("apps", "set-rev", "adopted", v1["id"], "--strategy", "recreate"),
        )
        assert sb.served_version("adopted") == "v1"
        after = wait_until(
            lambda: (apps := serve_applications(ray_cluster)) and name_v2 not in apps and apps,
            timeout=60,
            what="v2's application removed",
        )
        assert after[name_v1][0] == "RUNNING"
    except AssertionError:
        print(system.log("runtime")[-5000:])
        raise
