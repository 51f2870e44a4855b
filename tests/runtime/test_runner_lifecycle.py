"""Runner processes: start, serve, stop, logs, failures and crash backoff."""

from __future__ import annotations

import os
import signal

import pytest

from tests.conftest import wait_until
from tests.runtime.conftest import deploy_example

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_runner_starts_serves_stops_gracefully_and_keeps_its_log(runtime):
    revision = deploy_example("hello", "slow_endpoint")
    started = runtime.start_runner(revision)
    assert started["id"].startswith("r-") and started["app"] == "hello"

    ready = runtime.runner(started["id"], wait_for="ready", timeout=30)
    assert ready["state"] == "IDLE"
    assert ready["ready_at"] and ready["pid"]

    response = runtime.gateway("POST", "/hello/", json={"seconds": 0})
    assert response.json()["slept"] == 0
    assert response.headers["X-Switchboard-Runner"] == started["id"]

    stopping = runtime.admin("POST", f"/runners/{started['id']}/stop", json={})
    assert stopping.status_code == 200
    gone = runtime.runner(started["id"], wait_for="gone", timeout=30)
    assert gone["state"] == "TERMINATED"
    assert gone["ended_at"] >= gone["ready_at"]  # Its lifetime is known, and over.

    log = runtime.admin("GET", "/logs", params={"runner": started["id"]})
    assert log.headers["content-type"].startswith("text/plain")
    assert "setup() finished" in log.text
    assert "teardown: goodbye" in log.text
    assert "TERMINATING" in log.text
    by_revision = runtime.admin("GET", "/logs", params={"revision": str(revision.id)})
    assert f"[{started['id']}]" in by_revision.text


def test_starting_twice_with_one_key_starts_only_once(runtime):
    revision = deploy_example("keyed", "fast")
    body = {"count": 2, "key": "op-1:start", "settings": None}
    first = runtime.admin("POST", f"/revisions/{revision.id}/runners", json=body).json()
    again = runtime.admin("POST", f"/revisions/{revision.id}/runners", json=body).json()
    assert [r["id"] for r in first["runners"]] == [r["id"] for r in again["runners"]]
    assert len({r["id"] for r in runtime.runners("keyed")}) == 2


def test_setup_that_raises_fails_the_runner_and_its_log_says_why(runtime):
    revision = deploy_example("broken", "broken_setup")
    started = runtime.start_runner(revision)
    failed = runtime.runner(started["id"], wait_for="ready", timeout=30)
    assert failed["state"] == "FAILED"
    # One line for the revision's error; the traceback is in the runner's log.
    assert failed["error"] == "setup() raised RuntimeError: model file weights.bin is missing"
    log = runtime.admin("GET", "/logs", params={"runner": started["id"]}).text
    assert "Traceback (most recent call last)" in log
    assert "loading the model..." in log
    assert "RuntimeError: model file weights.bin is missing" in log


def test_setup_longer_than_startup_timeout_fails_the_runner(runtime):
    revision = deploy_example(
        "sleepy", "slow_setup", replace={"SETUP_SECONDS = 3.0": "SETUP_SECONDS = 60"}
    )
    started = runtime.start_runner(revision, startup_timeout=1)
    failed = runtime.runner(started["id"], wait_for="ready", timeout=30)
    assert failed["state"] == "FAILED"
    assert "startup_timeout=1s" in failed["error"]
    wait_until(lambda: not _alive(failed["pid"]), what="the timed-out runner to be killed")


def test_a_runner_that_crashes_after_ready_backs_off_and_restarts(runtime):
    revision = deploy_example("crashy", "fast")
    started = runtime.start_runner(revision)
    ready = runtime.runner(started["id"], wait_for="ready", timeout=30)

    os.kill(ready["pid"], signal.SIGKILL)
    backing_off = runtime.wait_state(started["id"], "CRASH_BACKOFF")
    assert "restarting in 0.5s" in backing_off["error"]

    restarted = runtime.wait_state(started["id"], "IDLE")
    assert restarted["restarts"] == 1
    assert restarted["pid"] != ready["pid"]
    assert runtime.gateway("POST", "/crashy/", json={}).json()["version"] == "fast v1"
    log = runtime.admin("GET", "/logs", params={"runner": started["id"]}).text
    assert "crashed: process exited with code -9" in log


def test_kill_ends_a_runner_at_once(runtime):
    revision = deploy_example("killme", "fast")
    started = runtime.start_runner(revision)
    ready = runtime.runner(started["id"], wait_for="ready", timeout=30)
    runtime.admin("POST", f"/runners/{started['id']}/kill", json={})
    assert runtime.runner(started["id"], wait_for="gone", timeout=10)["state"] == "TERMINATED"
    assert not _alive(ready["pid"])


def test_unknown_runners_and_revisions_are_404_and_the_admin_api_needs_its_secret(runtime):
    assert runtime.admin("GET", "/runners/r-00000000").status_code == 404
    missing = runtime.admin(
        "POST", "/revisions/00000000-0000-0000-0000-000000000000/runners", json={}
    )
    assert missing.status_code == 404
    assert "not found" in missing.json()["error"]["message"]
    assert runtime.admin("GET", "/logs", params={"runner": "r-00000000"}).status_code == 404
    import httpx

    refused = httpx.get(runtime.admin_url + "/runners")
    assert refused.status_code == 401
    assert "secret" in refused.json()["error"]["message"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes: it runs no code and holds no socket.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1][0] != "Z"


def test_the_runner_listing_puts_live_runners_first_then_the_newest(runtime):
    # The order the dashboard's Runners page and `switchboard apps runners` show.
    failed = runtime.start_runner(deploy_example("listed-broken", "broken_setup"))
    runtime.runner(failed["id"], wait_for="ready", timeout=30)
    revision = deploy_example("listed", "fast")
    older = runtime.start_runner(revision)
    runtime.runner(older["id"], wait_for="ready", timeout=30)
    newer = runtime.start_runner(revision)
    runtime.runner(newer["id"], wait_for="ready", timeout=30)

    ours = {failed["id"], older["id"], newer["id"]}
    listed = [r["id"] for r in runtime.admin("GET", "/runners").json()["runners"]]
    assert [i for i in listed if i in ours] == [newer["id"], older["id"], failed["id"]]
