"""Stopping runners and the runtime: graceful drains, kills drop, nothing survives."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from dashboard.controlplane.models import App
from tests.conftest import wait_until
from tests.runtime.conftest import deploy_example, warm_runners
from tests.runtime.test_runner_lifecycle import _alive

pytestmark = pytest.mark.django_db(transaction=True)


def _in_background(call):
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("response", call()))
    thread.start()
    return thread, result


def test_a_graceful_stop_lets_the_in_flight_request_finish(runtime):
    deploy_example("drain", "slow_endpoint")
    runner = runtime.runner(runtime.start_runner(_current("drain"))["id"], wait_for="ready")
    thread, result = _in_background(lambda: runtime.gateway("POST", "/drain/", json={"seconds": 2}))
    wait_until(lambda: runtime.runner(runner["id"])["in_flight"] == 1, what="the request")

    runtime.admin("POST", f"/runners/{runner['id']}/stop", json={})
    assert runtime.runner(runner["id"])["state"] == "DRAINING"
    thread.join(30)
    assert result["response"].status_code == 200
    assert result["response"].json()["slept"] == 2
    assert runtime.runner(runner["id"], wait_for="gone", timeout=30)["state"] == "TERMINATED"
    log = runtime.admin("GET", "/logs", params={"runner": runner["id"]}).text
    assert "teardown: goodbye" in log


def test_stop_with_replace_starts_a_replacement_first(runtime):
    deploy_example("swap", "fast")
    first = runtime.runner(runtime.start_runner(_current("swap"))["id"], wait_for="ready")
    runtime.admin("POST", f"/runners/{first['id']}/stop", json={"replace": True})
    assert runtime.runner(first["id"], wait_for="gone", timeout=30)["state"] == "TERMINATED"
    others = [r for r in runtime.runners("swap") if r["id"] != first["id"]]
    assert [r["state"] for r in others] == ["IDLE"]
    log = runtime.admin("GET", "/logs", params={"runner": first["id"]}).text
    assert f"stopping once replacement {others[0]['id']} is ready" in log


def test_a_kill_drops_the_in_flight_request_with_a_502(runtime):
    deploy_example("axe", "slow_endpoint")
    runner = runtime.runner(runtime.start_runner(_current("axe"))["id"], wait_for="ready")
    thread, result = _in_background(lambda: runtime.gateway("POST", "/axe/", json={"seconds": 30}))
    wait_until(lambda: runtime.runner(runner["id"])["in_flight"] == 1, what="the request")

    runtime.admin("POST", f"/runners/{runner['id']}/kill", json={})
    thread.join(30)
    response = result["response"]
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "runner_lost"
    assert runtime.runner(runner["id"], wait_for="gone", timeout=10)["state"] == "TERMINATED"


def test_sync_drains_runners_that_are_not_of_the_current_revision(runtime):
    v1 = deploy_example("moving", "fast")
    old = runtime.runner(runtime.start_runner(v1)["id"], wait_for="ready")
    app = App.objects.get(name="moving")
    v2 = deploy_example(app, "fast", replace={'"fast v1"': '"fast v2"'})
    synced = runtime.admin("POST", "/apps/moving/sync", json={}).json()
    assert synced == {"current_revision": str(v2.id)}
    assert runtime.runner(old["id"], wait_for="gone", timeout=30)["state"] == "TERMINATED"
    assert runtime.gateway("POST", "/moving/", json={}).json()["version"] == "fast v2"


def test_stopping_the_runtime_leaves_no_runner_process_behind(runtime):
    deploy_example("left", "fast", min_concurrency=2)
    pids = [r["pid"] for r in warm_runners(runtime, "left", 2)]
    os.kill(runtime.proc.pid, signal.SIGTERM)
    runtime.proc.wait(30)
    assert runtime.proc.returncode == 0
    assert [pid for pid in pids if _alive(pid)] == []
    assert "runtime stopped" in runtime.log()


def test_a_runtime_killed_outright_takes_its_runners_with_it(runtime):
    deploy_example("orphan", "fast", min_concurrency=1)
    pid = warm_runners(runtime, "orphan", 1)[0]["pid"]
    os.kill(runtime.proc.pid, signal.SIGKILL)
    runtime.proc.wait(30)
    wait_until(lambda: not _alive(pid), what="the runner to die with the runtime")


def _current(name: str):
    return App.objects.select_related("current_revision").get(name=name).current_revision
