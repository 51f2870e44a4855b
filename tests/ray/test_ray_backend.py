"""What only the Ray backend does: replicas spread over the cluster's nodes, each listed as a
runner that `runners stop/kill` and `logs` act on; a node lost under load; and a runtime
restart that adopts the Serve applications Ray still runs instead of deploying again.

The node test kills the cluster's second node, so it runs last (conftest.py: loses_a_node)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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
    """The app's runners: with the Ray backend, one row per Serve replica."""
    return json.loads(sb("apps", "runners", app, "--json").stdout)["runners"]


def running(sb, app: str, count: int, besides: set[str] = frozenset()) -> list[dict]:
    """Wait for `count` ready replicas (IDLE or RUNNING) of `app`, none among `besides`.
    (Until Serve lists a replica, the application is listed as one runner: not counted.)"""

    def found():
        rows = [
            r for r in replicas(sb, app) if r["state"] in runner_states.READY and r.get("replica")
        ]
        fresh = [r for r in rows if r["id"] not in besides]
        return fresh if len(rows) == count and len(fresh) == count else None

    return wait_until(found, timeout=90, interval=0.5, what=f"{count} ready replicas of {app}")


def row(sb, app: str, runner_id: str) -> dict:
    return next(r for r in replicas(sb, app) if r["id"] == runner_id)


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


def test_min_concurrency_2_puts_a_replica_on_each_node_each_listed_as_a_runner(sb, ray_cluster):
    deploy_with(sb, "spread", "v1", min_concurrency=2, max_concurrency=2)
    assert sb.served_version("spread") == "v1"

    both = running(sb, "spread", 2)
    assert len({r["node_id"] for r in both}) == 2, both
    assert all(r["node"] == ray_cluster.ip and r["pid"] and r["started_at"] for r in both), both
    assert all(r["in_flight"] == 0 and r["replica"] for r in both), both
    table = sb("apps", "runners", "spread").stdout.splitlines()
    assert table[0].split()[-1].lower() == "node"
    # Both nodes have the one address: the start of each node's id tells them apart.
    assert all(
        any(r["id"] in line and f"{r['node']} ({r['node_id'][:8]})" in line for line in table)
        for r in both
    )
    # A replica's own log: its worker's output, setup()'s line among it.
    log = sb("logs", "spread", "--runner", both[0]["id"]).stdout
    assert "setup() finished" in log


def test_scale_adds_a_replica_in_place_and_runners_kill_and_stop_end_one_each(sb):
    deploy_with(sb, "single", "v1", min_concurrency=1, max_concurrency=2)
    [only] = running(sb, "single", 1)

    sb("apps", "scale", "single", "--min-concurrency", "2")
    # Serve applies the new floor to the running deployment: the first replica stays.
    first, second = sorted(running(sb, "single", 2), key=lambda r: r["id"] != only["id"])
    assert first["id"] == only["id"]

    killed = sb("runners", "kill", first["id"])
    assert f"killed runner {first['id']}" in killed.stdout
    assert row(sb, "single", first["id"])["state"] == runner_states.RunnerState.TERMINATED
    after = running(sb, "single", 2, besides={first["id"]})
    assert second["id"] in {r["id"] for r in after}

    stopped = sb("runners", "stop", second["id"])
    assert f"stopped runner {second['id']}" in stopped.stdout
    assert row(sb, "single", second["id"])["state"] == runner_states.RunnerState.TERMINATED
    running(sb, "single", 2, besides={first["id"], second["id"]})
    assert sb.served_version("single") == "v1"
    # The killed replica's folder on its node (its runner's socket) was removed by a
    # replica started after it; the stopped one removed its own.
    for ended in (first, second):
        assert not list(Path(tempfile.gettempdir()).glob(f"sb-replica-{ended['pid']}-*"))


GATE = """
import asyncio

from dashboard.sdk import App, endpoint


class Gate(App):
    min_concurrency = 1
    max_concurrency = 1
    max_multiplexing = 1

    def setup(self) -> None:
        self.arrived = 0
        self.all_here = None

    @endpoint("/")
    async def wait(self, data: dict) -> dict:
        # In flight until `together` requests are in this runner at once (the app sees
        # nothing of the host's files, so the test cannot release it any other way).
        self.all_here = self.all_here or asyncio.Event()
        self.arrived += 1
        if self.arrived >= int(data["together"]):
            self.all_here.set()
        await self.all_here.wait()
        return {"together": self.arrived}
"""


def test_scale_moves_the_gateways_limit_on_a_revision_at_once(sb, tmp_path):
    """The gateway sends a Ray revision at most max_concurrency × max_multiplexing requests
    at once, from the alias's live settings: `apps scale` moves it, with no deploy or set-rev."""
    app_py = tmp_path / "gate" / "app.py"
    app_py.parent.mkdir()
    app_py.write_text(GATE)
    sb("deploy", f"{app_py}::Gate", "--app-name", "gate", "--auth", "public", "-m", "v1")
    running(sb, "gate", 1)

    sb("apps", "scale", "gate", "--max-multiplexing", "3")
    # One replica (Serve reconfigures it in place): all three reach its runner at once, or
    # none is answered.
    with ThreadPoolExecutor(3) as pool:
        calls = [
            pool.submit(httpx.post, f"{sb.gateway_url}/gate/", json={"together": 3}, timeout=120)
            for _ in range(3)
        ]
        answers = [call.result() for call in calls]
    assert [(a.status_code, a.json()) for a in answers] == [(200, {"together": 3})] * 3


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


@pytest.mark.loses_a_node
def test_losing_the_second_node_under_load_reschedules_its_replica_and_the_gateway_serves(
    sb, ray_cluster
):
    """Runs last: it leaves the cluster with its head node only."""
    deploy_with(sb, "sturdy", "v1", min_concurrency=2, max_concurrency=2)
    both = running(sb, "sturdy", 2)
    assert len({r["node_id"] for r in both}) == 2

    answers: list[int | str] = []
    stop = threading.Event()

    def load() -> None:
        # Bounded: at most 3000 requests or 120 s, one at a time.
        deadline = time.monotonic() + 120
        with httpx.Client(timeout=30) as client:
            while not stop.is_set() and len(answers) < 3000 and time.monotonic() < deadline:
                try:
                    answer = client.get(f"{sb.gateway_url}/sturdy/version")
                    ok = answer.status_code == 200 and answer.json()["version"] == "v1"
                    answers.append(200 if ok else answer.status_code)
                except httpx.HTTPError as exc:
                    answers.append(type(exc).__name__)

    loader = threading.Thread(target=load)
    loader.start()
    try:
        wait_until(lambda: len(answers) >= 20, timeout=60, what="the load under way")
        ray_cluster.kill_second_node()
        killed_at = len(answers)
        lost = wait_until(
            lambda: [
                r
                for r in both
                if row(sb, "sturdy", r["id"])["state"] == runner_states.RunnerState.TERMINATED
            ],
            timeout=90,
            interval=0.5,
            what="the lost node's replica listed as ended",
        )
        rescheduled = running(sb, "sturdy", 2, besides={r["id"] for r in lost})
        served_after = len(answers)
        wait_until(lambda: len(answers) >= served_after + 20, timeout=60, what="more answers")
    finally:
        stop.set()
        loader.join(timeout=60)

    failed = [a for a in answers if a != 200]
    print(
        f"node lost under load: {len(answers)} requests, {len(failed)} failed "
        f"({sorted(set(map(str, failed)))}); {killed_at} before the kill"
    )
    [kept] = [r for r in both if r not in lost]
    assert {r["node_id"] for r in rescheduled} == {kept["node_id"]}
    # Whatever failed while the node went, the gateway serves the Current revision after.
    assert answers[-20:] == [200] * 20
    assert sb.served_version("sturdy") == "v1"
